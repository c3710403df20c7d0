//! The values operations are drawn from: link creations with explicit MACs, addresses
//! and routes over the documentation ranges. Addresses and routes are drawn on
//! [`PLACEHOLDER`]; the step that uses them puts them on a device (see `super::live`).

use std::net::IpAddr;

use env_qemu_core::model::{
    rtax, AddrFlag, AddrScope, Address, Family, Route, RouteMetrics, RoutePref, RouteProtocol,
    RouteScope, RouteType, TABLE_MAIN,
};
use env_qemu_integration::conformance::ops::*;
use proptest::prelude::*;
use proptest::sample::select;

use super::gen::Step;

/// The device drawn addresses and routes carry until a step puts them on one.
pub const PLACEHOLDER: &str = "v0";

pub const MACS: [&str; 5] = [
    "02:00:00:00:00:10",
    "02:00:00:00:00:20",
    "02:00:00:00:00:30",
    "02:00:00:00:00:40",
    "02:00:00:00:01:00",
];
/// Multicast and all-zero: refused as device MACs.
pub const BAD_MACS: [&str; 2] = ["01:00:5e:00:00:01", "00:00:00:00:00:00"];

const V4: [&str; 7] = [
    "192.0.2.1/24",
    "192.0.2.2/24",
    "192.0.2.129/25",
    "198.51.100.1/24",
    "198.51.100.2/24",
    "203.0.113.1/24",
    "192.0.2.3/32",
];
const V6: [&str; 6] = [
    "2001:db8::1/64",
    "2001:db8::2/64",
    "2001:db8::3/64",
    "2001:db8::1/56",
    "2001:db8:1::1/64",
    "fe80::1/64",
];

pub fn dev() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => select(vec!["v0", "v1", "v2", "v3", "br0", "br1", "tap0"]),
        1 => Just("lo"),
    ]
}

/// Neighbours: LAN routers and hosts of the pool's subnets.
pub fn neighbour_ip() -> impl Strategy<Value = std::net::IpAddr> {
    select(vec![
        "192.0.2.254",
        "192.0.2.7",
        "198.51.100.1",
        "2001:db8::fe",
        "2001:db8:1::7",
    ])
    .prop_map(|s| s.parse().expect("neighbour address"))
}

pub fn mac_s() -> impl Strategy<Value = &'static str> {
    select(MACS.to_vec())
}

pub fn create() -> impl Strategy<Value = Step> {
    prop_oneof![4 => create_veth(), 4 => create_bridge(), 2 => create_tap()]
}

pub fn create_veth() -> impl Strategy<Value = Step> {
    let pair = prop_oneof![
        4 => Just(("v0", "v1")),
        4 => Just(("v2", "v3")),
        1 => Just(("v1", "v2")),
        1 => Just(("v3", "v3")),
    ];
    (pair, mac_s(), mac_s())
        .prop_map(|((a, b), ma, mb)| vec![veth(a, b), set_mac(a, ma), set_mac(b, mb)])
}

pub fn create_bridge() -> impl Strategy<Value = Step> {
    // STP on only with the kernel's default delay: ports then listen/learn for 30 s, far
    // longer than a case, so no timer fires on the real kernel mid-case.
    let stp = prop_oneof![4 => Just((false, 0)), 1 => Just((false, 1500)), 1 => Just((true, 1500))];
    (
        select(vec!["br0", "br1"]),
        proptest::option::weighted(0.5, mac_s()),
        prop_oneof![6 => Just(None), 1 => Just(Some(1400u32)), 1 => Just(Some(9000))],
        stp,
    )
        .prop_map(|(name, m, mtu, (stp, delay))| vec![bridge(name, m, mtu, stp, delay)])
}

pub fn create_tap() -> impl Strategy<Value = Step> {
    let id = || proptest::option::weighted(0.3, Just(1000u32));
    (id(), id(), mac_s())
        .prop_map(|(owner, group, m)| vec![tap("tap0", owner, group), set_mac("tap0", m)])
}

/// IPv4 broadcast of `a`'s subnet (`brd +`).
pub fn plus_broadcast(a: &Address) -> Option<IpAddr> {
    match a.ip {
        IpAddr::V4(v) if a.prefix_len < 31 => {
            let host = u32::MAX >> a.prefix_len;
            Some(IpAddr::V4((u32::from(v) | host).into()))
        }
        _ => None,
    }
}

pub fn address() -> impl Strategy<Value = Address> {
    let ip = prop_oneof![3 => select(V4.to_vec()), 2 => select(V6.to_vec())];
    let scope = prop_oneof![
        12 => Just(None),
        1 => Just(Some(AddrScope::Link)),
        1 => Just(Some(AddrScope::Host)),
    ];
    // Finite and permanent mixed on one prefix: how the kernel's prefix route expires
    // depends on which of them come and go.
    let lifetimes = prop_oneof![
        8 => Just(None),
        2 => Just(Some((3600u32, 1800u32))),
        1 => Just(Some((600, 0))),
        1 => Just(Some((300, 300))),
        1 => Just(Some((7200, 7200))),
    ];
    (
        ip,
        scope,
        proptest::bool::weighted(0.3),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.5),
        lifetimes,
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(ip, scope, brd, nopr, nodad, lft, mngtmp)| {
            let mut a = addr(PLACEHOLDER, ip);
            if let Some(s) = scope {
                a.scope = s;
            }
            if brd {
                a.broadcast = plus_broadcast(&a);
            }
            if nopr {
                a.flags.insert(AddrFlag::Noprefixroute);
            }
            if nodad && a.family() == Family::Inet6 {
                a.flags.insert(AddrFlag::Nodad);
            }
            // (use_tempaddr is 0 in a fresh namespace: no temporaries follow.)
            if mngtmp && a.family() == Family::Inet6 {
                a.flags.insert(AddrFlag::Mngtmpaddr);
            }
            if let Some((v, p)) = lft {
                a.valid_lft = Some(v);
                a.preferred_lft = Some(p);
            }
            a
        })
}

pub fn route4() -> impl Strategy<Value = Route> {
    let dst = select(vec![
        "default",
        "203.0.113.0/24",
        "198.51.100.0/25",
        "192.0.2.0/24",
        "192.0.2.128/26",
    ]);
    let gw = proptest::option::weighted(
        0.6,
        select(vec![
            "192.0.2.254",
            "198.51.100.254",
            "203.0.113.254",
            "192.0.2.1",
        ]),
    );
    let src = proptest::option::weighted(
        0.25,
        select(vec!["192.0.2.1", "198.51.100.1", "203.0.113.1"]),
    );
    let scope = prop_oneof![
        8 => Just(None),
        1 => Just(Some(RouteScope::Link)),
        1 => Just(Some(RouteScope::Universe)),
        1 => Just(Some(RouteScope::Host)),
    ];
    (
        (dst, gw, proptest::bool::weighted(0.7)),
        common(),
        (src, scope, proptest::bool::weighted(0.1), select(vec![0u8, 0, 0, 0, 0x10])),
        prop_oneof![18 => Just(RouteType::Unicast), 1 => Just(RouteType::Blackhole), 1 => Just(RouteType::Unreachable)],
        attributes(),
    )
        .prop_map(|((dst, gw, d), (table, metric, proto), (src, scope, onlink, tos), kind, attrs)| {
            let mut r = route(dst);
            if let Some(g) = gw {
                r = r.via(g);
            }
            if d {
                r = r.dev(PLACEHOLDER);
            }
            with_attributes(finish(r, table, metric, proto, kind, src, scope, onlink, tos), attrs)
        })
}

pub fn route6() -> impl Strategy<Value = Route> {
    let dst = select(vec![
        "::/0",
        "2001:db8:f::/64",
        "2001:db8::/64",
        "2001:db8:1::/64",
    ]);
    let gw = proptest::option::weighted(
        0.6,
        select(vec![
            "2001:db8::fe",
            "2001:db8:1::fe",
            "fe80::fe",
            "2001:db8::1",
        ]),
    );
    let src = proptest::option::weighted(0.15, select(vec!["2001:db8::1", "2001:db8:1::1"]));
    (
        (dst, gw, proptest::bool::weighted(0.7)),
        common(),
        (src, proptest::bool::weighted(0.05)),
        prop_oneof![18 => Just(RouteType::Unicast), 1 => Just(RouteType::Blackhole), 1 => Just(RouteType::Prohibit)],
        attributes(),
    )
        .prop_map(|((dst, gw, d), (table, metric, proto), (src, onlink), kind, attrs)| {
            let mut r = route(dst);
            if let Some(g) = gw {
                r = r.via(g);
            }
            if d {
                r = r.dev(PLACEHOLDER);
            }
            with_attributes(finish(r, table, metric, proto, kind, src, None, onlink, 0), attrs)
        })
}

/// Router preference, expiry and metrics: what RAs and DHCP clients give routes. Mostly
/// none; IPv4 gets them too (the kernel drops preference and expiry there). Out of
/// range values (hoplimit 300, mtu 70000) are clamped by the kernel, and an IPv4 delete
/// carrying them then matches nothing. Expiries are long: a case never sees one run out
/// (the real kernel's garbage collection would delete the route at its own moment).
pub type Attributes = (RoutePref, Option<u32>, RouteMetrics);

pub fn attributes() -> impl Strategy<Value = Attributes> {
    let pref = prop_oneof![
        6 => Just(RoutePref::Medium),
        1 => Just(RoutePref::Low),
        1 => Just(RoutePref::High),
    ];
    let expires = prop_oneof![6 => Just(None), 1 => Just(Some(600u32)), 1 => Just(Some(3600))];
    let one = |vals: Vec<u32>| proptest::option::weighted(0.15, select(vals));
    let metrics = (
        one(vec![64, 255, 300]),
        one(vec![1400, 1280, 70000]),
        one(vec![1360]),
        one(vec![10]),
    )
        .prop_map(|(hoplimit, mtu, advmss, initcwnd)| {
            let mut m = RouteMetrics::default();
            for (k, v) in [
                (rtax::HOPLIMIT, hoplimit),
                (rtax::MTU, mtu),
                (rtax::ADVMSS, advmss),
                (rtax::INITCWND, initcwnd),
            ] {
                if let Some(v) = v {
                    m.set(k, v);
                }
            }
            m
        });
    (pref, expires, metrics)
}

fn with_attributes(r: Route, (pref, expires, metrics): Attributes) -> Route {
    let mut r = r.pref(pref).metrics(metrics);
    r.expires = expires;
    r
}

/// Table, metric and protocol, shared by both families. Proto kernel is what the
/// kernel's own prefix routes carry: deleting those is interesting too.
fn common() -> impl Strategy<Value = (u32, u32, RouteProtocol)> {
    (
        prop_oneof![3 => Just(TABLE_MAIN), 1 => Just(100u32)],
        select(vec![0u32, 0, 100, 256, 1024]),
        prop_oneof![
            7 => Just(RouteProtocol::Boot),
            2 => Just(RouteProtocol::Static),
            1 => Just(RouteProtocol::Kernel),
        ],
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    mut r: Route,
    table: u32,
    metric: u32,
    proto: RouteProtocol,
    kind: RouteType,
    src: Option<&str>,
    scope: Option<RouteScope>,
    onlink: bool,
    tos: u8,
) -> Route {
    r = r.in_table(table).with_metric(metric).with_proto(proto);
    if let Some(s) = src {
        r = r.with_src(s);
    }
    if let Some(s) = scope {
        r = r.with_scope(s);
    }
    if onlink {
        r = r.onlink();
    }
    r.tos = tos;
    if kind != RouteType::Unicast {
        // Reject routes take neither gateway nor device (`ip route add blackhole DST`).
        r = r.with_type(kind);
        r.gateway = None;
        r.dev = None;
        r.onlink = false;
    }
    r
}

pub fn any_route() -> impl Strategy<Value = Route> {
    prop_oneof![3 => route4(), 1 => route6()]
}
