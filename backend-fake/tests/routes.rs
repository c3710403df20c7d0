//! Routes: identity keys, replace, delete matching, validation, dump order.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{RouteProtocol, RouteScope, RouteType};
use env_qemu_core::{ErrorKind, Op};

/// eth0 192.0.2.1/24 + 2001:db8:1::1/64, veth va (up, no carrier) 198.51.100.1/24 +
/// 2001:db8:2::1/64, veth ve (down) 203.0.113.1/24.
fn world() -> SimKernel {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(nodad(addr("eth0", "2001:db8:1::1/64"))),
            veth("va", "vb"),
            up("va"),
            add(addr("va", "198.51.100.1/24")),
            add(nodad(addr("va", "2001:db8:2::1/64"))),
            veth("ve", "vf"),
            add(addr("ve", "203.0.113.1/24")),
        ],
    );
    sim
}

#[test]
fn an_ipv4_key_is_table_dst_tos_metric_whatever_gateway_or_protocol() {
    let sim = world();
    let r = route("10.0.0.0/8", None, Some("eth0")).table(100).metric(5);
    build(&sim, &[radd(r.clone())]);
    for dup in [
        route("10.0.0.0/8", None, Some("va")).table(100).metric(5),
        r.proto(RouteProtocol::Static),
    ] {
        let e = refused(&sim, &radd(dup));
        assert_eq!(
            (e.kind, e.errno),
            (ErrorKind::AlreadyExists, Some(libc::EEXIST))
        );
    }
    let mut tos = route("10.0.0.0/8", None, Some("va")).table(100).metric(5);
    tos.tos = 0x10;
    build(
        &sim,
        &[
            radd(route("10.0.0.0/8", None, Some("va")).table(100).metric(6)),
            radd(tos),
        ],
    );
    let t100: Vec<String> = routes(&sim.net())
        .into_iter()
        .filter(|r| r.contains("table 100"))
        .collect();
    assert_eq!(
        t100,
        [
            "10.0.0.0/8 tos 0x10 dev va table 100 proto boot scope link metric 5",
            "10.0.0.0/8 dev eth0 table 100 proto boot scope link metric 5",
            "10.0.0.0/8 dev va table 100 proto boot scope link metric 6",
        ]
    );
}

#[test]
fn an_ipv6_key_is_table_dst_metric_and_metric_0_means_1024() {
    let sim = world();
    build(
        &sim,
        &[radd(
            route("2001:db8:b::/64", Some("2001:db8:1::9"), Some("eth0")).metric(0),
        )],
    );
    assert!(has_route(
        &sim.net(),
        "2001:db8:b::/64 via 2001:db8:1::9 dev eth0 proto boot scope global metric 1024"
    ));
    for gw in ["2001:db8:1::9", "2001:db8:1::8"] {
        let e = refused(
            &sim,
            &radd(route("2001:db8:b::/64", Some(gw), Some("eth0"))),
        );
        assert_eq!(e.errno, Some(libc::EEXIST), "{gw}");
    }
    build(
        &sim,
        &[radd(
            route("2001:db8:b::/64", Some("2001:db8:1::8"), Some("eth0")).metric(5),
        )],
    );
}

#[test]
fn replace_swaps_the_first_route_of_the_key_in_place_or_adds() {
    let sim = world();
    let r = |gw: &str, m: u32| route("10.0.0.0/8", Some(gw), Some("eth0")).metric(m);
    build(&sim, &[radd(r("192.0.2.9", 10)), radd(r("192.0.2.9", 20))]);
    build(
        &sim,
        &[Op::RouteReplace {
            route: r("192.0.2.7", 10).proto(RouteProtocol::Static),
        }],
    );
    build(
        &sim,
        &[Op::RouteReplace {
            route: route("10.0.0.0/8", None, Some("va")).metric(30),
        }],
    );
    // Replacing with an identical route changes nothing.
    build(
        &sim,
        &[Op::RouteReplace {
            route: r("192.0.2.9", 20),
        }],
    );
    let ten: Vec<String> = routes(&sim.net())
        .into_iter()
        .filter(|r| r.starts_with("10."))
        .collect();
    assert_eq!(
        ten,
        [
            "10.0.0.0/8 via 192.0.2.7 dev eth0 proto static scope global metric 10",
            "10.0.0.0/8 via 192.0.2.9 dev eth0 proto boot scope global metric 20",
            "10.0.0.0/8 dev va proto boot scope link metric 30",
        ]
    );
    build(
        &sim,
        &[Op::RouteReplace {
            route: route("2001:db8:c::/64", Some("2001:db8:2::8"), Some("va")),
        }],
    );
    build(
        &sim,
        &[Op::RouteReplace {
            route: route("2001:db8:c::/64", Some("2001:db8:2::9"), Some("va")),
        }],
    );
    let c: Vec<String> = routes(&sim.net())
        .into_iter()
        .filter(|r| r.starts_with("2001:db8:c::"))
        .collect();
    assert_eq!(
        c,
        ["2001:db8:c::/64 via 2001:db8:2::9 dev va proto boot scope global metric 1024"]
    );
}

#[test]
fn delete_matches_every_attribute_given_and_otherwise_is_esrch() {
    let sim = world();
    let r = route("10.0.0.0/8", Some("192.0.2.9"), Some("eth0"))
        .metric(10)
        .proto(RouteProtocol::Static);
    build(&sim, &[radd(r.clone())]);
    let mut wrong_scope = r.clone();
    wrong_scope.scope = RouteScope::Link;
    let misses = [
        route("10.0.0.0/8", Some("192.0.2.8"), None),
        r.clone().metric(11),
        r.clone().proto(RouteProtocol::Boot),
        r.table(100),
        route("10.0.0.0/8", None, Some("va")),
        wrong_scope,
    ];
    for m in misses {
        let e = refused(&sim, &rdel(m));
        assert_eq!((e.kind, e.errno), (ErrorKind::NotFound, Some(libc::ESRCH)));
    }
    // What `ip route del` sends: scope nowhere, proto unspec, metric 0 match anything.
    let mut wildcard = route("10.0.0.0/8", None, None);
    (wildcard.scope, wildcard.protocol) = (RouteScope::Nowhere, RouteProtocol::Unspec);
    build(&sim, &[rdel(wildcard.clone())]);
    assert_eq!(refused(&sim, &rdel(wildcard)).errno, Some(libc::ESRCH));
}

#[test]
fn the_kernel_refuses_routes_it_cannot_use() {
    let sim = world();
    let cases = [
        (route("10.0.0.0/8", None, Some("ve")), libc::ENETDOWN),
        (
            route("10.0.0.0/8", Some("203.0.113.9"), Some("ve")),
            libc::ENETUNREACH,
        ),
        (
            route("10.0.0.0/8", Some("192.0.2.9"), Some("va")),
            libc::ENETUNREACH,
        ),
        (
            route("10.0.0.0/8", Some("10.9.9.9"), None),
            libc::ENETUNREACH,
        ),
        (route("10.0.0.0/8", None, Some("nothere")), libc::ENODEV),
        (
            route("10.0.0.0/8", None, Some("eth0")).src(ip("203.0.113.2")),
            libc::EINVAL,
        ),
        (route("2001:db8:a::/64", None, Some("ve")), libc::ENETDOWN),
        (
            route("2001:db8:a::/64", Some("2001:db8:1::9"), Some("va")),
            libc::EHOSTUNREACH,
        ),
        (
            route("2001:db8:a::/64", Some("2001:db8:99::9"), Some("eth0")),
            libc::EHOSTUNREACH,
        ),
        (
            route("2001:db8:a::/64", Some("2001:db8:1::1"), Some("eth0")),
            libc::EINVAL,
        ),
        (
            route("2001:db8:a::/64", Some("fe80::1"), None),
            libc::EINVAL,
        ),
    ];
    for (r, want) in cases {
        let e = refused(&sim, &radd(r.clone()));
        assert_eq!(e.errno, Some(want), "{}: {e}", r.ip_args());
    }
    let e = refused(
        &sim,
        &radd(route("10.0.0.0/8", Some("203.0.113.9"), Some("ve"))),
    );
    assert_eq!(e.detail.as_deref(), Some("Nexthop has invalid gateway"));
    assert_eq!(e.kind, ErrorKind::Unreachable);
}

#[test]
fn accepted_routes_include_onlink_gateways_linkdown_devices_and_own_sources() {
    let sim = world();
    let mut onlink = route("10.3.0.0/16", Some("203.0.113.200"), Some("eth0"));
    onlink.onlink = true;
    build(
        &sim,
        &[
            radd(onlink),
            // No carrier on va: the route is just linkdown.
            radd(route("10.4.0.0/16", Some("198.51.100.9"), Some("va"))),
            // The source may be an address of a down device.
            radd(route("10.5.0.0/16", None, Some("eth0")).src(ip("203.0.113.1"))),
            radd(route("10.6.0.0/16", Some("192.0.2.9"), Some("eth0")).table(100)),
            radd(route("2001:db8:d::/64", Some("fe80::1"), Some("eth0"))),
            radd(route("2001:db8:e::/64", None, Some("eth0")).src(ip("2001:db8:2::1"))),
        ],
    );
}

#[test]
fn a_gateway_alone_finds_its_device() {
    let sim = world();
    build(
        &sim,
        &[
            radd(route("10.0.0.0/8", Some("192.0.2.9"), None)),
            radd(route("2001:db8:f::/64", Some("2001:db8:2::9"), None)),
        ],
    );
    let net = sim.net();
    assert!(has_route(
        &net,
        "10.0.0.0/8 via 192.0.2.9 dev eth0 proto boot scope global metric 0"
    ));
    assert!(has_route(
        &net,
        "2001:db8:f::/64 via 2001:db8:2::9 dev va proto boot scope global metric 1024"
    ));
}

#[test]
fn a_tentative_ipv6_address_is_not_a_usable_source() {
    let sim = world();
    build(&sim, &[add(addr("eth0", "2001:db8:1::5/64"))]);
    let r = route("2001:db8:f::/64", None, Some("eth0")).src(ip("2001:db8:1::5"));
    assert_eq!(refused(&sim, &radd(r.clone())).errno, Some(libc::EINVAL));
    sim.advance_time();
    build(&sim, &[radd(r)]);
}

#[test]
fn blackholes_take_no_device_in_ipv4_and_sit_on_lo_in_ipv6() {
    let sim = world();
    let mut bh4 = route("10.13.0.0/16", None, None);
    bh4.kind = RouteType::Blackhole;
    let mut bh6 = route("2001:db8:f:5::/64", None, None);
    bh6.kind = RouteType::Blackhole;
    build(&sim, &[radd(bh4.clone()), radd(bh6)]);
    let net = sim.net();
    assert!(has_route(
        &net,
        "blackhole 10.13.0.0/16 proto boot scope link metric 0"
    ));
    assert!(has_route(
        &net,
        "blackhole 2001:db8:f:5::/64 dev lo proto boot scope global metric 1024"
    ));
    bh4.dev = Some(n("eth0"));
    bh4.dst = pfx("10.14.0.0/16");
    assert_eq!(refused(&sim, &radd(bh4)).errno, Some(libc::EINVAL));
}

#[test]
fn the_dump_walks_tables_like_the_kernel() {
    let sim = world();
    build(
        &sim,
        &[
            radd(route("default", Some("192.0.2.254"), Some("eth0"))),
            radd(route("192.0.2.0/25", None, Some("eth0"))),
            radd(route("10.0.0.0/8", None, Some("eth0")).table(100)),
            radd(route("::/0", Some("2001:db8:1::fe"), Some("eth0"))),
            radd(route("2001:db8:1::/48", None, Some("eth0"))),
            radd(route("2001:db8:9::/64", None, Some("eth0")).table(100)),
        ],
    );
    let order: Vec<String> = sim
        .net()
        .routes
        .iter()
        .map(|r| format!("{} {} {}", r.table, r.dst, r.dev.as_ref().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            "100 10.0.0.0/8 eth0",
            "254 default eth0",
            "254 192.0.2.0/25 eth0",
            "254 192.0.2.0/24 eth0",
            "254 198.51.100.0/24 va",
            "100 2001:db8:9::/64 eth0",
            "254 2001:db8:1::/64 eth0",
            "254 2001:db8:1::/48 eth0",
            "254 2001:db8:2::/64 va",
            "254 fe80::/64 eth0",
            "254 default eth0",
        ]
    );
}
