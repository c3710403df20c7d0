//! Temporary (privacy) IPv6 addresses made by the real kernel's SLAAC from a real router
//! advertisement (dnsmasq on the LAN), and the simulated kernel's model of them.
//!
//! Measured (kernel 6.18, namespaces): with accept_ra=2, autoconf=1, use_tempaddr=2 the
//! host makes a `dynamic mngtmpaddr` address from the RA's prefix and a `temporary
//! dynamic` one beside it; the prefix route expires with the valid lifetime; the RA's
//! default route is proto ra with `hoplimit 64` and an expiry. Deleting the
//! `mngtmpaddr` address (a plain `ip addr del`) deletes its temporary one too, and
//! leaves the (expiring) prefix route. `ip addr add … temporary` warns "temporary
//! option is not mutable from userspace" and makes a plain address.

use std::net::IpAddr;
use std::time::Duration;

use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{AddrFlag, Address, IfName, MacAddr, NetState, Route};
use env_qemu_core::{Kernel, LinkChange, Op};
use env_qemu_integration::dnsmasq::Dnsmasq;
use env_qemu_integration::guard::{wait_until, ScratchDir};
use env_qemu_integration::{
    assert_dump_matches_ip, require_netns, HostConfig, Topology, TopologySpec,
};

const PREFIX: &str = "2001:db8::/64";

fn eth0() -> IfName {
    IfName::new("eth0").unwrap()
}

/// eth0's global IPv6 addresses, lifetimes set aside.
fn globals(state: &NetState) -> Vec<Address> {
    let mut out: Vec<Address> = state
        .addresses
        .iter()
        .filter(|a| a.dev == eth0() && a.family() == env_qemu_core::model::Family::Inet6)
        .filter(|a| !a.is_link_local())
        .map(|a| Address {
            valid_lft: a.valid_lft.map(|_| 0),
            preferred_lft: a.preferred_lft.map(|_| 0),
            ..a.clone()
        })
        .collect();
    out.sort_by_key(|a| a.ip);
    out
}

fn prefix_route(state: &NetState) -> Option<Route> {
    state
        .routes
        .iter()
        .find(|r| r.dst.to_string() == PREFIX && r.dev == Some(eth0()))
        .map(Route::expiry_normalized)
}

#[tokio::test]
async fn deleting_the_mngtmpaddr_address_deletes_its_temporaries() {
    require_netns!();
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::bare(),
        far: false,
    });
    for (knob, v) in [("accept_ra", "2"), ("autoconf", "1"), ("use_tempaddr", "2")] {
        topo.host
            .set_sysctl(&format!("net.ipv6.conf.eth0.{knob}"), v);
    }
    let k = topo.host.kernel();
    let dir = ScratchDir::new();
    let ra = Dnsmasq::start_ra(&topo.lan, "lan0", "2001:db8::", dir.path());
    let has = |s: &NetState, f: AddrFlag| globals(s).iter().any(|a| a.has(f));
    let mut real = NetState::default();
    let got = wait_until(Duration::from_secs(20), || {
        real = topo.host.read_state();
        let tentative = has(&real, AddrFlag::Tentative);
        (has(&real, AddrFlag::Temporary) && has(&real, AddrFlag::Mngtmpaddr) && !tentative)
            .then_some(())
    });
    assert!(got.is_some(), "no SLAAC addresses: {real:#?}\n{}", ra.log());
    // No more RAs: nothing regenerates what gets deleted.
    drop(ra);
    std::thread::sleep(Duration::from_millis(500));
    assert_dump_matches_ip(&topo.host, &k).await;
    let real = k.dump().await.unwrap();
    let addrs = globals(&real);
    let public = addrs
        .iter()
        .find(|a| a.has(AddrFlag::Mngtmpaddr))
        .unwrap()
        .clone();
    let temp = addrs.iter().find(|a| a.has(AddrFlag::Temporary)).unwrap();
    let live = |ip: IpAddr| real.addresses.iter().find(|a| a.ip == ip).unwrap().clone();
    let (public_live, temp_live) = (live(public.ip), live(temp.ip));
    assert!(public_live.valid_lft.is_some() && temp_live.valid_lft.is_some());
    assert!(
        prefix_route(&real).is_some_and(|r| r.expires.is_some()),
        "the SLAAC prefix route expires: {:#?}",
        real.routes
    );

    // The same on the simulated kernel: the SLAAC address as addrconf adds it, then the
    // temporary one the privacy extension makes from it.
    let sim = SimKernel::new();
    let mac = real.link(&eth0()).unwrap().mac;
    sim.add_nic(&eth0(), mac, 1500);
    sim.apply_now(&Op::LinkSet {
        name: eth0(),
        change: LinkChange::Up,
    })
    .unwrap();
    sim.apply_now(&Op::AddrAdd {
        address: public_live.clone(),
    })
    .unwrap();
    sim.advance_time();
    sim.add_temporary_address(
        &eth0(),
        public_live.ip,
        temp_live.ip,
        temp_live.valid_lft.unwrap(),
        temp_live.preferred_lft.unwrap(),
    )
    .unwrap();
    sim.advance_time();
    assert_eq!(globals(&sim.net()), addrs);
    assert_eq!(prefix_route(&sim.net()), prefix_route(&real));

    // Deleting the mngtmpaddr address takes the temporary one along; the prefix route
    // stays, to expire.
    let del = Op::AddrDel {
        address: public_live.clone(),
    };
    k.apply(&del).await.unwrap();
    sim.apply_now(&del).unwrap();
    let real = k.dump().await.unwrap();
    assert_eq!(globals(&real), vec![], "{:#?}", real.addresses);
    assert_eq!(globals(&sim.net()), vec![]);
    assert!(prefix_route(&real).is_some_and(|r| r.expires.is_some()));
    assert_eq!(prefix_route(&sim.net()), prefix_route(&real));

    // A temporary address cannot be asked for: iproute2 warns and adds a plain one.
    topo.host
        .ip("addr add 2001:db8::99/64 dev eth0 nodad temporary");
    let plain = globals(&topo.host.read_state());
    assert_eq!(plain.len(), 1);
    assert!(!plain[0].has(AddrFlag::Temporary), "{plain:?}");
    let mut asked = plain[0].clone();
    asked.ip = "2001:db8::98".parse().unwrap();
    asked.flags.insert(AddrFlag::Temporary);
    sim.apply_now(&Op::AddrAdd { address: asked }).unwrap();
    assert!(!globals(&sim.net())
        .iter()
        .any(|a| a.has(AddrFlag::Temporary)));
}

/// The world-building method refuses what SLAAC would never make.
#[test]
fn a_temporary_address_needs_a_mngtmpaddr_parent() {
    let sim = SimKernel::new();
    sim.add_nic(&eth0(), MacAddr([2, 0, 0, 0, 0, 0x10]), 1500);
    let public: IpAddr = "2001:db8::10".parse().unwrap();
    let mut a = Address::new(eth0(), public, 64);
    a.flags.insert(AddrFlag::Nodad);
    sim.apply_now(&Op::AddrAdd { address: a.clone() }).unwrap();
    let temp: IpAddr = "2001:db8::1234".parse().unwrap();
    let e = sim
        .add_temporary_address(&eth0(), public, temp, 600, 300)
        .unwrap_err();
    assert_eq!(e.errno, Some(libc::EADDRNOTAVAIL), "{e}");
    assert!(e.to_string().contains("mngtmpaddr"), "{e}");
    sim.apply_now(&Op::AddrDel { address: a.clone() }).unwrap();
    a.flags.insert(AddrFlag::Mngtmpaddr);
    a.valid_lft = Some(100);
    a.preferred_lft = Some(50);
    sim.apply_now(&Op::AddrAdd { address: a }).unwrap();
    let outside: IpAddr = "2001:db8:1::1234".parse().unwrap();
    let e = sim
        .add_temporary_address(&eth0(), public, outside, 600, 300)
        .unwrap_err();
    assert_eq!(e.errno, Some(libc::EINVAL), "{e}");
    // Lifetimes bounded by the parent's; both expire together on the clock.
    sim.add_temporary_address(&eth0(), public, temp, 600, 300)
        .unwrap();
    let t = sim
        .net()
        .addresses
        .into_iter()
        .find(|a| a.ip == temp)
        .unwrap();
    assert_eq!((t.valid_lft, t.preferred_lft), (Some(100), Some(50)));
    assert!(t.has(AddrFlag::Temporary));
    sim.advance_clock(Duration::from_secs(100));
    assert!(globals(&sim.net()).is_empty());
}
