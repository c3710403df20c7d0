//! Several env-qemu processes at once on one namespace: two `start`s (one wins, the other
//! exits 4), sixteen VMs booting together (sixteen `add`s, none lost), then sixteen `del`s.

mod common;

use std::process::{Child, Stdio};

use common::{assert_restored, master_of, settled, strings, EnvQemu, Outcome, TempDir, BRIDGE};
use env_qemu_integration::{require_tun, HostConfig, Topology, TopologySpec};
use serde_json::json;

const TAPS: usize = 16;

fn topology() -> Topology {
    Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: false,
    })
}

/// Spawns every command before waiting for any.
fn all_at_once(eq: &EnvQemu, commands: &[Vec<&str>]) -> Vec<Outcome> {
    let children: Vec<Child> = commands
        .iter()
        .map(|args| {
            eq.command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("env-qemu runs")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("env-qemu ends").into())
        .collect()
}

#[test]
fn of_two_concurrent_starts_exactly_one_wins() {
    require_tun!();
    let topo = topology();
    let host = &topo.host;
    let dir = TempDir::new();
    let eq = EnvQemu::new(host, &dir);
    let before = settled(host);
    let start = vec!["start", "--shm-size", "off"];

    for round in 0..3 {
        let outs = all_at_once(&eq, &[start.clone(), start.clone()]);
        let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.code).collect();
        codes.sort();
        assert_eq!(codes, [Some(0), Some(4)], "round {round}: {outs:?}");
        let loser = outs.iter().find(|o| o.code == Some(4)).expect("a loser");
        assert_eq!(loser.stderr.lines().count(), 1, "{}", loser.stderr);
        assert!(loser.stderr.contains("already started"), "{}", loser.stderr);

        let s = eq.status();
        assert_eq!(s["phase"], "running", "{s}");
        assert_eq!(s["ports"], json!(["eth0"]), "{s}");
        assert_eq!(s["drift"], json!([]), "{s}");
        eq.ok(&["stop"]);
        assert_restored(host, &before, &format!("round {round}"));
    }
}

#[test]
fn sixteen_concurrent_adds_lose_no_tap() {
    require_tun!();
    let topo = topology();
    let host = &topo.host;
    let taps: Vec<String> = (0..TAPS).map(|i| format!("vmtap{i}")).collect();
    for t in &taps {
        host.ip(&format!("tuntap add {t} mode tap"));
    }
    let dir = TempDir::new();
    let eq = EnvQemu::new(host, &dir);
    let before = settled(host);
    eq.ok(&["start", "--shm-size", "off"]);

    let adds: Vec<Vec<&str>> = taps.iter().map(|t| vec!["add", t.as_str()]).collect();
    for (out, t) in all_at_once(&eq, &adds).iter().zip(&taps) {
        assert!(out.success(), "add {t}: {out:?}");
    }
    let mut expected = taps.clone();
    expected.sort();
    let s = eq.status();
    let mut listed = strings(&s["taps"]);
    listed.sort();
    assert_eq!(listed, expected, "status --json taps");
    assert_eq!(s["drift"], json!([]), "{s}");
    for t in &taps {
        assert_eq!(master_of(host, t).as_deref(), Some(BRIDGE), "{t}");
    }
    // The state file recorded every one of them (what del and stop --force restore).
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eq.state_file()).expect("read state")).unwrap();
    let mut recorded: Vec<String> = state["taps"]
        .as_array()
        .expect("taps")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    recorded.sort();
    assert_eq!(recorded, expected, "taps in the state file");

    let dels: Vec<Vec<&str>> = taps.iter().map(|t| vec!["del", t.as_str()]).collect();
    for (out, t) in all_at_once(&eq, &dels).iter().zip(&taps) {
        assert!(out.success(), "del {t}: {out:?}");
    }
    assert_eq!(eq.status()["taps"], json!([]));
    eq.ok(&["stop"]);
    assert_restored(host, &before, "stop after 16 adds and dels");
}
