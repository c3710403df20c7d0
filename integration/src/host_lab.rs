//! [`HostLab`]: a host namespace whose NIC leases its address from dnsmasq in a LAN
//! namespace, for tests with real DHCP clients (dhcpcd, dhclient), confined as
//! docs/kernel-behaviour.md (Q1) describes: the clients run inside a holder process's
//! private mount and UTS namespaces, with tmpfs over /run (plus the netns bind dhcpcd
//! needs to know it is in a namespace), /var/lib/dhcpcd and /var/lib/dhcp, and an overlay
//! over /etc, so nothing they write reaches the machine's files. Code that must see their
//! files runs there too: [`HostLab::inside`].
//!
//! Small and local on purpose: a general daemon harness is being built beside it, and the
//! two will be unified.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::must;
use crate::dnsmasq::{parse_leases, Lease};
use crate::guard::{wait_until, ChildGuard, ScratchDir};
use crate::qemu::find_program;
use crate::TestNs;

/// eth0's MAC; a bridge that carries it presents the same DHCP identity.
pub const MAC: &str = "02:00:5e:10:00:01";
/// The LAN side: dnsmasq's address and the router it announces.
pub const SERVER: &str = "198.51.100.1";

/// What a lab needs installed, if something is missing.
pub fn lab_unavailable() -> Option<String> {
    let missing: Vec<&str> = ["dnsmasq", "dhcpcd", "dhclient", "nsenter", "unshare"]
        .into_iter()
        .filter(|p| find_program(p).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(", ")))
}

/// The two namespaces, dnsmasq, and the holder of the clients' private mounts.
/// Dropping it ends every process of the host namespace (by PID: the namespace is this
/// lab's own), then the holder, dnsmasq and the namespaces.
#[derive(Debug)]
pub struct HostLab {
    holder: ChildGuard,
    dnsmasq: ChildGuard,
    dir: ScratchDir,
    pub host: TestNs,
    pub lan: TestNs,
}

impl HostLab {
    /// eth0 in `host` (a veth, [`MAC`]) facing lan0 in `lan`, where dnsmasq hands out
    /// 198.51.100.100–150 for 2 minutes with [`SERVER`] as router.
    pub fn new() -> HostLab {
        let (host, lan) = (TestNs::new(), TestNs::new());
        host.ip(&format!(
            "link add eth0 address {MAC} type veth peer name lan0 address 02:00:5e:10:00:02 netns {}",
            lan.name()
        ));
        lan.ip(&format!("addr add {SERVER}/24 dev lan0"));
        for (ns, dev) in [(&lan, "lan0"), (&lan, "lo"), (&host, "eth0"), (&host, "lo")] {
            ns.ip(&format!("link set {dev} up"));
        }
        let dir = ScratchDir::new();
        let dnsmasq = start_dnsmasq(&lan, &dir);
        let holder = start_holder(&host, &dir);
        HostLab {
            holder,
            dnsmasq,
            dir,
            host,
            lan,
        }
    }

    pub fn holder_pid(&self) -> u32 {
        self.holder.pid()
    }

    pub fn dnsmasq_pid(&self) -> u32 {
        self.dnsmasq.pid()
    }

    /// `PROGRAM ARGS…` inside the holder's mount, network and UTS namespaces.
    pub fn inside(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.holder_pid().to_string(), "-m", "-n", "-u", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter … {program}: {e}"))
    }

    /// Like [`HostLab::inside`], panicking unless it succeeds; returns stdout.
    pub fn must_inside(&self, program: &str, args: &[&str]) -> String {
        let out = self.inside(program, args);
        assert!(
            out.status.success(),
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file as the clients see it (through the holder's root).
    pub fn read_inside(&self, path: &str) -> Option<String> {
        let p = Path::new(path).strip_prefix("/").unwrap_or(Path::new(path));
        std::fs::read_to_string(Path::new(&format!("/proc/{}/root", self.holder_pid())).join(p))
            .ok()
    }

    /// The IPv4 addresses of `dev`, as `A/LEN`.
    pub fn ipv4(&self, dev: &str) -> Vec<String> {
        let v = self.host.ip_json(&format!("-4 addr show dev {dev}"));
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect()
    }

    /// Waits up to `timeout` for `dev` to have an IPv4 address; returns it (`A/LEN`).
    pub fn wait_ipv4(&self, dev: &str, timeout: Duration) -> String {
        wait_until(timeout, || self.ipv4(dev).into_iter().next()).unwrap_or_else(|| {
            panic!(
                "{dev} got no IPv4 address within {timeout:?}; dnsmasq said:\n{}",
                self.dnsmasq_log()
            )
        })
    }

    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn dnsmasq_leases(&self) -> Vec<Lease> {
        parse_leases(&std::fs::read_to_string(self.dir.join("dnsmasq.leases")).unwrap_or_default())
    }

    /// Turns eth0 into a port of `lepont`, a bridge with eth0's MAC, and moves eth0's IPv4
    /// address to it (no routes: the tests here look at the clients, not the bridge).
    pub fn bridge(&self) {
        let addrs = self.ipv4("eth0");
        self.host.ip(&format!(
            "link add lepont address {MAC} type bridge stp_state 0 forward_delay 0"
        ));
        self.host.ip("link set lepont up");
        for a in &addrs {
            self.host.ip(&format!("addr add {a} dev lepont"));
        }
        self.host.ip("link set eth0 master lepont");
        for a in &addrs {
            self.host.ip(&format!("addr del {a} dev eth0"));
        }
    }

    /// The PIDs of the host namespace's processes, the holder's included.
    fn pids(&self) -> Vec<u32> {
        must("ip", &["netns", "pids", self.host.name()])
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Default for HostLab {
    fn default() -> Self {
        HostLab::new()
    }
}

fn start_dnsmasq(lan: &TestNs, dir: &ScratchDir) -> ChildGuard {
    let dnsmasq = find_program("dnsmasq").expect("dnsmasq is installed");
    let file = |name: &str| dir.join(name).display().to_string();
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        lan.name(),
        "unshare",
        "-m",
        "--propagation",
        "private",
    ])
    .arg(dnsmasq)
    .args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",
        "--interface=lan0",
        "--bind-interfaces",
        "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,2m",
        &format!("--dhcp-option=option:router,{SERVER}"),
        "--dhcp-authoritative",
        "--no-ping",
        "--log-dhcp",
        "--user=root",
        &format!("--dhcp-leasefile={}", file("dnsmasq.leases")),
        &format!("--log-facility={}", file("dnsmasq.log")),
        &format!("--pid-file={}", file("dnsmasq.pid")),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("dnsmasq", &mut cmd);
    let log = dir.join("dnsmasq.log");
    let bound = wait_until(Duration::from_secs(10), || {
        assert!(guard.try_wait().is_none(), "dnsmasq exited at once");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("sockets bound exclusively to interface")
            .then_some(())
    });
    assert!(bound.is_some(), "dnsmasq did not bind within 10 s");
    guard
}

/// `sleep infinity` in private mount and UTS namespaces of `host`, with the clients'
/// directories on tmpfs and /etc under an overlay whose upper layer is on tmpfs too.
fn start_holder(host: &TestNs, dir: &ScratchDir) -> ChildGuard {
    let ovl = dir.join("ovl");
    std::fs::create_dir_all(&ovl).expect("overlay dir");
    let (name, ovl) = (host.name(), ovl.display().to_string());
    let script = format!(
        "set -e
hostname {name}
mount -n -t tmpfs eqt-run /run
mkdir /run/netns; touch /run/netns/{name}; mount -n --bind /proc/self/ns/net /run/netns/{name}
mount -n -t tmpfs eqt-dhcpcd /var/lib/dhcpcd
mount -n -t tmpfs eqt-dhcp /var/lib/dhcp
mount -n -t tmpfs eqt-ovl {ovl}; mkdir {ovl}/upper {ovl}/work
mount -n -t overlay -o lowerdir=/etc,upperdir={ovl}/upper,workdir={ovl}/work eqt-etc /etc
exec sleep infinity"
    );
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        name,
        "unshare",
        "-m",
        "-u",
        "--propagation",
        "private",
    ])
    .args(["sh", "-c", &script])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("holder", &mut cmd);
    let pid = guard.pid();
    let ready = wait_until(Duration::from_secs(10), || {
        assert!(guard.try_wait().is_none(), "the holder's mounts failed");
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        (argv == b"sleep\0infinity\0").then_some(())
    });
    assert!(ready.is_some(), "the holder did not get ready within 10 s");
    guard
}

impl Drop for HostLab {
    fn drop(&mut self) {
        let holder = self.holder.pid();
        let clients: Vec<u32> = self.pids().into_iter().filter(|p| *p != holder).collect();
        for pid in &clients {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let ended = wait_until(Duration::from_secs(5), || {
            let left: Vec<u32> = self.pids().into_iter().filter(|p| *p != holder).collect();
            left.is_empty().then_some(())
        });
        if ended.is_none() {
            for pid in self.pids().into_iter().filter(|p| *p != holder) {
                eprintln!("host lab: pid {pid} ignored SIGTERM: SIGKILL");
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // Then the holder (its private mounts go with it), dnsmasq, the namespaces.
    }
}
