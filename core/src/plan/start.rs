//! `start IFACE`: put IFACE's network onto a new bridge without a blackout.
//!
//! [`plan_bridged`] is a diff: from whatever state the kernel is in (nothing done yet, or
//! part of a start done before a surprise) to the bridged state that `start` aims at, so
//! the same function makes the first plan and every re-plan of the convergence loop.
//!
//! The order is the measured zero-loss one (docs/kernel-behaviour.md): bridge with the NIC's
//! MAC, STP off → up → the NIC's addresses on the bridge → enslave the NIC → `route
//! replace` every route onto the bridge (routes without a gateway first: they make the
//! gateways of the others reachable) → only then delete the NIC's addresses. Deleting the
//! NIC's last IPv4 address flushes every IPv4 route through it, so the routes must have
//! moved before.

use std::collections::HashMap;

use super::{
    deletion_order, link_set, neigh, primaries_first, same_addr, Plan, PlanError, StartRequest,
};
use crate::model::{
    AddrFlag, Address, Family, IfName, Knob, Link, LinkKind, NudState, Route, RouteKey,
    RouteProtocol, Snapshot, SysctlKey,
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

/// The first plan of `start`, from the pre-start snapshot `s`: refuses what cannot be
/// bridged, then [`plan_bridged`] from `s` itself.
pub fn plan_start(s: &Snapshot, req: &StartRequest) -> Result<Plan, PlanError> {
    check_uplink(s, req)?;
    check_unique_keys(s, &req.uplink)?;
    if req.foreign_manager == super::ForeignManager::Refuse {
        check_managers(s, &req.uplink)?;
    }
    plan_bridged(s, req, s)
}

/// The operations that take `live` to the bridged state `start` computed from `pre`: the
/// bridge with the NIC's MAC and MTU, the NIC its port carrying nothing, the NIC's
/// addresses, routes and static neighbours on the bridge. What is there already is not
/// done again. The phases run in the order of the module docs.
pub fn plan_bridged(
    pre: &Snapshot,
    req: &StartRequest,
    live: &Snapshot,
) -> Result<Plan, PlanError> {
    let (nic, br) = (&req.uplink, &req.bridge);
    let was = pre
        .net
        .link(nic)
        .ok_or_else(|| PlanError::NoSuchInterface(nic.clone()))?;
    let now = live
        .net
        .link(nic)
        .ok_or_else(|| PlanError::UplinkGone(nic.clone()))?;
    let mut plan = Plan::default();
    // The NIC's DHCP client lets go of it first: left running, it would put its address
    // back on the port at its next renewal.
    super::host::release(pre, live, nic, nic, &mut plan);
    // NetworkManager: the whole handover inside a checkpoint.
    let nm = super::host::NmStart::new(pre, live, nic, br, &mut plan);
    if let Some(nm) = &nm {
        nm.checkpoint(&mut plan);
    }
    let networkd = super::host::NetworkdStart::new(pre, live, nic, br, &mut plan);
    let bridge = live.net.link(br);
    make_bridge(&mut plan, was, br, bridge)?;
    take_ipv6_knobs(pre, live, (nic, br), bridge.is_some(), &mut plan);
    let managers = (nm.as_ref(), networkd.as_ref());
    let moved = address_bridge(pre, live, was, br, managers, &mut plan);
    copy_statics(pre, live, (nic, br), &mut plan);
    enslave(live, now, br, &mut plan)?;
    move_routes(pre, live, (nic, br), &moved, &mut plan);
    unaddress_port(live, nic, &mut plan);
    super::host::adopt(pre, live, nic, br, &mut plan);
    if let Some(nm) = &nm {
        nm.adopt_port(&mut plan);
    }
    if let Some(nd) = &networkd {
        nd.adopt_port(&mut plan);
    }
    grow_tmpfs(live, req, &mut plan)?;
    Ok(plan)
}

/// The value of `dev`'s knob `k` in `s`, if it was read.
fn knob(s: &Snapshot, dev: &IfName, k: Knob) -> Option<String> {
    s.sysctl(&SysctlKey::new(dev, k)).map(str::to_string)
}

/// The bridge takes over the NIC's IPv6 behaviour (router advertisements, SLAAC, privacy
/// addresses, the metric of the RA default route): [`super::BRIDGE_TAKES`], set where a
/// bridge made in an earlier round differs.
fn take_ipv6_knobs(
    pre: &Snapshot,
    live: &Snapshot,
    (nic, br): (&IfName, &IfName),
    bridge_exists: bool,
    plan: &mut Plan,
) {
    for k in super::BRIDGE_TAKES {
        if let Some(v) = knob(pre, nic, k) {
            if !bridge_exists || knob(live, br, k).as_ref() != Some(&v) {
                plan.push(set_sysctl(br, k, v));
            }
        }
    }
}

/// The bridge up (if the NIC was) and the NIC's addresses on it, primaries first; returns
/// the addresses added. DAD is off while they arrive, so they are usable at once and keep
/// their flags (no `nodad` invented), and back to the NIC's setting once they are in,
/// after a wait for the kernel's DAD work where it is switched back on.
fn address_bridge(
    pre: &Snapshot,
    live: &Snapshot,
    was: &Link,
    br: &IfName,
    (nm, networkd): (
        Option<&super::host::NmStart>,
        Option<&super::host::NetworkdStart>,
    ),
    plan: &mut Plan,
) -> Vec<Address> {
    let nic = &was.name;
    let bridge = live.net.link(br);
    let missing: Vec<Address> = primaries_first(pre.net.addresses_of(nic))
        .into_iter()
        .filter(|a| !live.net.addresses_of(br).any(|b| same_addr(a, b)))
        .filter_map(|a| source(a, pre, live, plan))
        .collect();
    let dad = knob(pre, nic, Knob::Ipv6AcceptDad);
    let dad_now = bridge.and_then(|_| knob(live, br, Knob::Ipv6AcceptDad));
    let v6_coming = missing.iter().any(|a| a.family() == Family::Inet6);
    if v6_coming && dad.is_some() && dad_now.as_deref() != Some("0") {
        plan.push(set_sysctl(br, Knob::Ipv6AcceptDad, "0".into()));
    }
    let (all_off, all_back) = super::all_dad(pre, live, v6_coming);
    plan.steps.extend(all_off);
    if was.up && !bridge.is_some_and(|b| b.up) {
        plan.push(link_set(br, LinkChange::Up));
    } else if !was.up {
        plan.notes.push(format!(
            "{nic} is down: {br} stays down too until you bring both up"
        ));
    }
    if let Some(nm) = nm {
        nm.adopt_bridge(plan);
    }
    // systemd-networkd: the bridge's runtime file while the bridge is still empty.
    if let Some(nd) = networkd {
        nd.adopt_bridge(plan);
    }
    for a in &missing {
        plan.push(Op::AddrAdd { address: a.on(br) });
    }
    let had_v6 = pre
        .net
        .addresses_of(nic)
        .any(|a| a.family() == Family::Inet6);
    let mut waited = false;
    if let Some(v) = dad.filter(|_| had_v6) {
        let now = if v6_coming {
            Some("0")
        } else {
            dad_now.as_deref()
        };
        if now.is_some_and(|n| n != v) {
            if v6_coming {
                plan.push(await_dad(br, &missing));
                waited = true;
            }
            plan.push(set_sysctl(br, Knob::Ipv6AcceptDad, v));
        }
    }
    if v6_coming && !waited && !all_back.is_empty() {
        plan.push(await_dad(br, &missing));
    }
    plan.steps.extend(all_back);
    missing
}

/// Static ARP/NDP entries keep working on the bridge (deleting the NIC's last IPv4
/// address will flush its own ARP ones; stop puts them back).
fn copy_statics(pre: &Snapshot, live: &Snapshot, (nic, br): (&IfName, &IfName), plan: &mut Plan) {
    for n in neigh::statics(pre, nic) {
        let there = live.neighbours_of(br).any(|l| {
            l.ip == n.ip
                && l.lladdr == n.lladdr
                && l.router == n.router
                && l.state == NudState::Permanent
        });
        if !there {
            plan.steps.extend(neigh::put_on(n, br, NudState::Permanent));
        }
    }
}

/// The NIC (`now`, as it is live) a port of the bridge, without IP configuration of its
/// own: RAs would give it addresses and routes that compete with the bridge's
/// ([`super::PORT_ZEROES`]). Refused if another bridge took it meanwhile.
fn enslave(live: &Snapshot, now: &Link, br: &IfName, plan: &mut Plan) -> Result<(), PlanError> {
    let nic = &now.name;
    match &now.master {
        Some(m) if m == br => {}
        Some(m) => {
            return Err(PlanError::UplinkEnslaved {
                name: nic.clone(),
                master: m.clone(),
            })
        }
        None => plan.push(link_set(nic, LinkChange::Master(br.clone()))),
    }
    for k in super::PORT_ZEROES {
        if knob(live, nic, k).is_some_and(|v| v != "0") {
            plan.push(set_sysctl(nic, k, "0".into()));
        }
    }
    Ok(())
}

/// `ip link add` the bridge, or set right what differs on the one a previous round made.
fn make_bridge(
    plan: &mut Plan,
    nic: &Link,
    br: &IfName,
    bridge: Option<&Link>,
) -> Result<(), PlanError> {
    match bridge {
        None => {
            plan.push(Op::LinkAdd {
                spec: LinkSpec::Bridge {
                    name: br.clone(),
                    mac: Some(nic.mac),
                    mtu: Some(nic.mtu),
                    stp: false,
                    forward_delay: 0,
                },
            });
            // An MTU given at creation is not "set by user": the bridge would fall to the
            // lowest port MTU when a 1500-byte tap joins. Setting it again pins it.
            plan.push(link_set(br, LinkChange::Mtu(nic.mtu)));
        }
        Some(b) if !b.kind.is_bridge() => return Err(PlanError::BridgeNameTaken(br.clone())),
        Some(b) => {
            let fixed = matches!(&b.kind, LinkKind::Bridge(i) if i.mac_fixed);
            if b.mac != nic.mac || !fixed {
                plan.push(link_set(br, LinkChange::Mac(nic.mac)));
            }
            if b.mtu != nic.mtu {
                plan.push(link_set(br, LinkChange::Mtu(nic.mtu)));
            }
        }
    }
    Ok(())
}

/// The copy of the pre-start address `a` to put on the bridge: the NIC's live one (a
/// dynamic address has aged since), or `a` itself if it is permanent. A dynamic address
/// that is gone from the NIC has expired or was taken back by its owner: it is not
/// resurrected.
fn source(a: &Address, pre: &Snapshot, live: &Snapshot, plan: &mut Plan) -> Option<Address> {
    if let Some(l) = live.net.addresses_of(&a.dev).find(|l| same_addr(l, a)) {
        let mut copy = l.clone();
        super::host::lease_lifetimes(&mut copy, pre, &a.dev);
        return Some(copy);
    }
    if a.valid_lft.is_some() {
        plan.notes.push(format!(
            "{a} is gone (its lifetime ended, or its owner removed it): not moved"
        ));
        return None;
    }
    Some(a.clone())
}

/// Every route the NIC had, in every table, onto the bridge with `replace` (atomic: the
/// destination never lacks a route), unless the bridge has it already. The kernel's own
/// prefix routes come with the addresses `added` to the bridge; one whose address is
/// there already but which is missing (deleted by someone, expired) is put back. Routes
/// without a gateway first: a `noprefixroute` address (DHCP clients add them) leaves its
/// subnet to a user route, and a gateway route on the bridge is refused (ENETUNREACH)
/// until that subnet route is there.
fn move_routes(
    pre: &Snapshot,
    live: &Snapshot,
    (nic, br): (&IfName, &IfName),
    added: &[Address],
    plan: &mut Plan,
) {
    for r in links_first(pre.net.routes_via(nic)) {
        // With the expiry it has left, if it is still on the NIC.
        let aged = live.net.routes_via(nic).find(|l| super::same_route(l, r));
        let moved = aged.map_or_else(|| r.on(br), |l| r.with_expiry_of(l).on(br));
        if super::is_ra_default(r) {
            let has = |l: &Route| super::same_router(l, &moved);
            if !live.net.routes.iter().any(has) {
                let copy = super::ra_copy(&moved, br, super::ra_metric(pre, nic), live);
                plan.push(Op::RouteAdd { route: copy });
            }
            continue;
        }
        let client = super::client_makes_routes(pre, nic);
        let there = live.net.routes.iter().any(|l| {
            super::same_route(l, &moved) || (client && super::same_lease_route(l, &moved))
        });
        if there || (r.protocol == RouteProtocol::Kernel && made_by(r, added)) {
            continue;
        }
        if super::source_gone(r, pre, nic, live, added) {
            plan.notes
                .push(format!("{r} not moved: its source address is gone"));
            continue;
        }
        plan.push(if r.protocol == RouteProtocol::Kernel {
            // As the kernel adds its own: beside the same prefix of other devices (a
            // `replace` would take theirs; an IPv6 `add` is refused while they exist).
            Op::RouteAppend { route: moved }
        } else {
            Op::RouteReplace { route: moved }
        });
    }
}

/// Whether adding one of `addrs` makes the kernel's prefix route `r`: an IPv4 one names
/// its address as source, an IPv6 one is the address's prefix. A `noprefixroute` address
/// makes none (NetworkManager adds its own `proto kernel` route for such an address, at
/// its metric: that one moves like any other route).
pub(super) fn made_by(r: &Route, addrs: &[Address]) -> bool {
    let makes = addrs.iter().filter(|a| !a.has(AddrFlag::Noprefixroute));
    makes.into_iter().any(|a| match a.family() {
        Family::Inet => r.prefsrc == Some(a.ip),
        Family::Inet6 => a.prefix() == r.dst,
    })
}

/// Routes without a gateway before routes with one, otherwise in the given order.
pub(super) fn links_first<'a>(routes: impl Iterator<Item = &'a Route>) -> Vec<&'a Route> {
    let mut v: Vec<&Route> = routes.collect();
    v.sort_by_key(|r| r.gateway.is_some());
    v
}

/// The port keeps nothing of its own: every address the NIC still has goes, secondaries
/// first, then the routes the deletions leave behind. The kernel flushes the IPv4 ones
/// with the last IPv4 address; an IPv6 prefix route stays (to expire) when a dynamic
/// address of that prefix is deleted, and a permanent address's deletion only sets it
/// to expire while a dynamic address of the prefix remains.
fn unaddress_port(live: &Snapshot, nic: &IfName, plan: &mut Plan) {
    let addrs: Vec<&Address> = live.net.addresses_of(nic).collect();
    for a in deletion_order(addrs.iter().copied()) {
        plan.push(Op::AddrDel { address: a.clone() });
    }
    let has_v4 = addrs.iter().any(|a| a.family() == Family::Inet);
    let flushed = |r: &Route| r.family() == Family::Inet && has_v4;
    let taken_along = |r: &Route| {
        r.protocol == RouteProtocol::Kernel && r.family() == Family::Inet6 && {
            let owners: Vec<&&Address> = addrs
                .iter()
                .filter(|a| a.family() == Family::Inet6 && a.prefix() == r.dst)
                .collect();
            !owners.is_empty()
                && owners
                    .iter()
                    .all(|a| a.valid_lft.is_none() && !a.has(AddrFlag::Noprefixroute))
        }
    };
    // Routes the bridge took over with `replace` left the NIC already.
    for r in live.net.routes_via(nic) {
        let moved = plan
            .steps
            .iter()
            .any(|o| matches!(o, Op::RouteReplace { route } if route.key() == r.key()));
        if moved || flushed(r) || taken_along(r) {
            continue;
        }
        plan.push(Op::RouteDel { route: r.clone() });
    }
}

/// Grows the tmpfs to the size asked, never shrinks it.
fn grow_tmpfs(live: &Snapshot, req: &StartRequest, plan: &mut Plan) -> Result<(), PlanError> {
    let Some(shm) = &req.shm else {
        return Ok(());
    };
    let cur = live
        .tmpfs
        .as_ref()
        .filter(|t| t.path == shm.path)
        .ok_or_else(|| PlanError::ShmNotMounted(shm.path.display().to_string()))?;
    if shm.size_bytes > cur.size_bytes {
        plan.push(Op::TmpfsResize {
            path: shm.path.clone(),
            size_bytes: shm.size_bytes,
        });
    } else {
        plan.notes.push(format!(
            "{} is already {} (≥ the {} asked): left as it is",
            shm.path.display(),
            crate::model::format_size(cur.size_bytes),
            crate::model::format_size(shm.size_bytes)
        ));
    }
    Ok(())
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

/// Waits for the kernel's DAD work on the IPv6 ones of `added` (see [`Op::AwaitDad`]).
pub(super) fn await_dad(dev: &IfName, added: &[Address]) -> Op {
    Op::AwaitDad {
        dev: dev.clone(),
        addresses: added
            .iter()
            .filter(|a| a.family() == Family::Inet6)
            .map(|a| a.ip)
            .collect(),
    }
}

/// Refuses a NIC whose manager env-qemu cannot hand over to the bridge: the manager would
/// not renew its lease there, and the host would lose the address when it ends.
fn check_managers(s: &Snapshot, nic: &IfName) -> Result<(), PlanError> {
    use crate::host::Client;
    // NetworkManager is handed over where it runs a profile of its own on the NIC, and
    // manages nothing to hand over otherwise; systemd-networkd where its .network file
    // for the NIC could be read.
    let Some(c) = s
        .managers
        .of(nic)
        .find(|c| matches!(c, Client::Networkd(_) | Client::Unknown { .. }) && !c.handed_over())
    else {
        return Ok(());
    };
    // The longest-lived dynamic IPv4 address says when the host loses IPv4 on the bridge.
    let ends = s
        .net
        .addresses_of(nic)
        .filter(|a| a.family() == Family::Inet)
        .filter_map(|a| a.valid_lft.map(|v| (a.cidr(), v)))
        .max_by_key(|(_, v)| *v);
    Err(PlanError::UnmanagedOwner {
        nic: nic.clone(),
        owner: c.describe(),
        lease: ends.map(|(a, v)| format!("{a} expires in {}", crate::model::format_duration(v))),
    })
}
