//! Where an in-process command spends its time: a [`Kernel`] and a [`StateStore`] that
//! time and count what they pass through, and the netlink requests each operation costs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use env_qemu_core::model::{DumpFilter, IfName, Neighbour, NetState, SysctlKey, Tmpfs};
use env_qemu_core::pending::PendingEvent;
use env_qemu_core::state::{JournalEntry, State};
use env_qemu_core::store::{StateStore, StoreError};
use env_qemu_core::{Kernel, KernelError, LinkChange, LinkSpec, Op};
use serde_json::{json, Value};

use crate::stats::ms;

/// Netlink requests `NetlinkKernel::dump` sends: links, addresses, IPv4 routes, IPv6
/// routes (one `NLM_F_DUMP` each; more only if the kernel flags a dump as interrupted).
pub const DUMP_REQUESTS: u32 = 4;

/// Netlink requests `NetlinkKernel::dump_filtered(filter)` sent to answer `got`
/// (backend-netlink's dump/filtered.rs): one RTM_GETLINK per name; for `ports_of`, one
/// RTM_GETLINK when the bridge is not among the names and one link dump when it exists;
/// per named link found, an address dump and a route dump per family as asked; one
/// RTM_GETLINK per master outside the answer.
pub fn filtered_dump_requests(filter: &DumpFilter, got: &NetState) -> u32 {
    let found = |n: &IfName| got.links.iter().any(|l| &l.name == n);
    let mut n = filter.links.len();
    if let Some(br) = &filter.ports_of {
        n += usize::from(!filter.links.contains(br));
        n += usize::from(found(br) || got.links.iter().any(|l| l.master.as_ref() == Some(br)));
    }
    let named = filter.links.iter().filter(|l| found(l)).count();
    n += named * 2 * (usize::from(filter.addresses) + usize::from(filter.routes));
    let mut outside: Vec<&IfName> = got
        .links
        .iter()
        .filter_map(|l| l.master.as_ref())
        .filter(|m| !found(m))
        .collect();
    outside.sort();
    outside.dedup();
    u32::try_from(n + outside.len()).unwrap_or(u32::MAX)
}

/// The netlink requests `NetlinkKernel::apply(op)` sends (backend-netlink's code): the
/// request itself, plus one `RTM_GETLINK` per device it names by a name the message must
/// carry as an index (addresses, a route's `dev`, a port's `master`). Sysctls, tmpfs and
/// tap creation are not netlink.
pub fn requests(op: &Op) -> u32 {
    match op {
        Op::LinkAdd {
            spec: LinkSpec::Tap { .. },
        } => 0,
        Op::LinkAdd { .. } | Op::LinkDel { .. } => 1,
        Op::LinkSet {
            change: LinkChange::Master(_),
            ..
        } => 2,
        Op::LinkSet { .. } => 1,
        Op::AddrAdd { .. } | Op::AddrDel { .. } => 2,
        Op::RouteAdd { route }
        | Op::RouteReplace { route }
        | Op::RouteAppend { route }
        | Op::RouteDel { route } => 1 + u32::from(route.dev.is_some()),
        Op::NeighReplace { .. } | Op::NeighDel { .. } => 2,
        Op::TmpfsResize { .. } | Op::SysctlSet { .. } => 0,
        // One address dump when DAD has already run; more while it has not.
        Op::AwaitDad { .. } => 1,
        Op::Host { .. } => 0,
    }
}

/// The minimum number of netlink requests the same change needs: one per kernel object
/// changed, the bridge created up with its MAC/MTU/STP/forward delay in one `RTM_NEWLINK`,
/// a port's master, MTU and up in one `RTM_SETLINK`, every object addressed by ifindex.
pub fn minimum_requests(op: &Op) -> u32 {
    match op {
        // Folded into the RTM_NEWLINK that creates the bridge / the one RTM_SETLINK.
        Op::LinkSet {
            change: LinkChange::Mtu(_) | LinkChange::Up | LinkChange::Down,
            ..
        } => 0,
        Op::LinkAdd {
            spec: LinkSpec::Tap { .. },
        }
        | Op::TmpfsResize { .. }
        | Op::SysctlSet { .. }
        | Op::AwaitDad { .. }
        | Op::Host { .. } => 0,
        _ => 1,
    }
}

/// The kind of an operation, for per-kind kernel times.
pub fn kind(op: &Op) -> &'static str {
    let v6 = |ip: &std::net::IpAddr| ip.is_ipv6();
    match op {
        Op::LinkAdd { .. } => "link add",
        Op::LinkDel { .. } => "link del",
        Op::LinkSet {
            change: LinkChange::Master(_),
            ..
        } => "link set master",
        Op::LinkSet {
            change: LinkChange::NoMaster,
            ..
        } => "link set nomaster",
        Op::LinkSet { .. } => "link set mtu/up/down",
        Op::AddrAdd { address } if v6(&address.ip) => "addr add IPv6",
        Op::AddrAdd { .. } => "addr add IPv4",
        Op::AddrDel { address } if v6(&address.ip) => "addr del IPv6",
        Op::AddrDel { .. } => "addr del IPv4",
        Op::RouteAdd { .. } => "route add",
        Op::RouteReplace { .. } => "route replace",
        Op::RouteAppend { .. } => "route append",
        Op::RouteDel { .. } => "route del",
        Op::NeighReplace { .. } => "neigh replace",
        Op::NeighDel { .. } => "neigh del",
        Op::TmpfsResize { .. } => "tmpfs resize",
        Op::SysctlSet { .. } => "sysctl write",
        Op::AwaitDad { .. } => "await DAD",
        Op::Host { .. } => "host program",
    }
}

/// Time and counts of one command, by kind of work.
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    pub total: Duration,
    /// Opening the namespace (worker thread, netlink socket) and taking the state lock.
    pub setup: Duration,
    pub dumps: u32,
    /// The netlink requests those dumps sent.
    pub dump_requests: u32,
    pub dump_time: Duration,
    /// Routes seen by the dumps (all tables but local).
    pub dumped_routes: usize,
    pub reads: u32,
    pub read_time: Duration,
    /// Netlink operations applied, and the requests they sent.
    pub netlink_ops: u32,
    pub netlink_time: Duration,
    pub requests: u32,
    pub sysctl_writes: u32,
    pub sysctl_time: Duration,
    pub saves: u32,
    pub save_time: Duration,
    pub loads: u32,
    pub load_time: Duration,
    /// Operations applied, by [`kind`]: count and time.
    pub per_op: BTreeMap<&'static str, (u32, Duration)>,
    /// From the last step applied to the final verification's result: the dump of the
    /// objects touched and its comparison with the goal.
    pub verify: Duration,
}

impl Breakdown {
    /// The mean of several runs of one command (counts too).
    pub fn mean(v: &[Breakdown]) -> Option<Breakdown> {
        let n = u32::try_from(v.len()).ok().filter(|n| *n > 0)?;
        let mut m = Breakdown::default();
        for b in v {
            m.total += b.total;
            m.setup += b.setup;
            m.dumps += b.dumps;
            m.dump_requests += b.dump_requests;
            m.dump_time += b.dump_time;
            m.dumped_routes += b.dumped_routes;
            m.reads += b.reads;
            m.read_time += b.read_time;
            m.netlink_ops += b.netlink_ops;
            m.netlink_time += b.netlink_time;
            m.requests += b.requests;
            m.sysctl_writes += b.sysctl_writes;
            m.sysctl_time += b.sysctl_time;
            m.saves += b.saves;
            m.save_time += b.save_time;
            m.loads += b.loads;
            m.load_time += b.load_time;
            m.verify += b.verify;
            for (k, (c, d)) in &b.per_op {
                let e = m.per_op.entry(k).or_default();
                e.0 += c;
                e.1 += *d;
            }
        }
        Some(Breakdown {
            total: m.total / n,
            setup: m.setup / n,
            dumps: m.dumps / n,
            dump_requests: m.dump_requests / n,
            dump_time: m.dump_time / n,
            dumped_routes: m.dumped_routes / n as usize,
            reads: m.reads / n,
            read_time: m.read_time / n,
            netlink_ops: m.netlink_ops / n,
            netlink_time: m.netlink_time / n,
            requests: m.requests / n,
            sysctl_writes: m.sysctl_writes / n,
            sysctl_time: m.sysctl_time / n,
            verify: m.verify / n,
            saves: m.saves / n,
            save_time: m.save_time / n,
            loads: m.loads / n,
            load_time: m.load_time / n,
            per_op: m
                .per_op
                .into_iter()
                .map(|(k, (c, d))| (k, (c / n, d / n)))
                .collect(),
        })
    }

    /// Planning, (de)serialising the state, scheduling: what none of the others is.
    pub fn rest(&self) -> Duration {
        self.total.saturating_sub(
            self.setup
                + self.dump_time
                + self.read_time
                + self.netlink_time
                + self.sysctl_time
                + self.save_time
                + self.load_time,
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "total_ms": ms(self.total),
            "setup_ms": ms(self.setup),
            "dumps": self.dumps,
            "dump_ms": ms(self.dump_time),
            "dumped_routes": self.dumped_routes,
            "sysctl_and_tmpfs_reads": self.reads,
            "reads_ms": ms(self.read_time),
            "netlink_ops": self.netlink_ops,
            "netlink_ops_ms": ms(self.netlink_time),
            "netlink_requests": self.requests + self.dump_requests,
            "sysctl_writes": self.sysctl_writes,
            "sysctl_writes_ms": ms(self.sysctl_time),
            "state_saves": self.saves,
            "state_saves_ms": ms(self.save_time),
            "state_loads": self.loads,
            "state_loads_ms": ms(self.load_time),
            "rest_ms": ms(self.rest()),
            "verify_ms": ms(self.verify),
            "per_op": self.per_op.iter().map(|(k, (c, d))| (k.to_string(), json!({"count": c, "ms": ms(*d)}))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// A [`Kernel`] that times and counts every call before passing it on.
pub struct MeteredKernel<'a> {
    pub inner: &'a dyn Kernel,
    pub tally: Mutex<Breakdown>,
}

impl<'a> MeteredKernel<'a> {
    pub fn new(inner: &'a dyn Kernel) -> MeteredKernel<'a> {
        MeteredKernel {
            inner,
            tally: Mutex::new(Breakdown::default()),
        }
    }

    fn add(&self, f: impl FnOnce(&mut Breakdown)) {
        f(&mut self.tally.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[async_trait]
impl Kernel for MeteredKernel<'_> {
    async fn dump(&self) -> Result<NetState, KernelError> {
        let t = Instant::now();
        let r = self.inner.dump().await;
        let d = t.elapsed();
        let routes = r.as_ref().map(|s| s.routes.len()).unwrap_or(0);
        self.add(|b| {
            b.dumps += 1;
            b.dump_requests += DUMP_REQUESTS;
            b.dump_time += d;
            b.dumped_routes += routes;
        });
        r
    }

    async fn apply(&self, op: &Op) -> Result<(), KernelError> {
        let t = Instant::now();
        let r = self.inner.apply(op).await;
        let d = t.elapsed();
        self.add(|b| {
            let e = b.per_op.entry(kind(op)).or_default();
            e.0 += 1;
            e.1 += d;
        });
        self.add(|b| match op {
            Op::SysctlSet { .. } | Op::TmpfsResize { .. } => {
                b.sysctl_writes += 1;
                b.sysctl_time += d;
            }
            _ => {
                b.netlink_ops += 1;
                b.netlink_time += d;
                b.requests += requests(op);
            }
        });
        r
    }

    async fn dump_filtered(&self, filter: &DumpFilter) -> Result<NetState, KernelError> {
        let t = Instant::now();
        let r = self.inner.dump_filtered(filter).await;
        let d = t.elapsed();
        let routes = r.as_ref().map(|s| s.routes.len()).unwrap_or(0);
        let requests = r
            .as_ref()
            .map_or(0, |got| filtered_dump_requests(filter, got));
        self.add(|b| {
            b.dumps += 1;
            b.dump_requests += requests;
            b.dump_time += d;
            b.dumped_routes += routes;
        });
        r
    }

    async fn read_sysctl(&self, key: &SysctlKey) -> Result<String, KernelError> {
        let t = Instant::now();
        let r = self.inner.read_sysctl(key).await;
        let d = t.elapsed();
        self.add(|b| {
            b.reads += 1;
            b.read_time += d;
        });
        r
    }

    async fn read_tmpfs(&self, path: &Path) -> Result<Tmpfs, KernelError> {
        let t = Instant::now();
        let r = self.inner.read_tmpfs(path).await;
        let d = t.elapsed();
        self.add(|b| {
            b.reads += 1;
            b.read_time += d;
        });
        r
    }

    async fn neighbours(&self, dev: Option<&IfName>) -> Result<Vec<Neighbour>, KernelError> {
        let t = Instant::now();
        let r = self.inner.neighbours(dev).await;
        let d = t.elapsed();
        self.add(|b| {
            b.dumps += 1;
            b.dump_time += d;
        });
        r
    }
}

/// A [`StateStore`] that times its saves and loads (journal appends count as save time).
pub struct MeteredStore<'a> {
    pub inner: &'a dyn StateStore,
    pub tally: Mutex<Breakdown>,
}

impl<'a> MeteredStore<'a> {
    pub fn new(inner: &'a dyn StateStore) -> MeteredStore<'a> {
        MeteredStore {
            inner,
            tally: Mutex::new(Breakdown::default()),
        }
    }

    fn add(&self, f: impl FnOnce(&mut Breakdown)) {
        f(&mut self.tally.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl StateStore for MeteredStore<'_> {
    fn load(&self) -> Result<Option<State>, StoreError> {
        let t = Instant::now();
        let r = self.inner.load();
        let d = t.elapsed();
        self.add(|b| {
            b.loads += 1;
            b.load_time += d;
        });
        r
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.save(state);
        let d = t.elapsed();
        self.add(|b| {
            b.saves += 1;
            b.save_time += d;
        });
        r
    }

    fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.append(entry);
        let d = t.elapsed();
        self.add(|b| b.save_time += d);
        r
    }

    fn clear_journal(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.clear_journal();
        let d = t.elapsed();
        self.add(|b| b.save_time += d);
        r
    }

    fn remove(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.remove();
        let d = t.elapsed();
        self.add(|b| b.save_time += d);
        r
    }

    fn log(&self, event: &PendingEvent) -> Result<(), StoreError> {
        self.inner.log(event)
    }

    fn logged(&self) -> Result<Vec<PendingEvent>, StoreError> {
        self.inner.logged()
    }
}

/// The two tallies of one command as one breakdown.
pub fn merge(kernel: &MeteredKernel<'_>, store: &MeteredStore<'_>) -> Breakdown {
    let k = kernel
        .tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let s = store
        .tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Breakdown {
        saves: s.saves,
        save_time: s.save_time,
        loads: s.loads,
        load_time: s.load_time,
        ..k
    }
}
