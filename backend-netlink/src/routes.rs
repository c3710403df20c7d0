//! `ip route add|replace|del` over rtnetlink, every field copied from the [`Route`].
//!
//! rtnetlink's `RouteMessageBuilder` defaults to proto static, scope universe, table
//! main; `ip route add` uses proto boot. A restore must reproduce the dumped route
//! exactly, so the message is built here field by field: table (RTA_TABLE, u32, plus the
//! 8-bit header field when it fits), protocol, scope, type, tos, RTA_PRIORITY,
//! RTA_PREFSRC, RTNH_F_ONLINK, gateway and output device; then RTA_PREF, RTA_EXPIRES and
//! RTA_METRICS when the route has them (IPv4 routes too: the kernel ignores pref and
//! expires there, as it does for `ip route add … pref high expires 600`).

use std::net::IpAddr;

use env_qemu_core::model::{rtax, Family, Route, RouteMetrics, RoutePref};
use rtnetlink::packet_core::DefaultNla;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RoutePreference, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::errors::Failure;
use crate::request::{execute, ifindex, Netlink, CREATE_APPEND, CREATE_EXCL, CREATE_REPLACE};

/// `ip route add ROUTE` (NLM_F_CREATE | NLM_F_EXCL): EEXIST if a route with the same
/// key (table, dst, tos, metric) exists.
pub(crate) async fn add(nl: &Netlink, route: &Route) -> Result<(), Failure> {
    let message = message(nl, route).await?;
    execute(nl, RouteNetlinkMessage::NewRoute(message), CREATE_EXCL).await?;
    Ok(())
}

/// `ip route replace ROUTE` (NLM_F_CREATE | NLM_F_REPLACE): swaps the route with the
/// same key in place, or adds it.
pub(crate) async fn replace(nl: &Netlink, route: &Route) -> Result<(), Failure> {
    let message = message(nl, route).await?;
    execute(nl, RouteNetlinkMessage::NewRoute(message), CREATE_REPLACE).await?;
    Ok(())
}

/// `ip route append ROUTE` (NLM_F_CREATE | NLM_F_APPEND): added after the routes with the
/// same key; EEXIST only for an identical route. IPv6 gateway routes become multipath
/// siblings of the existing one.
pub(crate) async fn append(nl: &Netlink, route: &Route) -> Result<(), Failure> {
    let message = message(nl, route).await?;
    execute(nl, RouteNetlinkMessage::NewRoute(message), CREATE_APPEND).await?;
    Ok(())
}

/// `ip route del ROUTE`. The kernel deletes the first route of that key whose other
/// given attributes (type, scope, protocol, prefsrc, gateway, device) match; sending
/// them all, as dumped, deletes exactly this route. ESRCH when there is none.
pub(crate) async fn delete(nl: &Netlink, route: &Route) -> Result<(), Failure> {
    let message = message(nl, route).await?;
    execute(nl, RouteNetlinkMessage::DelRoute(message), 0).await?;
    Ok(())
}

/// The RTM_*ROUTE message that describes `route` exactly.
async fn message(nl: &Netlink, route: &Route) -> Result<RouteMessage, Failure> {
    let mut header = RouteHeader {
        address_family: match route.family() {
            Family::Inet => AddressFamily::Inet,
            Family::Inet6 => AddressFamily::Inet6,
        },
        destination_prefix_length: route.dst.len(),
        tos: route.tos,
        table: u8::try_from(route.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::from(route.protocol.to_u8()),
        scope: RouteScope::from(route.scope.to_u8()),
        kind: RouteType::from(route.kind.to_u8()),
        ..RouteHeader::default()
    };
    if route.onlink {
        header.flags |= RouteFlags::Onlink;
    }

    let mut attributes = vec![RouteAttribute::Table(route.table)];
    if !route.dst.is_default() {
        attributes.push(RouteAttribute::Destination(address(route.dst.addr())));
    }
    if let Some(gw) = route.gateway {
        attributes.push(RouteAttribute::Gateway(address(gw)));
    }
    if let Some(dev) = &route.dev {
        attributes.push(RouteAttribute::Oif(ifindex(nl, dev.as_str()).await?));
    }
    // Sent even when 0: for IPv6 the kernel turns 0 into 1024, as `ip -6 route add` does.
    attributes.push(RouteAttribute::Priority(route.metric));
    if let Some(src) = route.prefsrc {
        attributes.push(RouteAttribute::PrefSource(address(src)));
    }
    // Medium is what the kernel assumes without the attribute; `ip` sends it only when
    // asked, and so does this.
    if route.pref != RoutePref::Medium {
        attributes.push(RouteAttribute::Preference(RoutePreference::from(
            route.pref.to_u8(),
        )));
    }
    if let Some(e) = route.expires {
        attributes.push(RouteAttribute::Expires(e));
    }
    if !route.metrics.is_empty() {
        attributes.push(RouteAttribute::Metrics(metrics(&route.metrics)));
    }

    let mut message = RouteMessage::default();
    message.header = header;
    message.attributes = attributes;
    Ok(message)
}

/// RTA_METRICS: one u32 per numeric metric, RTAX_CC_ALGO as a name. A delete carries
/// them too: IPv4 deletes only the route whose metrics equal the request's
/// (fib_metrics_match), IPv6 ignores them.
pub(crate) fn metrics(m: &RouteMetrics) -> Vec<RouteMetric> {
    let mut out: Vec<RouteMetric> = m
        .numeric()
        .into_iter()
        .map(|(k, v)| match k {
            rtax::LOCK => RouteMetric::Lock(v),
            rtax::MTU => RouteMetric::Mtu(v),
            rtax::WINDOW => RouteMetric::Window(v),
            rtax::RTT => RouteMetric::Rtt(v),
            rtax::RTTVAR => RouteMetric::RttVar(v),
            rtax::SSTHRESH => RouteMetric::SsThresh(v),
            rtax::CWND => RouteMetric::Cwnd(v),
            rtax::ADVMSS => RouteMetric::Advmss(v),
            rtax::REORDERING => RouteMetric::Reordering(v),
            rtax::HOPLIMIT => RouteMetric::Hoplimit(v),
            rtax::INITCWND => RouteMetric::InitCwnd(v),
            rtax::FEATURES => RouteMetric::Features(v),
            rtax::RTO_MIN => RouteMetric::RtoMin(v),
            rtax::INITRWND => RouteMetric::InitRwnd(v),
            rtax::QUICKACK => RouteMetric::QuickAck(v),
            rtax::FASTOPEN_NO_COOKIE => RouteMetric::FastopenNoCookie(v),
            n => RouteMetric::Other(DefaultNla::new(n, v.to_ne_bytes().to_vec())),
        })
        .collect();
    if let Some(cc) = &m.congctl {
        out.push(RouteMetric::CcAlgo(cc.clone()));
    }
    out
}

fn address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}
