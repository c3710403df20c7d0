//! Route validation: the checks fib_create_info (IPv4) and ip6_route_info_create (IPv6)
//! run before a route enters a table, with their errnos and extack messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use env_qemu_core::model::{Family, Route, RouteScope, RouteType, TABLE_DEFAULT, TABLE_MAIN};

use crate::error::{no_device, Fail, Res};
use crate::state::{Kind, Ns};

/// The route as the kernel stores it (IPv6 metric 0 → 1024, gateway-only routes get
/// their device), or the refusal.
pub(crate) fn validate(ns: &Ns, req: &Route) -> Res<Route> {
    if req.gateway.is_some_and(|g| Family::of(&g) != req.family())
        || req.prefsrc.is_some_and(|s| Family::of(&s) != req.family())
    {
        return Err(Fail::new(libc::EINVAL, "Invalid argument"));
    }
    match req.family() {
        Family::Inet => check_v4(ns, req.clone()),
        Family::Inet6 => check_v6(ns, req.clone()),
    }
}

fn is_reject(k: RouteType) -> bool {
    matches!(
        k,
        RouteType::Blackhole | RouteType::Unreachable | RouteType::Prohibit | RouteType::Throw
    )
}

fn num(s: RouteScope) -> u8 {
    s.to_u8()
}

fn check_v4(ns: &Ns, mut r: Route) -> Res<Route> {
    let dev = r.dev.as_ref().map(|n| ns.require(n)).transpose()?;
    let down = |i: u32| !ns.dev(i).up;
    if is_reject(r.kind) {
        if r.gateway.is_some() || dev.is_some() {
            return Err(Fail::new(
                libc::EINVAL,
                "Gateway, device and multipath can not be specified for this route type",
            ));
        }
    } else if r.scope == RouteScope::Host {
        // Host-scope routes skip the nexthop checks, including the up check.
        if r.gateway.is_some() {
            return Err(Fail::new(
                libc::EINVAL,
                "Route with host scope can not have a gateway",
            ));
        }
        dev.ok_or_else(no_device)?;
    } else if let Some(IpAddr::V4(gw)) = r.gateway {
        if r.onlink {
            let i =
                dev.ok_or_else(|| Fail::new(libc::ENODEV, "Nexthop device required for onlink"))?;
            if down(i) {
                return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
            }
            let unicast = !(gw.is_unspecified() || gw.is_multicast() || gw.is_broadcast());
            if !unicast || local_v4(ns, gw, Some(i)).is_some() {
                return Err(Fail::new(libc::EINVAL, "Nexthop has invalid gateway"));
            }
        } else {
            let i = resolve_gw_v4(ns, r.table, gw, r.scope, dev)?;
            if down(i) {
                return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
            }
            r.dev = Some(ns.name(i));
        }
    } else {
        let i = dev.ok_or_else(no_device)?;
        if r.onlink {
            return Err(Fail::new(
                libc::EINVAL,
                "Invalid flags for nexthop - PERVASIVE and ONLINK can not be set",
            ));
        }
        if down(i) {
            return Err(Fail::new(libc::ENETDOWN, "Device for nexthop is not up"));
        }
    }
    if let Some(IpAddr::V4(src)) = r.prefsrc {
        let own_local =
            r.kind == RouteType::Local && r.dst.len() == 32 && r.dst.addr() == IpAddr::V4(src);
        if !own_local && !ns.is_local_v4(src) {
            return Err(Fail::new(libc::EINVAL, "Invalid prefsrc address"));
        }
    }
    Ok(r)
}

/// What the local table says about an IPv4 address, seen through `dev` if given.
enum Local {
    /// One of our addresses (entries of down devices stay).
    Address(u32),
    /// A subnet broadcast of an up device's primary (or an explicit `brd`).
    Broadcast,
}

fn local_v4(ns: &Ns, ip: Ipv4Addr, dev: Option<u32>) -> Option<Local> {
    let ip = IpAddr::V4(ip);
    let devs = || {
        ns.devs
            .values()
            .filter(|d| dev.is_none_or(|x| x == d.index))
    };
    let addr = devs().find(|d| {
        d.v4.iter()
            .any(|a| a.ip == ip || (matches!(d.kind, Kind::Loopback) && a.prefix().contains(&ip)))
    });
    if let Some(d) = addr {
        return Some(Local::Address(d.index));
    }
    let broadcast = devs().filter(|d| d.up).any(|d| {
        d.v4.iter().any(|a| {
            a.broadcast == Some(ip)
                || (!a.secondary && a.prefix_len < 31 && subnet_broadcast(a) == ip)
        })
    });
    broadcast.then_some(Local::Broadcast)
}

fn subnet_broadcast(a: &env_qemu_core::model::Address) -> IpAddr {
    match a.ip {
        IpAddr::V4(v) => {
            let host = u32::MAX.checked_shr(u32::from(a.prefix_len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v) | host))
        }
        other => other,
    }
}

/// fib_check_nh_v4_gw: look the gateway up as a destination, accepting only routes of
/// scope link or narrower (scope + 1, at least link), through `dev` if given: the route's
/// own table first, then the policy order local, main, default. Linkdown routes count;
/// a broadcast address resolves, but to an unusable type.
fn resolve_gw_v4(
    ns: &Ns,
    table: u32,
    gw: Ipv4Addr,
    scope: RouteScope,
    dev: Option<u32>,
) -> Res<u32> {
    let min = num(scope).saturating_add(1).max(num(RouteScope::Link));
    let ip = IpAddr::V4(gw);
    let in_table = |t: u32| {
        ns.routes
            .iter()
            .filter(|r| r.table == t && r.family() == Family::Inet && r.dst.contains(&ip))
            .filter(|r| {
                matches!(r.kind, RouteType::Unicast | RouteType::Local) && num(r.scope) >= min
            })
            .filter_map(|r| Some((r.dst.len(), ns.idx(r.dev.as_ref()?)?)))
            .filter(|(_, i)| dev.is_none_or(|d| d == *i))
            .max_by_key(|(len, _)| *len)
            .map(|(_, i)| i)
    };
    let invalid = |errno| Fail::new(errno, "Nexthop has invalid gateway");
    if table != TABLE_MAIN {
        if let Some(i) = in_table(table) {
            return Ok(i);
        }
    }
    match local_v4(ns, gw, dev) {
        Some(Local::Address(i)) => Ok(i),
        Some(Local::Broadcast) => Err(invalid(libc::EINVAL)),
        None => in_table(TABLE_MAIN)
            .or_else(|| in_table(TABLE_DEFAULT))
            .ok_or_else(|| invalid(libc::ENETUNREACH)),
    }
}

fn check_v6(ns: &Ns, mut r: Route) -> Res<Route> {
    // IPv6 routes have neither scope nor tos; metric 0 means the default, 1024.
    r.scope = RouteScope::Universe;
    r.tos = 0;
    if r.metric == 0 {
        r.metric = 1024;
    }
    let mut dev = r.dev.as_ref().map(|n| ns.require(n)).transpose()?;
    if let Some(i) = dev {
        // No inet6_dev (MTU below 1280).
        if ns.dev(i).v6.is_none() {
            return Err(no_device());
        }
    }
    if is_reject(r.kind) {
        // Reject routes are parked on the loopback device.
        r.dev = Some(ns.loopback());
        return Ok(r);
    }
    let down = |i: u32| !ns.dev(i).up;
    if r.onlink {
        let i = dev.ok_or_else(|| Fail::new(libc::ENODEV, "Nexthop device required for onlink"))?;
        if down(i) {
            return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
        }
    }
    if let Some(IpAddr::V6(gw)) = r.gateway {
        let local = |i: u32| ns.has_v6(gw, i, false);
        if dev.is_some_and(local) {
            return Err(Fail::new(
                libc::EINVAL,
                "Gateway can not be a local address",
            ));
        }
        let link_local = (gw.segments()[0] & 0xffc0) == 0xfe80;
        if !link_local {
            if gw.is_multicast() || gw.is_unspecified() {
                return Err(Fail::new(libc::EINVAL, "Invalid gateway address"));
            }
            if r.onlink {
                if onlink_conflict(ns, r.table, gw, dev) {
                    return Err(Fail::new(
                        libc::EINVAL,
                        "Nexthop has invalid gateway or device mismatch",
                    ));
                }
            } else {
                let Some(i) = resolve_gw_v6(ns, r.table, gw, dev) else {
                    return Err(Fail::new(libc::EHOSTUNREACH, "No route to host"));
                };
                dev = Some(i);
            }
        }
        let Some(i) = dev else {
            return Err(Fail::new(libc::EINVAL, "Egress device not specified"));
        };
        if matches!(ns.dev(i).kind, Kind::Loopback) {
            return Err(Fail::new(
                libc::EINVAL,
                "Egress device can not be loopback device for this route",
            ));
        }
        if local(i) {
            return Err(Fail::new(
                libc::EINVAL,
                "Gateway can not be a local address",
            ));
        }
        r.dev = Some(ns.name(i));
    }
    let i = dev.ok_or_else(no_device)?;
    if down(i) {
        return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
    }
    if let Some(IpAddr::V6(src)) = r.prefsrc {
        // Tentative addresses are not usable as source yet.
        if !ns.has_v6(src, i, true) {
            return Err(Fail::new(libc::EINVAL, "Invalid source address"));
        }
    }
    Ok(r)
}

/// The most specific IPv6 route to `gw` in `table` (then main), through `dev` if given.
fn best_v6(ns: &Ns, table: u32, gw: Ipv6Addr, dev: Option<u32>) -> Option<&Route> {
    let ip = IpAddr::V6(gw);
    let lookup = |t: u32| {
        ns.routes
            .iter()
            .filter(|r| r.table == t && r.family() == Family::Inet6 && r.dst.contains(&ip))
            .filter(|r| dev.is_none_or(|d| r.dev.as_ref().and_then(|n| ns.idx(n)) == Some(d)))
            .min_by_key(|r| (std::cmp::Reverse(r.dst.len()), r.metric))
    };
    lookup(table).or_else(|| lookup(TABLE_MAIN))
}

/// ip6_route_check_nh: the gateway must be on-link through a gateway-less, non-reject
/// route (of `dev` if given).
fn resolve_gw_v6(ns: &Ns, table: u32, gw: Ipv6Addr, dev: Option<u32>) -> Option<u32> {
    let r = best_v6(ns, table, gw, dev)?;
    if r.gateway.is_some() || is_reject(r.kind) {
        return None;
    }
    ns.idx(r.dev.as_ref()?)
}

/// ip6_route_check_nh_onlink: `onlink` is refused when a more specific unicast route
/// already places the gateway behind another device.
fn onlink_conflict(ns: &Ns, table: u32, gw: Ipv6Addr, dev: Option<u32>) -> bool {
    let Some(r) = best_v6(ns, table, gw, None) else {
        return false;
    };
    !is_reject(r.kind)
        && !r.dst.is_default()
        && (r.kind != RouteType::Unicast || r.dev.as_ref().and_then(|n| ns.idx(n)) != dev)
}
