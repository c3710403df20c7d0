//! `stop`: the operations that bring the live state back to the saved pre-start snapshot.
//!
//! A diff, not a replay: it works after a complete start, a partial or crashed one, after
//! someone deleted a route by hand, and a second run finds nothing to do.
//!
//! The order mirrors start's: the addresses back on the NIC, the bridge's neighbour
//! entries copied to the NIC, every route `replace`d back onto the NIC, the bridge's copies
//! of the addresses deleted (not its link-local), and the bridge deleted last, which releases the NIC.
//!
//! Why each step is where it is (measured, 1,000–5,000 datagrams/s from the LAN and from
//! a routed host):
//! - Routes move while the NIC is still a port, because releasing a port is not atomic
//!   with anything: the kernel releases the port first and flushes the bridge's routes
//!   only when it closes the bridge, so a reply routed through the bridge in between goes
//!   to a bridge without ports and is lost. (Appending the NIC's routes behind the bridge's
//!   and letting the deletion hand over lost a datagram at that instant in every run.)
//! - A port cannot fill its own neighbour cache: ARP and NDP replies to it are consumed by
//!   the bridge, and start emptied the NIC's ARP cache. Without the copied entries the
//!   moved routes would stall for a second of ARP retries.
//! - The bridge keeps no address of the NIC's: its prefix routes would still win for the
//!   LAN at the instant of release.

use super::start::{await_dad, links_first, made_by, set_sysctl};
use super::tap::{detach_steps, restore_steps};
use super::{
    deletion_order, link_set, neigh, primaries_first, same_addr, Plan, PlanError, StartRequest,
    TapRecord,
};
use crate::model::{
    AddrScope, Address, Family, IfName, Knob, Link, NudState, Route, RouteProtocol, Snapshot,
    SysctlKey,
};
use crate::op::{LinkChange, Op};

/// The operations that take `live` back to `pre`, the snapshot taken before `start` (see the module
/// docs for the order). `taps`: what `add` changed on the VM taps, put back. `vm_taps`: whether VM
/// taps still attached are detached or refused ([`PlanError::TapsAttached`]).
pub fn plan_stop(
    pre: &Snapshot,
    req: &StartRequest,
    taps: &[TapRecord],
    live: &Snapshot,
    vm_taps: super::VmTaps,
) -> Result<Plan, PlanError> {
    let (nic, br) = (&req.uplink, &req.bridge);
    let mut plan = Plan::default();
    let live_br = live.net.link(br).filter(|l| l.kind.is_bridge());
    if live_br.is_some() {
        detach_vm_taps(live, (nic, br), taps, vm_taps, &mut plan)?;
    }
    for rec in taps {
        if let Some(t) = live.net.link(&rec.name).filter(|t| t.master.is_none()) {
            plan.steps.extend(restore_steps(t, rec));
        }
    }

    let bridge = if live_br.is_some() {
        Bridge::Deleting
    } else {
        Bridge::Absent
    };
    // NetworkManager takes the NIC back first: activating its own profile releases the
    // port and leases on the NIC (measured: 14 ms from the release to the address).
    let nm = match live.net.link(nic) {
        Some(_) => super::host::NmStop::new(pre, live, nic, br, &mut plan),
        None => None,
    };
    if let Some(nm) = &nm {
        nm.reclaim(&mut plan);
    }
    match (pre.net.link(nic), live.net.link(nic)) {
        (Some(was), Some(now)) => {
            let owner = if nm.as_ref().is_some_and(super::host::NmStop::activates) {
                Reclaim::Nm
            } else if super::host::networkd_reclaims(pre, live, nic, br) {
                Reclaim::Networkd
            } else {
                Reclaim::Env
            };
            restore_nic(pre, live, (was, now), br, (bridge, owner), &mut plan);
        }
        (Some(_), None) => plan.notes.push(format!(
            "{nic} has disappeared since start: its addresses and routes cannot be restored"
        )),
        (None, _) => {}
    }

    restore_tmpfs(pre, live, req, &mut plan);
    delete_bridge(pre, live, (nic, br), &mut plan);
    if let Some(nm) = &nm {
        nm.finish(&mut plan);
    }
    // systemd-networkd runs the NIC's own file again once the bridge is gone.
    if live.net.link(nic).is_some() {
        super::host::networkd_stop(pre, live, nic, br, &mut plan);
    }
    // The NIC's client back on it, once the bridge is gone (a client started while the
    // NIC is still a port sees its replies taken by the bridge).
    if pre.net.link(nic).is_some() && live.net.link(nic).is_some() {
        super::host::adopt(pre, live, nic, nic, &mut plan);
    }
    Ok(plan)
}

/// VM taps still on the bridge: refused ([`PlanError::TapsAttached`]) or detached, with
/// what `add` changed on them put back (`taps`).
fn detach_vm_taps(
    live: &Snapshot,
    (nic, br): (&IfName, &IfName),
    taps: &[TapRecord],
    vm_taps: super::VmTaps,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let vms: Vec<&Link> = live.net.ports_of(br).filter(|l| &l.name != nic).collect();
    if !vms.is_empty() && vm_taps == super::VmTaps::Refuse {
        return Err(PlanError::TapsAttached {
            bridge: br.clone(),
            taps: vms.iter().map(|l| l.name.clone()).collect(),
        });
    }
    for tap in vms {
        let rec = taps.iter().find(|r| r.name == tap.name);
        plan.steps.extend(detach_steps(tap, rec));
    }
    Ok(())
}

/// The tmpfs `start` grew, back to its pre-start size.
fn restore_tmpfs(pre: &Snapshot, live: &Snapshot, req: &StartRequest, plan: &mut Plan) {
    if let (Some(shm), Some(was)) = (&req.shm, &pre.tmpfs) {
        if let Some(now) = live.tmpfs.as_ref().filter(|t| t.path == shm.path) {
            if now.size_bytes != was.size_bytes {
                plan.push(Op::TmpfsResize {
                    path: was.path.clone(),
                    size_bytes: was.size_bytes,
                });
            }
        }
    }
}

/// `ip link del` the bridge, last: it releases the NIC. Routes someone added to the bridge
/// while it ran go with it, which a note says; a link of that name that is no bridge any
/// more is left alone.
fn delete_bridge(pre: &Snapshot, live: &Snapshot, (nic, br): (&IfName, &IfName), plan: &mut Plan) {
    match live.net.link(br) {
        Some(l) if l.kind.is_bridge() => {
            for r in live.net.routes_via(br) {
                let ours = r.protocol == RouteProtocol::Kernel
                    || pre
                        .net
                        .routes
                        .iter()
                        .any(|p| p.via(nic) && super::same_route(&p.on(br), r));
                if !ours {
                    plan.notes
                        .push(format!("{r} was added while bridged: it goes with {br}"));
                }
            }
            plan.push(Op::LinkDel { name: br.clone() });
        }
        Some(l) => plan.notes.push(format!(
            "{br} is now a {}, not the bridge env-qemu made: left alone",
            l.kind.name()
        )),
        None => {}
    }
}

/// Who takes the NIC back at stop besides env-qemu, and so who puts its IPv6 link-local
/// address back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reclaim {
    Env,
    /// NetworkManager, when it activates the NIC's profile again: it makes the same
    /// address (same interface, profile and secret), with DAD. env-qemu's copy would
    /// only wait on NM's DAD (1–2 s, measured) with the bridge's IPv4 still in the way.
    /// The activation comes first and flushes the NIC: what the NIC carries now (after
    /// a killed start) is gone when the rest of the plan runs, and is put back like the
    /// rest.
    Nm,
    /// systemd-networkd, when it runs the NIC's own file again: it turns the kernel's
    /// address generation back on, and starts its router discovery only once it sees a
    /// link-local address appear (one already there, env-qemu's, leaves it waiting,
    /// measured with systemd 252: no RA route, no SLAAC renewal).
    Networkd,
}

impl Reclaim {
    /// Whether the NIC's addresses and routes are gone before env-qemu puts them back.
    fn flushed(self) -> bool {
        self == Reclaim::Nm
    }

    /// Whether the NIC's manager makes its link-local (env-qemu leaves it out).
    fn makes_link_local(self) -> bool {
        self != Reclaim::Env
    }
}

/// Whether stop deletes the bridge (and so releases the NIC with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bridge {
    Deleting,
    Absent,
}

fn restore_nic(
    pre: &Snapshot,
    live: &Snapshot,
    (was, now): (&Link, &Link),
    br: &IfName,
    (bridge, reclaim): (Bridge, Reclaim),
    plan: &mut Plan,
) {
    let nic = &was.name;
    // The bridge's DHCP client lets go of it before anything moves back.
    super::host::release(pre, live, nic, br, plan);
    if was.up && !now.up {
        plan.push(link_set(nic, LinkChange::Up));
    }
    let readded = readdress_nic(pre, live, (nic, br), reclaim, plan);
    if bridge == Bridge::Deleting {
        copy_neighbours(live, nic, br, plan);
    }
    restore_statics(pre, live, nic, plan);
    restore_routes(pre, live, (nic, br), (&readded, reclaim), plan);
    if bridge == Bridge::Deleting {
        unaddress_bridge(pre, live, nic, br, plan);
    }
    // Deleting the bridge releases the NIC; only a NIC left on a bridge that stays needs an
    // explicit release.
    if now.master.as_ref() == Some(br) && bridge != Bridge::Deleting {
        plan.push(link_set(nic, LinkChange::NoMaster));
    }
    restore_link(pre, live, was, now, plan);
}

/// The NIC's addresses back, with the lifetimes they have left on the bridge, DAD off
/// meanwhile (they would sit `tentative` for a second).
fn readdress_nic(
    pre: &Snapshot,
    live: &Snapshot,
    (nic, br): (&IfName, &IfName),
    reclaim: Reclaim,
    plan: &mut Plan,
) -> Vec<Address> {
    let knob = |s: &Snapshot| {
        s.sysctl(&SysctlKey::new(nic, Knob::Ipv6AcceptDad))
            .map(str::to_string)
    };
    let kept =
        |a: &Address| !reclaim.flushed() && live.net.addresses_of(nic).any(|l| same_addr(l, a));
    let missing: Vec<Address> = primaries_first(pre.net.addresses_of(nic))
        .into_iter()
        .filter(|a| !kept(a))
        .filter(|a| !(reclaim.makes_link_local() && a.is_link_local()))
        .filter_map(|a| with_live_lifetimes(a, pre, live, br, plan))
        .collect();
    let v6 = missing.iter().any(|a| a.family() == Family::Inet6);
    let (dad_pre, dad_live) = (knob(pre), knob(live));
    let dad_off = v6 && dad_live.as_deref().is_some_and(|v| v != "0");
    if dad_off {
        plan.push(set_sysctl(nic, Knob::Ipv6AcceptDad, "0".into()));
    }
    let (all_off, all_back) = super::all_dad(pre, live, v6);
    plan.steps.extend(all_off);
    for a in &missing {
        plan.push(Op::AddrAdd { address: a.clone() });
    }
    let dad_now = if dad_off {
        Some("0".to_string())
    } else {
        dad_live
    };
    let mut waited = false;
    if let (Some(p), Some(n)) = (dad_pre, dad_now) {
        if p != n {
            if dad_off {
                plan.push(await_dad(nic, &missing));
                waited = true;
            }
            plan.push(set_sysctl(nic, Knob::Ipv6AcceptDad, p));
        }
    }
    if v6 && !waited && !all_back.is_empty() {
        plan.push(await_dad(nic, &missing));
    }
    plan.steps.extend(all_back);
    missing
}

/// Static entries the NIC lost (start deleted its last IPv4 address, which flushed its
/// ARP ones).
fn restore_statics(pre: &Snapshot, live: &Snapshot, nic: &IfName, plan: &mut Plan) {
    for n in neigh::statics(pre, nic) {
        if !live.neighbours_of(nic).any(|l| l == n) {
            plan.steps
                .extend(neigh::put_on(n, nic, NudState::Permanent));
        }
    }
}

/// Every route the NIC had, `replace`d back from the bridge (or added, if gone), routes
/// without a gateway first (see `plan::start`). The kernel's own come back with the
/// addresses `readded`; one whose address the NIC has already but which is missing is put
/// back. When `reclaim` flushes the NIC, its own routes are gone by then.
fn restore_routes(
    pre: &Snapshot,
    live: &Snapshot,
    (nic, br): (&IfName, &IfName),
    (readded, reclaim): (&[Address], Reclaim),
    plan: &mut Plan,
) {
    let client = super::client_makes_routes(pre, nic);
    let now = || {
        live.net
            .routes
            .iter()
            .filter(move |l| !(reclaim.flushed() && l.via(nic)))
    };
    for r in links_first(pre.net.routes_via(nic)) {
        let there = |l: &Route| {
            super::same_route(l, r) || (client && l.via(nic) && super::same_lease_route(l, r))
        };
        if now().any(there) {
            continue;
        }
        if super::source_gone(r, pre, nic, live, readded) {
            plan.notes
                .push(format!("{r} not restored: its source address is gone"));
            continue;
        }
        if super::is_ra_default(r) {
            // A copy one metric above, with the expiry the bridge's has left: the NIC
            // takes RAs again, and the kernel adds its own at the next one.
            if !now().any(|l| super::same_router(l, r)) {
                let aged = live
                    .net
                    .routes_via(br)
                    .find(|l| super::same_router(l, &r.on(br)));
                let back = aged.map_or_else(|| r.clone(), |l| r.with_expiry_of(l));
                let copy = super::ra_copy(&back, nic, super::ra_metric(pre, nic), live);
                plan.push(Op::RouteAdd { route: copy });
            }
            continue;
        }
        if r.protocol == RouteProtocol::Kernel {
            // As the kernel adds its own: beside the same prefix of other devices (the
            // bridge's goes with the bridge's address).
            if !made_by(r, readded) {
                plan.push(Op::RouteAppend { route: r.clone() });
            }
            continue;
        }
        match now().find(|l| l.key() == r.key()) {
            // Back with the expiry it has left.
            Some(l) if l.via(br) => plan.push(Op::RouteReplace {
                route: r.with_expiry_of(l),
            }),
            None => plan.push(Op::RouteAdd { route: r.clone() }),
            Some(l) => plan
                .notes
                .push(format!("{r} not restored: its slot is now taken by {l}")),
        }
    }
}

/// Sysctls, MTU, MAC and admin state as they were.
fn restore_link(pre: &Snapshot, live: &Snapshot, was: &Link, now: &Link, plan: &mut Plan) {
    let nic = &was.name;
    let knob = |s: &Snapshot, k| s.sysctl(&SysctlKey::new(nic, k)).map(str::to_string);
    for k in super::PORT_ZEROES {
        if let (Some(p), Some(n)) = (knob(pre, k), knob(live, k)) {
            if p != n {
                plan.push(set_sysctl(nic, k, p));
            }
        }
    }
    if was.mtu != now.mtu {
        plan.push(link_set(nic, LinkChange::Mtu(was.mtu)));
    }
    if was.mac != now.mac {
        plan.push(link_set(nic, LinkChange::Mac(was.mac)));
    }
    if !was.up && now.up {
        plan.push(link_set(nic, LinkChange::Down));
    }
}

/// A dynamic address has aged on the bridge: restore the lifetime it has left, not the one
/// it had at start (a dhclient lease at least a whole lease, as at start: the client
/// started again on the NIC cannot refresh it before its first renewal). One the bridge
/// never got (a killed start) keeps what it has left on the NIC. A dynamic address gone
/// from the bridge and the NIC has expired (or its owner took it back): it is not
/// resurrected.
fn with_live_lifetimes(
    a: &Address,
    pre: &Snapshot,
    live: &Snapshot,
    br: &IfName,
    plan: &mut Plan,
) -> Option<Address> {
    let mut out = a.clone();
    let mut copies = live
        .net
        .addresses_of(br)
        .chain(live.net.addresses_of(&a.dev));
    match copies.find(|l| same_addr(l, a)) {
        Some(now) => {
            out.valid_lft = now.valid_lft;
            out.preferred_lft = now.preferred_lft;
            super::host::lease_lifetimes(&mut out, pre, &a.dev);
        }
        None if a.valid_lft.is_some() => {
            plan.notes.push(format!(
                "{a} is gone from {br} too (its lifetime ended, or its owner removed it): not put back"
            ));
            return None;
        }
        None => {}
    }
    Some(out)
}

/// The route the kernel makes for an IPv6 address's prefix.
fn kernel_prefix_route(a: &Address) -> Route {
    Route::new(a.prefix(), None, Some(a.dev.clone()))
        .proto(RouteProtocol::Kernel)
        .metric(256)
}

/// The bridge's learnt neighbours, as `stale` entries on the NIC: usable at once, and
/// confirmed by the kernel (a unicast probe) the first time they are used after the NIC
/// is released.
fn copy_neighbours(live: &Snapshot, nic: &IfName, br: &IfName, plan: &mut Plan) {
    for n in live.neighbours_of(br).filter(|n| n.state.is_learnt()) {
        plan.steps.extend(neigh::put_on(n, nic, NudState::Stale));
    }
}

/// Deletes from the bridge the addresses the NIC has again, secondaries first (deleting a
/// primary would take them along, or promote one). A dynamic IPv6 address leaves its
/// prefix route behind: deleted too.
fn unaddress_bridge(pre: &Snapshot, live: &Snapshot, nic: &IfName, br: &IfName, plan: &mut Plan) {
    // The bridge's link-local stays: it routes nothing off-link, and it goes with the
    // bridge.
    let moved: Vec<&Address> = live
        .net
        .addresses_of(br)
        .filter(|a| a.scope != AddrScope::Link)
        .filter(|a| pre.net.addresses_of(nic).any(|p| same_addr(p, a)))
        .collect();
    for a in deletion_order(moved.iter().copied()) {
        plan.push(Op::AddrDel { address: a.clone() });
    }
    let mut leftovers: Vec<Route> = Vec::new();
    for a in moved
        .iter()
        .filter(|a| a.family() == Family::Inet6 && a.valid_lft.is_some())
    {
        let r = kernel_prefix_route(a);
        let kept = live.net.addresses_of(br).any(|o| {
            o.family() == Family::Inet6 && o.prefix() == a.prefix() && !moved.contains(&o)
        });
        let there = live.net.routes.iter().any(|l| {
            l.dev == r.dev
                && l.dst == r.dst
                && l.protocol == RouteProtocol::Kernel
                && l.gateway.is_none()
        });
        if there && !kept && !leftovers.contains(&r) {
            leftovers.push(r);
        }
    }
    for r in leftovers {
        plan.push(Op::RouteDel { route: r });
    }
}
