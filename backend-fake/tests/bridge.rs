//! The bridge driver: ports, derived MAC/MTU, port states and carrier.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::{PortState, SimKernel};
use env_qemu_core::model::{LinkKind, MacAddr};
use env_qemu_core::{LinkChange, LinkSpec, Op};

fn bmac(sim: &SimKernel) -> MacAddr {
    link(&sim.net(), "br0").mac
}

fn carrier(sim: &SimKernel, dev: &str) -> bool {
    link(&sim.net(), dev).carrier
}

#[test]
fn the_bridge_mac_is_the_lowest_port_mac_and_zero_without_ports() {
    let sim = SimKernel::new();
    build(&sim, &[bridge("br0", None), veth("va", "vb"), tap("tap0")]);
    build(
        &sim,
        &[
            set("va", LinkChange::Mac(mac("02:00:00:00:00:20"))),
            set("tap0", LinkChange::Mac(mac("02:00:00:00:00:10"))),
        ],
    );
    let random = bmac(&sim);
    assert!(!random.is_zero());
    build(&sim, &[master("va", "br0")]);
    assert_eq!(bmac(&sim), mac("02:00:00:00:00:20"));
    // A down tap without reader counts like any port.
    build(&sim, &[master("tap0", "br0")]);
    assert_eq!(bmac(&sim), mac("02:00:00:00:00:10"));
    build(
        &sim,
        &[set("tap0", LinkChange::Mac(mac("02:00:00:00:00:30")))],
    );
    assert_eq!(
        bmac(&sim),
        mac("02:00:00:00:00:20"),
        "follows a port's MAC change"
    );
    build(&sim, &[set("va", LinkChange::NoMaster)]);
    assert_eq!(bmac(&sim), mac("02:00:00:00:00:30"));
    build(&sim, &[Op::LinkDel { name: n("tap0") }]);
    assert_eq!(bmac(&sim), MacAddr::ZERO);
}

#[test]
fn a_mac_given_at_creation_or_set_later_stays_fixed() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[bridge("br0", Some("02:00:00:00:00:50")), tap("tap0")],
    );
    build(
        &sim,
        &[
            set("tap0", LinkChange::Mac(mac("02:00:00:00:00:01"))),
            master("tap0", "br0"),
        ],
    );
    assert_eq!(bmac(&sim), mac("02:00:00:00:00:50"));
    assert!(matches!(link(&sim.net(), "br0").kind, LinkKind::Bridge(b) if b.mac_fixed));
    build(&sim, &[Op::LinkDel { name: n("tap0") }]);
    assert_eq!(bmac(&sim), mac("02:00:00:00:00:50"));

    build(
        &sim,
        &[
            bridge("br1", None),
            tap("tap1"),
            set("br1", LinkChange::Mac(mac("02:00:00:00:00:60"))),
        ],
    );
    build(
        &sim,
        &[
            set("tap1", LinkChange::Mac(mac("02:00:00:00:00:02"))),
            master("tap1", "br1"),
        ],
    );
    assert_eq!(link(&sim.net(), "br1").mac, mac("02:00:00:00:00:60"));
}

#[test]
fn the_bridge_mtu_follows_its_ports_until_the_user_sets_it() {
    let sim = SimKernel::new();
    let br = Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n("br0"),
            mac: None,
            mtu: Some(9000),
            stp: false,
            forward_delay: 0,
        },
    };
    build(&sim, &[br, veth("va", "vb"), veth("vc", "vd")]);
    assert_eq!(link(&sim.net(), "br0").mtu, 9000);
    // The creation MTU is not a user setting: a 1500 port brings it down.
    build(&sim, &[master("va", "br0"), master("vc", "br0")]);
    assert_eq!(link(&sim.net(), "br0").mtu, 1500);
    build(&sim, &[set("vc", LinkChange::Mtu(1400))]);
    assert_eq!(link(&sim.net(), "br0").mtu, 1400);
    build(
        &sim,
        &[
            set("vc", LinkChange::Mtu(9000)),
            set("va", LinkChange::Mtu(9000)),
        ],
    );
    assert_eq!(link(&sim.net(), "br0").mtu, 9000);
    // Setting the MTU it already has does not pin it.
    build(
        &sim,
        &[
            set("br0", LinkChange::Mtu(9000)),
            set("va", LinkChange::Mtu(1500)),
        ],
    );
    assert_eq!(link(&sim.net(), "br0").mtu, 1500);
    build(
        &sim,
        &[
            set("br0", LinkChange::Mtu(9000)),
            set("vc", LinkChange::Mtu(1400)),
        ],
    );
    build(&sim, &[set("va", LinkChange::NoMaster)]);
    assert_eq!(
        link(&sim.net(), "br0").mtu,
        9000,
        "pinned by `ip link set mtu`"
    );
}

#[test]
fn a_portless_bridge_keeps_its_birth_carrier_until_the_first_port_change() {
    let sim = SimKernel::new();
    build(&sim, &[bridge("br0", None), veth("va", "vb"), up("br0")]);
    assert!(carrier(&sim, "br0"));
    build(&sim, &[down("br0"), up("br0")]);
    assert!(carrier(&sim, "br0"), "up/down is no port-state selection");
    build(
        &sim,
        &[master("va", "br0"), set("va", LinkChange::NoMaster)],
    );
    assert!(!carrier(&sim, "br0"));
    // Created with a MAC: the selection already ran at creation.
    build(&sim, &[bridge("br1", Some("02:00:00:00:00:50")), up("br1")]);
    assert!(!carrier(&sim, "br1"));
}

#[test]
fn setting_the_mac_a_bridge_already_has_fixes_it_without_a_port_selection() {
    let sim = SimKernel::new();
    build(&sim, &[bridge("br0", None), tap("tap0"), up("br0")]);
    let m = bmac(&sim);
    build(
        &sim,
        &[set("br0", LinkChange::Mac(m)), master("tap0", "br0")],
    );
    assert!(
        carrier(&sim, "br0"),
        "a dead port joining a fixed-MAC bridge selects nothing"
    );
    assert_eq!(bmac(&sim), m);
    build(&sim, &[set("tap0", LinkChange::NoMaster)]);
    assert!(!carrier(&sim, "br0"), "leaving always selects");
}

#[test]
fn with_ports_the_bridge_has_carrier_iff_a_port_forwards() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            bridge("br0", Some("02:00:00:00:00:50")),
            up("br0"),
            tap("tap0"),
            veth("va", "vb"),
        ],
    );
    build(
        &sim,
        &[
            master("tap0", "br0"),
            up("tap0"),
            master("va", "br0"),
            up("va"),
        ],
    );
    assert!(!carrier(&sim, "br0"));
    assert_eq!(sim.port_state(&n("tap0")), Some(PortState::Disabled));
    sim.open_tap(&n("tap0")).unwrap();
    assert!(
        carrier(&sim, "br0"),
        "QEMU opening the tap brings the bridge up"
    );
    assert_eq!(sim.port_state(&n("tap0")), Some(PortState::Forwarding));
    sim.close_tap(&n("tap0")).unwrap();
    assert!(!carrier(&sim, "br0"));
    build(&sim, &[up("vb")]);
    assert!(
        carrier(&sim, "br0"),
        "the veth peer coming up gives the port carrier"
    );
    build(&sim, &[down("br0")]);
    assert_eq!(sim.port_state(&n("va")), Some(PortState::Disabled));
    build(&sim, &[up("br0")]);
    assert!(carrier(&sim, "br0"));
}

#[test]
fn the_bridge_gets_its_link_local_when_it_gains_carrier() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            bridge("br0", Some("52:54:00:00:00:50")),
            up("br0"),
            tap("tap0"),
            master("tap0", "br0"),
            up("tap0"),
        ],
    );
    assert!(addrs(&sim.net(), "br0").is_empty());
    sim.open_tap(&n("tap0")).unwrap();
    let net = sim.net();
    assert_eq!(addrs(&net, "br0"), ["fe80::5054:ff:fe00:50/64 tentative"]);
    assert!(has_route(
        &net,
        "fe80::/64 dev br0 proto kernel scope global metric 256"
    ));
}

#[test]
fn enslaving_refusals_carry_the_kernel_errnos() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            bridge("br0", None),
            bridge("br1", None),
            veth("va", "vb"),
            tap("tap0"),
        ],
    );
    sim.add_wireless(&n("wlan0"), mac("52:54:00:00:00:77"));
    let cases = [
        (master("va", "vb"), libc::EOPNOTSUPP),
        (master("va", "tap0"), libc::EOPNOTSUPP),
        (master("lo", "br0"), libc::EINVAL),
        (master("br0", "br0"), libc::ELOOP),
        (master("br1", "br0"), libc::ELOOP),
        (master("wlan0", "br0"), libc::EOPNOTSUPP),
        (master("va", "nothere"), libc::ENODEV),
    ];
    for (op, want) in cases {
        assert_eq!(refused(&sim, &op).errno, Some(want), "{op}");
    }
}

#[test]
fn a_port_moves_between_bridges_and_a_failed_move_still_releases_it() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            bridge("br0", None),
            bridge("br1", None),
            veth("va", "vb"),
            master("va", "br0"),
        ],
    );
    build(&sim, &[master("va", "br1")]);
    assert_eq!(link(&sim.net(), "va").master, Some(n("br1")));
    // Re-enslaving to the same master is a no-op.
    build(&sim, &[master("va", "br1")]);
    // The kernel releases the port before finding out vb cannot be a master.
    let e = sim.apply_now(&master("va", "vb")).unwrap_err();
    assert_eq!(e.errno, Some(libc::EOPNOTSUPP));
    assert_eq!(link(&sim.net(), "va").master, None);
}

#[test]
fn enslaving_and_releasing_leave_the_port_configuration_alone() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "192.0.2.1/24")),
            radd(route("default", Some("192.0.2.254"), Some("eth0"))),
        ],
    );
    let before = sim.net();
    build(
        &sim,
        &[
            bridge("br0", None),
            master("eth0", "br0"),
            set("eth0", LinkChange::NoMaster),
        ],
    );
    let after = sim.net();
    assert_eq!(
        after.addresses_of(&n("eth0")).count(),
        before.addresses_of(&n("eth0")).count()
    );
    assert_eq!(routes(&after), routes(&before));
}

#[test]
fn deleting_a_bridge_releases_its_ports_and_takes_its_addresses_and_routes() {
    let sim = with_nic();
    build(
        &sim,
        &[
            add(addr("eth0", "198.51.100.1/24")),
            bridge("br0", Some("52:54:00:00:00:50")),
            up("br0"),
            master("eth0", "br0"),
            tap("tap0"),
            master("tap0", "br0"),
            add(addr("br0", "192.0.2.1/24")),
            radd(route("default", Some("192.0.2.254"), Some("br0")).table(100)),
            radd(route("203.0.113.0/24", None, Some("br0"))),
        ],
    );
    build(&sim, &[Op::LinkDel { name: n("br0") }]);
    let net = sim.net();
    let (eth0, tap0) = (link(&net, "eth0"), link(&net, "tap0"));
    assert!(eth0.master.is_none() && eth0.up && tap0.master.is_none() && !tap0.up);
    assert_eq!(
        addrs(&net, "eth0"),
        ["198.51.100.1/24", "fe80::5054:ff:fe00:1/64 tentative"]
    );
    assert!(
        net.routes.iter().all(|r| r.dev == Some(n("eth0"))),
        "{:?}",
        routes(&net)
    );
    assert!(has_route(
        &net,
        "198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1 metric 0"
    ));
}
