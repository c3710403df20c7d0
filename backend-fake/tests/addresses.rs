//! Addresses: keys, primaries and secondaries, promotion, and the routes that follow.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{AddrScope, Knob, SysctlKey};
use env_qemu_core::{ErrorKind, Op};

const PREFIX_1: &str = "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1 metric 0";

fn v4_routes(sim: &SimKernel) -> Vec<String> {
    sim.net()
        .routes
        .iter()
        .filter(|r| r.dst.family() == env_qemu_core::model::Family::Inet)
        .map(|r| r.ip_args())
        .collect()
}

#[test]
fn a_second_address_of_a_subnet_is_secondary_and_listed_after_the_primaries() {
    let sim = with_nic();
    let mut link_scoped = addr("eth0", "203.0.113.1/24");
    link_scoped.scope = AddrScope::Link;
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "192.0.2.2/24")),
            add(addr("eth0", "198.51.100.1/24")),
            add(addr("eth0", "192.0.2.1/25")),
            add(link_scoped),
        ],
    );
    assert_eq!(
        addrs(&sim.net(), "eth0")[..5],
        [
            "203.0.113.1/24",
            "192.0.2.1/24",
            "198.51.100.1/24",
            "192.0.2.1/25",
            "192.0.2.2/24 secondary"
        ]
    );
}

#[test]
fn ipv4_duplicates_are_keyed_by_address_and_length_ipv6_by_address_alone() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(nodad(addr("eth0", "2001:db8::1/64"))),
        ],
    );
    let e = refused(&sim, &add(addr("eth0", "192.0.2.1/24")));
    assert_eq!(
        (e.kind, e.errno),
        (ErrorKind::AlreadyExists, Some(libc::EEXIST))
    );
    assert_eq!(e.object, "address 192.0.2.1/24 on eth0");
    build(&sim, &[add(addr("eth0", "192.0.2.1/25"))]);
    assert_eq!(
        refused(&sim, &add(addr("eth0", "2001:db8::1/80"))).errno,
        Some(libc::EEXIST)
    );
    // Another scope inside an existing subnet is refused.
    let mut other = addr("eth0", "192.0.2.3/24");
    other.scope = AddrScope::Link;
    assert_eq!(refused(&sim, &add(other)).errno, Some(libc::EINVAL));
}

#[test]
fn only_a_primary_on_an_up_device_gets_a_prefix_route() {
    let sim = with_nic();
    build(&sim, &[veth("va", "vb")]);
    let mut nopr = addr("eth0", "198.51.100.1/24");
    nopr.flags
        .insert(env_qemu_core::model::AddrFlag::Noprefixroute);
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "192.0.2.2/24")),
            add(addr("eth0", "203.0.113.9/32")),
            add(nopr),
            add(addr("va", "203.0.113.1/24")),
        ],
    );
    assert_eq!(v4_routes(&sim), [PREFIX_1]);
    build(&sim, &[up("va")]);
    assert!(v4_routes(&sim).contains(
        &"203.0.113.0/24 dev va proto kernel scope link src 203.0.113.1 metric 0".to_string()
    ));
}

#[test]
fn the_same_subnet_on_two_devices_gives_two_prefix_routes() {
    let sim = with_nic();
    build(
        &sim,
        &[
            veth("va", "vb"),
            up("va"),
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("va", "192.0.2.1/24")),
        ],
    );
    assert_eq!(
        v4_routes(&sim),
        [
            PREFIX_1,
            "192.0.2.0/24 dev va proto kernel scope link src 192.0.2.1 metric 0"
        ]
    );
}

fn numbered() -> SimKernel {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "192.0.2.2/24")),
            add(addr("eth0", "192.0.2.3/24")),
            add(addr("eth0", "198.51.100.1/24")),
            radd(route("default", Some("192.0.2.254"), Some("eth0")).table(100)),
            radd(route("203.0.113.0/24", Some("192.0.2.200"), Some("eth0"))),
            radd(route("203.0.113.0/25", None, Some("eth0")).src(ip("192.0.2.2"))),
            radd(route("203.0.113.128/25", None, Some("eth0")).src(ip("192.0.2.1"))),
            radd(
                route("203.0.113.64/26", None, Some("eth0"))
                    .src(ip("192.0.2.2"))
                    .table(100),
            ),
        ],
    );
    sim
}

#[test]
fn deleting_a_secondary_takes_only_main_table_routes_using_it_as_source() {
    let sim = numbered();
    build(&sim, &[del(addr("eth0", "192.0.2.2/24"))]);
    assert_eq!(
        addrs(&sim.net(), "eth0")[..3],
        ["192.0.2.1/24", "198.51.100.1/24", "192.0.2.3/24 secondary"]
    );
    assert_eq!(
        v4_routes(&sim),
        [
            "default via 192.0.2.254 dev eth0 table 100 proto boot scope global metric 0",
            // Other tables keep theirs, stale: fib_sync_down_addr only looks at main.
            "203.0.113.64/26 dev eth0 table 100 proto boot scope link src 192.0.2.2 metric 0",
            PREFIX_1,
            "198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1 metric 0",
            "203.0.113.0/24 via 192.0.2.200 dev eth0 proto boot scope global metric 0",
            "203.0.113.128/25 dev eth0 proto boot scope link src 192.0.2.1 metric 0",
        ]
    );
}

#[test]
fn deleting_a_primary_takes_its_secondaries_but_not_the_gateway_routes() {
    let sim = numbered();
    build(&sim, &[del(addr("eth0", "192.0.2.1/24"))]);
    assert_eq!(addrs(&sim.net(), "eth0")[..1], ["198.51.100.1/24"]);
    assert_eq!(
        v4_routes(&sim),
        [
            "default via 192.0.2.254 dev eth0 table 100 proto boot scope global metric 0",
            "203.0.113.64/26 dev eth0 table 100 proto boot scope link src 192.0.2.2 metric 0",
            "198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1 metric 0",
            // Stale: its subnet is gone, the kernel does not re-check it.
            "203.0.113.0/24 via 192.0.2.200 dev eth0 proto boot scope global metric 0",
        ]
    );
}

#[test]
fn with_promote_secondaries_a_secondary_takes_over() {
    let sim = numbered();
    sim.set_promote_secondaries(true);
    build(&sim, &[del(addr("eth0", "192.0.2.1/24"))]);
    assert_eq!(
        addrs(&sim.net(), "eth0")[..3],
        ["198.51.100.1/24", "192.0.2.2/24", "192.0.2.3/24 secondary"]
    );
    assert_eq!(
        v4_routes(&sim),
        [
            "default via 192.0.2.254 dev eth0 table 100 proto boot scope global metric 0",
            "203.0.113.64/26 dev eth0 table 100 proto boot scope link src 192.0.2.2 metric 0",
            "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 metric 0",
            "198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1 metric 0",
            "203.0.113.0/25 dev eth0 proto boot scope link src 192.0.2.2 metric 0",
            "203.0.113.0/24 via 192.0.2.200 dev eth0 proto boot scope global metric 0",
        ]
    );
}

#[test]
fn deleting_the_last_ipv4_address_flushes_every_ipv4_route_of_the_device_in_every_table() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(nodad(addr("eth0", "2001:db8::1/64"))),
            radd(route("default", Some("192.0.2.254"), Some("eth0")).table(100)),
            radd(route("198.51.100.0/24", None, Some("eth0")).table(200)),
            radd(route("::/0", Some("2001:db8::fe"), Some("eth0"))),
        ],
    );
    build(&sim, &[del(addr("eth0", "192.0.2.1/24"))]);
    assert!(v4_routes(&sim).is_empty(), "{:?}", v4_routes(&sim));
    assert!(has_route(
        &sim.net(),
        "default via 2001:db8::fe dev eth0 proto boot scope global metric 1024"
    ));
}

#[test]
fn deleting_a_missing_address_is_eaddrnotavail_and_the_length_must_match() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(nodad(addr("eth0", "2001:db8::1/64"))),
        ],
    );
    for a in [
        addr("eth0", "192.0.2.1/25"),
        addr("eth0", "192.0.2.9/24"),
        addr("eth0", "2001:db8::1/65"),
    ] {
        let e = refused(&sim, &del(a));
        assert_eq!(
            (e.kind, e.errno),
            (ErrorKind::NotFound, Some(libc::EADDRNOTAVAIL))
        );
    }
    assert_eq!(
        refused(&sim, &del(addr("nothere", "192.0.2.1/24"))).errno,
        Some(libc::ENODEV)
    );
}

#[test]
fn ipv6_addresses_are_tentative_unless_nodad_or_accept_dad_is_0() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "2001:db8::1/64")),
            add(nodad(addr("eth0", "2001:db8::2/64"))),
        ],
    );
    let key = SysctlKey::new(&n("eth0"), Knob::Ipv6AcceptDad);
    build(
        &sim,
        &[
            Op::SysctlSet {
                key,
                value: "0".into(),
            },
            add(addr("eth0", "2001:db8::3/64")),
        ],
    );
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        [
            "2001:db8::3/64",
            "2001:db8::2/64 nodad",
            "2001:db8::1/64 tentative",
            "fe80::5054:ff:fe00:1/64 tentative"
        ]
    );
    sim.advance_time();
    assert!(sim
        .net()
        .addresses
        .iter()
        .all(|a| !a.has(env_qemu_core::model::AddrFlag::Tentative)));
}

#[test]
fn an_ipv6_prefix_route_goes_with_the_last_permanent_address_of_its_prefix() {
    let sim = with_nic();
    let mut dynamic = nodad(addr("eth0", "2001:db8:2::1/64"));
    (dynamic.valid_lft, dynamic.preferred_lft) = (Some(100), Some(0));
    build(
        &sim,
        &[
            add(nodad(addr("eth0", "2001:db8:1::1/64"))),
            add(nodad(addr("eth0", "2001:db8:1::2/64"))),
            add(nodad(addr("eth0", "2001:db8:3::1/128"))),
            add(dynamic.clone()),
            radd(route("::/0", Some("2001:db8:1::fe"), Some("eth0"))),
            radd(route("2001:db8:9::/64", None, Some("eth0")).src(ip("2001:db8:1::1"))),
        ],
    );
    assert!(addrs(&sim.net(), "eth0").contains(&"2001:db8:2::1/64 nodad deprecated".to_string()));
    let prefix = |p: &str| format!("{p} dev eth0 proto kernel scope global metric 256");
    assert!(
        has_route(&sim.net(), &prefix("2001:db8:3::1")),
        "a /128 has its route too"
    );
    build(&sim, &[del(addr("eth0", "2001:db8:1::1/64"))]);
    let net = sim.net();
    assert!(
        has_route(&net, &prefix("2001:db8:1::/64")),
        "still used by ::2"
    );
    assert!(
        has_route(
            &net,
            "2001:db8:9::/64 dev eth0 proto boot scope global metric 1024"
        ),
        "loses its source"
    );
    build(&sim, &[del(addr("eth0", "2001:db8:1::2/64")), del(dynamic)]);
    let net = sim.net();
    assert!(!has_route(&net, &prefix("2001:db8:1::/64")));
    assert!(
        has_route(&net, &format!("{} expires 100", prefix("2001:db8:2::/64"))),
        "a dynamic address leaves its route to expire (with the address's valid lifetime)"
    );
    assert!(has_route(
        &net,
        "default via 2001:db8:1::fe dev eth0 proto boot scope global metric 1024"
    ));
}

#[test]
fn ipv6_added_while_down_is_kept_and_gets_its_route_when_the_device_comes_up() {
    let sim = SimKernel::new();
    sim.add_nic(&n("eth0"), mac("52:54:00:00:00:01"), 1500);
    build(
        &sim,
        &[
            add(addr("eth0", "2001:db8::1/64")),
            add(addr("eth0", "192.0.2.1/24")),
        ],
    );
    let net = sim.net();
    assert_eq!(
        addrs(&net, "eth0"),
        ["192.0.2.1/24", "2001:db8::1/64 tentative"]
    );
    assert!(net.routes.is_empty());
    build(&sim, &[up("eth0")]);
    assert_eq!(
        routes(&sim.net()),
        [
            PREFIX_1,
            "2001:db8::/64 dev eth0 proto kernel scope global metric 256",
            "fe80::/64 dev eth0 proto kernel scope global metric 256",
        ]
    );
}

#[test]
fn invalid_lifetimes_are_einval() {
    let sim = with_nic();
    for (v, p) in [(Some(0), Some(0)), (Some(10), Some(20)), (Some(10), None)] {
        let mut a = addr("eth0", "192.0.2.1/24");
        (a.valid_lft, a.preferred_lft) = (v, p);
        assert_eq!(refused(&sim, &add(a)).errno, Some(libc::EINVAL));
    }
}
