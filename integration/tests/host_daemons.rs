//! env-qemu's host backend against real DHCP clients: dhcpcd 9.4.1 as a manager and for
//! one interface, ISC dhclient 4.4, each leasing from dnsmasq in a LAN namespace and
//! confined to a lab's private mounts ([`HostLab`]). Detection and the handover
//! operations run inside the lab through `host-probe`, a small binary around
//! `SystemHost`, so the /run they read is the clients' own.

use std::time::{Duration, Instant};

use env_qemu_integration::guard::wait_until;
use env_qemu_integration::host_lab::{lab_unavailable, HostLab, MAC};
use env_qemu_integration::require_netns;
use env_qemu_integration::skip::skip;
use serde_json::{json, Value};

const PROBE: &str = env!("CARGO_BIN_EXE_host-probe");
const LEASE: Duration = Duration::from_secs(30);

macro_rules! require_lab {
    () => {
        require_netns!();
        if let Some(reason) = lab_unavailable() {
            skip(&reason);
            return;
        }
    };
}

/// `host-probe managers DEV…` inside the lab.
fn managers(lab: &HostLab, devs: &[&str]) -> Value {
    let mut args = vec!["managers"];
    args.extend_from_slice(devs);
    let out = lab.must_inside(PROBE, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `host-probe apply OP` inside the lab: the answer, and whether it succeeded.
fn apply(lab: &HostLab, op: &Value) -> (bool, Value) {
    let out = lab.inside(PROBE, &["apply", &op.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

fn must_apply(lab: &HostLab, op: &Value) -> f64 {
    let (ok, v) = apply(lab, op);
    assert!(ok, "{op} failed: {v}");
    v["seconds"].as_f64().expect("seconds")
}

/// The pid in `path`, once it is there: dhclient configures the address before it
/// daemonises and writes its pid file (an empty file was read in CI), so this waits
/// for a pid, 10 s at most.
fn pid_in(lab: &HostLab, path: &str) -> u64 {
    let mut last = None;
    for _ in 0..100 {
        last = lab.read_inside(path);
        if let Some(pid) = last.as_deref().and_then(|t| t.trim().parse().ok()) {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no pid in {path} in the lab after 10 s: {last:?}")
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

fn address(cidr: &str) -> &str {
    cidr.split_once('/').map_or(cidr, |(a, _)| a)
}

fn sixteen(dev: &str) -> Vec<String> {
    let mut args = vec!["-n".to_string()];
    args.extend(std::iter::repeat_n(dev.to_string(), 16));
    args
}

/// The Debian service's manager (`dhcpcd -q -b`): found with its lease, told over its
/// socket to let go of eth0 (address kept), then to run on a bridge carrying eth0's MAC,
/// where it gets the same lease. Its control channel stays usable throughout.
#[test]
fn dhcpcd_manager_lets_go_of_eth0_and_runs_on_the_bridge() {
    require_lab!();
    let lab = HostLab::new();
    lab.must_inside("dhcpcd", &["-q", "-b"]);
    let cidr = lab.wait_ipv4("eth0", LEASE);
    let addr = address(&cidr).to_string();
    let pid = pid_in(&lab, "/run/dhcpcd/pid");
    let found = managers(&lab, &["eth0", "lepont"]);
    let dhcpcd = json!({
        "kind": "dhcpcd", "mode": "manager", "socket": "/run/dhcpcd/sock", "pid": pid,
        "lease": { "address": addr, "seconds": 120 },
    });
    assert_eq!(
        found["managed"],
        json!([{ "dev": "eth0", "client": dhcpcd }]),
        "{found}"
    );
    assert_eq!(found["problems"], json!([]));

    let sock = "/run/dhcpcd/sock";
    let took = must_apply(
        &lab,
        &json!({"host": "dhcpcd", "socket": sock, "args": ["-p", "-x", "eth0"]}),
    );
    eprintln!("-p -x eth0 answered in {:.1} ms", took * 1e3);
    assert_eq!(lab.ipv4("eth0"), [cidr], "-p keeps eth0's address");
    // Asked three times: the health check never leaves the slot taken.
    for _ in 0..3 {
        let found = managers(&lab, &["eth0"]);
        assert_eq!(
            found["managed"],
            json!([]),
            "dhcpcd still manages eth0: {found}"
        );
        assert_eq!(found["problems"], json!([]));
    }

    lab.bridge();
    let t0 = Instant::now();
    let took = must_apply(
        &lab,
        &json!({"host": "dhcpcd", "socket": sock, "args": sixteen("lepont")}),
    );
    eprintln!("-n lepont ×16 answered in {:.1} ms", took * 1e3);
    let leased = wait_until(LEASE, || {
        let f = managers(&lab, &["eth0", "lepont"]);
        (f["managed"][0]["client"]["lease"] != Value::Null).then_some(f)
    })
    .unwrap_or_else(|| panic!("no lease on lepont; dnsmasq said:\n{}", lab.dnsmasq_log()));
    eprintln!("lepont leased {:.1} s after -n", t0.elapsed().as_secs_f64());
    let on_bridge = json!({
        "kind": "dhcpcd", "mode": "manager", "socket": sock, "pid": pid,
        "lease": { "address": addr, "seconds": 120 },
    });
    // eth0 stays out: dhcpcd 9.4.1's -n with few names would have restarted it too.
    assert_eq!(
        leased["managed"],
        json!([{ "dev": "lepont", "client": on_bridge }]),
        "{leased}"
    );
    let leases = lab.dnsmasq_leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        (leases[0].mac.as_str(), leases[0].ip.as_str()),
        (MAC, addr.as_str())
    );
    assert!(
        lab.dnsmasq_log()
            .contains(&format!("DHCPACK(lan0) {addr} {MAC}")),
        "{}",
        lab.dnsmasq_log()
    );
    assert_eq!(
        lab.ipv4("eth0"),
        Vec::<String>::new(),
        "nothing reappears on the port"
    );
}

/// ifupdown's `dhcpcd eth0`: found by eth0.pid; `-p -x eth0` on its socket ends it (it
/// closes the connection instead of answering) and keeps the address; `dhcpcd lepont`,
/// started detached, gets the same lease on the bridge.
#[test]
fn dhcpcd_for_one_interface_ends_and_starts_again_on_the_bridge() {
    require_lab!();
    let lab = HostLab::new();
    lab.must_inside("dhcpcd", &["eth0"]);
    let cidr = lab.wait_ipv4("eth0", LEASE);
    let addr = address(&cidr).to_string();
    let pid = pid_in(&lab, "/run/dhcpcd/eth0.pid");
    let found = managers(&lab, &["eth0"]);
    let sock = "/run/dhcpcd/eth0.sock";
    assert_eq!(
        found["managed"],
        json!([{ "dev": "eth0", "client": {
            "kind": "dhcpcd", "mode": "per_interface", "socket": sock, "pid": pid,
            "lease": { "address": addr, "seconds": 120 },
        }}]),
        "{found}"
    );

    let took = must_apply(
        &lab,
        &json!({"host": "dhcpcd", "socket": sock, "args": ["-p", "-x", "eth0"]}),
    );
    eprintln!("-p -x eth0 (daemon exits) took {:.1} ms", took * 1e3);
    assert!(!alive(pid), "dhcpcd {pid} still runs");
    assert_eq!(lab.read_inside(sock), None, "its socket is gone");
    assert_eq!(lab.ipv4("eth0"), [cidr], "-p keeps eth0's address");
    assert_eq!(managers(&lab, &["eth0"])["managed"], json!([]));

    lab.bridge();
    let took = must_apply(
        &lab,
        &json!({"host": "spawn", "argv": ["dhcpcd", "lepont"]}),
    );
    eprintln!("dhcpcd lepont went to the background after {took:.2} s");
    let found = managers(&lab, &["lepont"]);
    let pid = pid_in(&lab, "/run/dhcpcd/lepont.pid");
    assert_eq!(
        found["managed"],
        json!([{ "dev": "lepont", "client": {
            "kind": "dhcpcd", "mode": "per_interface", "socket": "/run/dhcpcd/lepont.sock",
            "pid": pid, "lease": { "address": addr, "seconds": 120 },
        }}]),
        "{found}"
    );
    let leases = lab.dnsmasq_leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].ip, addr);
}

/// ifupdown's dhclient: found by its command line with the lease from its lease file; a
/// Terminate naming another command line signals nothing; the real one ends it; the same
/// command line for lepont, started detached, gets the same lease from dnsmasq.
#[test]
fn dhclient_moves_to_the_bridge_with_the_same_lease() {
    require_lab!();
    let lab = HostLab::new();
    let argv = |dev: &str| -> Vec<String> {
        format!(
            "dhclient -4 -v -pf /run/dhclient.{dev}.pid -lf /var/lib/dhcp/dhclient.{dev}.leases -I -df /var/lib/dhcp/dhclient6.{dev}.leases {dev}"
        )
        .split_whitespace()
        .map(str::to_string)
        .collect()
    };
    let eth0 = argv("eth0");
    let words: Vec<&str> = eth0.iter().skip(1).map(String::as_str).collect();
    lab.must_inside("dhclient", &words);
    let cidr = lab.wait_ipv4("eth0", LEASE);
    let addr = address(&cidr).to_string();
    let pid = pid_in(&lab, "/run/dhclient.eth0.pid");
    let found = managers(&lab, &["eth0", "lepont"]);
    assert_eq!(
        found["managed"],
        json!([{ "dev": "eth0", "client": {
            "kind": "dhclient", "pid": pid, "argv": eth0,
            "lease": { "address": addr, "seconds": 120 },
        }}]),
        "{found}"
    );

    let mut other = eth0.clone();
    other.push("-nw".into());
    let (ok, refused) = apply(
        &lab,
        &json!({"host": "terminate", "pid": pid, "argv": other}),
    );
    assert!(!ok, "{refused}");
    assert_eq!(refused["error"]["kind"], "not_found", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not signalled"),
        "{refused}"
    );
    assert!(alive(pid), "a Terminate whose argv differs signalled {pid}");

    lab.bridge();
    let acks_before = lab.dnsmasq_log().matches("DHCPACK").count();
    let took = must_apply(
        &lab,
        &json!({"host": "terminate", "pid": pid, "argv": eth0}),
    );
    eprintln!("dhclient {pid} exited {:.1} ms after SIGTERM", took * 1e3);
    assert!(!alive(pid));
    let lepont = argv("lepont");
    let took = must_apply(&lab, &json!({"host": "spawn", "argv": lepont}));
    eprintln!("dhclient lepont went to the background after {took:.2} s");
    let pid = pid_in(&lab, "/run/dhclient.lepont.pid");
    let found = managers(&lab, &["eth0", "lepont"]);
    assert_eq!(
        found["managed"],
        json!([{ "dev": "lepont", "client": {
            "kind": "dhclient", "pid": pid, "argv": lepont,
            "lease": { "address": addr, "seconds": 120 },
        }}]),
        "{found}"
    );
    let log = lab.dnsmasq_log();
    assert!(log.matches("DHCPACK").count() > acks_before, "{log}");
    assert!(
        log.contains(&format!("DHCPACK(lan0) {addr} {MAC}")),
        "{log}"
    );
    let leases = lab.dnsmasq_leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].ip, addr);
}

/// dhcpcd 9.4.1's privilege separation keeps its one client slot after a command that gets
/// no reply (`-N eth0`, sent alone as its own CLI would): detection says the control
/// channel is stuck instead of "nothing manages eth0", and a command fails with the fix
/// instead of being dropped silently.
#[test]
fn a_stuck_dhcpcd_control_channel_is_reported() {
    require_lab!();
    let lab = HostLab::new();
    lab.must_inside("dhcpcd", &["-q", "-b"]);
    lab.wait_ipv4("eth0", LEASE);
    let pid = pid_in(&lab, "/run/dhcpcd/pid");
    let sock = format!("/proc/{}/root/run/dhcpcd/sock", lab.holder_pid());
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
        s.write_all(b"dhcpcd\0-N\0eth0\0").expect("write");
        std::thread::sleep(Duration::from_millis(200));
    }
    let t0 = Instant::now();
    let found = managers(&lab, &["eth0"]);
    eprintln!("detection took {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(
        found["problems"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    assert_eq!(found["problems"][0]["kind"], "no_answer", "{found}");
    assert_eq!(found["problems"][0]["pid"], pid);
    assert_eq!(
        found["managed"],
        json!([{ "dev": "eth0", "client": {
            "kind": "unknown", "pid": pid,
            "name": "dhcpcd manager that does not answer on /run/dhcpcd/sock",
        }}]),
        "{found}"
    );
    let (ok, refused) = apply(
        &lab,
        &json!({"host": "dhcpcd", "socket": "/run/dhcpcd/sock", "args": ["-p", "-x", "eth0"]}),
    );
    assert!(!ok);
    assert_eq!(refused["error"]["kind"], "busy", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("no answer to `dhcpcd -p -x eth0` within 2 s"),
        "{message}"
    );
    assert!(message.contains("restart it"), "{message}");
}
