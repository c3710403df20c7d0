//! Which namespace a state file belongs to, when namespaces come and go.
//!
//! The kernel gives a deleted namespace's inode number to the next namespace it makes: a
//! state keyed by the inode was taken for the new namespace's own, and `start` there said
//! "already started". States are now keyed by the namespace's cookie, which the kernel
//! never reuses; a state of a namespace that no longer exists is listed by `status` as
//! stale and removed by `stop --stale`. A state file of an env-qemu before cookies (keyed by
//! the inode, no cookie in it) is still found, checked against the devices it names, and
//! recovered by `stop`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_restored, settled, strings, EnvQemu, TempDir, BRIDGE};
use env_qemu_backend_netlink::identity_at;
use env_qemu_integration::{require_tun, TestNs};
use serde_json::Value;

/// A LAN uplink inside `ns` alone: eth0 (a veth whose peer stays in `ns`), an address and
/// a default route.
fn uplink(ns: &TestNs) {
    ns.ip("link add eth0 type veth peer name peer0");
    ns.ip("addr add 192.0.2.10/24 dev eth0");
    ns.ip("link set peer0 up");
    ns.ip("link set eth0 up");
    ns.ip("route add default via 192.0.2.1 dev eth0");
}

fn inode(ns: &TestNs) -> u64 {
    std::fs::metadata(ns.path()).expect("stat netns").ino()
}

/// A new namespace that got `target` as its inode, or `None` after 10 s of attempts.
/// The kernel hands out the lowest free number, once it has freed the deleted namespace
/// (asynchronously): namespaces that get a lower number fill holes and are kept meanwhile,
/// those that get a higher one are deleted and tried again a little later (the number may
/// be held meanwhile by a namespace of a test running beside this one).
fn namespace_with_inode(target: u64) -> Option<TestNs> {
    let mut holes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let ns = TestNs::new();
        let ino = inode(&ns);
        if ino == target {
            return Some(ns);
        }
        if ino < target && holes.len() < 32 {
            holes.push(ns);
        } else {
            drop(ns);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    None
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).expect("read state file");
    serde_json::from_slice(&text).expect("state file is JSON")
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("JSON")).expect("write");
}

fn files_in(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_namespace_with_a_dead_ones_inode_starts_and_lists_its_state_as_stale() {
    require_tun!();
    let dir = TempDir::new();
    let a = TestNs::new();
    uplink(&a);
    let eq_a = EnvQemu::new(&a, &dir);
    eq_a.ok(&["start", "eth0", "--shm-size", "off"]);
    let dead_file = eq_a.state_file();
    let dead = identity_at(&a.path()).expect("identity of A");
    assert!(dead.cookie.is_some(), "this kernel has cookies: {dead}");
    let name = dead_file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert_eq!(
        name,
        format!(
            "netns-cookie-{}-{BRIDGE}.json",
            dead.cookie.expect("cookie")
        )
    );
    // The namespace goes, and its bridge with it; the state file stays.
    drop(a);

    let b = match namespace_with_inode(dead.inode) {
        Some(b) => {
            eprintln!("inode {} reused by {}", dead.inode, b.name());
            b
        }
        None => {
            // Reuse could not be provoked (another process took the number): the same
            // situation, constructed. The dead namespace's state now names the new
            // namespace's inode with the dead one's cookie, as if the new namespace had
            // got that inode.
            let b = TestNs::new();
            let mut v = read_json(&dead_file);
            v["netns"] = Value::String(format!(
                "net:[{}] cookie {}",
                inode(&b),
                dead.cookie.expect("cookie")
            ));
            write_json(&dead_file, &v);
            eprintln!("inode {} not reused: constructed", dead.inode);
            b
        }
    };
    uplink(&b);
    let before = settled(&b);
    let eq_b = EnvQemu::new(&b, &dir);
    let status = eq_b.status();
    assert_eq!(status["started"], false, "{status}");
    eq_b.ok(&["start", "eth0", "--shm-size", "off"]);

    let status = eq_b.status();
    assert_eq!(status["started"], true, "{status}");
    let stale = status["stale"].as_array().expect("stale list");
    assert_eq!(stale.len(), 1, "{status}");
    assert_eq!(stale[0]["file"], dead_file.to_str().expect("utf-8"));
    assert_eq!(stale[0]["bridge"], BRIDGE);
    assert_eq!(stale[0]["uplink"], "eth0");
    assert_eq!(stale[0]["certain"], true);
    assert!(
        stale[0]["netns"]
            .as_str()
            .is_some_and(|n| n.ends_with(&format!("cookie {}", dead.cookie.expect("c")))),
        "{status}"
    );
    let text = eq_b.ok(&["status"]).stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("stale"))
        .unwrap_or_else(|| panic!("a stale line: {text}"));
    assert!(line.contains(dead_file.to_str().expect("utf-8")), "{line}");
    assert!(line.contains("env-qemu stop --stale"), "{line}");

    // Only the stale file goes; B's state stays and still stops.
    let mine = state_file_of(&b, &dir);
    let dry = eq_b.ok(&["stop", "--stale", "--dry-run"]).stdout;
    assert_eq!(dry.trim(), format!("rm {}", dead_file.display()));
    assert!(dead_file.exists(), "a dry run removes nothing");
    let out = eq_b.ok(&["stop", "--stale"]);
    assert!(out.stderr.contains("removed stale state file"), "{out:?}");
    assert!(!dead_file.exists());
    assert!(mine.exists());
    assert_eq!(strings(&eq_b.status()["stale"]), Vec::<String>::new());
    eq_b.ok(&["stop"]);
    assert_restored(&b, &before, "stop in the namespace with the reused inode");
    assert_eq!(files_in(&dir), Vec::<String>::new());
}

/// The state file `Ctx` uses for `ns` in `dir`: keyed by the namespace's cookie.
fn state_file_of(ns: &TestNs, dir: &TempDir) -> PathBuf {
    let id = identity_at(&ns.path()).expect("identity");
    let cookie = id.cookie.expect("this kernel has cookies");
    dir.path()
        .join(format!("netns-cookie-{cookie}-{BRIDGE}.json"))
}

/// What an env-qemu before cookies wrote for `ns`: the state keyed by the inode, with
/// the inode alone in `netns`. Returns its path.
fn as_older_version(ns: &TestNs, dir: &TempDir, state: &Value) -> PathBuf {
    let ino = inode(ns);
    let mut v = state.clone();
    v["netns"] = Value::String(format!("net:[{ino}]"));
    let path = dir.path().join(format!("netns-{ino}-{BRIDGE}.json"));
    write_json(&path, &v);
    path
}

#[test]
fn an_older_versions_state_file_is_found_and_stop_recovers_it() {
    require_tun!();
    let dir = TempDir::new();
    let ns = TestNs::new();
    uplink(&ns);
    ns.ip("tuntap add tap0 mode tap");
    let before = settled(&ns);
    let eq = EnvQemu::new(&ns, &dir);
    eq.ok(&["start", "eth0", "--shm-size", "off"]);
    eq.ok(&["add", "tap0"]);
    let file = eq.state_file();
    let old = as_older_version(&ns, &dir, &read_json(&file));
    std::fs::remove_file(&file).expect("remove the new file");

    // Found where it is (status changes nothing) and refused to a second start.
    let status = eq.status();
    assert_eq!(status["started"], true, "{status}");
    assert_eq!(status["state_file"], old.to_str().expect("utf-8"));
    assert_eq!(strings(&status["taps"]), ["tap0"]);
    assert_eq!(status["stale"], Value::Array(vec![]));
    assert!(old.exists());
    let out = eq.run(&["start", "eth0", "--shm-size", "off"]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stderr.contains("already started"), "{out:?}");
    assert!(
        out.stderr.contains("moved to"),
        "the start moved it: {out:?}"
    );
    assert!(!old.exists());
    assert!(file.exists());

    // Once more, an older version's file, now recovered by stop itself.
    let again = as_older_version(&ns, &dir, &read_json(&file));
    std::fs::remove_file(&file).expect("remove the new file");
    let plan = eq.ok(&["stop", "--dry-run", "--force"]).stdout;
    assert!(plan.contains("ip link del dev lepont"), "{plan}");
    assert!(again.exists(), "a dry run moves nothing");
    let out = eq.ok(&["stop", "--force"]);
    assert!(out.stderr.contains("moved to"), "{out:?}");
    assert_restored(&ns, &before, "stop from an older version's state file");
    assert_eq!(files_in(&dir), Vec::<String>::new());
}

#[test]
fn an_older_versions_file_naming_other_devices_is_stale_and_blocks_nothing() {
    require_tun!();
    let dir = TempDir::new();
    let ns = TestNs::new();
    uplink(&ns);
    let before = settled(&ns);
    let eq = EnvQemu::new(&ns, &dir);
    eq.ok(&["start", "eth0", "--shm-size", "off"]);
    let state = read_json(&eq.state_file());
    eq.ok(&["stop"]);
    // A state of a namespace that had this inode before, whose eth0 had another MAC.
    let mut other = state;
    let links = other["pre"]["net"]["links"]
        .as_array_mut()
        .expect("saved links");
    assert_eq!(links.len(), 1, "the uplink alone: {links:?}");
    links[0]["mac"] = Value::String("02:00:00:00:00:01".into());
    let old = as_older_version(&ns, &dir, &other);

    let status = eq.status();
    assert_eq!(status["started"], false, "{status}");
    let stale = status["stale"].as_array().expect("stale");
    assert_eq!(stale.len(), 1, "{status}");
    assert_eq!(stale[0]["file"], old.to_str().expect("utf-8"));
    assert_eq!(stale[0]["certain"], false);
    let reason = stale[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("02:00:00:00:00:01"), "{reason}");

    eq.ok(&["start", "eth0", "--shm-size", "off"]);
    // Not certain: `stop --stale` leaves it to the admin, and says so.
    let out = eq.ok(&["stop", "--stale"]);
    assert!(
        out.stderr.contains(&format!("rm {}", old.display())),
        "{out:?}"
    );
    assert!(old.exists());
    eq.ok(&["stop"]);
    assert_restored(&ns, &before, "stop beside an older version's stale file");
    let name = old.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(files_in(&dir), [name]);
}
