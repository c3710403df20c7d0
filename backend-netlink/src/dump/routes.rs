//! RTM_NEWROUTE messages → [`Route`] (`ip route show table all`, minus table local).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use env_qemu_core::model::{
    IfName, Prefix, Route, RouteProtocol, RouteScope, RouteType, TABLE_LOCAL,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteNextHopFlags,
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
/// device. Source-specific IPv6 routes (`from`), RTA_VIA, RTA_METRICS (mtu, advmss…),
/// IPv6 router preference and expiry are not represented.
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
    for attr in &msg.attributes {
        match attr {
            // RTA_TABLE is authoritative: the header byte cannot hold tables ≥ 256.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip(a).unwrap_or(unspecified),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::PrefSource(a) => prefsrc = ip(a),
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
    }))
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}
