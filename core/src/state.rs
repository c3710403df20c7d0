//! What env-qemu remembers between commands: the pre-start snapshot, what it attached, and
//! the journal of the command in flight.

use serde::{Deserialize, Serialize};

use crate::model::Snapshot;
use crate::op::Op;
use crate::plan::{MadeTap, StartRequest, TapRecord};

pub const STATE_VERSION: u32 = 1;

/// Where the bridge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `start` saved the snapshot and is (or was, if it crashed) applying its plan.
    Starting,
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
    pub of: usize,
    pub op: Op,
}

fn first_round() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Identifies the network namespace the state belongs to (its inode, `net:[4026531840]`),
    /// so a state file is never applied to another namespace.
    pub netns: String,
    pub request: StartRequest,
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
}

impl State {
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
        }
    }
}
