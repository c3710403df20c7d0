//! [`ClientHost`]: the host namespace, its NIC `eth0` on the [`Lan`], owned by a real
//! daemon running inside a [`Holder`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::guard::{wait_until, ChildGuard, ScratchDir};
use crate::hosts::holder::{Holder, HolderKind};
use crate::hosts::lan::Lan;
use crate::hosts::logfile::LogFile;
use crate::hosts::process::{end_all_in, netns_of, ns_id, pids_in};
use crate::hosts::{HOST_MAC, ROUTER_V4, UPLINK};
use crate::stream::EchoServer;
use crate::TestNs;

/// Who owns eth0, started the way a Debian host starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// `dhcpcd -q -b`: one daemon for every interface, as Debian's and Raspberry Pi OS's
    /// dhcpcd.service start it. Exactly these three arguments: dhcpcd 9.4.1 re-parses its
    /// own argv when handling `-n IFACE` and misreads the interface list when it had more
    /// (docs/kernel-behaviour.md, C5, bug 3), so a daemon with other arguments would
    /// behave unlike a real host's. Its log goes to a file through `logfile` and `debug`
    /// lines appended to the host's `/etc/dhcpcd.conf` (in the overlay), not through
    /// arguments.
    DhcpcdManager,
    /// `dhcpcd eth0`, as ifupdown runs it for `iface eth0 inet dhcp` with dhcpcd: a
    /// daemon for eth0 only (`/run/dhcpcd/eth0.pid`, `eth0.sock`), in the foreground
    /// until it has a lease. Logs like the manager.
    DhcpcdPerInterface,
    /// `dhclient -4 -v -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases
    /// -I -df /var/lib/dhcp/dhclient6.eth0.leases eth0`, ifupdown's command line, after
    /// `ip link set eth0 up`; it goes to the background once bound. Its log is what `-v`
    /// writes to stderr before then (there is no syslog in the holder). IPv6 from kernel
    /// SLAAC, as on such hosts.
    Dhclient,
    /// NetworkManager 1.42 (`--no-daemon`, internal DHCP client, its own SLAAC) with a
    /// keyfile profile `eqt-eth0` (ipv4 and ipv6 auto), on a private dbus-daemon.
    NetworkManager,
    /// systemd-networkd 252 (`/lib/systemd/systemd-networkd`, without systemd as PID 1)
    /// with `/etc/systemd/network/50-eqt-eth0.network` (`DHCP=ipv4`, its own SLAAC), on a
    /// private dbus-daemon where it owns `org.freedesktop.network1`. Started as root, it
    /// drops to the `systemd-network` user, as under systemd.
    Networkd,
    /// No daemon: kernel SLAAC with privacy addresses (`accept_ra=2`, `autoconf=1`,
    /// `use_tempaddr=2` on eth0). IPv6 only.
    KernelSlaac,
}

impl Manager {
    pub const ALL: [Manager; 6] = [
        Manager::DhcpcdManager,
        Manager::DhcpcdPerInterface,
        Manager::Dhclient,
        Manager::NetworkManager,
        Manager::Networkd,
        Manager::KernelSlaac,
    ];

    /// Whether eth0 gets an IPv4 lease.
    pub fn leases_v4(self) -> bool {
        self != Manager::KernelSlaac
    }

    fn holder_kind(self) -> HolderKind {
        match self {
            Manager::NetworkManager => HolderKind::NetworkManager,
            Manager::Networkd => HolderKind::Networkd,
            _ => HolderKind::Plain,
        }
    }
}

/// How the host is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSpec {
    pub manager: Manager,
    /// Kernel SLAAC with privacy addresses on eth0 (`accept_ra=2`, `autoconf=1`,
    /// `use_tempaddr=2`), set before eth0 comes up. dhcpcd and NetworkManager do SLAAC
    /// themselves (and turn `accept_ra` off).
    pub kernel_slaac: bool,
}

impl HostSpec {
    /// `manager` with kernel SLAAC where such hosts use it (dhclient, SLAAC only).
    pub fn new(manager: Manager) -> HostSpec {
        HostSpec {
            manager,
            kernel_slaac: matches!(manager, Manager::Dhclient | Manager::KernelSlaac),
        }
    }
}

/// A dynamic IPv4 address on a device (a lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Lease {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub valid_lft: u32,
    pub preferred_lft: u32,
}

/// A global IPv6 address on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Addr {
    pub ip: Ipv6Addr,
    pub prefix_len: u8,
    pub temporary: bool,
    pub mngtmpaddr: bool,
    pub tentative: bool,
    /// `None`: forever.
    pub valid_lft: Option<u32>,
    pub preferred_lft: Option<u32>,
}

/// What the host came up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Up {
    pub v4: Option<V4Lease>,
    /// eth0's global IPv6 addresses, none tentative.
    pub v6: Vec<V6Addr>,
    /// From the daemon's start (or eth0 up, for kernel SLAAC) to configured.
    pub took: Duration,
}

impl Up {
    /// The global IPv6 address that is not a privacy (temporary) one.
    pub fn v6_public(&self) -> Option<Ipv6Addr> {
        self.v6.iter().find(|a| !a.temporary).map(|a| a.ip)
    }

    /// The addresses a prober can aim at: the lease, the public IPv6 address.
    pub fn targets(&self) -> Vec<IpAddr> {
        let mut t: Vec<IpAddr> = self.v4.iter().map(|l| IpAddr::V4(l.ip)).collect();
        t.extend(self.v6_public().map(IpAddr::V6));
        t
    }
}

/// One run of env-qemu inside the host.
#[derive(Debug, Clone)]
pub struct EnvQemuRun {
    pub args: Vec<String>,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl EnvQemuRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for EnvQemuRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "$ env-qemu {}   # exit {:?} after {:.2} s",
            self.args.join(" "),
            self.code,
            self.took.as_secs_f64()
        )?;
        for l in self.stdout.lines() {
            writeln!(f, "  out| {l}")?;
        }
        for l in self.stderr.lines() {
            writeln!(f, "  err| {l}")?;
        }
        Ok(())
    }
}

/// A process of the host namespace, for confinement checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProcess {
    pub pid: u32,
    pub cmdline: String,
    /// `ip netns identify PID`.
    pub netns: Vec<String>,
    /// `mnt:[…]`, `uts:[…]`.
    pub mnt: String,
    pub uts: String,
}

/// The host: its namespace, its holder, its daemon; everything ended on drop.
pub struct ClientHost {
    spec: HostSpec,
    // Ended explicitly in Drop, in this order: echo threads, every process of the
    // namespace but the holder, the launchers (reaped), the holder. Then the files and
    // the namespace go with the fields.
    echo: Option<EchoServer>,
    launched: Vec<ChildGuard>,
    holder: Holder,
    started: Instant,
    port: String,
    dir: ScratchDir,
    ns: TestNs,
}

impl ClientHost {
    /// Creates the host namespace, attaches eth0 to `lan`, starts the holder and the
    /// daemon of `spec`. Returns at once: [`ClientHost::wait_up`] waits for the result.
    pub fn start(lan: &Lan, spec: HostSpec) -> ClientHost {
        let ns = TestNs::new();
        let dir = ScratchDir::new();
        let port = lan.attach(&ns, UPLINK, HOST_MAC);
        ns.ip("link set lo up");
        if spec.kernel_slaac {
            for (key, value) in [("accept_ra", "2"), ("autoconf", "1"), ("use_tempaddr", "2")] {
                ns.set_sysctl(&format!("net.ipv6.conf.{UPLINK}.{key}"), value);
            }
        }
        let holder = Holder::start(&ns, dir.path(), spec.manager.holder_kind());
        let mut host = ClientHost {
            spec,
            echo: None,
            launched: Vec::new(),
            holder,
            started: Instant::now(),
            port,
            dir,
            ns,
        };
        host.launch();
        host
    }

    fn launch(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let log = |name: &str| {
            std::fs::File::create(dir.join(name)).unwrap_or_else(|e| panic!("create {name}: {e}"))
        };
        self.started = Instant::now();
        match self.spec.manager {
            Manager::DhcpcdManager => {
                self.dhcpcd_logging();
                let mut cmd = self.holder.command("dhcpcd");
                cmd.args(["-q", "-b"])
                    .stdout(Stdio::null())
                    .stderr(log("dhcpcd.stderr"));
                self.spawn("dhcpcd -q -b", &mut cmd);
            }
            Manager::DhcpcdPerInterface => {
                self.dhcpcd_logging();
                let mut cmd = self.holder.command("dhcpcd");
                cmd.arg(UPLINK)
                    .stdout(Stdio::null())
                    .stderr(log("dhcpcd.stderr"));
                self.spawn("dhcpcd eth0", &mut cmd);
            }
            Manager::Dhclient => {
                self.ns.ip(&format!("link set {UPLINK} up"));
                self.started = Instant::now();
                let mut cmd = self.holder.command("dhclient");
                cmd.args(dhclient_args(UPLINK))
                    .stdout(Stdio::null())
                    .stderr(log(&format!("dhclient.{UPLINK}.log")));
                self.spawn("dhclient", &mut cmd);
            }
            Manager::NetworkManager => self.launch_network_manager(),
            Manager::Networkd => self.launch_networkd(),
            Manager::KernelSlaac => {
                self.ns.ip(&format!("link set {UPLINK} up"));
                self.started = Instant::now();
            }
        }
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        self.launched.push(ChildGuard::spawn(name, cmd));
    }

    /// `logfile` and `debug` appended to the host's /etc/dhcpcd.conf (the overlay).
    fn dhcpcd_logging(&self) {
        let mut conf = self.holder.read("/etc/dhcpcd.conf").unwrap_or_default();
        conf.push_str(&format!(
            "\n# env-qemu test harness: log to the test's directory\nlogfile {}\ndebug\n",
            self.dir.join("dhcpcd.log").display()
        ));
        self.holder.write("/etc/dhcpcd.conf", &conf);
    }

    /// dbus-daemon on the private /run/dbus/system_bus_socket (and a socket in the test
    /// directory for clients outside the holder), then NetworkManager.
    fn launch_network_manager(&mut self) {
        self.launch_dbus();
        let dir = self.dir.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("create log");
        self.holder
            .write("/etc/NetworkManager/NetworkManager.conf", NM_CONF);
        let profile = "/etc/NetworkManager/system-connections/eqt-eth0.nmconnection";
        self.holder.write(profile, NM_PROFILE);
        // NetworkManager ignores a keyfile that others may read.
        self.holder.run("chmod", &["600", profile]).expect("chmod");
        self.holder
            .run("mkdir", &["-p", "/run/eqt-nm-empty"])
            .expect("mkdir");
        self.started = Instant::now();
        self.spawn_network_manager(log("nm.log"));
    }

    /// The private dbus-daemon, then systemd-networkd with the host's `.network` file.
    fn launch_networkd(&mut self) {
        self.launch_dbus();
        self.holder.write(NETWORKD_PROFILE_PATH, NETWORKD_PROFILE);
        let log = std::fs::File::create(self.dir.join("networkd.log")).expect("create log");
        self.started = Instant::now();
        self.spawn_networkd(log);
    }

    /// systemd-networkd in the holder, its debug log to `log`.
    fn spawn_networkd(&mut self, log: std::fs::File) {
        let mut cmd = self.holder.command(NETWORKD);
        cmd.env("SYSTEMD_LOG_LEVEL", "debug")
            .env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_TIME", "1")
            .stdout(Stdio::null())
            .stderr(log);
        self.spawn("systemd-networkd", &mut cmd);
    }

    /// Ends systemd-networkd (SIGTERM by PID once `ip netns identify` names the host's
    /// namespace, SIGKILL after 10 s) and starts it again in the same holder, as its
    /// service manager restarts it: /run (runtime `.network` files, state files) stays.
    pub fn restart_networkd(&mut self) {
        assert_eq!(self.spec.manager, Manager::Networkd);
        self.end_launched("systemd-networkd", nix::sys::signal::Signal::SIGTERM);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("networkd.log"))
            .expect("open networkd.log");
        self.spawn_networkd(log);
    }

    /// Ends the launched process `name` with `signal` (SIGKILL after 10 s), after `ip
    /// netns identify` named the host's namespace, and reaps it.
    fn end_launched(&mut self, name: &str, signal: nix::sys::signal::Signal) {
        let at = self
            .launched
            .iter()
            .position(|g| g.name() == name)
            .unwrap_or_else(|| panic!("{name} was launched"));
        let mut daemon = self.launched.remove(at);
        let process =
            crate::hosts::process::NsProcess::open(daemon.pid()).expect("the daemon runs");
        process
            .signal_in(self.ns.name(), signal)
            .unwrap_or_else(|e| panic!("signal {name}: {e}"));
        if !process.wait_exit(Duration::from_secs(10)) {
            process
                .signal_in(self.ns.name(), nix::sys::signal::Signal::SIGKILL)
                .unwrap_or_else(|e| panic!("SIGKILL {name}: {e}"));
        }
        daemon.terminate(Duration::from_secs(5));
    }

    /// dbus-daemon on the private /run/dbus/system_bus_socket and on a socket in the test
    /// directory (for clients outside the holder).
    fn launch_dbus(&mut self) {
        let outside_bus = self.dir.join("bus");
        let conf = self.dir.join("dbus.conf");
        std::fs::write(&conf, dbus_config(&outside_bus)).expect("write dbus.conf");
        let dir = self.dir.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("create log");
        let mut cmd = self.holder.command("dbus-daemon");
        cmd.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nosyslog"])
            .stdout(Stdio::null())
            .stderr(log("dbus.log"));
        self.spawn("dbus-daemon", &mut cmd);
        let listening = wait_until(Duration::from_secs(10), || {
            (outside_bus.exists() && self.holder.exists("/run/dbus/system_bus_socket"))
                .then_some(())
        });
        assert!(
            listening.is_some(),
            "dbus-daemon did not listen within 10 s"
        );
    }

    /// NetworkManager in the holder, its log to `log`.
    fn spawn_network_manager(&mut self, log: std::fs::File) {
        let mut cmd = self.holder.command("NetworkManager");
        cmd.args([
            "--no-daemon",
            "--debug",
            "--config=/etc/NetworkManager/NetworkManager.conf",
            "--config-dir=/etc/NetworkManager/conf.d",
            "--system-config-dir=/run/eqt-nm-empty",
        ])
        .stdout(Stdio::null())
        .stderr(log);
        self.spawn("NetworkManager", &mut cmd);
    }

    /// Ends NetworkManager (`signal`, by PID, once `ip netns identify` names the host's
    /// namespace; SIGKILL if it is still there after 10 s) and starts it again in the
    /// same holder: its /run (in-memory profiles, device state files) stays, like a
    /// daemon restarted by its service manager. Its log goes on in the same file.
    pub fn restart_network_manager(&mut self, signal: nix::sys::signal::Signal) {
        assert_eq!(self.spec.manager, Manager::NetworkManager);
        self.end_launched("NetworkManager", signal);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("nm.log"))
            .expect("open nm.log");
        self.spawn_network_manager(log);
    }

    pub fn spec(&self) -> HostSpec {
        self.spec
    }

    /// The host's network namespace.
    pub fn ns(&self) -> &TestNs {
        &self.ns
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The test directory (logs, the outside bus socket, env-qemu's state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `ip -ts monitor link address route` of the host, line-buffered into
    /// `monitor.log` of its directory (so a report shows everything up to the moment it
    /// is printed): the guard that ends it, and the log.
    pub fn monitor(&self) -> (ChildGuard, LogFile) {
        let log = LogFile::new(self.dir().join("monitor.log"));
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "ip", "-n", self.ns().name(), "-ts", "monitor"])
            .args(["link", "address", "route"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.path()).expect("create monitor.log"))
            .stderr(Stdio::null());
        (ChildGuard::spawn("ip monitor", &mut cmd), log)
    }

    /// eth0's port on the LAN bridge, in the router namespace.
    pub fn lan_port(&self) -> &str {
        &self.port
    }

    /// The daemon's log: dhcpcd's logfile, dhclient's stderr, NetworkManager's debug log.
    pub fn daemon_log(&self) -> Option<LogFile> {
        let name = match self.spec.manager {
            Manager::DhcpcdManager | Manager::DhcpcdPerInterface => "dhcpcd.log".to_string(),
            Manager::Dhclient => format!("dhclient.{UPLINK}.log"),
            Manager::NetworkManager => "nm.log".to_string(),
            Manager::Networkd => "networkd.log".to_string(),
            Manager::KernelSlaac => return None,
        };
        Some(LogFile::new(self.dir.join(&name)))
    }

    /// Where the daemon writes its PID, inside the host (`None`: NetworkManager,
    /// networkd and kernel SLAAC write none).
    pub fn pid_file(&self) -> Option<String> {
        match self.spec.manager {
            Manager::DhcpcdManager => Some("/run/dhcpcd/pid".into()),
            Manager::DhcpcdPerInterface => Some(format!("/run/dhcpcd/{UPLINK}.pid")),
            Manager::Dhclient => Some(format!("/run/dhclient.{UPLINK}.pid")),
            Manager::NetworkManager | Manager::Networkd | Manager::KernelSlaac => None,
        }
    }

    /// The daemon's PID: from its pid file inside the host, or NetworkManager's launch.
    pub fn daemon_pid(&self) -> Option<u32> {
        match self.spec.manager {
            Manager::NetworkManager => self
                .launched
                .iter()
                .find(|g| g.name() == "NetworkManager")
                .map(ChildGuard::pid),
            Manager::Networkd => self
                .launched
                .iter()
                .find(|g| g.name() == "systemd-networkd")
                .map(ChildGuard::pid),
            Manager::KernelSlaac => None,
            _ => self
                .holder
                .read(&self.pid_file()?)
                .and_then(|p| p.trim().parse().ok()),
        }
    }

    /// The D-Bus address of the host's private system bus from outside the holder (a
    /// socket in the test directory); `None` unless NetworkManager or networkd runs.
    pub fn bus_address(&self) -> Option<String> {
        matches!(
            self.spec.manager,
            Manager::NetworkManager | Manager::Networkd
        )
        .then(|| format!("unix:path={}", self.dir.join("bus").display()))
    }

    /// Every process in the host's network namespace.
    pub fn processes(&self) -> Vec<HostProcess> {
        pids_in(self.ns.name())
            .into_iter()
            .filter_map(|pid| {
                Some(HostProcess {
                    pid,
                    cmdline: crate::hosts::process::cmdline(pid),
                    netns: netns_of(pid),
                    mnt: ns_id(pid, "mnt")?,
                    uts: ns_id(pid, "uts")?,
                })
            })
            .collect()
    }

    /// Waits up to `timeout` for eth0 to be configured as its manager configures it: a
    /// dynamic IPv4 address and a default route through the router (unless kernel SLAAC
    /// only), a global IPv6 address in the LAN's prefix that is not tentative and an IPv6
    /// default route, and with kernel privacy addresses also a temporary address.
    /// Panics with the daemon's log if it does not come.
    pub fn wait_up(&self, timeout: Duration) -> Up {
        let got = wait_until(timeout, || self.configured(UPLINK));
        got.unwrap_or_else(|| {
            panic!(
                "{:?} host not configured within {timeout:?}: {}\n{}\ndaemon log:\n{}",
                self.spec.manager,
                self.ns.ip(&format!("addr show dev {UPLINK}")),
                self.ns.ip("route show table all"),
                self.daemon_log().map(|l| l.text()).unwrap_or_default()
            )
        })
    }

    fn configured(&self, dev: &str) -> Option<Up> {
        let v4 = self.v4_lease(dev);
        let v6: Vec<V6Addr> = self
            .v6_globals(dev)
            .into_iter()
            .filter(|a| !a.tentative)
            .collect();
        let routes4 = self.ns.ip(&format!("-4 route show default dev {dev}"));
        let routes6 = self.ns.ip(&format!("-6 route show default dev {dev}"));
        let v4_ok = !self.spec.manager.leases_v4()
            || (v4.is_some() && routes4.contains(&format!("via {ROUTER_V4}")));
        let v6_ok = v6.iter().any(|a| !a.temporary)
            && !routes6.trim().is_empty()
            && (!self.spec.kernel_slaac || v6.iter().any(|a| a.temporary));
        (v4_ok && v6_ok).then(|| Up {
            v4,
            v6,
            took: self.started.elapsed(),
        })
    }

    /// The dynamic IPv4 address of `dev` (with a finite lifetime), if any.
    pub fn v4_lease(&self, dev: &str) -> Option<V4Lease> {
        addr_info(&self.ns, dev)
            .into_iter()
            .filter(|a| a["family"] == "inet")
            .find_map(|a| {
                Some(V4Lease {
                    ip: a["local"].as_str()?.parse().ok()?,
                    prefix_len: u8::try_from(a["prefixlen"].as_u64()?).ok()?,
                    valid_lft: lifetime(&a["valid_life_time"])?,
                    preferred_lft: lifetime(&a["preferred_life_time"]).unwrap_or(u32::MAX),
                })
            })
    }

    /// The global IPv6 addresses of `dev`.
    pub fn v6_globals(&self, dev: &str) -> Vec<V6Addr> {
        addr_info(&self.ns, dev)
            .into_iter()
            .filter(|a| a["family"] == "inet6" && a["scope"] == "global")
            .filter_map(|a| {
                Some(V6Addr {
                    ip: a["local"].as_str()?.parse().ok()?,
                    prefix_len: u8::try_from(a["prefixlen"].as_u64()?).ok()?,
                    temporary: a["temporary"] == true,
                    mngtmpaddr: a["mngtmpaddr"] == true,
                    tentative: a["tentative"] == true,
                    valid_lft: lifetime(&a["valid_life_time"]),
                    preferred_lft: lifetime(&a["preferred_life_time"]),
                })
            })
            .collect()
    }

    /// Starts the UDP echo server ([`crate::stream::EchoServer`]) in the host's namespace,
    /// which [`crate::hosts::Pinger`] and 1,000/s streams aim at. Idempotent.
    pub fn serve_echo(&mut self) {
        if self.echo.is_none() {
            self.echo = Some(EchoServer::start(&self.ns));
        }
    }

    /// `env-qemu ARGS…` inside the host: its network namespace and the holder's mount and
    /// UTS namespaces (so it sees /run/dhcpcd/sock, the private /run and D-Bus socket as
    /// on a real host), with a state directory and an empty config file of the test's
    /// (`--state-dir DIR/env-qemu --config DIR/env-qemu/none.toml`).
    pub fn env_qemu_command(&self, bin: &Path, args: &[&str]) -> Command {
        let state = self.env_qemu_state_dir();
        std::fs::create_dir_all(&state).expect("create env-qemu's state dir");
        let mut cmd = self.holder.command(bin);
        cmd.arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(state.join("none.toml"))
            .args(args);
        cmd
    }

    /// Runs `env-qemu ARGS…` inside the host (see [`ClientHost::env_qemu_command`]).
    pub fn env_qemu(&self, bin: &Path, args: &[&str]) -> EnvQemuRun {
        let t = Instant::now();
        let out = self
            .env_qemu_command(bin, args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
        EnvQemuRun {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: t.elapsed(),
        }
    }

    /// env-qemu's state directory for runs inside the host.
    pub fn env_qemu_state_dir(&self) -> PathBuf {
        self.dir.join("env-qemu")
    }
}

impl std::fmt::Debug for ClientHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHost")
            .field("spec", &self.spec)
            .field("ns", &self.ns)
            .field("holder", &self.holder)
            .field("launched", &self.launched)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for ClientHost {
    fn drop(&mut self) {
        self.echo = None;
        let holder = self.holder.pid();
        for line in end_all_in(self.ns.name(), &[holder], Duration::from_secs(5)) {
            eprintln!("host drop: {line}");
        }
        // Reaps the launchers (our children, ended above or by themselves).
        self.launched.clear();
        self.holder.terminate();
        let left = pids_in(self.ns.name());
        if !left.is_empty() {
            eprintln!("warning: processes left in {}: {left:?}", self.ns.name());
        }
    }
}

/// ifupdown's dhclient command line for `iface IFACE inet dhcp` (without the program).
pub fn dhclient_args(iface: &str) -> Vec<String> {
    vec![
        "-4".into(),
        "-v".into(),
        "-pf".into(),
        format!("/run/dhclient.{iface}.pid"),
        "-lf".into(),
        format!("/var/lib/dhcp/dhclient.{iface}.leases"),
        "-I".into(),
        "-df".into(),
        format!("/var/lib/dhcp/dhclient6.{iface}.leases"),
        iface.into(),
    ]
}

/// `ip -j addr show dev DEV`'s addr_info entries.
fn addr_info(ns: &TestNs, dev: &str) -> Vec<Value> {
    let Ok(out) = ns.try_ip(&format!("-j addr show dev {dev}")) else {
        return Vec::new();
    };
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    json.get(0)
        .and_then(|l| l.get("addr_info"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A lifetime `ip -j` printed; `None` for forever.
fn lifetime(v: &Value) -> Option<u32> {
    v.as_u64()
        .filter(|&s| s != u64::from(u32::MAX))
        .and_then(|s| u32::try_from(s).ok())
}

/// The private bus: root may do anything, `systemd-network` may connect (networkd owns
/// `org.freedesktop.network1` after dropping to that user); it listens on the holder's
/// /run/dbus/system_bus_socket (what NetworkManager, nmcli and env-qemu inside the host
/// use) and on `outside` (for tests outside the holder). No service activation.
fn dbus_config(outside: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow user="systemd-network"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"#,
        outside.display()
    )
}

/// NetworkManager.conf of the host (docs/kernel-behaviour.md, Q1): keyfiles only, no DNS,
/// resolv.conf or hostname handling, no default profiles, no polkit, internal DHCP, no
/// connectivity check.
const NM_CONF: &str = "\
[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
hostname-mode=none
no-auto-default=*
auth-polkit=false
systemd-resolved=false
dhcp=internal

[logging]
level=DEBUG
domains=ALL
backend=journal
audit=false

[connectivity]
enabled=false
";

/// systemd-networkd's program, as Debian installs it.
const NETWORKD: &str = "/lib/systemd/systemd-networkd";

/// Where the host's own `.network` file for eth0 is (the holder's tmpfs over
/// /etc/systemd/network).
pub const NETWORKD_PROFILE_PATH: &str = "/etc/systemd/network/50-eqt-eth0.network";

/// The host's `.network` file for eth0: DHCPv4 and networkd's own SLAAC, as a server's.
const NETWORKD_PROFILE: &str = "\
[Match]
Name=eth0

[Network]
DHCP=ipv4
IPv6AcceptRA=yes
";

/// The profile that owns eth0: DHCPv4 and SLAAC (stable privacy), as a desktop's.
const NM_PROFILE: &str = "\
[connection]
id=eqt-eth0
uuid=5f0d8d5e-6d7e-4a39-9b6e-0000000e0001
type=ethernet
interface-name=eth0

[ipv4]
method=auto

[ipv6]
method=auto
addr-gen-mode=default
";
