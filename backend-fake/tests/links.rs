//! Device lifecycle: creation, deletion, admin up/down and what they drag along.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{Knob, LinkKind, SysctlKey, TapInfo};
use env_qemu_core::{ErrorKind, LinkChange, Op};

#[test]
fn a_fresh_namespace_has_only_loopback_up_with_its_addresses() {
    let net = SimKernel::new().net();
    assert_eq!(net.links.len(), 1);
    let lo = link(&net, "lo");
    assert_eq!(
        (lo.index, lo.kind, lo.up, lo.carrier, lo.mtu),
        (1, LinkKind::Loopback, true, true, 65536)
    );
    assert_eq!(addrs(&net, "lo"), ["127.0.0.1/8", "::1/128"]);
    assert!(net
        .addresses
        .iter()
        .all(|a| a.scope == env_qemu_core::model::AddrScope::Host));
    // 127/8 and ::1 live in the local table, which the dump leaves out.
    assert!(net.routes.is_empty());
}

#[test]
fn ifindexes_increase_are_never_reused_and_a_veth_peer_comes_first() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb")]);
    let net = sim.net();
    assert_eq!((link(&net, "vb").index, link(&net, "va").index), (2, 3));
    build(&sim, &[Op::LinkDel { name: n("va") }, bridge("br0", None)]);
    assert_eq!(link(&sim.net(), "br0").index, 4);
}

#[test]
fn new_devices_are_down_without_carrier_at_1500() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb"), tap("tap0"), bridge("br0", None)]);
    let net = sim.net();
    for d in ["va", "vb", "tap0", "br0"] {
        let l = link(&net, d);
        assert!(
            !l.up && !l.carrier && l.mtu == 1500 && l.master.is_none(),
            "{l:?}"
        );
        assert!(
            !l.mac.is_zero() && l.mac.0[0] & 0x03 == 0x02,
            "random MACs are local unicast: {l:?}"
        );
    }
    let info = TapInfo {
        owner: None,
        group: None,
        persist: true,
    };
    assert_eq!(link(&net, "tap0").kind, LinkKind::Tap(info));
}

#[test]
fn duplicate_names_are_eexist_whatever_the_kind() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb"), bridge("br0", None)]);
    for op in [
        bridge("va", None),
        veth("vx", "br0"),
        veth("vb", "vy"),
        tap("lo"),
        veth("vz", "vz"),
    ] {
        assert_eq!(
            errno(&sim, &op),
            (ErrorKind::AlreadyExists, libc::EEXIST),
            "{op}"
        );
    }
}

#[test]
fn deleting_a_missing_device_is_enodev_and_lo_cannot_go() {
    let sim = SimKernel::new();
    let e = refused(&sim, &Op::LinkDel { name: n("nothere") });
    assert_eq!((e.kind, e.errno), (ErrorKind::NotFound, Some(libc::ENODEV)));
    assert_eq!(e.object, "interface nothere");
    let e = refused(&sim, &Op::LinkDel { name: n("lo") });
    assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
}

#[test]
fn a_veth_end_has_carrier_only_while_both_ends_are_up() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb"), up("va")]);
    assert!(!link(&sim.net(), "va").carrier);
    build(&sim, &[up("vb")]);
    assert!(link(&sim.net(), "va").carrier && link(&sim.net(), "vb").carrier);
    build(&sim, &[down("vb")]);
    assert!(!link(&sim.net(), "va").carrier && !link(&sim.net(), "vb").carrier);
}

#[test]
fn deleting_one_veth_end_deletes_its_peer_with_addresses_and_routes() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            veth("va", "vb"),
            up("va"),
            up("vb"),
            add(addr("vb", "192.0.2.1/24")),
        ],
    );
    build(
        &sim,
        &[radd(
            route("default", Some("192.0.2.254"), Some("vb")).table(100),
        )],
    );
    build(&sim, &[Op::LinkDel { name: n("va") }]);
    let net = sim.net();
    assert_eq!(net.links.len(), 1);
    assert_eq!(net.addresses.len(), 2, "only lo's remain");
    assert!(net.routes.is_empty());
}

#[test]
fn admin_down_keeps_ipv4_addresses_but_flushes_ipv4_routes_in_every_table() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "192.0.2.2/24")),
            radd(route("default", Some("192.0.2.254"), Some("eth0"))),
            radd(route("default", Some("192.0.2.254"), Some("eth0")).table(100)),
            radd(route("203.0.113.0/24", None, Some("eth0")).src(ip("192.0.2.2"))),
        ],
    );
    build(&sim, &[down("eth0")]);
    let net = sim.net();
    assert_eq!(
        addrs(&net, "eth0"),
        ["192.0.2.1/24", "192.0.2.2/24 secondary"]
    );
    assert!(net.routes.is_empty(), "{:?}", routes(&net));
}

#[test]
fn admin_down_removes_every_ipv6_address_and_route_of_the_device() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(nodad(addr("eth0", "2001:db8:1::1/64"))),
            radd(route("::/0", Some("2001:db8:1::fe"), Some("eth0")).table(100)),
            radd(route("2001:db8:9::/64", None, Some("eth0"))),
        ],
    );
    build(&sim, &[down("eth0")]);
    let net = sim.net();
    assert!(addrs(&net, "eth0").is_empty());
    assert!(net.routes.is_empty(), "{:?}", routes(&net));
}

#[test]
fn admin_up_brings_back_prefix_routes_and_link_local_but_no_static() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "192.0.2.2/24")),
            add(addr("eth0", "198.51.100.1/24")),
            add(nodad(addr("eth0", "2001:db8:1::1/64"))),
            radd(route("default", Some("192.0.2.254"), Some("eth0"))),
            radd(route("::/0", Some("2001:db8:1::fe"), Some("eth0"))),
            down("eth0"),
            up("eth0"),
        ],
    );
    let net = sim.net();
    assert_eq!(
        routes(&net),
        [
            "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1 metric 0",
            "198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1 metric 0",
            "fe80::/64 dev eth0 proto kernel scope global metric 256",
        ]
    );
    assert_eq!(
        addrs(&net, "eth0")[3..],
        ["fe80::5054:ff:fe00:1/64 tentative"]
    );
}

#[test]
fn deleting_a_device_takes_main_table_routes_using_its_address_as_source() {
    let sim = with_nic();
    build(
        &sim,
        &[
            veth("va", "vb"),
            up("va"),
            add(addr("va", "198.51.100.1/24")),
        ],
    );
    build(&sim, &[add(addr("eth0", "192.0.2.1/24"))]);
    build(
        &sim,
        &[
            radd(route("203.0.113.0/25", None, Some("eth0")).src(ip("198.51.100.1"))),
            radd(
                route("203.0.113.128/25", None, Some("eth0"))
                    .src(ip("198.51.100.1"))
                    .table(100),
            ),
        ],
    );
    build(&sim, &[Op::LinkDel { name: n("va") }]);
    assert_eq!(
        routes(&sim.net()),
        [
            "203.0.113.128/25 dev eth0 table 100 proto boot scope link src 198.51.100.1 metric 0",
            "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.1 metric 0",
            "fe80::/64 dev eth0 proto kernel scope global metric 256",
        ]
    );
}

#[test]
fn a_tap_has_carrier_only_while_a_reader_holds_it() {
    let sim = SimKernel::new();
    build(&sim, &[tap("tap0"), up("tap0")]);
    assert!(!link(&sim.net(), "tap0").carrier);
    sim.open_tap(&n("tap0")).unwrap();
    assert!(link(&sim.net(), "tap0").carrier);
    sim.close_tap(&n("tap0")).unwrap();
    let l = link(&sim.net(), "tap0");
    assert!(l.up && !l.carrier, "a persistent tap survives its reader");
}

#[test]
fn a_tap_qemu_made_itself_goes_away_when_qemu_closes_it() {
    let sim = SimKernel::new();
    sim.add_tap_with_reader(&n("tap9"));
    build(&sim, &[up("tap9")]);
    let l = link(&sim.net(), "tap9");
    assert!(l.carrier && matches!(l.kind, LinkKind::Tap(TapInfo { persist: false, .. })));
    sim.close_tap(&n("tap9")).unwrap();
    assert!(sim.net().link(&n("tap9")).is_none());
}

#[test]
fn a_nic_has_carrier_while_its_cable_is_plugged() {
    let sim = with_nic();
    assert!(link(&sim.net(), "eth0").carrier);
    sim.set_lower(&n("eth0"), false).unwrap();
    assert!(!link(&sim.net(), "eth0").carrier);
    assert!(sim.set_lower(&n("lo"), false).is_err());
}

#[test]
fn mtus_outside_the_driver_range_are_einval() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb"), tap("tap0")]);
    for (dev, mtu) in [("va", 67), ("va", 65536), ("tap0", 65522)] {
        let op = set(dev, LinkChange::Mtu(mtu));
        assert_eq!(errno(&sim, &op), (ErrorKind::Invalid, libc::EINVAL), "{op}");
    }
    build(
        &sim,
        &[
            set("va", LinkChange::Mtu(65535)),
            set("tap0", LinkChange::Mtu(65521)),
        ],
    );
}

#[test]
fn an_mtu_below_1280_tears_ipv6_off_and_raising_it_rebuilds_from_default() {
    let sim = with_nic();
    let dad = SysctlKey::new(&n("eth0"), Knob::Ipv6AcceptDad);
    build(
        &sim,
        &[
            Op::SysctlSet {
                key: dad.clone(),
                value: "0".into(),
            },
            add(addr("eth0", "192.0.2.1/24")),
            add(addr("eth0", "2001:db8:1::1/64")),
            set("eth0", LinkChange::Mtu(1200)),
        ],
    );
    let net = sim.net();
    assert_eq!(addrs(&net, "eth0"), ["192.0.2.1/24"]);
    assert_eq!(
        routes(&net).len(),
        1,
        "only the IPv4 prefix route: {:?}",
        routes(&net)
    );
    assert_eq!(sim.sysctl_now(&dad).unwrap_err().kind, ErrorKind::NotFound);
    let v6 = add(addr("eth0", "2001:db8:1::1/64"));
    assert_eq!(errno(&sim, &v6), (ErrorKind::Invalid, libc::EINVAL));
    build(&sim, &[set("eth0", LinkChange::Mtu(1500))]);
    assert_eq!(sim.sysctl_now(&dad).unwrap(), "1");
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        ["192.0.2.1/24", "fe80::5054:ff:fe00:1/64 tentative"]
    );
}

#[test]
fn invalid_macs_are_eaddrnotavail_and_an_unchanged_one_is_accepted() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb")]);
    for m in ["01:00:00:00:00:01", "00:00:00:00:00:00"] {
        let op = set("va", LinkChange::Mac(mac(m)));
        assert_eq!(errno(&sim, &op), (ErrorKind::NotFound, libc::EADDRNOTAVAIL));
    }
    build(
        &sim,
        &[set("va", LinkChange::Mac(mac("02:00:00:00:00:07")))],
    );
    assert_eq!(link(&sim.net(), "va").mac, mac("02:00:00:00:00:07"));
}
