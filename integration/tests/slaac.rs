//! A host whose IPv6 comes from the kernel's SLAAC with privacy addresses, fed by a real
//! router advertiser (dnsmasq on the LAN, preference high, an RA every ~10 s, router
//! lifetime 600 s): start, stay bridged for two advertisement intervals, stop.
//!
//! What must hold, measured on the real kernel:
//! - while bridged, the bridge does SLAAC itself: the public (`mngtmpaddr`) address keeps
//!   its value and the RAs refresh its lifetime on the bridge, and the kernel adds its own
//!   RA default route there (env-qemu's copy one metric above never blocks it);
//! - after stop, the NIC is back under the kernel's autoconf: the same public address,
//!   refreshed by the next RA, and the kernel's own RA default route with its preference
//!   and expiry;
//! - start and stop each end verified (exit `Ok`), nothing on the port while bridged.

use std::time::{Duration, Instant};

use env_qemu_core::model::{AddrFlag, Address, Family, IfName, NetState, Route, RoutePref};
use env_qemu_core::plan::StartRequest;
use env_qemu_integration::dnsmasq::Dnsmasq;
use env_qemu_integration::guard::{wait_until, ScratchDir};
use env_qemu_integration::{require_netns, HostConfig, Session, TestNs, Topology, TopologySpec};

const ADVERTISED: u32 = 600;
/// What "refreshed by an RA" means for a lifetime read back: within a few seconds of the
/// advertised value (the kernel reports whole seconds, and the read is not instantaneous).
const FRESH: u32 = ADVERTISED - 8;

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

/// The `mngtmpaddr` address of `dev`: the public SLAAC address.
fn public(s: &NetState, dev: &str) -> Option<Address> {
    s.addresses_of(&n(dev))
        .find(|a| a.family() == Family::Inet6 && a.has(AddrFlag::Mngtmpaddr))
        .cloned()
}

/// The kernel's own RA default route on `dev` (metric 1024, ra_defrtr_metric's default).
fn kernel_ra_route(s: &NetState, dev: &str) -> Option<Route> {
    s.routes_via(&n(dev))
        .find(|r| r.dst.is_default() && r.family() == Family::Inet6 && r.metric == 1024)
        .cloned()
}

fn slaac_host() -> (Topology, Dnsmasq, ScratchDir) {
    let topo = Topology::build(&TopologySpec {
        host: HostConfig {
            addresses: vec!["192.0.2.10/24".into()],
            routes: vec!["default via 192.0.2.1 dev eth0".into()],
            ..HostConfig::bare()
        },
        far: false,
    });
    for (knob, v) in [("accept_ra", "2"), ("autoconf", "1"), ("use_tempaddr", "2")] {
        topo.host
            .set_sysctl(&format!("net.ipv6.conf.eth0.{knob}"), v);
    }
    // A router advertises a non-zero router lifetime only with a default route of its own.
    topo.lan.ip("-6 route add default dev lan0");
    let dir = ScratchDir::new();
    let ra = Dnsmasq::start_router(
        &topo.lan,
        "lan0",
        "2001:db8::",
        (10, ADVERTISED, ADVERTISED),
        dir.path(),
    );
    (topo, ra, dir)
}

/// Waits until `dev` has a usable public address, a temporary one, and the kernel's RA
/// default route (preference high, expiring).
fn wait_for_slaac(host: &TestNs, dev: &str, within: Duration) -> NetState {
    let mut last = NetState::default();
    let ready = wait_until(within, || {
        last = host.read_state();
        let p = public(&last, dev)?;
        let temp = last
            .addresses_of(&n(dev))
            .any(|a| a.has(AddrFlag::Temporary) && !a.has(AddrFlag::Tentative));
        let r = kernel_ra_route(&last, dev)?;
        (!p.has(AddrFlag::Tentative) && temp && r.pref == RoutePref::High && r.expires.is_some())
            .then(|| last.clone())
    });
    ready.unwrap_or_else(|| panic!("no SLAAC on {dev} within {within:?}: {last:#?}"))
}

#[tokio::test]
async fn slaac_with_privacy_addresses_survives_start_and_stop() {
    require_netns!();
    let (topo, ra, _dir) = slaac_host();
    let host = &topo.host;
    let before = wait_for_slaac(host, "eth0", Duration::from_secs(30));
    let address = public(&before, "eth0").unwrap().ip;

    let mut s = Session::new(host);
    let req = StartRequest {
        uplink: n("eth0"),
        bridge: n("lepont"),
        shm: None,
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    };
    s.start(&req)
        .await
        .unwrap_or_else(|e| panic!("start: {e}\napplied:\n{}", s.log()));
    let bridged = host.read_state();
    assert_eq!(
        public(&bridged, "lepont").map(|a| a.ip),
        Some(address),
        "{bridged:#?}"
    );
    let eth0 = n("eth0");
    let on_port: Vec<_> = bridged.routes_via(&eth0).collect();
    assert!(on_port.is_empty(), "routes left on the port: {on_port:#?}");

    // Two advertisement intervals on the bridge: the kernel's own RA route appears there
    // and the RAs refresh the public address (back at the advertised lifetime).
    let since = Instant::now();
    let mut refreshes = 0;
    let mut last_valid = public(&bridged, "lepont")
        .and_then(|a| a.valid_lft)
        .unwrap();
    while since.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(500));
        let now = host.read_state();
        let valid = public(&now, "lepont")
            .and_then(|a| a.valid_lft)
            .unwrap_or_else(|| panic!("the public address left the bridge: {now:#?}"));
        if valid > last_valid {
            refreshes += 1;
        }
        last_valid = valid;
    }
    let bridged = host.read_state();
    assert!(
        refreshes >= 1 && last_valid >= FRESH - 10,
        "RAs did not refresh the public address on the bridge ({refreshes} refreshes, valid {last_valid} s):\n{}",
        ra.log()
    );
    let route = kernel_ra_route(&bridged, "lepont")
        .unwrap_or_else(|| panic!("no kernel RA route on the bridge: {:#?}", bridged.routes));
    assert_eq!(route.pref, RoutePref::High);

    s.stop(false)
        .await
        .unwrap_or_else(|e| panic!("stop: {e}\napplied:\n{}", s.log()));
    let stopped = host.read_state();
    assert!(stopped.link(&n("lepont")).is_none());
    assert_eq!(
        public(&stopped, "eth0").map(|a| a.ip),
        Some(address),
        "{stopped:#?}"
    );

    // The NIC is back under the kernel's autoconf: the next RA refreshes the same public
    // address on eth0 and gives it the kernel's own RA route, preference and expiry.
    let back = wait_until(Duration::from_secs(30), || {
        let now = host.read_state();
        let p = public(&now, "eth0")?;
        let r = kernel_ra_route(&now, "eth0")?;
        (p.valid_lft? >= FRESH && r.pref == RoutePref::High && r.expires? >= FRESH)
            .then_some((p, r))
    });
    let (p, r) = back.unwrap_or_else(|| {
        panic!(
            "eth0 not back under SLAAC after stop: {:#?}\n{}",
            host.read_state(),
            ra.log()
        )
    });
    assert_eq!(p.ip, address);
    assert_eq!(r.gateway, kernel_ra_route(&before, "eth0").unwrap().gateway);
}
