//! What env-qemu remembers between commands: the pre-start snapshot, what it attached, and
//! the journal of the command in flight.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Snapshot;
use crate::op::Op;
use crate::pending::Pending;
use crate::plan::{MadeTap, StartRequest, TapRecord};

/// The version of the state file format this build reads and writes; a file of another version is
/// refused ([`crate::store::StoreError::Version`]).
pub const STATE_VERSION: u32 = 1;

/// Where the bridge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `start` saved the snapshot and is (or was, if it crashed) applying its plan.
    Starting,
    /// `start` finished: the bridge is up; `add`, `del`, `stop` are allowed.
    Running,
    /// `stop` is (or was) applying its plan.
    Stopping,
}

/// One journalled operation: written before the operation runs, so after a crash the last
/// entry names what may or may not have happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// `start`, `add tap0`, `stop`, `start (rollback)`…
    pub command: String,
    /// 1 for the first plan, more for a plan made again after a surprise.
    #[serde(default = "first_round")]
    pub round: u32,
    /// 1-based position in the round's plan.
    pub step: usize,
    /// Number of steps in the round's plan.
    pub of: usize,
    /// The operation.
    pub op: Op,
}

fn first_round() -> u32 {
    1
}

/// What is saved beside a started bridge (one file per bridge and namespace): the pre-start
/// snapshot and everything a later command needs to find and undo what env-qemu did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// Identifies the network namespace the state belongs to, so a state file is never
    /// applied to another namespace: the text of a [`NetnsId`], `net:[4026532840] cookie 4097`
    /// (inode and cookie), or `net:[4026532840]` (the inode alone: files written before
    /// cookies, and kernels without them). Commands compare it as a whole.
    pub netns: String,
    /// What `start` was asked.
    pub request: StartRequest,
    /// Where the bridge is in its life.
    pub phase: Phase,
    /// Everything as it was before start: what stop brings back.
    pub pre: Snapshot,
    /// Taps env-qemu attached, with what it changed on them.
    pub taps: Vec<TapRecord>,
    /// The command in flight (empty between commands). Steps are appended to the store's
    /// journal, not saved here; [`crate::store::StateStore::load`] merges them in.
    pub journal: Vec<JournalEntry>,
    /// PIDs of `env-qemu run` processes using the bridge; the last one out stops it.
    /// Empty when the bridge was started by hand: then `run` never stops it.
    #[serde(default)]
    pub holders: Vec<u32>,
    /// Taps env-qemu made, each recorded before its creation: `stop` deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub made: Vec<MadeTap>,
    /// A `start --confirm` not yet confirmed: reverted at its deadline unless confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

impl State {
    /// A state for a `start` about to begin: phase [`Phase::Starting`], nothing attached or made.
    pub fn new(netns: String, request: StartRequest, pre: Snapshot) -> State {
        State {
            version: STATE_VERSION,
            netns,
            request,
            phase: Phase::Starting,
            pre,
            taps: Vec::new(),
            journal: Vec::new(),
            holders: Vec::new(),
            made: Vec::new(),
            pending: None,
        }
    }
}

/// A network namespace as env-qemu tells them apart: the inode of its nsfs file and, where
/// the kernel has it (Linux 5.14 and later), its cookie (`SO_NETNS_COOKIE`).
///
/// The inode identifies a namespace among those alive, but the kernel hands a freed inode
/// number to the next namespace (or other nsfs object) it creates: a state keyed by the
/// inode alone would be taken for the new namespace's own. The cookie is a 64-bit counter
/// that the kernel never hands out twice while it runs. Where there is no cookie, the
/// callers add a check of the devices the state names (see the CLI's `context` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// The inode number of the namespace's nsfs file (`/proc/self/ns/net`).
    pub inode: u64,
    /// The namespace's cookie, where the kernel has one.
    pub cookie: Option<u64>,
}

impl NetnsId {
    /// Reads the form [`fmt::Display`] writes (and the inode-only form of older files).
    pub fn parse(text: &str) -> Option<NetnsId> {
        let rest = text.strip_prefix("net:[")?;
        let (inode, rest) = rest.split_once(']')?;
        let inode = digits(inode)?;
        let cookie = match rest {
            "" => None,
            r => Some(digits(r.strip_prefix(" cookie ")?)?),
        };
        Some(NetnsId { inode, cookie })
    }
}

/// A decimal number without sign, blanks or leading `+`.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for NetnsId {
    /// `net:[INODE] cookie COOKIE`, or `net:[INODE]` without a cookie: what `ip`,
    /// `lsns` and `/proc/PID/ns/net` call the inode, then the cookie.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.inode)?;
        if let Some(c) = self.cookie {
            write!(f, " cookie {c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::NetnsId;

    #[test]
    fn netns_ids_read_back_what_they_write() {
        for id in [
            NetnsId {
                inode: 4026532840,
                cookie: Some(4097),
            },
            NetnsId {
                inode: 4026531840,
                cookie: None,
            },
            NetnsId {
                inode: 1,
                cookie: Some(u64::MAX),
            },
        ] {
            assert_eq!(NetnsId::parse(&id.to_string()), Some(id), "{id}");
        }
        assert_eq!(
            NetnsId::parse("net:[4026532840] cookie 4097").map(|i| i.to_string()),
            Some("net:[4026532840] cookie 4097".to_string())
        );
    }

    #[test]
    fn malformed_netns_ids_are_none() {
        for text in [
            "",
            "sim",
            "net:[]",
            "net:[12",
            "net:[+12]",
            "net:[12] ",
            "net:[12] cookie",
            "net:[12] cookie ",
            "net:[12] cookie x",
            "net:[12] cookie -1",
            "net:[12]cookie 3",
            "net:[99999999999999999999]",
        ] {
            assert_eq!(NetnsId::parse(text), None, "{text:?}");
        }
    }
}
