//! The planner: pure functions from (observed state, request) to a [`Plan`], an ordered
//! list of operations toward a goal, from whatever state the kernel is in.
//!
//! Nothing here talks to a kernel; everything is data, so plans are golden-tested as the
//! `ip` commands they render to.

mod error;
mod host;
mod neigh;
mod start;
mod stop;
mod tap;
mod uplink;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{Address, Family, IfName, Knob, Neighbour, Route, Snapshot};
use crate::op::{LinkChange, LinkSpec, Op};

pub use error::PlanError;
pub(crate) use host::handed;
pub use host::moved_argv;
pub use start::{plan_bridged, plan_start};
pub use stop::plan_stop;
pub use tap::{plan_add, plan_del, plan_detached, plan_gone, plan_made, NEW_TAP_MTU};
pub use uplink::default_uplink;

/// An ordered list of operations, plus notes for the operator (things the plan chose not
/// to do). Plans have no undo of their own: the way back is computed when it is needed,
/// from the state the kernel is in then (see [`crate::converge`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The operations, in the order they run.
    pub steps: Vec<Op>,
    /// What the plan chose not to do and why (`… is gone: not moved`), for the operator.
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operations, in order.
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

/// What `stop` does with VM taps still attached to the bridge (VMs still running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmTaps {
    /// Refuse to stop, naming them (`stop`).
    Refuse,
    /// Detach them first; the VMs lose the network (`stop --force`).
    Detach,
}

/// What `start` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// The NIC to bridge.
    pub uplink: IfName,
    /// The bridge to create (`lepont` by default).
    pub bridge: IfName,
    /// Grow this tmpfs to at least this size; `None` leaves shared memory alone.
    pub shm: Option<ShmRequest>,
    /// What to do with a NIC whose manager env-qemu cannot hand over. Saved as the
    /// boolean `force` of older state files.
    #[serde(default, rename = "force")]
    pub foreign_manager: ForeignManager,
}

/// What `start` does with a NIC whose addresses come from a program env-qemu cannot hand
/// over to the bridge (systemd-networkd, an unknown DHCP client).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "bool", into = "bool")]
pub enum ForeignManager {
    /// Refuse with [`PlanError::UnmanagedOwner`], naming the program and when the host
    /// would lose its lease (`start`).
    #[default]
    Refuse,
    /// Bridge anyway (`start --force`): the program's lease is then not renewed on the
    /// bridge, and the host loses the address when it expires.
    Override,
}

impl From<bool> for ForeignManager {
    /// `force` in a state file: `true` is [`ForeignManager::Override`].
    fn from(force: bool) -> ForeignManager {
        if force {
            ForeignManager::Override
        } else {
            ForeignManager::Refuse
        }
    }
}

impl From<ForeignManager> for bool {
    fn from(m: ForeignManager) -> bool {
        m == ForeignManager::Override
    }
}

/// A tmpfs to grow for QEMU's shared memory (`--shm-size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmRequest {
    /// Its mount point (`/dev/shm`).
    pub path: PathBuf,
    /// The size it must have at least, in bytes.
    pub size_bytes: u64,
}

/// What `add` changed on a tap, so `del` (or `stop --force`) can put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapRecord {
    /// The tap.
    pub name: IfName,
    /// Its MTU before `add` (the bridge's replaced it).
    pub mtu: u32,
    /// Whether it was up before `add`.
    pub up: bool,
}

/// The IPv6 knobs the bridge takes over from the NIC: router advertisements, SLAAC,
/// privacy addresses and the metric of the kernel's default route from RAs.
pub const BRIDGE_TAKES: [Knob; 4] = [
    Knob::Ipv6AcceptRa,
    Knob::Ipv6Autoconf,
    Knob::Ipv6UseTempaddr,
    Knob::Ipv6RaDefrtrMetric,
];

/// The knobs a port has at 0: no IP configuration of its own, or RAs would give it
/// addresses and routes that compete with the bridge's.
pub const PORT_ZEROES: [Knob; 2] = [Knob::Ipv6AcceptRa, Knob::Ipv6Autoconf];

/// A persistent tap env-qemu makes (`tap create`, `run`): recorded in the state before it
/// exists, so that `stop` deletes it even if the command making it dies half-way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MadeTap {
    /// The tap's name.
    pub name: IfName,
    /// The user (and group) allowed to open it; root always may.
    pub owner: Option<u32>,
    /// The group allowed to open it.
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

/// The order to add `addrs` in: IPv4 primaries before secondaries (the order that keeps
/// each one's role), IPv6 by growing valid lifetime, permanent ones last (all addresses of
/// one prefix share one prefix route, whose expiry the last address added sets), otherwise
/// the kernel's order.
fn primaries_first<'a>(addrs: impl Iterator<Item = &'a Address>) -> Vec<&'a Address> {
    let mut v: Vec<&Address> = addrs.collect();
    v.sort_by_key(|a| match a.family() {
        Family::Inet => (a.secondary, 0),
        Family::Inet6 => (false, a.valid_lft.map_or(u64::MAX, u64::from)),
    });
    v
}

/// The order to delete `addrs` in: the reverse of [`primaries_first`], so secondaries go
/// before their primary (with promote_secondaries=0 deleting a primary takes its
/// secondaries along, and their explicit deletion would then find nothing), and IPv6
/// temporary addresses first (deleting their `mngtmpaddr` parent takes them along).
fn deletion_order<'a>(addrs: impl Iterator<Item = &'a Address>) -> Vec<&'a Address> {
    let mut v = primaries_first(addrs);
    v.reverse();
    v.sort_by_key(|a| !a.has(crate::model::AddrFlag::Temporary));
    v
}

/// The kernel's identity of an address on one device: IPv6 by address alone, IPv4 by
/// address and prefix length.
pub fn same_addr(a: &Address, b: &Address) -> bool {
    a.ip == b.ip && (a.family() == Family::Inet6 || a.prefix_len == b.prefix_len)
}

/// Two routes the same but for the time they have left (a route's expiry counts down,
/// like an address's lifetimes): whether each expires at all is compared, not when.
/// What a restore and a verification compare.
pub fn same_route(a: &Route, b: &Route) -> bool {
    a.expiry_normalized() == b.expiry_normalized()
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

/// The default route the kernel made from a router advertisement (`proto ra`, with an
/// expiry). A copy of it that user space puts at the kernel's metric on an interface that
/// takes RAs makes every later RA fail there (the kernel finds "its" route taken and
/// drops the RA before its prefix information: no SLAAC refresh, addresses expire). Moved
/// as a copy one metric above, beside which the kernel adds its own at the next RA.
pub fn is_ra_default(r: &Route) -> bool {
    r.family() == Family::Inet6
        && r.dst.is_default()
        && r.protocol == crate::model::RouteProtocol::Ra
        && r.expires.is_some()
}

/// Two RA default routes for the same router on the same device and table, at any metric:
/// the kernel's own and env-qemu's copy of it are the same route to a user.
pub fn same_router(a: &Route, b: &Route) -> bool {
    is_ra_default(a)
        && is_ra_default(b)
        && a.dev == b.dev
        && a.gateway == b.gateway
        && a.table == b.table
}

/// `r` on `dev`, at the first metric above `kernel_metric` that no route with `r`'s
/// table and destination uses in `live` (an `add` there cannot take another's place).
fn ra_copy(r: &Route, dev: &IfName, kernel_metric: u32, live: &Snapshot) -> Route {
    let mut metric = kernel_metric.saturating_add(1);
    while live
        .net
        .routes
        .iter()
        .any(|l| l.table == r.table && l.dst == r.dst && l.metric == metric)
    {
        metric = metric.saturating_add(1);
    }
    r.on(dev).metric(metric)
}

/// The metric the kernel gives its default route from RAs on `dev` (ra_defrtr_metric).
fn ra_metric(s: &Snapshot, dev: &IfName) -> u32 {
    s.sysctl(&crate::model::SysctlKey::new(dev, Knob::Ipv6RaDefrtrMetric))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1024)
}

/// Two routes of a DHCP client the same but for their metric: dhcpcd, handed over to
/// the bridge, swaps env-qemu's copies of its routes for its own at metric 1000 + the
/// bridge's ifindex once it has its lease there (measured), and back on the NIC at
/// stop: its `proto dhcp` IPv4 routes, and the `proto ra` routes of its own SLAAC (which
/// do not expire, unlike the kernel's). Such a route is the same route to the host.
pub fn same_lease_route(a: &Route, b: &Route) -> bool {
    use crate::model::RouteProtocol::{Dhcp, Ra};
    let client = |r: &Route| r.protocol == Dhcp || (r.protocol == Ra && r.expires.is_none());
    client(a)
        && client(b)
        && a.protocol == b.protocol
        && same_route(&a.clone().metric(0), &b.clone().metric(0))
}

/// Whether the DHCP client of `nic` in `pre` is one env-qemu hands over and that makes
/// its own routes (dhcpcd): then [`same_lease_route`] is how its routes compare.
pub fn client_makes_routes(pre: &Snapshot, nic: &IfName) -> bool {
    handed(pre, nic).any(|c| matches!(c, crate::host::Client::Dhcpcd { .. }))
}

/// Whether `r` names as its source (`src`) an address of the NIC that is gone: on neither
/// of the devices in `live` nor among those `added` by this plan (a lease that ended, an
/// address its client took back). The kernel refuses such a route (EINVAL "Invalid
/// prefsrc address") every time: it is noted, not planned.
fn source_gone(
    r: &Route,
    pre: &Snapshot,
    nic: &IfName,
    live: &Snapshot,
    added: &[Address],
) -> bool {
    let Some(src) = r.prefsrc else {
        return false;
    };
    let was_nics = pre.net.addresses_of(nic).any(|a| a.ip == src);
    let there = live.net.addresses.iter().any(|a| a.ip == src) || added.iter().any(|a| a.ip == src);
    was_nics && !there
}

/// `all.accept_dad` around the addition of IPv6 addresses (`adding`): the kernel runs DAD
/// if either `all`'s or the device's knob is at least 1, so switching the device's off
/// is not enough where `all`'s is on. Returns the steps before the additions and those
/// after them (after the wait for the kernel's DAD work); without additions, the step
/// that puts back a value a previous round left off.
fn all_dad(pre: &Snapshot, live: &Snapshot, adding: bool) -> (Vec<Op>, Vec<Op>) {
    let key = crate::model::SysctlKey::all(Knob::Ipv6AcceptDad);
    let set = |v: &str| Op::SysctlSet {
        key: key.clone(),
        value: v.to_string(),
    };
    let (was, now) = (pre.sysctl(&key), live.sysctl(&key));
    match was {
        Some(v) if adding && v != "0" => {
            let before = if now == Some("0") {
                vec![]
            } else {
                vec![set("0")]
            };
            (before, vec![set(v)])
        }
        Some(v) if !adding && now.is_some_and(|n| n != v) => (vec![], vec![set(v)]),
        _ => (vec![], vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json_force: &str) -> String {
        format!(r#"{{"uplink":"eth0","bridge":"lepont","shm":null{json_force}}}"#)
    }

    #[test]
    fn foreign_manager_is_the_force_boolean_of_state_files() {
        let load = |j: &str| serde_json::from_str::<StartRequest>(&request(j)).unwrap();
        assert_eq!(load("").foreign_manager, ForeignManager::Refuse);
        assert_eq!(
            load(r#","force":false"#).foreign_manager,
            ForeignManager::Refuse
        );
        assert_eq!(
            load(r#","force":true"#).foreign_manager,
            ForeignManager::Override
        );

        let mut req = load("");
        req.foreign_manager = ForeignManager::Override;
        let saved = serde_json::to_string(&req).unwrap();
        assert_eq!(saved, request(r#","force":true"#));
    }
}
