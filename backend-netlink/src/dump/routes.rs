//! RTM_NEWROUTE messages → [`Route`] (`ip route show table all`, minus table local).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use env_qemu_core::model::{
    rtax, IfName, Prefix, Route, RouteMetrics, RoutePref, RouteProtocol, RouteScope, RouteType,
    TABLE_LOCAL,
};
use rtnetlink::packet_core::Nla;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHopFlags,
};
use rtnetlink::packet_route::AddressFamily;

use super::Stale;

/// Converts one route; `None` for what the model leaves out:
/// - the local table (the kernel derives it from the addresses);
/// - cloned/cache entries (RTM_F_CLONED: PMTU exceptions, redirects);
/// - families other than IPv4/IPv6 (IPMR, MPLS…).
///
/// `Err(Stale)` when the route goes through a device missing from `names`: it was
/// created after the link dump, and the caller dumps again.
///
/// Lossy, because the model has one gateway and one device per route: a multipath route
/// (RTA_MULTIPATH) is represented by its first next hop (its gateway, device and
/// `onlink`); a route using a nexthop object (RTA_NH_ID) has neither gateway nor
/// device. Source-specific IPv6 routes (`from`) and RTA_VIA are not represented.
///
/// RTA_PREF, RTA_METRICS and the expiry are: the kernel reports the remaining lifetime
/// of an expiring (IPv6) route in RTA_CACHEINFO's `rta_expires`, in clock ticks
/// (USER_HZ, 100 a second), signed; `ip route` prints it divided by 100, truncated, and
/// so does this. A route past its expiry stays in the table, with a negative remainder,
/// until the IPv6 garbage collection (net.ipv6.route.gc_interval, 30 s) takes it: it
/// reads as `Some(0)`.
pub(crate) fn convert(
    msg: &RouteMessage,
    names: &HashMap<u32, IfName>,
) -> Result<Option<Route>, Stale> {
    let h = &msg.header;
    if h.flags.contains(RouteFlags::Cloned) {
        return Ok(None);
    }
    let unspecified: IpAddr = match h.address_family {
        AddressFamily::Inet => Ipv4Addr::UNSPECIFIED.into(),
        AddressFamily::Inet6 => Ipv6Addr::UNSPECIFIED.into(),
        _ => return Ok(None),
    };
    let mut table = u32::from(h.table);
    let mut dst = unspecified;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let mut prefsrc = None;
    let mut onlink = h.flags.contains(RouteFlags::Onlink);
    let mut pref = RoutePref::Medium;
    let mut expires = None;
    let mut metrics = RouteMetrics::default();
    for attr in &msg.attributes {
        match attr {
            // RTA_TABLE is authoritative: the header byte cannot hold tables ≥ 256.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip(a).unwrap_or(unspecified),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::PrefSource(a) => prefsrc = ip(a),
            RouteAttribute::Preference(p) => pref = RoutePref::from_u8(u8::from(*p)),
            RouteAttribute::CacheInfo(c) if c.expires != 0 => {
                expires = Some(remaining_secs(c.expires));
            }
            RouteAttribute::Metrics(m) => metrics = convert_metrics(m),
            RouteAttribute::MultiPath(hops) => {
                if let Some(first) = hops.first() {
                    oif = Some(first.interface_index).filter(|i| *i != 0);
                    onlink |= first.flags.contains(RouteNextHopFlags::Onlink);
                    gateway = first.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip(g),
                        _ => None,
                    });
                }
            }
            _ => {}
        }
    }
    if table == TABLE_LOCAL {
        return Ok(None);
    }
    let dev = match oif {
        Some(i) => Some(names.get(&i).ok_or(Stale(i))?.clone()),
        None => None,
    };
    let Some(dst) = Prefix::new(dst, h.destination_prefix_length) else {
        return Ok(None);
    };
    Ok(Some(Route {
        table,
        dst,
        kind: RouteType::from_u8(u8::from(h.kind)),
        gateway,
        dev,
        metric,
        protocol: RouteProtocol::from_u8(u8::from(h.protocol)),
        scope: RouteScope::from_u8(u8::from(h.scope)),
        prefsrc,
        onlink,
        tos: h.tos,
        pref,
        expires,
        metrics,
    }))
}

/// USER_HZ: the unit of `rta_expires` (jiffies_to_clock_t).
const USER_HZ: i32 = 100;

/// `rta_expires` (signed clock ticks) → whole seconds left, as `ip` prints them; past
/// the expiry, 0.
fn remaining_secs(ticks: u32) -> u32 {
    // The field is an `__s32`: the kernel's count-down goes negative past the expiry.
    let ticks = ticks as i32;
    u32::try_from(ticks / USER_HZ).unwrap_or(0)
}

pub(crate) fn convert_metrics(all: &[RouteMetric]) -> RouteMetrics {
    let mut m = RouteMetrics::default();
    for metric in all {
        let (k, v) = match metric {
            RouteMetric::CcAlgo(name) => {
                m.congctl = Some(name.clone());
                continue;
            }
            RouteMetric::Lock(v) => (rtax::LOCK, *v),
            RouteMetric::Mtu(v) => (rtax::MTU, *v),
            RouteMetric::Window(v) => (rtax::WINDOW, *v),
            RouteMetric::Rtt(v) => (rtax::RTT, *v),
            RouteMetric::RttVar(v) => (rtax::RTTVAR, *v),
            RouteMetric::SsThresh(v) => (rtax::SSTHRESH, *v),
            RouteMetric::Cwnd(v) => (rtax::CWND, *v),
            RouteMetric::Advmss(v) => (rtax::ADVMSS, *v),
            RouteMetric::Reordering(v) => (rtax::REORDERING, *v),
            RouteMetric::Hoplimit(v) => (rtax::HOPLIMIT, *v),
            RouteMetric::InitCwnd(v) => (rtax::INITCWND, *v),
            RouteMetric::Features(v) => (rtax::FEATURES, *v),
            RouteMetric::RtoMin(v) => (rtax::RTO_MIN, *v),
            RouteMetric::InitRwnd(v) => (rtax::INITRWND, *v),
            RouteMetric::QuickAck(v) => (rtax::QUICKACK, *v),
            RouteMetric::FastopenNoCookie(v) => (rtax::FASTOPEN_NO_COOKIE, *v),
            RouteMetric::Other(nla) => {
                let mut buf = vec![0u8; nla.value_len()];
                nla.emit_value(&mut buf);
                match <[u8; 4]>::try_from(buf.as_slice()) {
                    Ok(b) => (nla.kind(), u32::from_ne_bytes(b)),
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        m.set(k, v);
    }
    m
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_ticks_become_seconds_like_ip_prints_them() {
        assert_eq!(remaining_secs(59_999), 599);
        assert_eq!(remaining_secs(100), 1);
        assert_eq!(remaining_secs(99), 0);
        // Expired, awaiting garbage collection.
        assert_eq!(remaining_secs((-2300i32) as u32), 0);
    }

    #[test]
    fn metrics_round_trip_through_the_wire_types() {
        let mut m = RouteMetrics::default();
        for (k, v) in [
            (1u16, 4u32),
            (2, 1400),
            (4, 20),
            (8, 1360),
            (10, 64),
            (12, 1),
            (18, 7),
        ] {
            m.set(k, v);
        }
        m.congctl = Some("reno".into());
        assert_eq!(convert_metrics(&crate::routes::metrics(&m)), m);
    }
}
