//! Link-locals, DAD and time.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{Knob, LinkKind, SysctlKey};
use env_qemu_core::{LinkChange, Op};

#[test]
fn the_link_local_needs_carrier_and_stays_tentative_until_time_passes() {
    let sim = SimKernel::new();
    sim.add_nic(&n("eth0"), mac("52:54:00:12:34:56"), 1500);
    sim.set_lower(&n("eth0"), false).unwrap();
    build(&sim, &[up("eth0")]);
    assert!(addrs(&sim.net(), "eth0").is_empty());
    sim.advance_time();
    assert!(
        addrs(&sim.net(), "eth0").is_empty(),
        "no carrier, no link-local"
    );
    sim.set_lower(&n("eth0"), true).unwrap();
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        ["fe80::5054:ff:fe12:3456/64 tentative"]
    );
    assert!(has_route(
        &sim.net(),
        "fe80::/64 dev eth0 proto kernel scope global metric 256"
    ));
    sim.advance_time();
    assert_eq!(addrs(&sim.net(), "eth0"), ["fe80::5054:ff:fe12:3456/64"]);
}

#[test]
fn dad_waits_for_carrier_but_finishes_after_losing_it() {
    let sim = SimKernel::new();
    build(
        &sim,
        &[
            veth("va", "vb"),
            up("va"),
            add(addr("va", "2001:db8::1/64")),
        ],
    );
    sim.advance_time();
    assert_eq!(
        addrs(&sim.net(), "va"),
        ["2001:db8::1/64 tentative"],
        "never had carrier"
    );
    build(
        &sim,
        &[up("vb"), add(addr("va", "2001:db8::2/64")), down("vb")],
    );
    sim.advance_time();
    let got = addrs(&sim.net(), "va");
    assert!(got.iter().all(|a| !a.contains("tentative")), "{got:?}");
    // Carrier loss deletes nothing.
    assert_eq!(got.len(), 3);
}

#[test]
fn accept_dad_0_makes_even_the_link_local_usable_at_once() {
    let sim = SimKernel::new();
    sim.add_nic(&n("eth0"), mac("52:54:00:12:34:56"), 1500);
    let key = SysctlKey::new(&n("eth0"), Knob::Ipv6AcceptDad);
    build(
        &sim,
        &[
            Op::SysctlSet {
                key,
                value: "0".into(),
            },
            up("eth0"),
            add(addr("eth0", "2001:db8::1/64")),
        ],
    );
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        ["2001:db8::1/64", "fe80::5054:ff:fe12:3456/64"]
    );
}

#[test]
fn the_link_local_keeps_the_mac_it_was_made_from() {
    let sim = with_nic();
    build(
        &sim,
        &[set("eth0", LinkChange::Mac(mac("52:54:00:99:99:99")))],
    );
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        ["fe80::5054:ff:fe00:1/64 tentative"]
    );
    build(&sim, &[down("eth0"), up("eth0")]);
    assert_eq!(
        addrs(&sim.net(), "eth0"),
        ["fe80::5054:ff:fe99:9999/64 tentative"]
    );
}

#[test]
fn deleting_the_link_local_takes_fe80_with_it() {
    let sim = with_nic();
    build(&sim, &[del(addr("eth0", "fe80::5054:ff:fe00:1/64"))]);
    assert!(sim.net().routes.is_empty());
}

#[test]
fn loopback_down_loses_ipv6_keeps_ipv4_and_up_restores_both() {
    let sim = SimKernel::new();
    build(&sim, &[down("lo")]);
    assert_eq!(addrs(&sim.net(), "lo"), ["127.0.0.1/8"]);
    build(&sim, &[up("lo")]);
    assert_eq!(addrs(&sim.net(), "lo"), ["127.0.0.1/8", "::1/128"]);
    assert!(matches!(link(&sim.net(), "lo").kind, LinkKind::Loopback));
    assert!(sim.net().routes.is_empty());
}
