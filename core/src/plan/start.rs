//! `start IFACE`: put IFACE's network onto a new bridge without a blackout.
//!
//! The order is the measured zero-loss one (kernel-notes.md): bridge with the NIC's MAC,
//! STP off → up → the NIC's addresses on the bridge → enslave the NIC → `route replace`
//! every route onto the bridge → only then delete the NIC's addresses. Deleting the NIC's
//! last IPv4 address flushes every IPv4 route through it, so the routes must have moved
//! before.

use std::collections::HashMap;

use super::{delete_addresses, neigh, primaries_first, Plan, PlanError, StartRequest, Step};
use crate::model::{
    Address, Family, IfName, Knob, Link, LinkKind, NudState, RouteKey, RouteProtocol, Snapshot,
    SysctlKey,
};

use crate::op::{LinkChange, LinkSpec, Op};

/// The ways an uplink can be refused, before anything is planned.
pub(crate) fn check_uplink<'a>(s: &'a Snapshot, req: &StartRequest) -> Result<&'a Link, PlanError> {
    let up = s
        .net
        .link(&req.uplink)
        .ok_or_else(|| PlanError::NoSuchInterface(req.uplink.clone()))?;
    match &up.kind {
        LinkKind::Ethernet
        | LinkKind::Veth
        | LinkKind::Vlan
        | LinkKind::Macvlan
        | LinkKind::Other(_) => {}
        k => return Err(PlanError::unsupported_uplink(&up.name, k)),
    }
    if let Some(m) = &up.master {
        return Err(PlanError::UplinkEnslaved {
            name: up.name.clone(),
            master: m.clone(),
        });
    }
    if req.bridge == req.uplink {
        return Err(PlanError::BridgeIsUplink(req.bridge.clone()));
    }
    if s.net.link(&req.bridge).is_some() {
        return Err(PlanError::BridgeNameTaken(req.bridge.clone()));
    }
    Ok(up)
}

pub fn plan_start(s: &Snapshot, req: &StartRequest) -> Result<Plan, PlanError> {
    let up = check_uplink(s, req)?;
    check_unique_keys(s, &up.name)?;
    let (nic, br) = (&up.name, &req.bridge);
    let mut plan = Plan::default();
    let sysctl = |dev: &IfName, knob| s.sysctl(&SysctlKey::new(dev, knob)).map(str::to_string);

    plan.push(Step::new(
        Op::LinkAdd {
            spec: LinkSpec::Bridge {
                name: br.clone(),
                mac: Some(up.mac),
                mtu: Some(up.mtu),
                stp: false,
                forward_delay: 0,
            },
        },
        Op::LinkDel { name: br.clone() },
    ));
    // An MTU given at creation is not "set by user": the bridge would fall to the lowest
    // port MTU when a 1500-byte tap joins. Setting it again pins it.
    plan.push(Step::owned(Op::LinkSet {
        name: br.clone(),
        change: LinkChange::Mtu(up.mtu),
    }));
    // The bridge takes over the NIC's IPv6 behaviour (router advertisements, SLAAC).
    // DAD off while the moved addresses arrive, so they are usable at once and keep their
    // flags (no `nodad` invented); back to the NIC's setting once they are in.
    for knob in [Knob::Ipv6AcceptRa, Knob::Ipv6Autoconf] {
        if let Some(v) = sysctl(nic, knob) {
            plan.push(Step::owned(set_sysctl(br, knob, v)));
        }
    }
    let nic_v6 = s.net.addresses_of(nic).any(|a| a.family() == Family::Inet6);
    let nic_dad = sysctl(nic, Knob::Ipv6AcceptDad).filter(|_| nic_v6);
    if nic_dad.is_some() {
        plan.push(Step::owned(set_sysctl(br, Knob::Ipv6AcceptDad, "0".into())));
    }
    if up.up {
        plan.push(Step::owned(Op::LinkSet {
            name: br.clone(),
            change: LinkChange::Up,
        }));
    } else {
        plan.notes.push(format!(
            "{nic} is down: {br} stays down too until you bring both up"
        ));
    }

    let addrs = primaries_first(s.net.addresses_of(nic));
    for a in &addrs {
        let moved = a.on(br);
        plan.push(Step::new(
            Op::AddrAdd {
                address: moved.clone(),
            },
            Op::AddrDel { address: moved },
        ));
    }
    if let Some(v) = nic_dad.as_ref().filter(|v| *v != "0") {
        plan.push(Step::owned(set_sysctl(br, Knob::Ipv6AcceptDad, v.clone())));
    }
    // Static ARP/NDP entries keep working on the bridge (deleting the NIC's last IPv4
    // address will flush its own ARP ones; stop puts them back).
    for op in neigh::statics(s, nic).filter_map(|n| neigh::put_on(n, br, NudState::Permanent)) {
        plan.push(Step::owned(op));
    }

    plan.push(Step::new(
        Op::LinkSet {
            name: nic.clone(),
            change: LinkChange::Master(br.clone()),
        },
        Op::LinkSet {
            name: nic.clone(),
            change: LinkChange::NoMaster,
        },
    ));
    // A port has no IP configuration of its own: RAs would give it addresses and routes
    // that compete with the bridge's.
    for knob in [Knob::Ipv6AcceptRa, Knob::Ipv6Autoconf] {
        if let Some(v) = sysctl(nic, knob).filter(|v| v != "0") {
            plan.push(Step::new(
                set_sysctl(nic, knob, "0".into()),
                set_sysctl(nic, knob, v),
            ));
        }
    }

    move_routes(s, nic, br, &mut plan);

    // Undoing the deletions below re-adds the addresses to the NIC: with DAD off they are
    // usable at once. The original value comes back right after.
    let dad = nic_dad.filter(|v| v != "0");
    if let Some(v) = &dad {
        plan.push(Step::new(
            set_sysctl(nic, Knob::Ipv6AcceptDad, "0".into()),
            set_sysctl(nic, Knob::Ipv6AcceptDad, v.clone()),
        ));
    }
    // Secondaries before their primary: with promote_secondaries=0 deleting a primary takes
    // its secondaries along, and the explicit delete would then fail.
    let order: Vec<&Address> = addrs.iter().rev().copied().collect();
    // The NIC's last IPv4 address takes its static ARP entries along.
    plan.steps
        .extend(delete_addresses(&order, neigh::static_arp(s, nic, nic)));
    // A dynamic IPv6 address (finite lifetime: SLAAC's) leaves its prefix route behind
    // when deleted, to expire with it. Older than the bridge's copy, it would keep winning
    // and send the subnet's traffic to the port. The undo of the address's deletion makes
    // the route again, so this step needs none of its own.
    for r in leftover_prefix_routes(s, nic) {
        plan.push(Step::owned(Op::RouteDel { route: r }));
    }
    if let Some(v) = dad {
        plan.push(Step::new(
            set_sysctl(nic, Knob::Ipv6AcceptDad, v),
            set_sysctl(nic, Knob::Ipv6AcceptDad, "0".into()),
        ));
    }

    if let Some(shm) = &req.shm {
        let cur = s
            .tmpfs
            .as_ref()
            .filter(|t| t.path == shm.path)
            .ok_or_else(|| PlanError::ShmNotMounted(shm.path.display().to_string()))?;
        if shm.size_bytes > cur.size_bytes {
            plan.push(Step::new(
                Op::TmpfsResize {
                    path: shm.path.clone(),
                    size_bytes: shm.size_bytes,
                },
                Op::TmpfsResize {
                    path: shm.path.clone(),
                    size_bytes: cur.size_bytes,
                },
            ));
        } else {
            plan.notes.push(format!(
                "{} is already {} (≥ the {} asked): left as it is",
                shm.path.display(),
                crate::model::format_size(cur.size_bytes),
                crate::model::format_size(shm.size_bytes)
            ));
        }
    }
    Ok(plan)
}

/// The kernel prefix routes of IPv6 prefixes whose addresses on the NIC are all dynamic.
fn leftover_prefix_routes(s: &Snapshot, nic: &IfName) -> Vec<crate::model::Route> {
    let v6: Vec<_> = s
        .net
        .addresses_of(nic)
        .filter(|a| a.family() == Family::Inet6)
        .collect();
    s.net
        .routes_via(nic)
        .filter(|r| r.protocol == RouteProtocol::Kernel && r.family() == Family::Inet6)
        .filter(|r| {
            let owners: Vec<_> = v6.iter().filter(|a| a.prefix() == r.dst).collect();
            !owners.is_empty() && owners.iter().all(|a| a.valid_lft.is_some())
        })
        .cloned()
        .collect()
}

/// Every route through the NIC, in every table, onto the bridge with `replace` (atomic: the
/// destination never lacks a route). The kernel's own prefix routes are skipped: the
/// addresses added to the bridge made its own.
fn move_routes(s: &Snapshot, nic: &IfName, br: &IfName, plan: &mut Plan) {
    for r in s
        .net
        .routes_via(nic)
        .filter(|r| r.protocol != RouteProtocol::Kernel)
    {
        plan.push(Step::new(
            Op::RouteReplace { route: r.on(br) },
            Op::RouteReplace { route: r.clone() },
        ));
    }
}

/// A route to move must be alone with its key: `replace` swaps the first route with that key,
/// which may be another device's (`ip route append`, or the same prefix on two NICs).
pub(crate) fn check_unique_keys(s: &Snapshot, nic: &IfName) -> Result<(), PlanError> {
    let mut per_key: HashMap<RouteKey, usize> = HashMap::new();
    for r in &s.net.routes {
        *per_key.entry(r.key()).or_default() += 1;
    }
    let moved = s
        .net
        .routes_via(nic)
        .filter(|r| r.protocol != RouteProtocol::Kernel);
    match moved.into_iter().find(|r| per_key[&r.key()] > 1) {
        Some(r) => Err(PlanError::AppendedRoute(r.to_string())),
        None => Ok(()),
    }
}

pub(crate) fn set_sysctl(dev: &IfName, knob: Knob, value: String) -> Op {
    Op::SysctlSet {
        key: SysctlKey::new(dev, knob),
        value,
    }
}
