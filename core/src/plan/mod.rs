//! The planner: pure functions from (observed state, request) to a [`Plan`], an ordered
//! list of operations each paired with the operation that undoes it.
//!
//! Nothing here talks to a kernel; everything is data, so plans are golden-tested as the
//! `ip` commands they render to.

mod drift;
mod error;
mod neigh;
mod start;
mod stop;
mod tap;
mod uplink;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{Address, Family, IfName, Neighbour, Route, Snapshot};
use crate::op::{LinkChange, LinkSpec, Op};

pub use drift::drift;
pub use error::PlanError;
pub use start::{plan_bridged, plan_start};
pub use stop::plan_stop;
pub use tap::{plan_add, plan_del, plan_detached, plan_gone, plan_made, NEW_TAP_MTU};
pub use uplink::default_uplink;

/// An ordered list of operations, plus notes for the operator (things the plan chose not
/// to do). Plans have no undo of their own: the way back is computed when it is needed,
/// from the state the kernel is in then (see [`crate::converge`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Op>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.steps.iter()
    }

    fn push(&mut self, op: Op) {
        self.steps.push(op);
    }
}

impl fmt::Display for Plan {
    /// One copy-pastable command per line (what `--dry-run` prints), notes as comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "# {n}")?;
        }
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

/// What `start` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    pub uplink: IfName,
    pub bridge: IfName,
    /// Grow this tmpfs to at least this size; `None` leaves shared memory alone.
    pub shm: Option<ShmRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmRequest {
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What `add` changed on a tap, so `del` (or `stop --force`) can put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapRecord {
    pub name: IfName,
    pub mtu: u32,
    pub up: bool,
}

/// A persistent tap env-qemu makes (`tap create`, `run`): recorded in the state before it
/// exists, so that `stop` deletes it even if the command making it dies half-way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeTap {
    pub name: IfName,
    /// The user (and group) allowed to open it; root always may.
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// The `env-qemu run` process it was made for, which deletes it when it leaves (or
    /// the next `run` to leave, once that process is gone); `None` for `tap create`'s.
    #[serde(default)]
    pub holder: Option<u32>,
}

impl MadeTap {
    /// `ip tuntap add dev NAME mode tap [user U] [group G]`.
    pub fn spec(&self) -> LinkSpec {
        LinkSpec::Tap {
            name: self.name.clone(),
            owner: self.owner,
            group: self.group,
        }
    }
}

/// `ip link set dev NAME CHANGE`.
fn link_set(name: &IfName, change: LinkChange) -> Op {
    Op::LinkSet {
        name: name.clone(),
        change,
    }
}

/// IPv4 primaries before secondaries (the order that keeps each one's role when re-added),
/// otherwise the kernel's order.
fn primaries_first<'a>(addrs: impl Iterator<Item = &'a Address>) -> Vec<&'a Address> {
    let mut v: Vec<&Address> = addrs.collect();
    v.sort_by_key(|a| a.secondary);
    v
}

/// The order to delete `addrs` in: the reverse of [`primaries_first`], so secondaries go
/// before their primary (with promote_secondaries=0 deleting a primary takes its
/// secondaries along, and their explicit deletion would then find nothing).
fn deletion_order<'a>(addrs: impl Iterator<Item = &'a Address>) -> Vec<&'a Address> {
    let mut v = primaries_first(addrs);
    v.reverse();
    v
}

/// The kernel's identity of an address on one device: IPv6 by address alone, IPv4 by
/// address and prefix length.
pub fn same_addr(a: &Address, b: &Address) -> bool {
    a.ip == b.ip && (a.family() == Family::Inet6 || a.prefix_len == b.prefix_len)
}

/// Two routes the same but for the time they have left (a route's expiry counts down,
/// like an address's lifetimes): what a restore and a verification compare.
pub fn same_route(a: &Route, b: &Route) -> bool {
    a == b
}

/// The static (`nud permanent`) entries `s` holds for `dev`.
pub fn statics_of<'a>(s: &'a Snapshot, dev: &'a IfName) -> impl Iterator<Item = &'a Neighbour> {
    neigh::statics(s, dev)
}

/// The operation that puts the static entry `n` on its device.
pub fn put_static(n: &Neighbour) -> Vec<Op> {
    neigh::put_on(n, &n.dev, crate::model::NudState::Permanent)
        .into_iter()
        .collect()
}
