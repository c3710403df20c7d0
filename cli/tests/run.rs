//! `env-qemu run -- COMMAND`: the seed's `emule_pc`. Start if needed, run the command, stop
//! when it exits unless another run (or a VM tap) still uses the bridge; the command's exit
//! status comes through. COMMAND runs as the user who ran sudo (here `nobody`, sudo
//! simulated by SUDO_UID/SUDO_GID), inside the test namespace (`--netns`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_restored, nobody, settled, EnvQemu, TempDir};
use env_qemu_core::model::NetState;
use env_qemu_integration::require_netns;
use env_qemu_integration::topology::{HostConfig, Topology, TopologySpec};

/// A host and its LAN, the host's settled state, and env-qemu confined to them.
fn lab(host: HostConfig) -> (Topology, NetState, TempDir, EnvQemu) {
    let topo = Topology::build(&TopologySpec { host, far: false });
    let before = settled(&topo.host);
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    (topo, before, dir, eq)
}

fn bridge_exists(topo: &Topology) -> bool {
    topo.host.try_ip("link show lepont").is_ok()
}

#[test]
fn run_passes_the_exit_status_through_and_stops_after() {
    require_netns!();
    let (topo, before, _dir, eq) = lab(HostConfig::dhcp_like());
    // The stand-in for QEMU sees the bridge (it runs in the namespace), then fails with
    // its own status.
    let probe = "ip link show lepont >/dev/null && exit 7";
    let out = eq.sudo_run(
        &nobody(),
        &["run", "--shm-size", "off", "--", "sh", "-c", probe],
    );
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(!bridge_exists(&topo), "the bridge outlived the only run");
    assert!(eq.state_files().is_empty());
    assert_restored(&topo.host, &before, "after run");
}

#[test]
fn a_bridge_started_by_hand_outlives_run() {
    require_netns!();
    let (topo, before, _dir, eq) = lab(HostConfig::dhcp_like());
    eq.ok(&["start", "--shm-size", "off"]);
    let out = eq.sudo_run(&nobody(), &["run", "--", "true"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        bridge_exists(&topo),
        "run stopped a bridge it did not start"
    );
    eq.ok(&["stop"]);
    assert_restored(&topo.host, &before, "after stop");
}

#[test]
fn the_last_run_out_stops_the_bridge() {
    require_netns!();
    let (topo, before, dir, eq) = lab(HostConfig::dhcp_like());
    let gate = dir.path().join("release-first");
    // First run: holds the bridge until the test opens the gate (bounded: 20 s).
    let wait = format!(
        "for i in $(seq 200); do [ -e {} ] && exit 0; sleep 0.1; done; exit 9",
        gate.display()
    );
    let mut first = eq
        .sudo_command(
            &nobody(),
            &["run", "--shm-size", "off", "--", "sh", "-c", &wait],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("env-qemu runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge_exists(&topo) {
        assert!(
            Instant::now() < deadline,
            "the first run never started the bridge"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Second run joins the bridge and leaves while the first still holds it.
    let out = eq.sudo_run(&nobody(), &["run", "--", "true"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        bridge_exists(&topo),
        "the second run stopped a bridge the first still uses"
    );
    std::fs::write(&gate, b"").unwrap();
    let status = first.wait().expect("the first run exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        !bridge_exists(&topo),
        "the last run out did not stop the bridge"
    );
    assert_restored(&topo.host, &before, "after both runs");
}

#[test]
fn sigterm_reaches_the_command_and_the_bridge_still_stops() {
    require_netns!();
    let (topo, before, _dir, eq) = lab(HostConfig::dhcp_like());
    let mut run = eq
        .sudo_command(
            &nobody(),
            &["run", "--shm-size", "off", "--", "sleep", "30"],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("env-qemu runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge_exists(&topo) {
        assert!(Instant::now() < deadline, "run never started the bridge");
        std::thread::sleep(Duration::from_millis(20));
    }
    // At once: run may still be recording itself or spawning the command; the signal must
    // neither kill it there (leaving the bridge up) nor be lost.
    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = run.wait().expect("run exits");
    // sleep died of the forwarded SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert!(!bridge_exists(&topo));
    assert_restored(&topo.host, &before, "after SIGTERM");
}

#[test]
fn sigterm_during_start_is_held_for_the_command() {
    require_netns!();
    // Enough routes that start's plan is still running when the signal lands.
    let (topo, before, _dir, eq) = lab(HostConfig::with_many_routes());
    let mut run = eq
        .sudo_command(
            &nobody(),
            &["run", "--shm-size", "off", "--", "sleep", "30"],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("env-qemu runs");
    // The state file is written just before the plan's first step.
    let deadline = Instant::now() + Duration::from_secs(10);
    while eq.state_files().is_empty() {
        assert!(Instant::now() < deadline, "run never began its start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = run.wait().expect("run exits");
    assert_eq!(
        status.code(),
        Some(143),
        "run died instead of passing SIGTERM on"
    );
    assert!(!bridge_exists(&topo));
    assert_restored(&topo.host, &before, "after SIGTERM during start");
}
