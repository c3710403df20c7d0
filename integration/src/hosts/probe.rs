//! Reachability of a host over time: [`Pinger`] (one UDP echo every N seconds from the
//! LAN and from the far host, losses counted) and [`streams_during`] (1,000/s streams of
//! [`crate::stream`] around one command).
//!
//! Both aim at the [`crate::stream::EchoServer`] of the host's namespace
//! ([`crate::hosts::ClientHost::serve_echo`]): this machine has no `ping`, and a UDP echo
//! needs no raw socket. A probe needs the host's address, a route back to the source and
//! working neighbour entries on both sides, as an ICMP echo would.

use std::collections::HashSet;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use crate::hosts::{ClientHost, Lan};
use crate::stream::{echo_port, lan_and_far, Outcome, StreamSpec, Streams};
use crate::TestNs;

/// Marks the pinger's datagrams (the streams use another magic).
const MAGIC: u32 = 0x7069_6e67;
/// How long the pinger waits, after its last probe, for the echoes still on their way.
/// A probe is lost when its echo never arrives (a late one counts).
const TIMEOUT: Duration = Duration::from_secs(2);

/// What one source measured towards one target.
#[derive(Debug, Clone)]
pub struct TargetReport {
    pub from: String,
    pub target: IpAddr,
    pub sent: u32,
    pub lost: u32,
    /// When each lost probe was sent, after the pinger started.
    pub lost_at: Vec<Duration>,
    /// `send_to` failures (counted as lost too).
    pub send_errors: u32,
}

/// Everything a [`Pinger`] measured.
#[derive(Debug, Clone)]
pub struct PingReport {
    pub every: Duration,
    pub ran: Duration,
    pub targets: Vec<TargetReport>,
}

impl PingReport {
    /// Probes lost, all sources and targets together.
    pub fn lost(&self) -> u32 {
        self.targets.iter().map(|t| t.lost).sum()
    }

    pub fn sent(&self) -> u32 {
        self.targets.iter().map(|t| t.sent).sum()
    }

    /// One line per source and target.
    pub fn table(&self) -> String {
        let mut out = format!(
            "probes every {:.1} s for {:.1} s:\n",
            self.every.as_secs_f64(),
            self.ran.as_secs_f64()
        );
        for t in &self.targets {
            let at: Vec<String> = t
                .lost_at
                .iter()
                .map(|d| format!("{:.1}", d.as_secs_f64()))
                .collect();
            out.push_str(&format!(
                "  from {:<4} to {:<32} sent {:>4} lost {:>4}{}\n",
                t.from,
                t.target.to_string(),
                t.sent,
                t.lost,
                if at.is_empty() {
                    String::new()
                } else {
                    format!(" (at {} s)", at.join(", "))
                }
            ));
        }
        out
    }
}

/// Probes running in the background until [`Pinger::stop`].
pub struct Pinger {
    stop: Arc<AtomicBool>,
    every: Duration,
    t0: Instant,
    threads: Vec<JoinHandle<TargetReport>>,
}

impl Pinger {
    /// One probe to each of `targets` from each of `sources` (label, namespace) every
    /// `every`, all starting now.
    pub fn start(sources: &[(&str, &TestNs)], targets: &[IpAddr], every: Duration) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let mut threads = Vec::new();
        for (label, ns) in sources {
            for target in targets {
                let (label, path, target, stop) =
                    (label.to_string(), ns.path(), *target, stop.clone());
                threads.push(std::thread::spawn(move || {
                    probe(&label, &path, target, every, t0, &stop)
                }));
            }
        }
        Pinger {
            stop,
            every,
            t0,
            threads,
        }
    }

    /// From the LAN's router and the far host to `targets`.
    pub fn from_lan(lan: &Lan, targets: &[IpAddr], every: Duration) -> Pinger {
        Pinger::start(&[("lan", lan.router()), ("far", lan.far())], targets, every)
    }

    /// Stops after the probes under way and returns the counts.
    pub fn stop(self) -> PingReport {
        self.stop.store(true, Ordering::Relaxed);
        let targets = self
            .threads
            .into_iter()
            .map(|t| t.join().expect("probe thread"))
            .collect();
        PingReport {
            every: self.every,
            ran: self.t0.elapsed(),
            targets,
        }
    }
}

fn enter(path: &std::path::Path) {
    let f = File::open(path).expect("open netns");
    setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
}

fn probe(
    label: &str,
    ns: &std::path::Path,
    target: IpAddr,
    every: Duration,
    t0: Instant,
    stop: &AtomicBool,
) -> TargetReport {
    enter(ns);
    let any: SocketAddr = match target {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any).expect("bind probe socket");
    let to = SocketAddr::new(target, echo_port(&target));
    let mut answered = HashSet::new();
    let mut send_errors = 0;
    let mut seq: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&seq.to_be_bytes());
        msg[4..].copy_from_slice(&MAGIC.to_be_bytes());
        if sock.send_to(&msg, to).is_err() {
            send_errors += 1;
        }
        seq += 1;
        collect_echoes(&sock, t0 + every * seq, &mut answered);
    }
    // The last probes' echoes, and any an overloaded machine delayed.
    collect_echoes(&sock, Instant::now() + TIMEOUT, &mut answered);
    let lost_at: Vec<Duration> = (0..seq)
        .filter(|s| !answered.contains(s))
        .map(|s| every * s)
        .collect();
    TargetReport {
        from: label.to_string(),
        target,
        sent: seq,
        lost: lost_at.len() as u32,
        lost_at,
        send_errors,
    }
}

/// Reads echoes into `answered` (their sequence numbers) until `until`. An echo counts
/// whenever it arrives: a probe is lost only if its echo never comes, so a prober or echo
/// server the scheduler stalled on a loaded machine is no outage.
fn collect_echoes(sock: &UdpSocket, until: Instant, answered: &mut HashSet<u32>) {
    let mut buf = [0u8; 64];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        sock.set_read_timeout(Some(left)).expect("read timeout");
        match sock.recv_from(&mut buf) {
            Ok((8, _)) => {
                let got = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                let magic = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
                if magic == MAGIC {
                    answered.insert(got);
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            // An ICMP error (port or host unreachable) reported on the socket: that probe
            // is simply not answered.
            Err(_) => {}
        }
    }
}

/// The four 1,000/s streams of a blackout measurement: from the LAN's router and from the
/// far host to each of `targets` on `host` (each path answers first; see
/// [`crate::stream::lan_and_far`]).
pub fn stream_specs(lan: &Lan, host: &ClientHost, targets: [IpAddr; 2]) -> Vec<StreamSpec> {
    lan_and_far(host.ns(), lan.router(), lan.far(), targets)
}

/// Runs `command` while `specs` stream `rate` datagrams/s: the streams start, `command`
/// runs one second in, the streams go on one second after its `budget`. Panics if the
/// command outlasts its budget (the streams would not cover it). Returns the command's
/// result, what each stream measured and how long the command took.
pub fn streams_during<T>(
    specs: &[StreamSpec],
    rate: u32,
    budget: Duration,
    command: impl FnOnce() -> T,
) -> (T, Vec<Outcome>, Duration) {
    let lead = Duration::from_secs(1);
    let streams = Streams::spawn(
        specs,
        rate,
        lead + budget + Duration::from_secs(1),
        Duration::from_secs(2),
    );
    // Streams start 200 ms after spawn (stream.rs); the command `lead` after that.
    let at = streams.t0() + lead;
    if let Some(wait) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let t = Instant::now();
    let result = command();
    let took = t.elapsed();
    let outcomes = streams.finish();
    assert!(
        took <= budget,
        "the command took {took:?}, more than its budget {budget:?}: the streams did not \
         cover all of it"
    );
    (result, outcomes, took)
}
