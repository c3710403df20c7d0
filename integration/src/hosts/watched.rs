//! A real-daemon host brought up and watched: where every scenario of the binary's
//! real-host tests starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use env_qemu_core::model::NetState;

use super::{ClientHost, EnvQemuRun, HostSpec, Lan, LanSpec, LogMark, Manager, Pinger, Up};
use crate::guard::ChildGuard;
use crate::session::settled_state;

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
}
