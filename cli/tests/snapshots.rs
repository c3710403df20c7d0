//! What the user reads, pinned with insta: `--help` of the main commands, the plans of
//! `start --dry-run` and `stop --dry-run` on a deterministic host (fixed MAC and
//! addresses), and `status --json` with a tap attached. The test namespace's name and
//! inode, and temp paths, are replaced by placeholders.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test -p env-qemu-cli
//! --test snapshots`, then review the `.snap` diffs.

mod common;

use std::process::Command;

use common::{settled, EnvQemu, TempDir, BIN};
use env_qemu_integration::{require_tun, HostConfig, TestTmpfs, Topology, TopologySpec};
use nix::mount::MsFlags;
use serde_json::Value;

/// `--help` as a 100-column terminal shows it.
fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .output()
        .expect("env-qemu runs");
    assert!(out.status.success(), "{args:?} --help: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn help_of_env_qemu() {
    insta::assert_snapshot!("help", help(&[]));
}

#[test]
fn help_of_start() {
    insta::assert_snapshot!("help_start", help(&["start"]));
}

#[test]
fn help_of_stop() {
    insta::assert_snapshot!("help_stop", help(&["stop"]));
}

/// A DHCP-like host (eth0 02:00:00:00:00:10, 192.0.2.10/24, 2001:db8::10/64) with one more
/// route to the far network.
fn topology() -> Topology {
    let mut host = HostConfig::dhcp_like();
    host.routes
        .push("198.51.100.0/24 via 192.0.2.1 dev eth0 metric 50".into());
    Topology::build(&TopologySpec { host, far: false })
}

#[test]
fn start_dry_run_plan() {
    require_tun!();
    let topo = topology();
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    settled(&topo.host);
    let before = topo.host.read_state();
    let out = eq.ok(&["start", "--dry-run", "--shm-size", "off"]);
    insta::assert_snapshot!("start_dry_run", out.stdout);
    assert!(eq.state_files().is_empty(), "a dry run saves nothing");
    assert!(
        env_qemu_integration::same_state(&before, &topo.host.read_state()),
        "a dry run changes nothing"
    );
}

/// Replaces the run-specific strings of `status --json` with placeholders.
fn redact(mut s: Value, topo: &Topology, dir: &TempDir, shm: &TestTmpfs) -> Value {
    let text = s.to_string();
    let text = text
        .replace(dir.str(), "[state-dir]")
        .replace(shm.path().to_str().expect("utf-8"), "[shm]")
        .replace(topo.host.name(), "[netns]");
    s = serde_json::from_str(&text).expect("still JSON");
    let file = s["state_file"].as_str().expect("state_file").to_string();
    let cookie = file
        .strip_prefix("[state-dir]/netns-cookie-")
        .and_then(|f| f.split('-').next())
        .expect("netns-cookie-COOKIE-BRIDGE.json");
    s["state_file"] = Value::String(file.replace(cookie, "[cookie]"));
    for (field, value) in [("netns_inode", "[inode]"), ("netns_cookie", "[cookie]")] {
        assert!(s[field].is_u64(), "{field}: {s}");
        s[field] = Value::String(value.into());
    }
    s
}

#[test]
fn status_json_and_stop_plan_while_running() {
    require_tun!();
    let topo = topology();
    topo.host.ip("tuntap add tap0 mode tap");
    let shm = TestTmpfs::mount("64M", MsFlags::empty());
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    settled(&topo.host);
    let shm_path = shm.path().to_str().expect("utf-8");
    eq.ok(&["start", "--shm-path", shm_path, "--shm-size", "128M"]);
    eq.ok(&["add", "tap0"]);

    let status = redact(eq.status(), &topo, &dir, &shm);
    insta::assert_json_snapshot!("status_json_running", status);
    let plan = eq.ok(&["stop", "--dry-run", "--force"]).stdout;
    insta::assert_snapshot!("stop_force_dry_run", plan.replace(shm_path, "[shm]"));
    eq.ok(&["stop", "--force"]);
}
