//! Reading a [`Snapshot`]: the dump plus the sysctls and tmpfs a plan may touch.

use std::path::{Path, PathBuf};

use crate::kernel::{ErrorKind, Kernel, KernelError};
use crate::model::{
    DumpFilter, IfName, Knob, NetState, NudState, Snapshot, SysctlKey, SysctlValue,
};
use crate::op::Op;

const KNOBS: [Knob; 5] = [
    Knob::Ipv6AcceptRa,
    Knob::Ipv6Autoconf,
    Knob::Ipv6AcceptDad,
    Knob::Ipv6UseTempaddr,
    Knob::Ipv6RaDefrtrMetric,
];

/// Dumps the namespace, then reads the IPv6 knobs of `devs` (absent when IPv6 is disabled
/// on a device) and the tmpfs at `tmpfs` (absent when nothing is mounted there).
pub async fn observe(
    kernel: &dyn Kernel,
    devs: &[&IfName],
    tmpfs: Option<&Path>,
) -> Result<Snapshot, KernelError> {
    let net = kernel.dump().await?;
    complete(kernel, net, devs, tmpfs).await
}

/// [`observe`] of the part of the namespace `filter` selects: what `start`, `stop`, `add`
/// and `del` need, at a cost independent of the other devices and routes.
pub async fn observe_filtered(
    kernel: &dyn Kernel,
    filter: &DumpFilter,
    devs: &[&IfName],
    tmpfs: Option<&Path>,
) -> Result<Snapshot, KernelError> {
    let net = kernel.dump_filtered(filter).await?;
    complete(kernel, net, devs, tmpfs).await
}

/// `net` with the IPv6 knobs of `devs` and the tmpfs at `tmpfs`.
async fn complete(
    kernel: &dyn Kernel,
    net: NetState,
    devs: &[&IfName],
    tmpfs: Option<&Path>,
) -> Result<Snapshot, KernelError> {
    let mut keys: Vec<SysctlKey> = Vec::new();
    for dev in devs.iter().filter(|d| net.link(d).is_some()) {
        keys.extend(KNOBS.iter().map(|k| SysctlKey::new(dev, *k)));
    }
    // Whether DAD runs depends on `all` too (see SysctlKey::all).
    if !keys.is_empty() {
        keys.push(SysctlKey::all(Knob::Ipv6AcceptDad));
    }
    let mut sysctls = Vec::new();
    for key in keys {
        match kernel.read_sysctl(&key).await {
            Ok(value) => sysctls.push(SysctlValue { key, value }),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let tmpfs = match tmpfs {
        Some(p) => match kernel.read_tmpfs(p).await {
            Ok(t) => Some(t),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Invalid) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok(Snapshot {
        net,
        sysctls,
        tmpfs,
        neighbours: Vec::new(),
        managers: Default::default(),
    })
}

/// Adds the neighbour entries of `dev` to `snap`.
pub async fn observe_neighbours(
    kernel: &dyn Kernel,
    snap: &mut Snapshot,
    dev: &IfName,
) -> Result<(), KernelError> {
    snap.neighbours.extend(kernel.neighbours(Some(dev)).await?);
    Ok(())
}

/// What `stop` needs of a pre-start snapshot: the uplink, its addresses and its routes.
/// Keeps the state file small on hosts with many interfaces and routes.
pub fn scoped(s: &Snapshot, uplink: &IfName) -> Snapshot {
    let mut out = s.clone();
    out.net.links.retain(|l| &l.name == uplink);
    out.net.addresses.retain(|a| &a.dev == uplink);
    out.net.routes.retain(|r| r.via(uplink));
    out.sysctls
        .retain(|v| &v.key.dev == uplink || v.key == SysctlKey::all(Knob::Ipv6AcceptDad));
    // Static entries are the uplink's configuration; learnt ones a cache, not restored.
    out.neighbours
        .retain(|n| &n.dev == uplink && n.state == NudState::Permanent);
    out
}

/// The part of a namespace a command reads, plans from and verifies: links (and their
/// addresses and routes) through a [`DumpFilter`], the IPv6 knobs and neighbour entries of
/// some devices, one tmpfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Which links, addresses and routes are dumped.
    pub filter: DumpFilter,
    /// Devices whose IPv6 knobs are read.
    pub sysctls: Vec<IfName>,
    /// Devices whose neighbour entries are read.
    pub neighbours: Vec<IfName>,
    /// The tmpfs whose size is read.
    pub tmpfs: Option<PathBuf>,
    /// Devices whose managing programs the host is asked about.
    pub managers: Vec<IfName>,
}

impl Scope {
    /// Everything about `devs`: links, addresses, routes, knobs and neighbour entries.
    pub fn devices(devs: &[&IfName]) -> Scope {
        Scope {
            filter: DumpFilter::devices(devs),
            sysctls: devs.iter().map(|d| (*d).clone()).collect(),
            neighbours: devs.iter().map(|d| (*d).clone()).collect(),
            tmpfs: None,
            managers: Vec::new(),
        }
    }

    /// What must be read to tell whether `op`'s purpose holds.
    pub fn of_op(op: &Op) -> Scope {
        match op {
            Op::LinkAdd { spec } => Scope::devices(&[spec.name()]),
            Op::LinkDel { name } | Op::LinkSet { name, .. } => Scope::devices(&[name]),
            Op::AddrAdd { address } | Op::AddrDel { address } => Scope::devices(&[&address.dev]),
            Op::RouteAdd { route }
            | Op::RouteReplace { route }
            | Op::RouteAppend { route }
            | Op::RouteDel { route } => match &route.dev {
                Some(dev) => Scope::devices(&[dev]),
                None => Scope {
                    filter: DumpFilter {
                        tables: vec![route.table],
                        ..DumpFilter::default()
                    },
                    ..Scope::default()
                },
            },
            Op::NeighReplace { dev, .. } | Op::NeighDel { dev, .. } => Scope::devices(&[dev]),
            Op::Host { .. } => Scope::default(),
            Op::AwaitDad { dev, .. } => Scope {
                filter: DumpFilter {
                    addresses: true,
                    ..DumpFilter::links(&[dev])
                },
                ..Scope::default()
            },
            Op::TmpfsResize { path, .. } => Scope {
                tmpfs: Some(path.clone()),
                ..Scope::default()
            },
            Op::SysctlSet { key, .. } => Scope {
                filter: DumpFilter::links(&[&key.dev]),
                sysctls: vec![key.dev.clone()],
                ..Scope::default()
            },
        }
    }
}

/// Reads `scope`.
pub async fn observe_scope(kernel: &dyn Kernel, scope: &Scope) -> Result<Snapshot, KernelError> {
    let devs: Vec<&IfName> = scope.sysctls.iter().collect();
    let mut snap = observe_filtered(kernel, &scope.filter, &devs, scope.tmpfs.as_deref()).await?;
    for dev in &scope.neighbours {
        if snap.net.link(dev).is_some() {
            observe_neighbours(kernel, &mut snap, dev).await?;
        }
    }
    Ok(snap)
}

/// What `op` touches, read now.
pub async fn observe_for(kernel: &dyn Kernel, op: &Op) -> Result<Snapshot, KernelError> {
    observe_scope(kernel, &Scope::of_op(op)).await
}

/// [`observe_scope`], plus the managing programs of the scope's devices from the host.
pub async fn observe_machine(
    machine: crate::exec::Machine<'_>,
    scope: &Scope,
) -> Result<Snapshot, KernelError> {
    let mut snap = observe_scope(machine.kernel, scope).await?;
    if !scope.managers.is_empty() {
        snap.managers = machine.host.managers(&scope.managers).await?;
    }
    Ok(snap)
}
