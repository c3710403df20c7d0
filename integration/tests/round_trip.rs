//! The whole life of env-qemu on a real kernel: `start` → two taps `add`ed → one `del`ed
//! → `stop --force` with the other still attached, through `NetlinkKernel` and the core
//! commands. Each host configuration gets its own throwaway topology; afterwards the host
//! namespace must read back (`ip -j`) exactly as it did before.

use env_qemu_core::model::{AddrFlag, Address, Family, IfName, Link, LinkKind, NetState, Route};
use env_qemu_core::plan::{ShmRequest, StartRequest};
use env_qemu_core::state::Phase;
use env_qemu_core::{Kernel, LinkSpec, Op};
use env_qemu_integration::compare::difference;
use env_qemu_integration::session::settled_state;
use env_qemu_integration::topology::{LAN_ROUTER_V4, LAN_ROUTER_V6};
use env_qemu_integration::{
    require_tun, same_state, HostConfig, Session, TestNs, TestTmpfs, Topology, TopologySpec,
};
use nix::mount::MsFlags;

const BRIDGE: &str = "lepont";
const TAPS: [&str; 2] = ["tap0", "tap1"];
const SHM_BEFORE: u64 = 64 << 20;
const SHM_ASKED: u64 = 128 << 20;

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

fn build(host: HostConfig) -> Topology {
    Topology::build(&TopologySpec { host, far: false })
}

/// IPv6 knobs env-qemu changes on the uplink and must put back.
fn knobs(ns: &TestNs, dev: &str) -> Vec<String> {
    ["accept_ra", "autoconf", "accept_dad"]
        .iter()
        .map(|k| ns.sysctl(&format!("net.ipv6.conf.{dev}.{k}")))
        .collect()
}

/// The whole round trip on `topo.host`, `uplink` being the device to bridge.
async fn round_trip(topo: &Topology, uplink: &str) {
    let host = &topo.host;
    let before = settled_state(host);
    let knobs_before = knobs(host, uplink);
    let static_before = static_neighbours(host);
    let shm = TestTmpfs::mount("64M", MsFlags::empty());
    let mut s = Session::new(host);
    let req = StartRequest {
        uplink: n(uplink),
        bridge: n(BRIDGE),
        shm: Some(ShmRequest {
            path: shm.path().to_path_buf(),
            size_bytes: SHM_ASKED,
        }),
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    };
    if let Err(e) = s.start(&req).await {
        panic!("start: {e}\napplied:\n{}", s.log());
    }
    // Read at once: the moved IPv6 addresses must be usable on the bridge now.
    assert_ipv6_usable_at_once(&before, &host.read_state(), uplink, BRIDGE);
    assert_eq!(s.saved().map(|st| st.phase), Some(Phase::Running));
    for tap in TAPS {
        let spec = LinkSpec::Tap {
            name: n(tap),
            owner: None,
            group: None,
        };
        s.kernel().apply(&Op::LinkAdd { spec }).await.unwrap();
    }
    let with_taps = host.read_state();
    for tap in TAPS {
        s.add(tap)
            .await
            .unwrap_or_else(|e| panic!("add {tap}: {e}"));
    }

    let bridged = host.read_state();
    assert_bridged(&before, &bridged, uplink);
    let tmpfs = s.kernel().read_tmpfs(shm.path()).await.unwrap();
    assert_eq!(tmpfs.size_bytes, SHM_ASKED, "shm not grown");

    s.del(TAPS[0]).await.unwrap();
    let now = host.read_state();
    assert_tap_as_before(&with_taps, &now, TAPS[0]);
    assert_eq!(link(&now, TAPS[1]).master, Some(n(BRIDGE)));

    s.stop(true)
        .await
        .unwrap_or_else(|e| panic!("stop --force: {e}\napplied:\n{}", s.log()));
    // Read at once: the restored IPv6 addresses must be usable now, not after DAD.
    let stopped = host.read_state();
    assert_ipv6_usable_at_once(&before, &stopped, uplink, uplink);
    for tap in TAPS {
        assert_tap_as_before(&with_taps, &stopped, tap);
    }
    assert!(s.saved().is_none(), "state file left after stop");
    let tmpfs = s.kernel().read_tmpfs(shm.path()).await.unwrap();
    assert_eq!(tmpfs.size_bytes, SHM_BEFORE, "shm not restored");

    for tap in TAPS {
        host.ip(&format!("link del {tap}"));
    }
    let after = host.read_state();
    assert!(
        same_state(&before, &after),
        "state before start (left) and after stop (right) differ:\n{}\napplied:\n{}",
        difference(&before, &after),
        s.log()
    );
    assert_eq!(knobs(host, uplink), knobs_before, "uplink IPv6 sysctls");
    assert_eq!(
        static_neighbours(host),
        static_before,
        "static neighbour entries"
    );
}

/// `ip -j neigh show nud permanent`, read by iproute2.
fn static_neighbours(host: &TestNs) -> serde_json::Value {
    host.ip_json("neigh show nud permanent")
}

fn link<'a>(s: &'a NetState, name: &str) -> &'a Link {
    s.link(&n(name)).unwrap_or_else(|| panic!("no link {name}"))
}

/// What an address looks like as configured: the kernel's own state flags left out.
fn configured(a: &Address) -> (std::net::IpAddr, u8, String, bool, Option<std::net::IpAddr>) {
    let flags: Vec<&str> = a.configurable_flags().map(AddrFlag::ip_word).collect();
    (
        a.ip,
        a.prefix_len,
        flags.join(" "),
        a.secondary,
        a.broadcast,
    )
}

/// The bridge exists with the uplink's MAC and MTU, STP off; the uplink and both taps are
/// its ports; every address of the uplink is on the bridge instead; every route that went
/// through the uplink, in every table, now goes through the bridge.
fn assert_bridged(before: &NetState, now: &NetState, uplink: &str) {
    let (nic, br) = (link(before, uplink), link(now, BRIDGE));
    match br.kind {
        LinkKind::Bridge(info) => {
            assert!(!info.stp && info.forward_delay == 0, "{info:?}");
            assert!(info.mac_fixed, "bridge MAC not fixed: taps would change it");
        }
        ref k => panic!("{BRIDGE} is a {k:?}"),
    }
    assert_eq!(
        (br.mac, br.mtu, br.up),
        (nic.mac, nic.mtu, nic.up),
        "bridge"
    );
    for port in [uplink, TAPS[0], TAPS[1]] {
        assert_eq!(link(now, port).master, Some(n(BRIDGE)), "{port} not a port");
    }
    for tap in TAPS {
        let t = link(now, tap);
        assert_eq!(
            (t.mtu, t.up),
            (nic.mtu, true),
            "{tap} takes the bridge MTU, up"
        );
    }

    let (nic_name, br_name) = (n(uplink), n(BRIDGE));
    let on_bridge: Vec<_> = now.addresses_of(&br_name).map(configured).collect();
    for a in before.addresses_of(&nic_name) {
        assert!(
            on_bridge.contains(&configured(a)),
            "{a:?} not moved to {BRIDGE}: {on_bridge:?}"
        );
    }
    let left: Vec<_> = now.addresses_of(&nic_name).collect();
    assert!(left.is_empty(), "addresses left on {uplink}: {left:?}");

    for r in before.routes_via(&nic_name) {
        let moved = r.on(&br_name);
        assert!(
            now.routes.iter().any(|l| l.same_ignoring_expiry(&moved)),
            "{r:?} not moved to {BRIDGE}; routes: {:#?}",
            now.routes
        );
    }
    let left: Vec<&Route> = now.routes_via(&nic_name).collect();
    assert!(left.is_empty(), "routes left on {uplink}: {left:#?}");
}

/// A tap env-qemu let go of is as it was before `add`: no master, its MTU, down.
fn assert_tap_as_before(with_taps: &NetState, now: &NetState, tap: &str) {
    let (was, is) = (link(with_taps, tap), link(now, tap));
    assert_eq!(
        (&is.master, is.mtu, is.up),
        (&None, was.mtu, was.up),
        "{tap} not put back"
    );
}

/// `stop` re-adds the uplink's IPv6 addresses with DAD off for the moment (accept_dad=0):
/// none is `tentative` right after, and none gained a `nodad` it did not have.
fn assert_ipv6_usable_at_once(before: &NetState, now: &NetState, uplink: &str, on: &str) {
    let on_dev = n(on);
    for a in before
        .addresses_of(&n(uplink))
        .filter(|a| a.family() == Family::Inet6)
    {
        let b = now
            .addresses_of(&on_dev)
            .find(|b| b.ip == a.ip)
            .unwrap_or_else(|| panic!("{a:?} not on {on}"));
        assert!(
            !b.has(AddrFlag::Tentative),
            "{b:?} tentative right after the command"
        );
        assert_eq!(b.has(AddrFlag::Nodad), a.has(AddrFlag::Nodad), "{b:?}");
    }
}

/// (a) The seed's shape: one IPv4 /24 and a default via the router.
#[tokio::test]
async fn seed_shape() {
    require_tun!();
    let topo = build(HostConfig {
        addresses: vec!["192.0.2.10/24".into()],
        routes: vec![format!("default via {LAN_ROUTER_V4} dev eth0")],
        ..HostConfig::bare()
    });
    round_trip(&topo, "eth0").await;
}

/// (b) IPv6 global (with DAD, no `nodad`) plus the kernel's link-local, an IPv4 secondary, a static route, a default in table 100, two IPv4
/// defaults with metrics on two uplinks, an IPv6 default.
#[tokio::test]
async fn rich_host() {
    require_tun!();
    let topo = build(HostConfig {
        addresses: vec![
            "192.0.2.10/24".into(),
            "192.0.2.11/24".into(),
            "2001:db8::10/64".into(),
        ],
        routes: vec![
            format!("default via {LAN_ROUTER_V4} dev eth0 metric 100"),
            format!("198.51.100.0/24 via {LAN_ROUTER_V4} dev eth0 proto static"),
            format!("default via {LAN_ROUTER_V4} dev eth0 table 100"),
            format!("default via {LAN_ROUTER_V6} dev eth0"),
        ],
        ..HostConfig::bare()
    });
    // A second NIC on the same router, with its own default at a higher metric: it stays
    // out of the bridge and must be left untouched.
    let (host, lan) = (&topo.host, &topo.lan);
    host.ip(&format!(
        "link add eth1 type veth peer name lan1 netns {}",
        lan.name()
    ));
    lan.ip("addr add 203.0.113.1/24 dev lan1");
    lan.ip("link set lan1 up");
    host.ip("addr add 203.0.113.10/24 dev eth1");
    host.ip("link set eth1 up");
    host.ip("route add default via 203.0.113.1 dev eth1 metric 200");
    // Static ARP and NDP entries: start's deletion of eth0's last IPv4 address flushes
    // the ARP one; stop must put it back.
    host.ip("neigh add 192.0.2.50 lladdr 02:00:00:00:00:50 dev eth0 nud permanent");
    host.ip("neigh add 2001:db8::50 lladdr 02:00:00:00:00:51 dev eth0 nud permanent router");
    assert_eq!(static_neighbours(host).as_array().map(Vec::len), Some(2));
    round_trip(&topo, "eth0").await;
}

/// (c) An uplink that is administratively down, with IPv4 addresses (the kernel has
/// removed its routes; IPv6 addresses cannot stay on a down device).
#[tokio::test]
async fn uplink_admin_down() {
    require_tun!();
    let topo = build(HostConfig {
        up: false,
        addresses: vec!["192.0.2.10/24".into(), "192.0.2.11/24".into()],
        ..HostConfig::bare()
    });
    round_trip(&topo, "eth0").await;
}

/// (d) Jumbo frames on both ends of the uplink: bridge and taps get MTU 9000.
#[tokio::test]
async fn jumbo_mtu() {
    require_tun!();
    let topo = build(HostConfig {
        mtu: Some(9000),
        addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
        routes: vec![
            format!("default via {LAN_ROUTER_V4} dev eth0"),
            format!("default via {LAN_ROUTER_V6} dev eth0"),
        ],
        ..HostConfig::bare()
    });
    topo.lan.ip("link set lan0 mtu 9000");
    round_trip(&topo, "eth0").await;
}

/// (e) A macvlan as the uplink, on top of the veth. The lower device carries the
/// macvlan's receive handler and could not itself be enslaved (EBUSY); the macvlan can.
#[tokio::test]
async fn macvlan_uplink() {
    require_tun!();
    let topo = build(HostConfig::bare());
    let host = &topo.host;
    host.ip("link add mv0 link eth0 address 02:00:00:00:00:20 type macvlan mode bridge");
    host.ip("addr add 192.0.2.10/24 dev mv0");
    host.ip("addr add 2001:db8::10/64 dev mv0");
    host.ip("link set mv0 up");
    host.ip(&format!("route add default via {LAN_ROUTER_V4} dev mv0"));
    host.ip(&format!("route add default via {LAN_ROUTER_V6} dev mv0"));
    round_trip(&topo, "mv0").await;
}

/// A finite-lifetime IPv6 address, as SLAAC makes them.
///
/// The kernel removes the prefix route of a deleted IPv6 address only when the address is
/// permanent; a dynamic one's route stays, left to expire with the prefix. Once this left
/// `2001:db8:0:1::/64 dev eth0 proto kernel metric 256 expires …` on the port after start,
/// beside the bridge's own copy, and the older eth0 route won: neighbour solicitations
/// left through eth0 but the advertisements arrived on the bridge, so once the cached
/// neighbour entry aged out the on-link subnet was unreachable. Start now deletes that
/// route (`assert_bridged` checks that nothing is left on the port).
#[tokio::test]
async fn dynamic_ipv6_address() {
    require_tun!();
    let topo = build(HostConfig {
        addresses: vec!["192.0.2.10/24".into()],
        routes: vec![format!("default via {LAN_ROUTER_V4} dev eth0")],
        ..HostConfig::bare()
    });
    // Added once eth0 is up: a finite-lifetime IPv6 address added to a down device never
    // gets its prefix route (on up the kernel re-creates it for permanent ones only).
    topo.host
        .ip("addr add 2001:db8:0:1::10/64 dev eth0 valid_lft 3600 preferred_lft 1800");
    round_trip(&topo, "eth0").await;
}

/// A static and a dynamic IPv6 address on one prefix (a host with a fixed address beside
/// its SLAAC one): the kernel keeps one prefix route for both, whose expiry follows the
/// last address added and which the deletion of the last permanent one removes. Start and
/// stop twenty times in a row: exact restore each time and, while bridged, no route left
/// on the port (`round_trip` checks both).
#[tokio::test]
async fn static_and_dynamic_ipv6_on_one_prefix_twenty_times() {
    require_tun!();
    let topo = build(HostConfig {
        addresses: vec!["192.0.2.10/24".into()],
        routes: vec![format!("default via {LAN_ROUTER_V4} dev eth0")],
        ..HostConfig::bare()
    });
    topo.host.ip("addr add 2001:db8::31/64 dev eth0 nodad");
    topo.host
        .ip("addr add 2001:db8::aa/64 dev eth0 nodad valid_lft 7200 preferred_lft 3600");
    for _ in 0..20 {
        round_trip(&topo, "eth0").await;
    }
}

/// `net.ipv6.conf.all.accept_dad=1` (the kernel runs DAD if `all`'s or the device's own
/// knob says so): switching the device's off is not enough there, so start and stop
/// switch `all`'s off too while the moved IPv6 addresses arrive, and put it back. The
/// round trip asserts the addresses usable at once after stop, and the exact restore
/// (the knob included).
#[tokio::test]
async fn all_accept_dad_on() {
    require_tun!();
    let topo = build(HostConfig {
        addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
        routes: vec![
            format!("default via {LAN_ROUTER_V4} dev eth0"),
            format!("default via {LAN_ROUTER_V6} dev eth0"),
        ],
        ..HostConfig::bare()
    });
    topo.host.set_sysctl("net.ipv6.conf.all.accept_dad", "1");
    round_trip(&topo, "eth0").await;
    assert_eq!(topo.host.sysctl("net.ipv6.conf.all.accept_dad"), "1");
}
