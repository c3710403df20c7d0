//! A state file env-qemu cannot use: garbage, truncated, empty, or one that belongs to
//! another network namespace. Every command refuses it with its documented exit code and
//! one line naming the file or namespace, and changes nothing; the real state still stops.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{assert_refused, assert_restored, settled, EnvQemu, Refusal, TempDir, BRIDGE};
use env_qemu_integration::{require_tun, HostConfig, Topology, TopologySpec};

fn topology() -> Topology {
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: false,
    });
    topo.host.ip("tuntap add tap0 mode tap");
    topo
}

#[test]
fn a_corrupt_or_truncated_state_file_is_refused() {
    require_tun!();
    let topo = topology();
    let host = &topo.host;
    let dir = TempDir::new();
    let eq = EnvQemu::new(host, &dir);
    let before = settled(host);
    eq.ok(&["start", "--shm-size", "off"]);
    let file = eq.state_file();
    let good = std::fs::read(&file).expect("read state file");
    let path = file.to_str().expect("utf-8");

    let garbage: &[u8] = b"garbage{{ \x01";
    let truncated = &good[..good.len() / 2];
    for content in [garbage, truncated, b""] {
        std::fs::write(&file, content).expect("spoil the state file");
        for args in [
            &["status"][..],
            &["--json", "status"],
            &["add", "tap0"],
            &["del", "tap0"],
            &["stop"],
            &["stop", "--force"],
            &["start", "--shm-size", "off"],
        ] {
            let row = Refusal::new(args, 6, path, "delete the file");
            assert_refused(&eq, &[host], &row);
        }
    }

    std::fs::write(&file, &good).expect("put the state file back");
    eq.ok(&["stop"]);
    assert_restored(host, &before, "stop with the state file put back");
}

/// A state file that is not UTF-8 (disk garbage) is reported as an I/O error: exit 1 and
/// "check that the state directory is writable (run as root)", when it is an unreadable
/// state file like any other garbage (exit 6, "delete the file"). `FileStore::load` reads
/// with `read_to_string`, whose `InvalidData` error becomes `StoreError::Io`.
#[test]
fn a_non_utf8_state_file_is_an_unreadable_state_file() {
    require_tun!();
    let topo = topology();
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    settled(&topo.host);
    eq.ok(&["start", "--shm-size", "off"]);
    let file = eq.state_file();
    std::fs::write(&file, b"\x00\xff\xfe").expect("spoil the state file");
    let row = Refusal::new(
        &["status"],
        6,
        file.to_str().expect("utf-8"),
        "delete the file",
    );
    // On failure the namespaces (and the bridge in them) go with the topology.
    assert_refused(&eq, &[&topo.host], &row);
}

/// The state file name of `ns` in `dir`, as `Ctx::store` makes it: keyed by the
/// namespace's cookie.
fn state_file_of(ns: &env_qemu_integration::TestNs, dir: &TempDir) -> std::path::PathBuf {
    let id = env_qemu_backend_netlink::identity_at(&ns.path()).expect("identity");
    let cookie = id.cookie.expect("this kernel has cookies");
    dir.path()
        .join(format!("netns-cookie-{cookie}-{BRIDGE}.json"))
}

#[test]
fn a_state_file_of_another_namespace_is_refused() {
    require_tun!();
    let (a, b) = (topology(), topology());
    let dir = TempDir::new();
    let (eq_a, eq_b) = (EnvQemu::new(&a.host, &dir), EnvQemu::new(&b.host, &dir));
    let before_a = settled(&a.host);
    settled(&b.host);
    eq_a.ok(&["start", "--shm-size", "off"]);
    let file_a = eq_a.state_file();
    assert_eq!(file_a, state_file_of(&a.host, &dir));
    // A's state where B's would be: copied, restored from a backup, a reused directory…
    std::fs::copy(&file_a, state_file_of(&b.host, &dir)).expect("copy the state file");

    let ino_a = std::fs::metadata(a.host.path()).expect("stat").ino();
    let saved = format!("net:[{ino_a}]");
    for args in [&["add", "tap0"][..], &["del", "tap0"], &["stop"]] {
        let row = Refusal::new(args, 4, &saved, "use --netns or --state-dir");
        assert_refused(&eq_b, &[&a.host, &b.host], &row);
    }

    std::fs::remove_file(state_file_of(&b.host, &dir)).expect("remove the copy");
    eq_a.ok(&["stop"]);
    assert_restored(&a.host, &before_a, "stop in A");
}

/// `env-qemu status` in B with A's state file shows A's state as B's ("running", drift
/// "bridge lepont is gone"), exit 0; `start` in B says "already started: bridge lepont on
/// eth0". Both should refuse like add/del/stop: exit 4, "the saved state belongs to
/// network namespace net:[A], not net:[B]".
#[test]
fn status_and_start_refuse_a_state_file_of_another_namespace() {
    require_tun!();
    let (a, b) = (topology(), topology());
    let dir = TempDir::new();
    let (eq_a, eq_b) = (EnvQemu::new(&a.host, &dir), EnvQemu::new(&b.host, &dir));
    settled(&b.host);
    eq_a.ok(&["start", "--shm-size", "off"]);
    std::fs::copy(eq_a.state_file(), state_file_of(&b.host, &dir)).expect("copy");
    let ino_a = std::fs::metadata(a.host.path()).expect("stat").ino();
    let saved = format!("net:[{ino_a}]");
    for args in [&["status"][..], &["start", "--shm-size", "off"]] {
        let row = Refusal::new(args, 4, &saved, "use --netns or --state-dir");
        assert_refused(&eq_b, &[&b.host], &row);
    }
    std::fs::remove_file(state_file_of(&b.host, &dir)).expect("remove the copy");
    eq_a.ok(&["stop"]);
}
