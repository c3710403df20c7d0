//! `doctor` and `status` name who manages the uplink and what start will do with it:
//! the kernel's SLAAC on a plain namespace, a real dhcpcd manager confined in a lab (seen
//! from inside its mount namespace, and from outside, where its files are out of sight),
//! a dhcpcd whose control channel is stuck, and programs start refuses.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{EnvQemu, Outcome, TempDir, BIN};
use env_qemu_integration::host_lab::{lab_unavailable, HostLab};
use env_qemu_integration::skip::skip;
use env_qemu_integration::{require_netns, TestNs};
use serde_json::{json, Value};

/// `env-qemu ARGS…` inside the lab's mount and network namespaces: the machine's own
/// namespace there is the lab's host namespace, so no `--netns`.
fn inside(lab: &HostLab, dir: &TempDir, args: &[&str]) -> Outcome {
    let none = format!("{}/none.toml", dir.str());
    let mut all = vec!["--state-dir", dir.str(), "--config", &none];
    all.extend_from_slice(args);
    Outcome::from(lab.inside(BIN, &all))
}

fn lines_with<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(what)).collect()
}

#[test]
fn doctor_names_the_kernels_slaac_or_nothing() {
    require_netns!();
    let ns = TestNs::new();
    ns.ip("link add eth0 type veth peer name peer0");
    ns.ip("addr add 192.0.2.10/24 dev eth0");
    ns.ip("link set peer0 up");
    ns.ip("link set eth0 up");
    ns.ip("route add default via 192.0.2.1 dev eth0");
    let dir = TempDir::new();
    let eq = EnvQemu::new(&ns, &dir);
    let out = eq.ok(&["doctor"]).stdout;
    assert_eq!(
        lines_with(&out, "manager"),
        ["ok    manager           the kernel (SLAAC) manages eth0's IPv6 addresses; start: taken over by the bridge (accept_ra and autoconf copied to it)"],
        "{out}"
    );
    ns.set_sysctl("net.ipv6.conf.eth0.accept_ra", "0");
    let out = eq.ok(&["doctor"]).stdout;
    assert_eq!(
        lines_with(&out, "manager"),
        ["ok    manager           nothing manages eth0 (static configuration): start moves its addresses and routes as they are"],
        "{out}"
    );
    let status = eq.status();
    assert_eq!(status["managers"], json!([]), "{status}");
}

#[test]
fn doctor_and_status_name_a_dhcpcd_manager() {
    require_netns!();
    if let Some(reason) = lab_unavailable() {
        skip(&reason);
        return;
    }
    let lab = HostLab::new();
    lab.must_inside("dhcpcd", &["-q", "-b"]);
    lab.wait_ipv4("eth0", Duration::from_secs(30));
    let pid: u32 = lab
        .read_inside("/run/dhcpcd/pid")
        .and_then(|p| p.trim().parse().ok())
        .expect("dhcpcd's pid file");
    let dir = TempDir::new();

    // From inside its mount namespace: found, handed over at start.
    let doctor = inside(&lab, &dir, &["doctor"]);
    assert!(doctor.success(), "{doctor:?}");
    assert_eq!(
        lines_with(&doctor.stdout, "manager"),
        [format!("ok    manager           dhcpcd (manager, pid {pid}) manages eth0; start: handed over to the bridge")],
        "{}",
        doctor.stdout
    );
    let status = inside(&lab, &dir, &["status", "--json"]);
    assert!(status.success(), "{status:?}");
    let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(
        status["managers"],
        json!([{
            "manages": format!("dhcpcd (manager, pid {pid}) manages eth0"),
            "start": "handed over to the bridge",
            "handover": true,
        }])
    );
    assert_eq!(status["manager_problems"], json!([]));
    let text = inside(&lab, &dir, &["status"]).stdout;
    assert!(
        text.contains(&format!(
            "manager  dhcpcd (manager, pid {pid}) manages eth0\n         start: handed over to the bridge\n"
        )),
        "{text}"
    );

    // From the machine's mount namespace, with --netns: its files are not there, and
    // doctor says so instead of "nothing manages eth0".
    let eq = EnvQemu::new(&lab.host, &dir);
    let out = eq.ok(&["doctor"]).stdout;
    let lines = lines_with(&out, "manager");
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!("warn  manager           dhcpcd in another mount namespace (pid {pid}) manages eth0; start: refuses unless --force (env-qemu cannot hand this manager over)")
    );
    assert!(
        lines[1].starts_with("warn  manager           dhcpcd (pid"),
        "{out}"
    );
    assert!(
        lines[1].contains(&format!("`nsenter -t {pid} -m -n env-qemu …`")),
        "{out}"
    );

    // A command without reply takes dhcpcd 9.4.1's only control slot for good.
    let sock = format!("/proc/{}/root/run/dhcpcd/sock", lab.holder_pid());
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    s.write_all(b"dhcpcd\0-N\0eth0\0").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    let doctor = inside(&lab, &dir, &["doctor"]);
    assert_eq!(doctor.code, Some(4), "{doctor:?}");
    let lines = lines_with(&doctor.stdout, "manager");
    assert_eq!(
        lines[0],
        format!("warn  manager           dhcpcd manager that does not answer on /run/dhcpcd/sock (pid {pid}) manages eth0; start: refuses unless --force (env-qemu cannot hand this manager over)"),
        "{}",
        doctor.stdout
    );
    assert!(
        lines[1].starts_with("FAIL  manager           dhcpcd manager (pid"),
        "{}",
        doctor.stdout
    );
    assert!(
        lines[1].contains("answers nothing within 2 s"),
        "{}",
        doctor.stdout
    );
    assert!(lines[1].contains("restart it"), "{}", doctor.stdout);
}

/// Programs env-qemu cannot hand over, found by name (copies of `sleep` named like them:
/// NetworkManager, systemd-networkd, BusyBox's udhcpc) and by what they hold (an IPv4
/// packet socket bound to eth0, as DHCP clients have): each is named with its PID, and
/// start would refuse.
#[test]
fn doctor_names_programs_start_refuses() {
    use env_qemu_integration::guard::{wait_until, ChildGuard, ScratchDir};
    use env_qemu_integration::qemu::find_program;
    use std::process::{Command, Stdio};

    require_netns!();
    let Some(python) = find_program("python3") else {
        skip("python3 is not installed (it holds the packet socket)");
        return;
    };
    let ns = TestNs::new();
    ns.ip("link add eth0 type veth peer name peer0");
    ns.ip("addr add 192.0.2.10/24 dev eth0");
    ns.ip("link set peer0 up");
    ns.ip("link set eth0 up");
    ns.ip("route add default via 192.0.2.1 dev eth0");
    ns.set_sysctl("net.ipv6.conf.eth0.accept_ra", "0");
    let bin = ScratchDir::new();
    let sleep = find_program("sleep").expect("sleep");
    let spawn = |name: &str, program: &std::path::Path, args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        ChildGuard::spawn(name, &mut cmd)
    };
    let mut fakes = Vec::new();
    for name in ["NetworkManager", "systemd-networkd", "udhcpc"] {
        let copy = bin.join(name);
        env_qemu_integration::cmd::place_executable(&sleep, &copy);
        fakes.push(spawn(name, &copy, &["1000"]));
    }
    let script = "import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(('eth0', 0))
time.sleep(1000)";
    let holder = spawn("python3", &python, &["-c", script]);
    let index = ns.ip("-o link show eth0");
    let index = index.split(':').next().expect("ifindex").trim().to_string();
    let bound = wait_until(Duration::from_secs(10), || {
        let table = std::fs::read_to_string(format!("/proc/{}/net/packet", holder.pid())).ok()?;
        table
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(3) == Some(&"0800") && f.get(4) == Some(&index.as_str())
            })
            .then_some(())
    });
    assert!(
        bound.is_some(),
        "the packet socket was not bound within 10 s"
    );
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", holder.pid())).expect("comm");

    let dir = TempDir::new();
    let eq = EnvQemu::new(&ns, &dir);
    let out = eq.ok(&["doctor"]).stdout;
    let refused = "start: refuses unless --force (env-qemu cannot hand this manager over)";
    // The test's env-qemu has a system bus where nothing listens (see common): a
    // NetworkManager it cannot ask is refused, and named as a problem with the fix.
    let bus = format!("unix:path={}/no-system-bus", eq.state_dir().display());
    let nm = fakes[0].pid();
    let want = [
        format!("NetworkManager out of reach on {bus} (pid {nm}) manages eth0"),
        "systemd-networkd manages eth0".to_string(),
        format!("udhcpc (pid {}) manages eth0", fakes[2].pid()),
        format!(
            "{} (an IPv4 packet socket on eth0, as DHCP clients use) (pid {}) manages eth0",
            comm.trim(),
            holder.pid()
        ),
    ];
    let mut lines = lines_with(&out, "manager");
    let problem = lines.pop().unwrap_or_default();
    assert_eq!(
        lines,
        want.iter()
            .map(|w| format!("warn  manager           {w}; {refused}"))
            .collect::<Vec<_>>(),
        "{out}"
    );
    assert!(
        problem.starts_with(&format!(
            "warn  manager           NetworkManager (pid {nm}) runs in this network namespace and may manage eth0, but env-qemu cannot ask it over the system bus {bus}"
        )) && problem.contains("set DBUS_SYSTEM_BUS_ADDRESS to it"),
        "{out}"
    );
}
