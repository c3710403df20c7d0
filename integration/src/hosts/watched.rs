//! A real-daemon host brought up and watched: where every scenario of the binary's
//! real-host tests starts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use env_qemu_core::model::NetState;

use super::probe::stream_specs;
use super::{
    streams_during, ClientHost, EnvQemuRun, HostSpec, Lan, LanSpec, LogMark, Manager, PingReport,
    Pinger, Up,
};
use crate::guard::ChildGuard;
use crate::session::settled_state;
use crate::stream::{table, Outcome};

/// What [`Watched::start_killed_at`] saw.
pub struct KilledStart {
    /// Whether the journal held the text before the 20 s ran out.
    pub seen: bool,
    /// How the killed process ended.
    pub status: ExitStatus,
    /// When it was killed (right after it was stopped).
    pub killed: Instant,
}

/// Asserts that a tap's `ip -j link` object (`before`, `after`) kept its master, MTU and
/// flags.
pub fn assert_tap_unchanged(before: &serde_json::Value, after: &serde_json::Value) {
    assert_eq!(
        (
            after["master"].clone(),
            after["mtu"].clone(),
            after["flags"].clone()
        ),
        (
            before["master"].clone(),
            before["mtu"].clone(),
            before["flags"].clone()
        ),
        "the tap changed while bridged"
    );
}

/// A [`ClientHost`] owned by `manager` on a default [`Lan`], up, and watched: the state
/// it settled in (what stop must give back), an `ip monitor` of it, a [`Pinger`] from the
/// LAN every 200 ms, and marks in its daemon's and dnsmasq's logs from before any
/// env-qemu command.
pub struct Watched {
    /// The LAN and its dnsmasq.
    pub lan: Lan,
    /// The host.
    pub host: ClientHost,
    /// What the manager configured on eth0 before env-qemu ran.
    pub up: Up,
    /// The host's settled state before env-qemu ran.
    pub before: NetState,
    /// The `ip -ts monitor` log of the host.
    pub monitor: PathBuf,
    _monitor: ChildGuard,
    /// The probes from the LAN; `None` once a test took its report.
    pub pinger: Option<Pinger>,
    /// The manager's log before env-qemu ran.
    pub daemon_mark: LogMark,
    /// dnsmasq's log before env-qemu ran.
    pub dnsmasq_mark: LogMark,
    /// When the host was up.
    pub t0: Instant,
}

impl Watched {
    /// Starts the LAN and the host, and waits up to `up_within` for its manager to
    /// configure eth0.
    pub fn start(manager: Manager, up_within: Duration) -> Watched {
        let lan = Lan::start(LanSpec::default());
        let mut host = ClientHost::start(&lan, HostSpec::new(manager));
        let up = host.wait_up(up_within);
        // Managers settle their routes a moment after the address (NM's SLAAC).
        let before = settled_state(host.ns());
        let (monitor_process, log) = host.monitor();
        let monitor = log.path().to_path_buf();
        host.serve_echo();
        let pinger = Pinger::from_lan(&lan, &up.targets(), Duration::from_millis(200));
        Watched {
            daemon_mark: host.daemon_log().expect("the manager's log").mark(),
            dnsmasq_mark: lan.mark(),
            lan,
            host,
            up,
            before,
            monitor,
            _monitor: monitor_process,
            pinger: Some(pinger),
            t0: Instant::now(),
        }
    }

    /// Runs the env-qemu binary `bin` with `args` inside the host and prints the run
    /// with the time since the host was up.
    pub fn env_qemu(&self, bin: &Path, args: &[&str]) -> EnvQemuRun {
        let run = self.host.env_qemu(bin, args);
        eprintln!("[{:7.2} s] {run}", self.t0.elapsed().as_secs_f64());
        run
    }

    /// The 1,000/s streams from the LAN and the far host to the lease and the IPv6
    /// address, around `bin ARGS` run as [`Watched::env_qemu`] does; the outcomes are
    /// printed as a table.
    pub fn streamed(&self, bin: &Path, args: &[&str]) -> (EnvQemuRun, Vec<Outcome>) {
        let targets = [
            IpAddr::V4(self.up.v4.expect("a lease").ip),
            IpAddr::V6(self.up.v6_public().expect("an IPv6 address")),
        ];
        let specs = stream_specs(&self.lan, &self.host, targets);
        let (run, outcomes, _) = streams_during(&specs, 1000, Duration::from_secs(20), || {
            self.env_qemu(bin, args)
        });
        eprintln!("{}", table(&[(args[0], &outcomes)]));
        (run, outcomes)
    }

    /// Runs `bin start eth0` in the host and, as soon as its journal holds `at` (polled
    /// every millisecond, for at most 20 s), stops and kills it.
    pub fn start_killed_at(&self, bin: &Path, at: &str) -> KilledStart {
        let mut child = self
            .host
            .env_qemu_command(bin, &["start", "eth0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("env-qemu start");
        let dir = self.host.env_qemu_state_dir();
        let journalled = || {
            std::fs::read_dir(&dir).ok().is_some_and(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "journal"))
                    .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(at)))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = false;
        while Instant::now() < deadline {
            if journalled() {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        // Our own child (nsenter execs env-qemu): frozen at once, then killed.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
        let killed = Instant::now();
        child.kill().expect("SIGKILL env-qemu");
        let status = child.wait().expect("reap env-qemu");
        KilledStart {
            seen,
            status,
            killed,
        }
    }

    /// Asserts that eth0's global IPv6 addresses are the one it had before env-qemu ran.
    pub fn assert_v6_kept(&self) {
        assert_eq!(
            self.host
                .v6_globals("eth0")
                .iter()
                .map(|a| a.ip)
                .collect::<Vec<_>>(),
            vec![self.up.v6_public().unwrap()],
            "eth0's IPv6 address"
        );
    }

    /// Stops the probes and prints, under `test`, what happened since before env-qemu
    /// ran: the probes, the lines of the manager's log that `keep` keeps (headed `daemon`),
    /// dnsmasq's DHCP messages and the `ip monitor` log.
    pub fn report_kept(
        &mut self,
        test: &str,
        daemon: &str,
        keep: impl Fn(&str) -> bool,
    ) -> PingReport {
        let probes = self.pinger.take().unwrap().stop();
        let dhcp: Vec<String> = self
            .lan
            .dhcp_events_since(self.dnsmasq_mark)
            .into_iter()
            .map(|e| e.line)
            .collect();
        let log = self.host.daemon_log().unwrap().since(self.daemon_mark);
        let log: Vec<&str> = log.lines().filter(|l| keep(l)).collect();
        eprintln!(
            "==== {test} ====\n{}\n-- {daemon}:\n{}\n\
             -- dnsmasq's DHCP messages:\n{}\n-- ip monitor of the host:\n{}",
            probes.table(),
            log.join("\n"),
            dhcp.join("\n"),
            std::fs::read_to_string(&self.monitor).unwrap_or_default()
        );
        probes
    }

    /// Asserts that `bin doctor eth0` says `manages` and that `bin start eth0 --dry-run`
    /// succeeds and shows each line of `dry_run`.
    pub fn assert_doctor_and_dry_run(&self, bin: &Path, manages: &str, dry_run: &[&str]) {
        let doctor = self.env_qemu(bin, &["doctor", "eth0"]);
        assert!(doctor.stdout.contains(manages), "{doctor}");
        let dry = self.env_qemu(bin, &["start", "eth0", "--dry-run"]);
        assert!(dry.success(), "{dry}");
        for line in dry_run {
            assert!(
                dry.stdout.contains(line),
                "--dry-run lacks {line:?}:\n{dry}"
            );
        }
    }
}
