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

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{Address, Family, IfName};
use crate::op::{LinkChange, Op};

pub use drift::drift;
pub use error::PlanError;
pub use start::plan_start;
pub use stop::plan_stop;
pub use tap::{plan_add, plan_del};

/// One operation and the operations that undo it, run in order. `undo` is empty only where
/// a later undo subsumes it (settings of the bridge env-qemu created, which its deletion
/// removes) or where the operation only fills a cache (neighbour entries). Most undos are one operation; some kernel side effects need two (re-adding a
/// dynamic IPv6 address and deleting it again leaves its prefix route behind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub op: Op,
    pub undo: Vec<Op>,
}

impl Step {
    pub fn new(op: Op, undo: Op) -> Step {
        Step {
            op,
            undo: vec![undo],
        }
    }

    pub fn with_undo(op: Op, undo: Vec<Op>) -> Step {
        Step { op, undo }
    }

    /// A step on something env-qemu created, undone by deleting that thing.
    pub fn owned(op: Op) -> Step {
        Step { op, undo: vec![] }
    }
}

/// An ordered list of steps, plus notes for the operator (things the plan chose not to do).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.steps.iter().map(|s| &s.op)
    }

    /// The undo operations in the order they would run after the whole plan.
    pub fn revert(&self) -> Vec<Op> {
        self.steps
            .iter()
            .rev()
            .flat_map(|s| s.undo.clone())
            .collect()
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }
}

impl fmt::Display for Plan {
    /// One copy-pastable command per line (what `--dry-run` prints), notes as comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "# {n}")?;
        }
        for s in &self.steps {
            writeln!(f, "{}", s.op)?;
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

/// `ip link set dev NAME CHANGE`, undone by `ip link set dev NAME UNDO`.
fn link_set(name: &IfName, change: LinkChange, undo: LinkChange) -> Step {
    Step::new(
        Op::LinkSet {
            name: name.clone(),
            change,
        },
        Op::LinkSet {
            name: name.clone(),
            change: undo,
        },
    )
}

/// Deletes `addrs` in the order given, each undone by adding it back; the undo of the last
/// IPv4 one also runs `last_v4_undo`, for what the kernel flushes with a device's last
/// IPv4 address (its remaining IPv4 routes, its ARP entries).
fn delete_addresses(addrs: &[&Address], last_v4_undo: Vec<Op>) -> Vec<Step> {
    let last_v4 = addrs.iter().rposition(|a| a.family() == Family::Inet);
    let mut extra = Some(last_v4_undo);
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut undo = vec![Op::AddrAdd {
                address: (*a).clone(),
            }];
            if Some(i) == last_v4 {
                undo.extend(extra.take().unwrap_or_default());
            }
            Step::with_undo(
                Op::AddrDel {
                    address: (*a).clone(),
                },
                undo,
            )
        })
        .collect()
}

/// IPv4 primaries before secondaries (the order that keeps each one's role when re-added),
/// otherwise the kernel's order.
fn primaries_first<'a>(addrs: impl Iterator<Item = &'a Address>) -> Vec<&'a Address> {
    let mut v: Vec<&Address> = addrs.collect();
    v.sort_by_key(|a| a.secondary);
    v
}
