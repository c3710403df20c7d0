//! Wrong requests: each is refused with its documented exit code and one stderr line
//! naming the object and the fix, and the network is left exactly as it was. An uplink
//! without IPv4 is not wrong: IPv6-only hosts start and stop like any other.
//!
//! Not covered: a Wi-Fi uplink (needs mac80211_hwsim to create one).

mod common;

use common::{assert_refused, assert_restored, settled, EnvQemu, Refusal, TempDir};
use env_qemu_integration::topology::{LAN_ROUTER_V6, UPLINK};
use env_qemu_integration::{require_tun, HostConfig, TestNs, Topology, TopologySpec};

/// A DHCP-like host with, besides eth0: bridge br9 with a veth (vp0) and a tap (tap9) as
/// ports, a free veth vx0, and a free tap tap0.
fn host_with_extras() -> Topology {
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: false,
    });
    let h = &topo.host;
    h.ip("link add br9 type bridge");
    h.ip("link add vp0 type veth peer name vp1");
    h.ip("link set vp0 master br9");
    h.ip("tuntap add tap9 mode tap");
    h.ip("link set tap9 master br9");
    h.ip("link add vx0 type veth peer name vx1");
    h.ip("tuntap add tap0 mode tap");
    topo
}

const NAME_RULES: &str = "names may not contain";
const NOT_STARTED: &str = "not started";

#[test]
fn refusals_before_start() {
    require_tun!();
    let topo = host_with_extras();
    let host = &topo.host;
    let dir = TempDir::new();
    let eq = EnvQemu::new(host, &dir);
    let plain_dir = TempDir::new();
    settled(host);

    let long = "sixteen-bytes-xx";
    let run_start = "run `env-qemu start`";
    let rows = [
        Refusal::new(&["start", long], 2, long, "at most 15"),
        Refusal::new(&["start", "eth/0"], 2, "\"eth/0\"", NAME_RULES),
        Refusal::new(&["start", "eth 0"], 2, "\"eth 0\"", NAME_RULES),
        Refusal::new(&["start", "eth\t0"], 2, r#""eth\t0""#, NAME_RULES),
        Refusal::new(&["start", "eth\n0"], 2, r#""eth\n0""#, NAME_RULES),
        Refusal::new(&["start", "eth\u{1}0"], 2, r#""eth\u{1}0""#, NAME_RULES),
        Refusal::new(&["start", "--shm-size", "lots"], 2, "\"lots\"", "512M"),
        Refusal::new(&["add", "tap0"], 3, NOT_STARTED, run_start),
        Refusal::new(&["del", "tap0"], 3, NOT_STARTED, run_start),
        Refusal::new(&["stop"], 3, NOT_STARTED, run_start),
        Refusal::new(&["add", long], 2, long, "at most 15"),
        Refusal::new(&["add", "ta/p"], 2, "\"ta/p\"", NAME_RULES),
    ];
    for row in &rows {
        assert_refused(&eq, &[host], row);
    }
    // Until start stops printing its banner before planning (see below), its planning
    // refusals are one line only with -q.
    for row in planning_refusals(plain_dir.str()) {
        assert_refused(&eq, &[host], &row.quiet());
    }
    assert!(eq.state_files().is_empty(), "no state saved by a refusal");
}

/// `start` requests refused once planned: the uplink or bridge is wrong for this host.
fn planning_refusals(plain_dir: &str) -> Vec<Refusal<'_>> {
    vec![
        Refusal::new(&["start", "nosuch0"], 3, "nosuch0", "ip link"),
        Refusal::new(
            &["start", "lo"],
            4,
            "lo is the loopback",
            "choose the interface",
        ),
        Refusal::new(
            &["start", "br9"],
            4,
            "br9 is a bridge",
            "name the NIC behind it",
        ),
        Refusal::new(
            &["start", "vp0"],
            4,
            "vp0 is already a port of br9",
            "nomaster",
        ),
        Refusal::new(
            &["--bridge", UPLINK, "start", UPLINK],
            4,
            "eth0",
            "--bridge",
        ),
        Refusal::new(&["--bridge", "br9", "start"], 4, "br9", "--bridge"),
        Refusal::new(
            &["start", "--shm-path", plain_dir],
            3,
            plain_dir,
            "--shm-path",
        ),
    ]
}

/// `env-qemu start nosuch0` prints `env-qemu: bridging nosuch0 on lepont (…)` and only
/// then `env-qemu: interface nosuch0 not found…`: two lines, the first one claiming
/// something that never happens. The banner belongs after a successful plan.
#[test]
fn a_refused_start_prints_only_its_error() {
    require_tun!();
    let topo = host_with_extras();
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    let plain_dir = TempDir::new();
    settled(&topo.host);
    for row in planning_refusals(plain_dir.str()) {
        assert_refused(&eq, &[&topo.host], &row);
    }
}

#[test]
fn refusals_while_started() {
    require_tun!();
    let topo = host_with_extras();
    let host = &topo.host;
    let dir = TempDir::new();
    let eq = EnvQemu::new(host, &dir);
    let before = settled(host);
    eq.ok(&["start", "--shm-size", "off"]);

    let already = "run `env-qemu stop` first";
    let rows = [
        Refusal::new(&["add", "vx0"], 4, "vx0 is a veth", "only tun/tap"),
        Refusal::new(
            &["add", "lepont"],
            4,
            "lepont is the bridge itself",
            "attach taps",
        ),
        Refusal::new(
            &["add", UPLINK],
            4,
            "eth0 is the bridge's uplink",
            "env-qemu stop",
        ),
        Refusal::new(&["add", "lo"], 4, "lo is a loopback", "only tun/tap"),
        Refusal::new(&["add", "nosuch0"], 3, "nosuch0", "ip link"),
        Refusal::new(
            &["add", "tap9"],
            4,
            "tap9 is a port of another bridge, br9",
            "nomaster",
        ),
        Refusal::new(
            &["del", "tap0"],
            4,
            "tap0 is not attached",
            "nothing to detach",
        ),
        Refusal::new(&["start"], 4, "already started", already),
        Refusal::new(&["start", UPLINK], 4, "already started", already),
        Refusal::new(&["start", "vx0"], 4, "already started", already),
    ];
    for row in &rows {
        assert_refused(&eq, &[host], row);
    }
    eq.ok(&["add", "tap0"]);
    let vms = Refusal::new(&["stop"], 4, "taps attached (tap0)", "stop --force");
    assert_refused(&eq, &[host], &vms);
    eq.ok(&["del", "tap0"]);

    eq.ok(&["stop"]);
    assert_restored(host, &before, "stop after the refusals");
}

#[test]
fn start_without_iface_needs_one_default_route() {
    require_tun!();
    let ns = TestNs::new();
    ns.ip("link set lo up");
    for (dev, addr) in [("va0", "192.0.2.10/24"), ("vb0", "198.51.100.10/24")] {
        ns.ip(&format!("link add {dev} type veth peer name {dev}p"));
        ns.ip(&format!("addr add {addr} dev {dev}"));
        ns.ip(&format!("link set {dev} up"));
        ns.ip(&format!("link set {dev}p up"));
    }
    let dir = TempDir::new();
    let eq = EnvQemu::new(&ns, &dir);
    settled(&ns);
    let none = Refusal::new(&["start"], 3, "no default route", "env-qemu start IFACE");
    assert_refused(&eq, &[&ns], &none);

    ns.ip("route add default via 192.0.2.1 dev va0 metric 10");
    ns.ip("route append default via 198.51.100.1 dev vb0 metric 10");
    let tied = Refusal::new(&["start"], 4, "va0 and vb0", "env-qemu start IFACE");
    assert_refused(&eq, &[&ns], &tied);
    // Either NIC's default shares its key with the other's: `route replace` could take
    // the wrong one, so start refuses rather than move another device's route.
    for dev in ["va0", "vb0"] {
        let shared = Refusal::new(&["start", dev], 4, "default via", "distinct metrics");
        assert_refused(&eq, &[&ns], &shared.quiet());
    }
}

#[test]
fn an_ipv6_only_uplink_starts_and_stops() {
    require_tun!();
    let host = HostConfig {
        addresses: vec!["2001:db8::10/64 nodad".into()],
        routes: vec![format!(
            "-6 default via {LAN_ROUTER_V6} dev eth0 metric 1024"
        )],
        ..HostConfig::bare()
    };
    let topo = Topology::build(&TopologySpec { host, far: false });
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    let before = settled(&topo.host);

    eq.ok(&["start", "--shm-size", "off"]);
    let s = eq.status();
    assert_eq!(
        s["uplink"], UPLINK,
        "picked from the IPv6 default route: {s}"
    );
    assert_eq!(s["drift"], serde_json::json!([]), "{s}");
    let routes = topo.host.ip("-6 route show default");
    assert!(routes.contains("dev lepont"), "{routes}");
    eq.ok(&["stop"]);
    assert_restored(&topo.host, &before, "IPv6-only stop");
}
