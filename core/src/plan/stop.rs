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

use super::start::set_sysctl;
use super::tap::{detach_steps, restore_steps};
use super::{
    delete_addresses, link_set, neigh, primaries_first, Plan, PlanError, StartRequest, Step,
    TapRecord,
};
use crate::model::{
    AddrFlag, AddrScope, Address, Family, IfName, Knob, Link, NudState, Route, RouteProtocol,
    Snapshot, SysctlKey,
};
use crate::op::{LinkChange, Op};

pub fn plan_stop(
    pre: &Snapshot,
    req: &StartRequest,
    taps: &[TapRecord],
    live: &Snapshot,
    force: bool,
) -> Result<Plan, PlanError> {
    let (nic, br) = (&req.uplink, &req.bridge);
    let mut plan = Plan::default();
    let live_br = live.net.link(br).filter(|l| l.kind.is_bridge());

    if live_br.is_some() {
        let vms: Vec<&Link> = live.net.ports_of(br).filter(|l| &l.name != nic).collect();
        if !vms.is_empty() && !force {
            return Err(PlanError::TapsAttached {
                bridge: br.clone(),
                taps: vms.iter().map(|l| l.name.clone()).collect(),
            });
        }
        for tap in vms {
            let rec = taps.iter().find(|r| r.name == tap.name);
            plan.steps.extend(detach_steps(tap, br, rec));
        }
    }
    for rec in taps {
        if let Some(t) = live.net.link(&rec.name).filter(|t| t.master.is_none()) {
            plan.steps.extend(restore_steps(t, rec));
        }
    }

    let deleting_bridge = live_br.is_some();
    match (pre.net.link(nic), live.net.link(nic)) {
        (Some(was), Some(now)) => restore_nic(pre, live, was, now, br, deleting_bridge, &mut plan),
        (Some(_), None) => plan.notes.push(format!(
            "{nic} has disappeared since start: its addresses and routes cannot be restored"
        )),
        (None, _) => {}
    }

    if let (Some(shm), Some(was)) = (&req.shm, &pre.tmpfs) {
        if let Some(now) = live.tmpfs.as_ref().filter(|t| t.path == shm.path) {
            if now.size_bytes != was.size_bytes {
                plan.push(Step::new(
                    Op::TmpfsResize {
                        path: was.path.clone(),
                        size_bytes: was.size_bytes,
                    },
                    Op::TmpfsResize {
                        path: now.path.clone(),
                        size_bytes: now.size_bytes,
                    },
                ));
            }
        }
    }

    match live.net.link(br) {
        Some(l) if l.kind.is_bridge() => {
            for r in live.net.routes_via(br) {
                let ours = r.protocol == RouteProtocol::Kernel
                    || pre.net.routes.iter().any(|p| p.via(nic) && p.on(br) == *r);
                if !ours {
                    plan.notes
                        .push(format!("{r} was added while bridged: it goes with {br}"));
                }
            }
            plan.push(Step::owned(Op::LinkDel { name: br.clone() }));
        }
        Some(l) => plan.notes.push(format!(
            "{br} is now a {}, not the bridge env-qemu made: left alone",
            l.kind.name()
        )),
        None => {}
    }
    Ok(plan)
}

fn restore_nic(
    pre: &Snapshot,
    live: &Snapshot,
    was: &Link,
    now: &Link,
    br: &IfName,
    deleting_bridge: bool,
    plan: &mut Plan,
) {
    let nic = &was.name;
    let knob = |s: &Snapshot, k| s.sysctl(&SysctlKey::new(nic, k)).map(str::to_string);
    if was.up && !now.up {
        plan.push(link_set(nic, LinkChange::Up, LinkChange::Down));
    }

    let missing: Vec<Address> = primaries_first(pre.net.addresses_of(nic))
        .into_iter()
        .filter(|a| !live.net.addresses_of(nic).any(|l| same_addr(l, a)))
        .map(|a| with_live_lifetimes(a, live, br))
        .collect();
    let v6 = missing.iter().any(|a| a.family() == Family::Inet6);
    let dad_live = knob(live, Knob::Ipv6AcceptDad);
    let dad_pre = knob(pre, Knob::Ipv6AcceptDad);
    // Re-added IPv6 addresses would sit `tentative` for a second of DAD: off meanwhile.
    let dad_off = v6 && dad_live.as_deref().is_some_and(|v| v != "0");
    if dad_off {
        plan.push(Step::new(
            set_sysctl(nic, Knob::Ipv6AcceptDad, "0".into()),
            set_sysctl(
                nic,
                Knob::Ipv6AcceptDad,
                dad_live.clone().unwrap_or_default(),
            ),
        ));
    }
    for a in &missing {
        let mut undo = vec![Op::AddrDel { address: a.clone() }];
        // Deleting a dynamic IPv6 address leaves its prefix route behind, to expire. (On a
        // down device, where the NIC is by the time of this step only if it was down before
        // start, a dynamic address gets no prefix route at all.)
        if (now.up || was.up) && creates_lasting_prefix_route(a, live) {
            undo.push(Op::RouteDel {
                route: kernel_prefix_route(a),
            });
        }
        plan.push(Step::with_undo(Op::AddrAdd { address: a.clone() }, undo));
    }
    let dad_now = if dad_off {
        Some("0".to_string())
    } else {
        dad_live
    };
    if let (Some(p), Some(n)) = (dad_pre, dad_now) {
        if p != n {
            plan.push(Step::new(
                set_sysctl(nic, Knob::Ipv6AcceptDad, p),
                set_sysctl(nic, Knob::Ipv6AcceptDad, n),
            ));
        }
    }

    if deleting_bridge {
        copy_neighbours(live, nic, br, plan);
    }
    // Static entries the NIC lost (start deleted its last IPv4 address, which flushed its
    // ARP ones).
    for n in neigh::statics(pre, nic) {
        if live.neighbours_of(nic).any(|l| l == n) {
            continue;
        }
        if let Some(op) = neigh::put_on(n, nic, NudState::Permanent) {
            let undo = Op::NeighDel {
                dev: nic.clone(),
                ip: n.ip,
            };
            plan.push(Step::new(op, undo));
        }
    }
    for r in pre
        .net
        .routes_via(nic)
        .filter(|r| r.protocol != RouteProtocol::Kernel)
    {
        if live.net.routes.iter().any(|l| l.same_ignoring_expiry(r)) {
            continue;
        }
        let holder = live.net.routes.iter().find(|l| l.key() == r.key());
        match holder {
            Some(l) if l.via(br) => plan.push(Step::new(
                Op::RouteReplace {
                    route: r.with_expiry_of(l),
                },
                Op::RouteReplace { route: l.clone() },
            )),
            None => plan.push(Step::new(
                Op::RouteAdd { route: r.clone() },
                Op::RouteDel { route: r.clone() },
            )),
            Some(l) => plan
                .notes
                .push(format!("{r} not restored: its slot is now taken by {l}")),
        }
    }
    if deleting_bridge {
        unaddress_bridge(pre, live, nic, br, plan);
    }

    // Deleting the bridge releases the NIC; only a NIC left on a bridge that stays needs an
    // explicit release.
    if now.master.as_ref() == Some(br) && !deleting_bridge {
        plan.push(link_set(
            nic,
            LinkChange::NoMaster,
            LinkChange::Master(br.clone()),
        ));
    }
    for k in [Knob::Ipv6AcceptRa, Knob::Ipv6Autoconf] {
        if let (Some(p), Some(n)) = (knob(pre, k), knob(live, k)) {
            if p != n {
                plan.push(Step::new(set_sysctl(nic, k, p), set_sysctl(nic, k, n)));
            }
        }
    }
    if was.mtu != now.mtu {
        plan.push(link_set(
            nic,
            LinkChange::Mtu(was.mtu),
            LinkChange::Mtu(now.mtu),
        ));
    }
    if was.mac != now.mac {
        plan.push(link_set(
            nic,
            LinkChange::Mac(was.mac),
            LinkChange::Mac(now.mac),
        ));
    }
    if !was.up && now.up {
        plan.push(link_set(nic, LinkChange::Down, LinkChange::Up));
    }
}

/// The kernel's identity of an address on one device.
fn same_addr(a: &Address, b: &Address) -> bool {
    a.ip == b.ip && (a.family() == Family::Inet6 || a.prefix_len == b.prefix_len)
}

/// A dynamic address has aged on the bridge: restore the lifetime it has left, not the one
/// it had at start.
fn with_live_lifetimes(a: &Address, live: &Snapshot, br: &IfName) -> Address {
    let mut out = a.clone();
    if let Some(now) = live.net.addresses_of(br).find(|l| same_addr(l, a)) {
        out.valid_lft = now.valid_lft;
        out.preferred_lft = now.preferred_lft;
    }
    out
}

/// True when re-adding `a` makes a prefix route that deleting `a` would not take away.
fn creates_lasting_prefix_route(a: &Address, live: &Snapshot) -> bool {
    a.family() == Family::Inet6
        && a.valid_lft.is_some()
        && !a.has(AddrFlag::Noprefixroute)
        && !live
            .net
            .routes
            .iter()
            .any(|l| l.same_ignoring_expiry(&kernel_prefix_route(a)))
}

/// The route the kernel makes for an IPv6 address's prefix.
fn kernel_prefix_route(a: &Address) -> Route {
    Route::new(a.prefix(), None, Some(a.dev.clone()))
        .proto(RouteProtocol::Kernel)
        .metric(256)
}

/// The bridge's learnt neighbours, as `stale` entries on the NIC: usable at once, and
/// confirmed by the kernel (a unicast probe) the first time they are used after the NIC
/// is released. A cache is not restored on rollback: a stale entry is harmless.
fn copy_neighbours(live: &Snapshot, nic: &IfName, br: &IfName, plan: &mut Plan) {
    for n in live.neighbours_of(br).filter(|n| n.state.is_learnt()) {
        if let Some(op) = neigh::put_on(n, nic, NudState::Stale) {
            plan.push(Step::with_undo(op, vec![]));
        }
    }
}

/// Deletes from the bridge the addresses the NIC has again, secondaries first (deleting a
/// primary would take them along, or promote one). The last IPv4 one takes every IPv4
/// route and static ARP entry left on the bridge with it, so its undo puts back those that
/// are not the kernel's. A dynamic IPv6 address leaves its prefix route behind: deleted
/// too.
fn unaddress_bridge(pre: &Snapshot, live: &Snapshot, nic: &IfName, br: &IfName, plan: &mut Plan) {
    // The bridge's link-local stays: it routes nothing off-link, and re-adding it in a
    // rollback would put it through DAD again.
    let moved: Vec<&Address> = primaries_first(live.net.addresses_of(br))
        .into_iter()
        .filter(|a| a.scope != AddrScope::Link)
        .filter(|a| pre.net.addresses_of(nic).any(|p| same_addr(p, a)))
        .collect();
    // What is still on the bridge when its last IPv4 address goes: routes added while
    // bridged (the NIC's were replaced back above), and static ARP entries (the NIC's,
    // copied there by start).
    let mut flushed: Vec<Op> = live
        .net
        .routes_via(br)
        .filter(|r| r.family() == Family::Inet && r.protocol != RouteProtocol::Kernel)
        .filter(|r| !pre.net.routes_via(nic).any(|p| p.key() == r.key()))
        .map(|r| Op::RouteAdd { route: r.clone() })
        .collect();
    flushed.extend(neigh::static_arp(live, br, br));
    // Only if none stays: an address added while bridged keeps them.
    let v4 = |a: &Address| a.family() == Family::Inet;
    let all_go = live.net.addresses_of(br).filter(|a| v4(a)).count()
        == moved.iter().filter(|a| v4(a)).count();
    if !all_go {
        flushed.clear();
    }
    let order: Vec<&Address> = moved.iter().rev().copied().collect();
    plan.steps.extend(delete_addresses(&order, flushed));
    let mut leftovers: Vec<Route> = Vec::new();
    for a in moved
        .iter()
        .filter(|a| a.family() == Family::Inet6 && a.valid_lft.is_some())
    {
        let r = kernel_prefix_route(a);
        let kept = live.net.addresses_of(br).any(|o| {
            o.family() == Family::Inet6 && o.prefix() == a.prefix() && !moved.contains(&o)
        });
        let made_by_it = !a.has(AddrFlag::Noprefixroute)
            && live.net.routes.iter().any(|l| l.same_ignoring_expiry(&r));
        if made_by_it && !kept && !leftovers.contains(&r) {
            leftovers.push(r);
        }
    }
    for r in leftovers {
        plan.push(Step::owned(Op::RouteDel { route: r }));
    }
}
