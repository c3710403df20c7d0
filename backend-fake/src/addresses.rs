//! `ip addr add|del`: primaries and secondaries, promotion, and the routes that come and
//! go with addresses.

use std::net::IpAddr;

use env_qemu_core::model::{AddrFlag, AddrScope, Address, Family};

use crate::error::{Fail, Res};
use crate::state::{scope_num, Ns};
use crate::{ipv6, routes};

pub(crate) fn add(ns: &mut Ns, req: &Address) -> Res {
    let i = ns.require(&req.dev)?;
    if req.prefix_len > req.family().max_len() {
        return Err(Fail::new(libc::EINVAL, "Invalid prefix length"));
    }
    check_lifetimes(req)?;
    let mut a = req.clone();
    // Only what `ip addr add` can ask for is taken from the request; the rest is state.
    a.flags.retain(|f| f.is_configurable());
    a.secondary = false;
    if a.preferred_lft == Some(0) {
        a.flags.insert(AddrFlag::Deprecated);
    }
    match a.ip {
        // inet_rtm_newaddr without an in_device (MTU below 68).
        IpAddr::V4(_) if !ns.has_inet4(i) => {
            Err(Fail::new(libc::ENOBUFS, "No buffer space available"))
        }
        IpAddr::V4(_) => add_v4(ns, i, a),
        IpAddr::V6(_) => add_v6(ns, i, a),
    }
}

fn check_lifetimes(a: &Address) -> Res {
    let bad = match (a.valid_lft, a.preferred_lft) {
        (Some(0), _) => true,
        (Some(v), Some(p)) => p > v,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if bad {
        return Err(Fail::new(libc::EINVAL, "Invalid argument"));
    }
    Ok(())
}

pub(crate) fn add_v4(ns: &mut Ns, i: u32, mut a: Address) -> Res {
    let subnet = a.prefix();
    for x in &ns.dev(i).v4 {
        if x.prefix_len == a.prefix_len && subnet.contains(&x.ip) {
            if x.ip == a.ip {
                return Err(Fail::new(libc::EEXIST, "ipv4: Address already assigned"));
            }
            if x.scope != a.scope {
                return Err(Fail::new(libc::EINVAL, "ipv4: Invalid scope value"));
            }
            // Another address of the same subnet came first.
            a.secondary = true;
        }
    }
    let primary = !a.secondary;
    insert_v4(ns, i, a.clone());
    if primary {
        routes::kernel_prefix_v4(ns, i, &a, true);
    }
    Ok(())
}

/// __inet_insert_ifa's placement: a primary goes after the last primary of the same or a
/// narrower scope, a secondary at the end.
pub(crate) fn insert_v4(ns: &mut Ns, i: u32, a: Address) {
    let list = &mut ns.dev_mut(i).v4;
    let pos = if a.secondary {
        list.len()
    } else {
        list.iter()
            .rposition(|x| !x.secondary && scope_num(a.scope) <= scope_num(x.scope))
            .map_or(0, |p| p + 1)
    };
    list.insert(pos, a);
}

fn add_v6(ns: &mut Ns, i: u32, mut a: Address) -> Res {
    let Some(v6) = ns.dev(i).v6.as_ref() else {
        // No inet6_dev (MTU below 1280): ipv6_add_dev refuses.
        return Err(Fail::new(libc::EINVAL, "Invalid argument"));
    };
    // The key is the address alone: the same address with another length is a duplicate.
    if v6.addrs.iter().any(|x| x.ip == a.ip) {
        return Err(Fail::new(libc::EEXIST, "ipv6: address already assigned"));
    }
    // inet6_addr_add, once the address is known to be new: temporary addresses are made
    // for a /64 only.
    if a.has(AddrFlag::Mngtmpaddr) && a.prefix_len != 64 {
        return Err(Fail::new(
            libc::EINVAL,
            "ipv6: address with \"mngtmpaddr\" flag must have a prefix length of 64",
        ));
    }
    // The kernel derives the scope from the address; the request's is ignored.
    a.scope = AddrScope::default_for(&a.ip);
    a.broadcast = None;
    if ipv6::dad_needed(ns, i, &a) {
        // Tentative until DAD completes, which needs a ready device and time.
        a.flags.insert(AddrFlag::Tentative);
    }
    let route = ns.dev(i).up && ipv6::wants_prefix_route(ns, i, &a);
    let (name, prefix, valid) = (a.dev.clone(), a.prefix(), a.valid_lft);
    ipv6::insert_addr(ns, i, a);
    if route {
        routes::kernel_prefix_v6(ns, &name, prefix, valid);
    }
    Ok(())
}

pub(crate) fn del(ns: &mut Ns, req: &Address) -> Res {
    let i = ns.require(&req.dev)?;
    match req.ip {
        IpAddr::V4(_) if !ns.has_inet4(i) => Err(Fail::new(libc::ENODEV, "ipv4: Device not found")),
        IpAddr::V4(_) => del_v4(ns, i, req),
        IpAddr::V6(_) => del_v6(ns, i, req),
    }
}

/// __inet_del_ifa + fib_del_ifaddr.
fn del_v4(ns: &mut Ns, i: u32, req: &Address) -> Res {
    let list = &ns.dev(i).v4;
    let Some(at) = list
        .iter()
        .position(|x| x.ip == req.ip && x.prefix_len == req.prefix_len)
    else {
        return Err(Fail::new(libc::EADDRNOTAVAIL, "ipv4: Address not found"));
    };
    let target = list[at].clone();
    let subnet = target.prefix();
    let same_subnet = |x: &Address| x.prefix_len == target.prefix_len && subnet.contains(&x.ip);
    let mut promote = None;
    let mut doomed = Vec::new();
    // Where a promoted secondary is moved to, and whether it has to move at all.
    let mut last_prim = (at > 0).then_some(0);
    let mut skipped = false;
    if !target.secondary {
        for (j, x) in list.iter().enumerate().skip(at + 1) {
            if !x.secondary && scope_num(target.scope) <= scope_num(x.scope) {
                last_prim = Some(j);
            }
            if !x.secondary || !same_subnet(x) {
                skipped = true;
                continue;
            }
            if ns.promote_secondaries {
                promote = Some(j);
                break;
            }
            // promote_secondaries=0: the subnet's secondaries die with their primary.
            doomed.push(j);
        }
    }
    for &j in doomed.iter().rev() {
        let sec = ns.dev_mut(i).v4.remove(j);
        address_gone(ns, &sec);
    }
    let mut list = std::mem::take(&mut ns.dev_mut(i).v4);
    list.remove(at);
    let shift = |j: usize| if j > at { j - 1 } else { j };
    let promoted = promote.map(|p| {
        let p = shift(p);
        if skipped {
            let mut a = list.remove(p);
            a.secondary = false;
            // Goes right after the last primary of its scope. (When the deleted address
            // was the head of the list the kernel links it after the freed entry, losing
            // it; the simulator keeps it where the deleted one was instead.)
            let to = last_prim.map_or(at, |l| shift(l) + 1).min(list.len());
            list.insert(to, a);
            to
        } else {
            list[p].secondary = false;
            p
        }
    });
    ns.dev_mut(i).v4 = list;
    if !target.secondary {
        routes::kernel_prefix_v4(ns, i, &target, false);
    }
    address_gone(ns, &target);
    if let Some(p) = promoted {
        let a = ns.dev(i).v4[p].clone();
        routes::kernel_prefix_v4(ns, i, &a, true);
    }
    if ns.dev(i).v4.is_empty() {
        // fib_disable_ip: the device's last IPv4 address took every IPv4 route through
        // it, in every table, gateway routes included.
        let name = ns.name(i);
        routes::flush_dev(ns, &name, Family::Inet);
    }
    Ok(())
}

/// fib_sync_down_addr: once an address is no longer local anywhere, main-table routes
/// using it as prefsrc go (on any device). Other tables keep theirs, stale.
fn address_gone(ns: &mut Ns, a: &Address) {
    if let IpAddr::V4(ip) = a.ip {
        if !ns.is_local_v4(ip) {
            routes::flush_prefsrc_main(ns, a.ip);
        }
    }
}

fn del_v6(ns: &mut Ns, i: u32, req: &Address) -> Res {
    let Some(v6) = ns.dev(i).v6.as_ref() else {
        return Err(Fail::new(libc::ENXIO, "No such device or address"));
    };
    let Some(gone) = v6
        .addrs
        .iter()
        .find(|x| x.ip == req.ip && x.prefix_len == req.prefix_len)
        .cloned()
    else {
        return Err(Fail::new(libc::EADDRNOTAVAIL, "ipv6: address not found"));
    };
    remove_v6(ns, i, &gone);
    Ok(())
}

/// ipv6_del_addr, for `ip addr del` and for an address whose valid lifetime ran out.
///
/// A `mngtmpaddr` address takes its temporary addresses with it (manage_tempaddrs
/// expires them at once; measured with a plain `ip addr del`).
///
/// check_cleanup_prefix_route: only a permanent address (infinite valid lifetime), not
/// `noprefixroute`, touches its prefix route. If another address of the device with the
/// same prefix is permanent or `noprefixroute`, the route stays as it is; if only
/// dynamic ones share it, the route, when it does not expire yet, expires with the
/// longest-lived of them (measured: deleting the permanent one of 2001:db8:20::1/64,
/// ::2 valid 500 and ::3 valid 700 leaves the route `expires 699sec`); if none, it goes.
/// A dynamic address leaves the route to expire by itself.
pub(crate) fn remove_v6(ns: &mut Ns, i: u32, gone: &Address) {
    if gone.has(AddrFlag::Mngtmpaddr) {
        let temps: Vec<Address> = ns
            .dev(i)
            .v6
            .iter()
            .flat_map(|v| v.addrs.iter())
            .filter(|t| {
                ns.dev(i)
                    .v6
                    .as_ref()
                    .is_some_and(|v| v.temp_parent.get(&t.ip) == Some(&gone.ip))
            })
            .cloned()
            .collect();
        for t in temps {
            remove_v6(ns, i, &t);
        }
    }
    let Some(v6) = ns.dev_mut(i).v6.as_mut() else {
        return;
    };
    v6.addrs.retain(|x| x.ip != gone.ip);
    v6.temp_parent.remove(&gone.ip);
    let prefix = gone.prefix();
    let siblings: Vec<Address> = v6
        .addrs
        .iter()
        .filter(|x| x.prefix_len == gone.prefix_len && prefix.contains(&x.ip))
        .cloned()
        .collect();
    if gone.valid_lft.is_none() && !gone.has(AddrFlag::Noprefixroute) {
        let keeps = siblings
            .iter()
            .any(|x| x.valid_lft.is_none() || x.has(AddrFlag::Noprefixroute));
        let longest = siblings.iter().filter_map(|x| x.valid_lft).max();
        match longest {
            _ if keeps => {}
            Some(left) => routes::expire_kernel_prefix_v6(ns, &gone.dev, prefix, left),
            None => routes::remove_kernel_prefix_v6(ns, &gone.dev, prefix),
        }
    }
    // rt6_remove_prefsrc: routes keep going, without the source they can no longer use.
    if let IpAddr::V6(ip) = gone.ip {
        routes::drop_prefsrc_v6(ns, ip);
    }
}
