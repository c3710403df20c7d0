//! addrconf: the per-device IPv6 state, link-local generation, DAD and what admin down
//! and small MTUs do to IPv6.

use std::net::{IpAddr, Ipv6Addr};

use env_qemu_core::model::{AddrFlag, AddrScope, Address, Family, MacAddr, Prefix};

use crate::routes;
use crate::state::{Inet6, Kind, Ns, IPV6_MIN_MTU};

/// Whether a new address on `i` has to go through DAD (and so starts tentative).
/// Loopback never does; otherwise DAD runs unless `nodad` or both
/// net.ipv6.conf.all.accept_dad and the device's accept_dad are below 1.
pub(crate) fn dad_needed(ns: &Ns, i: u32, a: &Address) -> bool {
    let d = ns.dev(i);
    if a.has(AddrFlag::Nodad) || matches!(d.kind, Kind::Loopback) {
        return false;
    }
    let dev_dad = d.v6.as_ref().map_or(0, |v| v.conf.accept_dad);
    ns.conf_all.accept_dad >= 1 || dev_dad >= 1
}

/// ipv6_addr_src_scope, as the ordering of the address list uses it.
fn src_scope(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V6(a) if a.is_loopback() => 0x2,
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => 0x2,
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfec0 => 0x5,
        _ => 0xe,
    }
}

/// ipv6_link_dev_addr: in front of the first address of the same or a narrower scope,
/// so globals come first and, within a scope, the newest first.
pub(crate) fn insert_addr(ns: &mut Ns, i: u32, a: Address) {
    let Some(v6) = ns.dev_mut(i).v6.as_mut() else {
        return;
    };
    let s = src_scope(&a.ip);
    let pos = v6
        .addrs
        .iter()
        .position(|x| s >= src_scope(&x.ip))
        .unwrap_or(v6.addrs.len());
    v6.addrs.insert(pos, a);
}

/// fe80::/64 + modified EUI-64 of the MAC the device has when it becomes ready.
fn link_local(mac: &MacAddr) -> Ipv6Addr {
    let e = mac.eui64();
    Ipv6Addr::from([
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
    ])
}

/// Devices that are up with carrier become ready: link-local (or ::1 on lo) plus
/// fe80::/64. Addresses whose DAD is switched off by now complete at once.
pub(crate) fn settle_ready(ns: &mut Ns) {
    let idxs: Vec<u32> = ns.devs.keys().copied().collect();
    for i in idxs {
        let ready = match &ns.dev(i).v6 {
            Some(v6) => v6.ready || v6.await_up,
            None => continue,
        };
        if ready || !ns.carrier(i) {
            continue;
        }
        make_ready(ns, i);
    }
}

/// IF_READY is set (NETDEV_UP or NETDEV_CHANGE with the link ready): the link-local (or
/// ::1 on lo) and fe80::/64 appear, and addresses whose DAD is off by now complete.
pub(crate) fn make_ready(ns: &mut Ns, i: u32) {
    if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
        v6.ready = true;
    }
    let d = ns.dev(i);
    let name = d.name.clone();
    if matches!(d.kind, Kind::Loopback) {
        // init_loopback: ::1/128, no route outside the local table.
        let a = Address::new(name, IpAddr::V6(Ipv6Addr::LOCALHOST), 128);
        if !has_ip(ns, i, &a.ip) {
            insert_addr(ns, i, a);
        }
    } else {
        let mut a = Address::new(name.clone(), IpAddr::V6(link_local(&d.mac)), 64);
        if dad_needed(ns, i, &a) {
            a.flags.insert(AddrFlag::Tentative);
        }
        if !has_ip(ns, i, &a.ip) {
            insert_addr(ns, i, a);
        }
        let fe80 = Prefix::new(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 64)
            .expect("valid prefix");
        routes::kernel_prefix_v6(ns, &name, fe80, None);
    }
    let pending: Vec<Address> = ns.dev(i).v6.iter().flat_map(|v| v.addrs.clone()).collect();
    let instant: Vec<IpAddr> = pending
        .iter()
        .filter(|a| a.has(AddrFlag::Tentative) && !dad_needed(ns, i, a))
        .map(|a| a.ip)
        .collect();
    clear_tentative(ns, i, |a| instant.contains(&a.ip));
}

fn has_ip(ns: &Ns, i: u32, ip: &IpAddr) -> bool {
    ns.dev(i)
        .v6
        .as_ref()
        .is_some_and(|v| v.addrs.iter().any(|a| &a.ip == ip))
}

fn clear_tentative(ns: &mut Ns, i: u32, pick: impl Fn(&Address) -> bool) {
    if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
        for a in v6.addrs.iter_mut().filter(|a| pick(a)) {
            a.flags.remove(&AddrFlag::Tentative);
        }
    }
}

/// DAD finishes (no conflicts in a simulation) on every ready device, with or without
/// carrier now: a device that lost carrier mid-DAD still completes it.
pub(crate) fn complete_dad(ns: &mut Ns) {
    let ready: Vec<u32> = ns
        .devs
        .values()
        .filter(|d| d.v6.as_ref().is_some_and(|v| v.ready))
        .map(|d| d.index)
        .collect();
    for i in ready {
        clear_tentative(ns, i, |_| true);
    }
}

/// addrconf_ifdown on admin down (keep_addr_on_down=0): every IPv6 address goes, statics
/// and link-local alike, with every IPv6 route through the device, all tables.
pub(crate) fn ifdown(ns: &mut Ns, i: u32) {
    let name = ns.name(i);
    if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
        v6.addrs.clear();
        v6.temp_parent.clear();
        v6.ready = false;
    }
    routes::flush_dev(ns, &name, Family::Inet6);
}

/// The inet6_dev goes away (MTU below 1280, device unregistered): ifdown, and the
/// sysctls with it.
pub(crate) fn disable(ns: &mut Ns, i: u32) {
    ifdown(ns, i);
    ns.dev_mut(i).v6 = None;
}

/// NETDEV_CHANGEMTU: below 1280 IPv6 is torn down; back above, it is rebuilt with
/// `default`'s sysctls, and on an up device behaves like NETDEV_UP. lo is the exception:
/// it keeps its inet6_dev (and sysctls), loses its addresses at every change below 1280,
/// and is not ready again before its next admin up, whatever its MTU. A change that
/// keeps IPv6 carries the new MTU into the IPv6 routes through the device
/// (rt6_mtu_change), before mtu6 takes it.
pub(crate) fn mtu_changed(ns: &mut Ns, i: u32) {
    let mtu = ns.dev(i).mtu;
    let has = ns.dev(i).v6.is_some();
    let lo = matches!(ns.dev(i).kind, Kind::Loopback);
    if mtu >= IPV6_MIN_MTU && has {
        let name = ns.name(i);
        let mtu6 = ns.dev(i).v6.as_ref().map_or(mtu, |v| v.mtu6);
        routes::mtu_change_v6(ns, &name, mtu6, mtu);
        if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
            v6.mtu6 = mtu;
        }
    } else if mtu < IPV6_MIN_MTU && has && lo {
        ifdown(ns, i);
        if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
            v6.await_up = true;
        }
    } else if mtu < IPV6_MIN_MTU && has {
        disable(ns, i);
    } else if mtu >= IPV6_MIN_MTU && !has {
        let conf = ns.conf_default;
        ns.dev_mut(i).v6 = Some(Inet6 {
            conf,
            ready: false,
            await_up: false,
            mtu6: mtu,
            addrs: Vec::new(),
            temp_parent: std::collections::BTreeMap::new(),
        });
        // A bridge whose last port just left gets its MTU back inside the same RTNL
        // section that dropped its carrier; addrconf reads the operstate, which linkwatch
        // has not updated yet. The same race as `bridge::carrierless_port_up`, with the
        // same knob: whether the stale "up" is seen.
        if ns.port_up_flash && ns.dev(i).up && ns.is_bridge(i) {
            make_ready(ns, i);
        }
    }
}

/// addrconf_permanent_addr on NETDEV_UP: permanent addresses (infinite valid lifetime)
/// added while the device was down get their prefix routes now; addresses with a
/// finite lifetime do not.
pub(crate) fn restore_prefix_routes(ns: &mut Ns, i: u32) {
    if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
        v6.await_up = false;
    }
    let name = ns.name(i);
    let addrs: Vec<Address> = ns.dev(i).v6.iter().flat_map(|v| v.addrs.clone()).collect();
    for a in addrs {
        if a.valid_lft.is_none() && wants_prefix_route(ns, i, &a) {
            routes::kernel_prefix_v6(ns, &name, a.prefix(), None);
        }
    }
}

pub(crate) fn wants_prefix_route(ns: &Ns, i: u32, a: &Address) -> bool {
    // lo's own ::1 has no prefix route outside the local table.
    let loopback_own = matches!(ns.dev(i).kind, Kind::Loopback) && a.scope == AddrScope::Host;
    !(a.has(AddrFlag::Noprefixroute) || loopback_own)
}

/// `Op::AwaitDad`: DAD is decided at once in the simulation (addresses added with DAD off
/// are never tentative); an address still tentative waits for time to pass, which only
/// the test moves ([`crate::SimKernel::advance_time`]): refused as "try again".
pub(crate) fn await_dad(
    ns: &Ns,
    dev: &env_qemu_core::model::IfName,
    ips: &[IpAddr],
) -> crate::error::Res {
    let i = ns.require(dev)?;
    let pending = ns
        .dev(i)
        .v6
        .iter()
        .flat_map(|v| v.addrs.iter())
        .any(|a| ips.contains(&a.ip) && a.has(AddrFlag::Tentative));
    if pending {
        return Err(crate::error::Fail::new(
            libc::EAGAIN,
            "duplicate address detection still running",
        ));
    }
    Ok(())
}
