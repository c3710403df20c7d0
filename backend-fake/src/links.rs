//! `ip link add|del|set`: device lifecycle and what admin up/down, MTU and MAC changes
//! drag along.

use std::net::{IpAddr, Ipv4Addr};

use env_qemu_core::model::{AddrScope, Address, Family, IfName, MacAddr, TapInfo};
use env_qemu_core::{LinkChange, LinkSpec};

use crate::error::{exists, Fail, Res};
use crate::state::{valid_ether, Bridge, Kind, Ns};
use crate::{addresses, bridge, ipv6, routes};

pub(crate) fn add(ns: &mut Ns, spec: &LinkSpec) -> Res {
    match spec {
        LinkSpec::Bridge {
            name,
            mac,
            mtu,
            stp,
            forward_delay,
        } => {
            ns.ensure_free(name)?;
            let mtu = mtu.unwrap_or(1500);
            check_mtu(BRIDGE_MTU, mtu)?;
            if let Some(m) = mac {
                if !valid_ether(m) {
                    return Err(Fail::new(
                        libc::EADDRNOTAVAIL,
                        "Cannot assign requested address",
                    ));
                }
            }
            // Attributes apply in order: forward_delay while STP is still off (no range
            // check), then enabling STP clamps it into [2 s, 30 s].
            let forward_delay = if *stp {
                (*forward_delay).clamp(200, 3000)
            } else {
                *forward_delay
            };
            let b = Bridge {
                stp: *stp,
                forward_delay,
                mac_fixed: mac.is_some(),
                mtu_user_set: false,
                // A MAC given at creation goes through br_stp_change_bridge_id, and
                // enabling STP through br_stp_start; both run a port-state selection,
                // so the portless bridge loses its carrier.
                id: mac.unwrap_or(MacAddr::ZERO),
                lower: true,
                recalc: mac.is_some() || *stp,
            };
            let dev_mac = match mac {
                Some(m) => *m,
                None => ns.random_mac(),
            };
            ns.insert_dev(name.clone(), Kind::Bridge(b), dev_mac, mtu);
        }
        LinkSpec::Tap { name, owner, group } => {
            ns.ensure_free(name)?;
            let info = TapInfo {
                owner: *owner,
                group: *group,
                persist: true,
            };
            let mac = ns.random_mac();
            ns.insert_dev(
                name.clone(),
                Kind::Tap {
                    info,
                    reader: false,
                },
                mac,
                1500,
            );
        }
        LinkSpec::Veth { name, peer } => {
            ns.ensure_free(name)?;
            ns.ensure_free(peer)?;
            if name == peer {
                return Err(exists());
            }
            // veth_newlink registers the peer first: it gets the lower ifindex.
            let (pm, nm) = (ns.random_mac(), ns.random_mac());
            let p = ns.insert_dev(peer.clone(), Kind::Veth { peer: 0 }, pm, 1500);
            let n = ns.insert_dev(name.clone(), Kind::Veth { peer: p }, nm, 1500);
            ns.dev_mut(p).kind = Kind::Veth { peer: n };
        }
    }
    Ok(())
}

pub(crate) fn del(ns: &mut Ns, name: &IfName) -> Res {
    let i = ns.require(name)?;
    if matches!(ns.dev(i).kind, Kind::Loopback) {
        return Err(Fail::new(libc::EOPNOTSUPP, "Operation not supported"));
    }
    unregister(ns, i);
    Ok(())
}

/// unregister_netdevice: close (with all of admin down's effects), leave or dissolve the
/// bridge, drop every address as if deleted one by one, flush routes through it. A veth
/// takes its peer along.
pub(crate) fn unregister(ns: &mut Ns, i: u32) {
    let mut victims = vec![i];
    if let Kind::Veth { peer } = ns.dev(i).kind {
        victims.push(peer);
    }
    for &v in &victims {
        bring_down(ns, v);
    }
    for v in victims {
        if ns.dev(v).master.is_some() {
            bridge::release(ns, v);
        }
        if ns.is_bridge(v) {
            for p in ns.ports(v) {
                bridge::release(ns, p);
            }
        }
        drop_ipv4(ns, v);
        ipv6::disable(ns, v);
        ns.devs.remove(&v);
    }
}

/// inetdev_destroy: every IPv4 address goes as if deleted one by one (their `src`
/// routes in main with them), then every IPv4 route through the device.
fn drop_ipv4(ns: &mut Ns, i: u32) {
    let name = ns.name(i);
    let gone: Vec<IpAddr> = ns.dev_mut(i).v4.drain(..).map(|a| a.ip).collect();
    for ip in gone {
        if let IpAddr::V4(ip4) = ip {
            if !ns.is_local_v4(ip4) {
                routes::flush_prefsrc_main(ns, ip);
            }
        }
    }
    routes::flush_dev(ns, &name, Family::Inet);
}

pub(crate) fn set(ns: &mut Ns, name: &IfName, change: &LinkChange) -> Res {
    let i = ns.require(name)?;
    match change {
        LinkChange::Up => bring_up(ns, i),
        LinkChange::Down => bring_down(ns, i),
        LinkChange::Master(m) => return bridge::set_master(ns, i, m),
        LinkChange::NoMaster => {
            if ns.dev(i).master.is_some() {
                bridge::release(ns, i);
            }
        }
        LinkChange::Mtu(m) => return set_mtu_user(ns, i, *m),
        LinkChange::Mac(m) => return set_mac(ns, i, *m),
    }
    Ok(())
}

pub(crate) fn bring_up(ns: &mut Ns, i: u32) {
    if ns.dev(i).up {
        return;
    }
    ns.dev_mut(i).up = true;
    if matches!(ns.dev(i).kind, Kind::Loopback) && ns.has_inet4(i) {
        // inetdev_event(NETDEV_UP) gives lo its 127.0.0.1/8 back if it lost it, through
        // inet_insert_ifa: a secondary if another 127/8 address is primary, nothing if
        // it is there, and any refusal ignored.
        let name = ns.name(i);
        let mut a = Address::new(name, IpAddr::V4(Ipv4Addr::LOCALHOST), 8);
        a.scope = AddrScope::Host;
        let _ = addresses::add_v4(ns, i, a);
    }
    // fib_netdev_event(NETDEV_UP): prefix routes of the primaries, nothing else.
    let prims: Vec<Address> = ns
        .dev(i)
        .v4
        .iter()
        .filter(|a| !a.secondary)
        .cloned()
        .collect();
    for a in &prims {
        routes::kernel_prefix_v4(ns, i, a, true);
    }
    ipv6::restore_prefix_routes(ns, i);
    if matches!(ns.dev(i).kind, Kind::Tap { .. } | Kind::Veth { .. }) {
        bridge::carrierless_port_up(ns, i);
    }
}

pub(crate) fn bring_down(ns: &mut Ns, i: u32) {
    if !ns.dev(i).up {
        return;
    }
    ns.dev_mut(i).up = false;
    // IPv4 addresses stay (their local-table entries too); every route through the
    // device goes, in every table, but scope-host ones.
    let name = ns.name(i);
    routes::flush_dev_down_v4(ns, &name);
    ipv6::ifdown(ns, i);
}

const BRIDGE_MTU: (u32, u32) = (68, 65535);

/// (min_mtu, max_mtu) of each driver.
pub(crate) fn mtu_range(kind: &Kind) -> (u32, u32) {
    match kind {
        Kind::Loopback => (0, u32::MAX),
        Kind::Ethernet { .. } => (68, 9216),
        Kind::Wireless { .. } => (256, 2304),
        Kind::Veth { .. } => (68, 65535),
        Kind::Bridge(_) => BRIDGE_MTU,
        // MAX_MTU minus the Ethernet header.
        Kind::Tap { .. } => (68, 65521),
    }
}

pub(crate) fn check_mtu((min, max): (u32, u32), mtu: u32) -> Res {
    if mtu < min {
        return Err(Fail::new(libc::EINVAL, "mtu less than device minimum"));
    }
    if mtu > max {
        return Err(Fail::new(libc::EINVAL, "mtu greater than device maximum"));
    }
    Ok(())
}

fn set_mtu_user(ns: &mut Ns, i: u32, mtu: u32) -> Res {
    check_mtu(mtu_range(&ns.dev(i).kind), mtu)?;
    // dev_set_mtu returns early on an unchanged MTU: the driver is not called, so a
    // bridge is not pinned either.
    if ns.dev(i).mtu == mtu {
        return Ok(());
    }
    if let Some(b) = ns.bridge_mut(i) {
        b.mtu_user_set = true;
    }
    set_mtu(ns, i, mtu);
    Ok(())
}

/// An MTU change and its ripples: IPv4 gone below 68 (lo only gets there), IPv6 on/off
/// around 1280, the master's auto MTU.
pub(crate) fn set_mtu(ns: &mut Ns, i: u32, mtu: u32) {
    if ns.dev(i).mtu == mtu {
        return;
    }
    let had_inet4 = ns.has_inet4(i);
    ns.dev_mut(i).mtu = mtu;
    if had_inet4 && !ns.has_inet4(i) {
        drop_ipv4(ns, i);
    }
    ipv6::mtu_changed(ns, i);
    if let Some(br) = ns.dev(i).master {
        bridge::mtu_auto(ns, br);
    }
}

fn set_mac(ns: &mut Ns, i: u32, mac: MacAddr) -> Res {
    // dev_set_mac_address skips the driver for an unchanged MAC but still marks it
    // user-set (addr_assign_type 3), which fixes a bridge's MAC without a recalculation,
    // and still sends NETDEV_CHANGEADDR, which flushes the device's neighbour entries.
    if ns.dev(i).mac == mac {
        if let Some(b) = ns.bridge_mut(i) {
            b.mac_fixed = true;
        }
        crate::neigh::flush(ns, i);
        return Ok(());
    }
    if !valid_ether(&mac) {
        return Err(Fail::new(
            libc::EADDRNOTAVAIL,
            "Cannot assign requested address",
        ));
    }
    ns.dev_mut(i).mac = mac;
    if let Some(b) = ns.bridge_mut(i) {
        b.mac_fixed = true;
        bridge::change_id(ns, i, mac);
    }
    if let Some(br) = ns.dev(i).master {
        bridge::recalc_id(ns, br);
    }
    // The IPv6 link-local is not regenerated: it keeps the MAC it was made from.
    Ok(())
}
