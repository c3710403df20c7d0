//! The seed workflow with the real binary on a namespace topology: `start` with no IFACE
//! picks the uplink from the default route, QEMU's `qemu-ifup`/`qemu-ifdown` (the binary
//! under those names) attach and detach a tap, `stop` brings back exactly the recorded
//! state. Also: drift made by hand shows in `status` and `stop` repairs it.

mod common;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;

use common::{assert_restored, master_of, settled, strings, EnvQemu, TempDir, BIN, BRIDGE};
use env_qemu_integration::{require_tun, HostConfig, TestTmpfs, Topology, TopologySpec};
use nix::mount::MsFlags;
use serde_json::json;

/// A route to the far network through the router: one more route `start` moves.
const FAR_ROUTE: &str = "198.51.100.0/24 via 192.0.2.1 dev eth0 metric 50";

fn topology() -> Topology {
    let mut host = HostConfig::dhcp_like();
    host.routes.push(FAR_ROUTE.into());
    Topology::build(&TopologySpec { host, far: false })
}

/// The tmpfs size in KiB, from this mount's `size=` option.
fn tmpfs_kib(shm: &TestTmpfs) -> u64 {
    let info = shm.mountinfo();
    let size = info
        .split([' ', ','])
        .find_map(|o| o.strip_prefix("size="))
        .unwrap_or_else(|| panic!("no size= in {info}"));
    size.trim_end_matches('k').parse().expect("size in k")
}

/// `qemu-ifup` and `qemu-ifdown` as symlinks to the binary, the way they are installed.
fn scripts(dir: &TempDir) -> (PathBuf, PathBuf) {
    let (up, down) = (dir.path().join("qemu-ifup"), dir.path().join("qemu-ifdown"));
    symlink(BIN, &up).expect("symlink qemu-ifup");
    symlink(BIN, &down).expect("symlink qemu-ifdown");
    (up, down)
}

fn check(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn seed_workflow_restores_the_host_exactly() {
    require_tun!();
    let topo = topology();
    let host = &topo.host;
    host.ip("tuntap add tap0 mode tap");
    let shm = TestTmpfs::mount("64M", MsFlags::empty());
    let (state, bin_dir) = (TempDir::new(), TempDir::new());
    let eq = EnvQemu::new(host, &state);
    let before = settled(host);
    let shm_before = tmpfs_kib(&shm);

    let shm_path = shm.path().to_str().expect("utf-8");
    eq.ok(&["start", "--shm-path", shm_path, "--shm-size", "128M"]);
    let s = eq.status();
    assert_eq!(s["started"], true, "{s}");
    assert_eq!(s["phase"], "running", "{s}");
    assert_eq!(s["bridge"], BRIDGE, "{s}");
    assert_eq!(s["uplink"], "eth0", "the default route's interface: {s}");
    assert_eq!(s["taps"], json!([]), "{s}");
    assert_eq!(s["drift"], json!([]), "{s}");
    assert_eq!(s["shm"]["size_before"], "64M", "{s}");
    assert_eq!(tmpfs_kib(&shm), 128 * 1024, "shm grown to 128M");
    assert_eq!(master_of(host, "eth0").as_deref(), Some(BRIDGE));

    // QEMU runs in the host's namespace and calls `qemu-ifup TAP`: no --netns there.
    let (ifup, ifdown) = scripts(&bin_dir);
    let ifup = ifup.to_str().expect("utf-8");
    let up = Command::new("ip")
        .args(["netns", "exec", host.name(), ifup, "tap0"])
        .args(["--state-dir", state.str(), "--config", "/nonexistent"])
        .output()
        .expect("qemu-ifup runs");
    check(&up, "qemu-ifup tap0");
    assert_eq!(master_of(host, "tap0").as_deref(), Some(BRIDGE));
    let s = eq.status();
    assert_eq!(strings(&s["taps"]), ["tap0"], "{s}");
    assert_eq!(s["drift"], json!([]), "{s}");

    let down = Command::new(&ifdown)
        .arg("tap0")
        .args(eq.confinement())
        .output()
        .expect("qemu-ifdown runs");
    check(&down, "qemu-ifdown tap0");
    assert_eq!(master_of(host, "tap0"), None);
    assert_eq!(eq.status()["taps"], json!([]));

    eq.ok(&["stop"]);
    let s = eq.status();
    assert_eq!(s["started"], false, "{s}");
    assert_eq!(s["phase"], json!(null), "{s}");
    assert_eq!(s["bridge_present"], false, "{s}");
    assert!(eq.state_files().is_empty(), "stop removes the state file");
    assert_restored(host, &before, "after stop");
    assert_eq!(tmpfs_kib(&shm), shm_before, "shm size restored");
}

#[test]
fn drift_made_by_hand_shows_in_status_and_stop_repairs_it() {
    require_tun!();
    let topo = topology();
    let host = &topo.host;
    let state = TempDir::new();
    let eq = EnvQemu::new(host, &state);
    let before = settled(host);

    eq.ok(&["start", "--shm-size", "off"]);
    // A VM exits without its ifdown, and someone deletes a moved route.
    host.ip("tuntap add tap7 mode tap");
    eq.ok(&["add", "tap7"]);
    host.ip("link del tap7");
    host.ip(&format!("route del 198.51.100.0/24 dev {BRIDGE}"));

    let s = eq.status();
    assert_eq!(s["phase"], "running", "{s}");
    let drift = strings(&s["drift"]);
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(
        drift
            .iter()
            .any(|d| d.contains("198.51.100.0/24") && d.contains("found absent")),
        "the deleted route: {drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.contains("tap7") && d.contains("found absent")),
        "the vanished tap: {drift:?}"
    );
    let text = eq.ok(&["status"]).stdout;
    assert!(text.contains("198.51.100.0/24"), "{text}");

    eq.ok(&["stop"]);
    assert_restored(host, &before, "stop after drift");
}
