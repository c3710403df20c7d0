//! Route validation: the checks fib_create_info (IPv4) and ip6_route_info_create (IPv6)
//! run before a route enters a table, with their errnos and extack messages.

use std::net::{IpAddr, Ipv6Addr};

use env_qemu_core::model::{
    rtax, Family, Route, RouteMetrics, RoutePref, RouteScope, RouteType, TABLE_DEFAULT,
    TABLE_LOCAL, TABLE_MAIN,
};

use crate::error::{no_device, Fail, Res};
use crate::fib4;
use crate::state::{Kind, Ns};

/// The route as the kernel stores it (IPv6 metric 0 → 1024, gateway-only routes get
/// their device, metrics clamped, IPv4 without preference or expiry), or the refusal.
pub(crate) fn validate(ns: &Ns, req: &Route) -> Res<Route> {
    if req.gateway.is_some_and(|g| Family::of(&g) != req.family())
        || req.prefsrc.is_some_and(|s| Family::of(&s) != req.family())
    {
        return Err(Fail::new(libc::EINVAL, "Invalid argument"));
    }
    let mut r = req.clone();
    r.metrics = metrics(&req.metrics)?;
    match req.family() {
        Family::Inet => {
            // rtm_to_fib_config has no use for RTA_PREF or RTA_EXPIRES: accepted, dropped
            // (measured with `ip route add … pref high expires 600`).
            r.pref = RoutePref::Medium;
            r.expires = None;
            check_v4(ns, r)
        }
        Family::Inet6 => {
            r.expires = expiry_v6(req.expires);
            check_v6(ns, r)
        }
    }
}

/// rtm_to_fib6_config: RTA_EXPIRES 0xffffffff is infinite (addrconf_timeout_fixup), any
/// other value finite, 0 included (already expired: in the table until the garbage
/// collection). The dump reports at most INT_MAX clock ticks, 21474836 s (measured:
/// `expires 4294967294` reads back as that).
fn expiry_v6(expires: Option<u32>) -> Option<u32> {
    const MAX_REPORTED: u32 = (i32::MAX / 100) as u32;
    match expires {
        Some(u32::MAX) | None => None,
        Some(e) => Some(e.min(MAX_REPORTED)),
    }
}

/// RTAX_FEATURE_MASK: ECN, SACK, TIMESTAMP, ALLFRAG, TCP_USEC_TS.
const FEATURE_MASK: u32 = 0x1f;

/// ip_metrics_convert, shared by both families: advmss at most 65535 − 40, mtu at most
/// 65535 − 15, hoplimit at most 255; unknown feature bits and unknown congestion control
/// algorithms are refused; 0 is not kept.
fn metrics(req: &RouteMetrics) -> Res<RouteMetrics> {
    let mut m = RouteMetrics::default();
    for (k, v) in req.numeric() {
        if k > rtax::FASTOPEN_NO_COOKIE {
            return Err(Fail::new(libc::EINVAL, "Invalid argument"));
        }
        let v = match k {
            rtax::ADVMSS => v.min(65535 - 40),
            rtax::MTU => v.min(65535 - 15),
            rtax::HOPLIMIT => v.min(255),
            rtax::FEATURES if v & !FEATURE_MASK != 0 => {
                return Err(Fail::new(
                    libc::EINVAL,
                    "Unknown flag set in feature mask in metrics attribute",
                ))
            }
            _ => v,
        };
        m.set(k, v);
    }
    if let Some(cc) = &req.congctl {
        // reno is built into every kernel, cubic into most; the others depend on the
        // modules a machine has (this one: bbr).
        if !matches!(cc.as_str(), "reno" | "cubic") {
            return Err(Fail::new(libc::EINVAL, "Unknown tcp congestion algorithm"));
        }
        m.congctl = Some(cc.clone());
    }
    Ok(m)
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
        // fib_create_info jumps straight to linking the route: no scope, nexthop or
        // prefsrc checks for reject types.
        return Ok(r);
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
            // fib_check_nh_v4_gw: the scope, the device, then the gateway's type.
            if num(r.scope) >= num(RouteScope::Link) {
                return Err(Fail::new(libc::EINVAL, "Nexthop has invalid scope"));
            }
            let i =
                dev.ok_or_else(|| Fail::new(libc::ENODEV, "Nexthop device required for onlink"))?;
            if down(i) {
                return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
            }
            // inet_addr_type_dev_table: the device only picks the table; the type is
            // whatever the gateway falls in, on any device.
            if fib4::addr_type(ns, gw, TABLE_LOCAL) != RouteType::Unicast {
                return Err(Fail::new(libc::EINVAL, "Nexthop has invalid gateway"));
            }
        } else {
            let i = fib4::resolve_gw(ns, r.table, gw, r.scope, dev)?;
            if down(i) {
                return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
            }
            r.dev = Some(ns.name(i));
        }
    } else {
        // fib_check_nh_nongw refuses the flag before it looks for the device.
        if r.onlink {
            return Err(Fail::new(
                libc::EINVAL,
                "Invalid flags for nexthop - PERVASIVE and ONLINK can not be set",
            ));
        }
        let i = dev.ok_or_else(no_device)?;
        // inetdev_by_index: no in_device below MTU 68.
        if !ns.has_inet4(i) {
            return Err(no_device());
        }
        if down(i) {
            return Err(Fail::new(libc::ENETDOWN, "Device for nexthop is not up"));
        }
    }
    if let Some(IpAddr::V4(src)) = r.prefsrc {
        // fib_valid_prefsrc: the local table must call it local (any address inside
        // the local prefix route of an address on lo too), unless the route is the
        // address's own local route.
        let own_local =
            r.kind == RouteType::Local && r.dst.len() == 32 && r.dst.addr() == IpAddr::V4(src);
        if !own_local && !fib4::valid_prefsrc(ns, src, r.table) {
            return Err(Fail::new(libc::EINVAL, "Invalid prefsrc address"));
        }
    }
    Ok(r)
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
    let down = |i: u32| !ns.dev(i).up;
    // fib6_nh_init checks `onlink` before it parks a reject route.
    if r.onlink {
        let i = dev.ok_or_else(|| Fail::new(libc::ENODEV, "Nexthop device required for onlink"))?;
        if down(i) {
            return Err(Fail::new(libc::ENETDOWN, "Nexthop device is not up"));
        }
    }
    if is_reject(r.kind) {
        // Reject routes are parked on the loopback device, and their source is still
        // checked, against lo (ip6_route_info_create after fib6_nh_init).
        let lo = ns.loopback();
        let lo_i = ns.require(&lo)?;
        check_src_v6(ns, &r, lo_i)?;
        r.dev = Some(lo);
        return Ok(reject_flags(r));
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
                if onlink_conflict(ns, gw, dev) {
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
    check_src_v6(ns, &r, i)?;
    if matches!(ns.dev(i).kind, Kind::Loopback) {
        return Ok(reject_flags(r));
    }
    Ok(r)
}

/// ip6_route_info_create makes a reject route, and any route through lo, a reject
/// route internally by assigning its flags (RTF_REJECT | RTF_NONEXTHOP), which wipes
/// the RTF_EXPIRES and RTF_PREF bits set before: such a route never expires and reads
/// `pref medium` (measured: `blackhole … expires 600 pref high`, `… dev lo pref high`).
/// Its metrics stay.
fn reject_flags(mut r: Route) -> Route {
    r.expires = None;
    r.pref = RoutePref::Medium;
    r
}

/// ipv6_chk_addr(src, dev): on `dev`, or a global address anywhere. Tentative addresses
/// are not usable as source yet.
fn check_src_v6(ns: &Ns, r: &Route, dev: u32) -> Res {
    match r.prefsrc {
        Some(IpAddr::V6(src)) if !ns.has_v6(src, dev, true) => {
            Err(Fail::new(libc::EINVAL, "Invalid source address"))
        }
        _ => Ok(()),
    }
}

/// fib6_table_lookup in one table: the most specific route to `gw`, through `dev` if
/// given (RT6_LOOKUP_F_IFACE backtracks to shorter prefixes until one matches); among
/// routes of one prefix, the one through `prefer` (a non-strict oif), then the lowest
/// metric.
fn best_in(
    ns: &Ns,
    table: u32,
    gw: Ipv6Addr,
    dev: Option<u32>,
    prefer: Option<u32>,
) -> Option<&Route> {
    let ip = IpAddr::V6(gw);
    let via = |r: &Route| r.dev.as_ref().and_then(|n| ns.idx(n));
    ns.routes
        .iter()
        .filter(|r| r.table == table && r.family() == Family::Inet6 && r.dst.contains(&ip))
        .filter(|r| dev.is_none_or(|d| via(r) == Some(d)))
        .min_by_key(|r| {
            let preferred = prefer.is_some() && via(r) == prefer;
            (std::cmp::Reverse(r.dst.len()), !preferred, r.metric)
        })
}

/// RTF_REJECT as fib6_is_reject sets it: the reject types, and any route through the
/// loopback device, which the kernel turns into a reject route internally although the
/// dump still calls it unicast (prefix routes of addresses on lo, `dev lo` routes).
fn rejects(ns: &Ns, r: &Route) -> bool {
    is_reject(r.kind)
        || r.dev
            .as_ref()
            .and_then(|n| ns.idx(n))
            .is_some_and(|i| matches!(ns.dev(i).kind, Kind::Loopback))
}

/// The device holding `gw` as one of its addresses: the local table's entry for it.
fn local_v6(ns: &Ns, gw: Ipv6Addr) -> Option<u32> {
    let ip = IpAddr::V6(gw);
    ns.devs
        .values()
        .find(|d| d.v6.iter().flat_map(|v| v.addrs.iter()).any(|a| a.ip == ip))
        .map(|d| d.index)
}

/// ip6_route_check_nh: the gateway must be on-link through a gateway-less, non-reject
/// route (of `dev` if given). The route's own table first; if that gives nothing usable,
/// a full lookup through the policy rules: local, main, default.
fn resolve_gw_v6(ns: &Ns, table: u32, gw: Ipv6Addr, dev: Option<u32>) -> Option<u32> {
    let usable = |r: &Route| r.gateway.is_none() && !rejects(ns, r);
    let via = |r: &Route| r.dev.as_ref().and_then(|n| ns.idx(n));
    if let Some(r) = best_in(ns, table, gw, dev, None).filter(|r| usable(r)) {
        return via(r);
    }
    if let Some(i) = local_v6(ns, gw).filter(|i| dev.is_none_or(|d| d == *i)) {
        return Some(i);
    }
    let r = best_in(ns, TABLE_MAIN, gw, dev, None)
        .or_else(|| best_in(ns, TABLE_DEFAULT, gw, dev, None))?;
    if usable(r) {
        via(r)
    } else {
        None
    }
}

/// ip6_route_check_nh_onlink: `onlink` is refused when the main table (whatever the
/// route's own table) has a more specific non-reject route placing the gateway behind
/// another device, or one that is not unicast.
fn onlink_conflict(ns: &Ns, gw: Ipv6Addr, dev: Option<u32>) -> bool {
    let Some(r) = best_in(ns, TABLE_MAIN, gw, None, dev) else {
        return false;
    };
    !rejects(ns, r)
        && !r.dst.is_default()
        && (r.kind != RouteType::Unicast || r.dev.as_ref().and_then(|n| ns.idx(n)) != dev)
}
