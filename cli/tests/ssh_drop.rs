//! An admin over SSH loses the connection in the middle of `start`: the terminal is gone
//! (writes fail with EPIPE) and SIGHUP arrives. The plan must still run to its end, leaving
//! a complete bridge, and `stop` must restore the host exactly.

use std::process::{Command, Stdio};
use std::time::Duration;

use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::require_netns;
use env_qemu_integration::session::settled_state;
use env_qemu_integration::topology::{HostConfig, Topology, TopologySpec};

#[test]
fn a_dropped_connection_does_not_cut_a_plan_in_half() {
    require_netns!();
    // Enough routes to move that the plan is still running when the "connection" drops.
    let host = HostConfig::with_many_routes();
    let topo = Topology::build(&TopologySpec { host, far: false });
    // "Before" is a settled host: the link-local just made is still in DAD for ~1 s.
    let before = settled_state(&topo.host);
    let state_dir = std::env::temp_dir().join(format!("env-qemu-sshdrop-{}", std::process::id()));
    let bin = env!("CARGO_BIN_EXE_env-qemu");
    let common = [
        "--netns",
        topo.host.name(),
        "--state-dir",
        state_dir.to_str().unwrap(),
    ];

    let mut child = Command::new(bin)
        .args(common)
        .args(["-v", "start", "eth0", "--shm-size", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("env-qemu runs");
    // The terminal goes away: every later write of the child fails with EPIPE...
    drop(child.stderr.take());
    drop(child.stdout.take());
    std::thread::sleep(Duration::from_millis(20));
    // ...and the session leader's death sends SIGHUP (only to the PID we spawned).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    );
    let status = child.wait().expect("env-qemu exits");
    let routes_on_bridge = topo
        .host
        .ip("route show table 100")
        .lines()
        .filter(|l| l.contains("dev lepont"))
        .count();

    let status_json = Command::new(bin)
        .args(common)
        .args(["--json", "status"])
        .output()
        .unwrap();
    let stop = Command::new(bin)
        .args(common)
        .args(["-q", "stop"])
        .output()
        .unwrap();
    let after = topo.host.read_state();
    let _ = std::fs::remove_dir_all(&state_dir);

    assert!(status.success(), "start did not finish: {status:?}");
    assert_eq!(routes_on_bridge, 400, "every route of table 100 moved");
    let s: serde_json::Value = serde_json::from_slice(&status_json.stdout).unwrap();
    assert_eq!(s["phase"], "running", "{s}");
    assert_eq!(s["drift"], serde_json::json!([]), "{s}");
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(
        same_state(&before, &after),
        "{}",
        difference(&before, &after)
    );
}
