//! [`Surprising`]: the simulated kernel with a host around it that changes things behind a
//! command's back — what real hosts do and no plan predicts: a lease ends and the kernel
//! deletes the address, a DHCP client deconfigures the NIC or puts its address back on
//! it, a prefix route expires, a client re-adds its default route.
//!
//! Each [`Surprise`] is scheduled after a given number of the command's own changes, and
//! acts through the simulated kernel's ordinary operations, so the kernel's side effects
//! (routes flushed with an address…) follow as they would.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use env_qemu_core::model::{
    Address, DumpFilter, IfName, Neighbour, NetState, Route, SysctlKey, Tmpfs,
};
use env_qemu_core::{Kernel, KernelError, Op};

use crate::SimKernel;

/// Something the host does by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Surprise {
    /// The address goes from whichever device has it (its lease ended, its client took it
    /// back).
    AddressGone(IpAddr),
    /// A client puts this address back on its device (dhclient renewing on the NIC).
    AddressBack(Address),
    /// The route goes, from its device or from whichever device env-qemu moved it to
    /// (every route of that table, destination and metric through `also`): it expired,
    /// someone deleted it.
    RouteGone {
        /// The route, on its original device.
        route: Route,
        /// The device env-qemu may have moved it to.
        also: Option<IfName>,
    },
    /// A client adds this route again on its device.
    RouteBack(Route),
}

impl Surprise {
    /// The operations that play it on the current state of `sim`.
    fn ops(&self, net: &NetState) -> Vec<Op> {
        match self {
            Surprise::AddressGone(ip) => net
                .addresses
                .iter()
                .filter(|a| a.ip == *ip)
                .map(|a| Op::AddrDel { address: a.clone() })
                .collect(),
            Surprise::AddressBack(a) => vec![Op::AddrAdd { address: a.clone() }],
            Surprise::RouteGone { route: r, also } => net
                .routes
                .iter()
                .filter(|q| q.table == r.table && q.dst == r.dst && q.metric == r.metric)
                .filter(|q| q.dev == r.dev || (also.is_some() && q.dev == *also))
                .map(|q| Op::RouteDel { route: q.clone() })
                .collect(),
            Surprise::RouteBack(r) => vec![Op::RouteReplace { route: r.clone() }],
        }
    }
}

/// A [`SimKernel`] that plays [`Surprise`]s after given numbers of successful changes.
/// `Clone` gives another handle on the same kernel and schedule.
#[derive(Debug, Clone)]
pub struct Surprising {
    sim: SimKernel,
    state: Arc<Mutex<Schedule>>,
}

#[derive(Debug, Default)]
struct Schedule {
    changes: usize,
    /// (after how many changes, what), not yet played.
    pending: Vec<(usize, Surprise)>,
    played: Vec<Surprise>,
}

impl Surprising {
    /// `sim` with nothing scheduled yet.
    pub fn new(sim: SimKernel) -> Surprising {
        Surprising {
            sim,
            state: Arc::default(),
        }
    }

    /// Plays `what` right after the `after`-th change made through this handle from now
    /// (0: before the next one, at the next call that changes something).
    pub fn schedule(&self, after: usize, what: Surprise) {
        let mut s = self.lock();
        let at = s.changes + after;
        s.pending.push((at, what));
    }

    /// Forgets the surprises not played yet.
    pub fn cancel_pending(&self) {
        self.lock().pending.clear();
    }

    /// The surprises played so far, in order.
    pub fn played(&self) -> Vec<Surprise> {
        self.lock().played.clone()
    }

    /// The simulated kernel underneath.
    pub fn sim(&self) -> &SimKernel {
        &self.sim
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plays what is due; a surprise the kernel refuses (the address is there already)
    /// simply does not happen.
    fn play_due(&self) {
        let due: Vec<Surprise> = {
            let mut s = self.lock();
            let now = s.changes;
            let (due, later): (Vec<_>, Vec<_>) =
                s.pending.drain(..).partition(|(at, _)| *at <= now);
            s.pending = later;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for what in due {
            for op in what.ops(&self.sim.net()) {
                let _ = self.sim.apply_now(&op);
            }
            self.lock().played.push(what);
        }
    }
}

#[async_trait]
impl Kernel for Surprising {
    async fn dump(&self) -> Result<NetState, KernelError> {
        self.sim.dump().await
    }

    async fn apply(&self, op: &Op) -> Result<(), KernelError> {
        self.play_due();
        let r = self.sim.apply(op).await;
        if r.is_ok() {
            self.lock().changes += 1;
            self.play_due();
        }
        r
    }

    async fn read_sysctl(&self, key: &SysctlKey) -> Result<String, KernelError> {
        self.sim.read_sysctl(key).await
    }

    async fn read_tmpfs(&self, path: &Path) -> Result<Tmpfs, KernelError> {
        self.sim.read_tmpfs(path).await
    }

    async fn neighbours(&self, dev: Option<&IfName>) -> Result<Vec<Neighbour>, KernelError> {
        self.sim.neighbours(dev).await
    }

    async fn dump_filtered(&self, filter: &DumpFilter) -> Result<NetState, KernelError> {
        self.sim.dump_filtered(filter).await
    }
}
