//! Address operations through `NetlinkKernel::apply`, read back with `ip -j`, and a
//! dump → restore round trip into a fresh namespace.

use std::collections::BTreeSet;
use std::net::IpAddr;

use env_qemu_core::model::{AddrFlag, AddrScope, Address, IfName, NetState};
use env_qemu_core::{Kernel, Op};
use env_qemu_integration::compare::without_lifetimes;
use env_qemu_integration::{require_netns, same_state, TestNs};

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

fn addr(dev: &str, cidr: &str) -> Address {
    let (ip, len) = cidr.split_once('/').unwrap();
    Address::new(n(dev), ip.parse().unwrap(), len.parse().unwrap())
}

fn find<'a>(state: &'a NetState, ip: &str) -> &'a Address {
    let ip: IpAddr = ip.parse().unwrap();
    state
        .addresses
        .iter()
        .find(|a| a.ip == ip)
        .unwrap_or_else(|| panic!("{ip} not in {:?}", state.addresses))
}

/// A namespace with an up veth `eth0` (peer up too, so it has carrier).
fn ns_with_eth0() -> TestNs {
    let ns = TestNs::new();
    ns.ip("link add eth0 type veth peer name peer0");
    ns.ip("link set peer0 up");
    ns.ip("link set eth0 up");
    ns
}

#[tokio::test]
async fn ipv4_exactly_as_given() {
    require_netns!();
    let ns = ns_with_eth0();
    let k = ns.kernel();

    let plain = addr("eth0", "192.0.2.10/24");
    let mut with_brd = addr("eth0", "198.51.100.10/24");
    with_brd.broadcast = Some("198.51.100.255".parse().unwrap());
    let mut secondary = addr("eth0", "192.0.2.11/24");
    secondary.secondary = true; // kernel state: ignored when adding, set by the kernel
    let mut scoped = addr("eth0", "203.0.113.10/32");
    scoped.scope = AddrScope::Link;
    let mut dynamic = addr("eth0", "203.0.113.20/24");
    dynamic.valid_lft = Some(600);
    dynamic.preferred_lft = Some(300);
    for a in [&plain, &with_brd, &secondary, &scoped, &dynamic] {
        k.apply(&Op::AddrAdd { address: a.clone() }).await.unwrap();
    }

    let state = ns.read_state();
    // No broadcast invented when none was given (rtnetlink's builder would add one).
    assert_eq!(find(&state, "192.0.2.10"), &plain);
    assert_eq!(find(&state, "198.51.100.10"), &with_brd);
    assert_eq!(find(&state, "192.0.2.11"), &secondary);
    assert_eq!(find(&state, "203.0.113.10"), &scoped);
    let d = find(&state, "203.0.113.20");
    assert!(
        d.valid_lft.unwrap() <= 600 && d.valid_lft.unwrap() >= 595,
        "{d:?}"
    );
    assert!(
        d.preferred_lft.unwrap() <= 300 && d.preferred_lft.unwrap() >= 295,
        "{d:?}"
    );
}

#[tokio::test]
async fn ipv6_flags() {
    require_netns!();
    let ns = ns_with_eth0();
    let k = ns.kernel();
    let mut a = addr("eth0", "2001:db8::10/64");
    a.flags = BTreeSet::from([AddrFlag::Nodad, AddrFlag::Noprefixroute]);
    let b = addr("eth0", "2001:db8:1::10/64");
    k.apply(&Op::AddrAdd { address: a.clone() }).await.unwrap();
    k.apply(&Op::AddrAdd { address: b }).await.unwrap();

    let state = ns.read_state();
    assert_eq!(find(&state, "2001:db8::10"), &a);
    // Without nodad the address starts tentative (DAD runs since eth0 has carrier).
    assert!(find(&state, "2001:db8:1::10").has(AddrFlag::Tentative));
    // noprefixroute: no 2001:db8::/64 route.
    assert!(!state
        .routes
        .iter()
        .any(|r| r.dst.to_string() == "2001:db8::/64"));
}

#[tokio::test]
async fn delete() {
    require_netns!();
    let ns = ns_with_eth0();
    ns.ip("addr add 192.0.2.10/24 dev eth0");
    ns.ip("addr add 2001:db8::10/64 dev eth0 nodad");
    let k = ns.kernel();
    for a in [
        addr("eth0", "192.0.2.10/24"),
        addr("eth0", "2001:db8::10/64"),
    ] {
        k.apply(&Op::AddrDel { address: a }).await.unwrap();
    }
    let state = ns.read_state();
    assert!(
        !state.addresses.iter().any(|a| !a.is_link_local()),
        "{state:?}"
    );
}

/// Addresses configured with `ip`, dumped by the backend, re-added by the backend into a
/// fresh namespace: the second namespace reads back the same (up to lifetimes ticking).
#[tokio::test]
async fn dump_then_restore_into_fresh_namespace() {
    require_netns!();
    let config = [
        "192.0.2.10/24",
        "192.0.2.11/24",
        "198.51.100.10/24 brd 198.51.100.255 valid_lft 900 preferred_lft 600",
        "203.0.113.10/32 scope link",
        "2001:db8::10/64 nodad",
        "2001:db8:1::10/64 nodad noprefixroute",
        "2001:db8:2::10/64 nodad valid_lft 800 preferred_lft 0",
    ];
    let (src, dst) = (ns_with_eth0(), ns_with_eth0());
    for c in config {
        src.ip(&format!("addr add {c} dev eth0"));
    }
    let dumped = src.kernel().dump().await.unwrap();
    let k = dst.kernel();
    let restorable = |a: &&Address| a.dev.as_str() == "eth0" && !a.is_link_local();
    for a in dumped.addresses.iter().filter(restorable) {
        k.apply(&Op::AddrAdd { address: a.clone() }).await.unwrap();
    }
    let restored = dst.kernel().dump().await.unwrap();
    let only = |s: &NetState| NetState {
        addresses: s.addresses.iter().filter(restorable).cloned().collect(),
        ..NetState::default()
    };
    assert!(
        same_state(&only(&dumped), &only(&restored)),
        "{:#?}\nvs\n{:#?}",
        without_lifetimes(&only(&dumped)),
        without_lifetimes(&only(&restored))
    );
}
