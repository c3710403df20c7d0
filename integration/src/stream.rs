//! A fixed-rate UDP echo for measuring blackouts: an [`EchoServer`] inside one namespace,
//! and [`Streams`] of numbered datagrams sent from other namespaces at a fixed rate, each
//! counting which numbers came back.
//!
//! Every thread that enters a namespace is a dedicated OS thread of its own (`setns` is
//! per thread); a socket keeps the namespace it was created in, so a receiving thread can
//! use a clone of it from anywhere.
//!
//! Losses are counted robustly: a datagram is lost only if its echo has not arrived
//! `window` after the last datagram of the stream was sent. A late echo (queued behind
//! neighbour resolution, say) is a delay, reported as the largest round trip seen.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use crate::TestNs;

/// The UDP ports the echo server listens on, inside its own namespace: one per family,
/// so the two sockets never compete for a port (an IPv6 socket on `[::]` takes IPv4 too
/// unless IPV6_V6ONLY is set).
pub fn echo_port(ip: &IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => 7004,
        IpAddr::V6(_) => 7006,
    }
}

/// Marks our datagrams (with the sequence number, 8 bytes in all).
const MAGIC: u32 = 0x6571_6d75;

fn enter(ns_path: &std::path::Path) {
    let f = File::open(ns_path).expect("open netns");
    setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
}

fn any(ip: &IpAddr, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
    }
}

/// Gives `sock` a 4 MiB receive buffer (SO_RCVBUFFORCE: root may exceed rmem_max), so a
/// thread starved of CPU for a while (the whole test suite runs in parallel) delays
/// datagrams instead of dropping them.
fn big_receive_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt reads a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Echoes every datagram on the [`echo_port`]s back to its sender, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &TestNs) -> EchoServer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let families: [IpAddr; 2] = [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()];
        for ip in families {
            let (path, stop, ready) = (ns.path(), stop.clone(), ready_tx.clone());
            threads.push(std::thread::spawn(move || {
                enter(&path);
                let sock = UdpSocket::bind(any(&ip, echo_port(&ip))).expect("bind echo");
                big_receive_buffer(&sock);
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                ready.send(()).expect("ready");
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], peer);
                    }
                }
            }));
        }
        for _ in 0..2 {
            ready_rx.recv().expect("echo server started");
        }
        EchoServer { stop, threads }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One stream: numbered datagrams from the namespace at `from` to `target`.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub label: String,
    pub from: std::path::PathBuf,
    pub target: IpAddr,
}

impl StreamSpec {
    pub fn new(label: impl Into<String>, from: &TestNs, target: IpAddr) -> StreamSpec {
        StreamSpec {
            label: label.into(),
            from: from.path(),
            target,
        }
    }
}

/// The four streams of a blackout measurement: from the LAN router and from the far host
/// to each of `targets` on `host`. Every path must answer first, which also warms the
/// neighbour caches, as on a host that has been on its LAN for a while.
pub fn lan_and_far(
    host: &TestNs,
    lan: &TestNs,
    far: &TestNs,
    targets: [IpAddr; 2],
) -> Vec<StreamSpec> {
    for from in [lan, far] {
        for target in targets {
            assert!(
                crate::probe::udp_echo(from, host, target, 10),
                "no echo from {target} before the measurement"
            );
        }
    }
    [("lan", lan), ("far", far)]
        .into_iter()
        .flat_map(|(label, from)| targets.map(|target| StreamSpec::new(label, from, target)))
        .collect()
}

/// What one stream measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: String,
    pub target: IpAddr,
    pub sent: u32,
    /// Datagrams whose echo never came back (within the window).
    pub lost: u32,
    /// The lost sequence numbers as ranges (`first..=last`), for investigation.
    pub lost_ranges: Vec<(u32, u32)>,
    /// `send_to` failures (ENETUNREACH…): counted as lost too.
    pub send_errors: u32,
    /// The largest round trip of an echo that did come back.
    pub max_rtt: Duration,
}

/// Streams running in the background; [`Streams::finish`] waits for their results.
pub struct Streams {
    threads: Vec<JoinHandle<Outcome>>,
    t0: Instant,
}

impl Streams {
    /// Starts every stream at the same instant: `rate` datagrams per second for
    /// `duration`, then listens `window` longer for late echoes. Returns at once.
    pub fn spawn(specs: &[StreamSpec], rate: u32, duration: Duration, window: Duration) -> Streams {
        let count = (u128::from(rate) * duration.as_millis() / 1000) as u32;
        let interval = Duration::from_secs(1) / rate;
        let t0 = Instant::now() + Duration::from_millis(200);
        let threads = specs
            .iter()
            .cloned()
            .map(|spec| std::thread::spawn(move || run(&spec, t0, count, interval, window)))
            .collect();
        Streams { threads, t0 }
    }

    /// When datagram 0 is sent; datagram `n` leaves `n` intervals later.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Waits for every stream to end (duration + window) and returns what they measured.
    pub fn finish(self) -> Vec<Outcome> {
        self.threads
            .into_iter()
            .map(|t| t.join().expect("stream thread"))
            .collect()
    }
}

fn run(
    spec: &StreamSpec,
    t0: Instant,
    count: u32,
    interval: Duration,
    window: Duration,
) -> Outcome {
    enter(&spec.from);
    let sock = UdpSocket::bind(any(&spec.target, 0)).expect("bind stream socket");
    big_receive_buffer(&sock);
    let target = SocketAddr::new(spec.target, echo_port(&spec.target));
    let receiver = sock.try_clone().expect("clone socket");
    receiver
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let sent_all = Arc::new(AtomicBool::new(false));
    let done = sent_all.clone();
    let listen = std::thread::spawn(move || {
        let mut rtt: Vec<Option<Duration>> = vec![None; count as usize];
        let mut buf = [0u8; 64];
        let mut deadline = None;
        loop {
            if let Ok((8, _)) = receiver.recv_from(&mut buf) {
                let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                let magic = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
                if magic == MAGIC && seq < count {
                    let sent_at = t0 + interval * seq;
                    rtt[seq as usize].get_or_insert(sent_at.elapsed());
                }
            }
            if rtt.iter().all(Option::is_some) {
                break;
            }
            match deadline {
                None if done.load(Ordering::Acquire) => deadline = Some(Instant::now() + window),
                Some(d) if Instant::now() > d => break,
                _ => {}
            }
        }
        rtt
    });

    let mut send_errors = 0;
    for seq in 0..count {
        let at = t0 + interval * seq;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&seq.to_be_bytes());
        msg[4..].copy_from_slice(&MAGIC.to_be_bytes());
        if sock.send_to(&msg, target).is_err() {
            send_errors += 1;
        }
    }
    sent_all.store(true, Ordering::Release);
    let rtt = listen.join().expect("stream receiver");

    let mut lost_ranges: Vec<(u32, u32)> = Vec::new();
    for (seq, r) in rtt.iter().enumerate() {
        let seq = seq as u32;
        if r.is_none() {
            match lost_ranges.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                _ => lost_ranges.push((seq, seq)),
            }
        }
    }
    Outcome {
        label: spec.label.clone(),
        target: spec.target,
        sent: count,
        lost: rtt.iter().filter(|r| r.is_none()).count() as u32,
        lost_ranges,
        send_errors,
        max_rtt: rtt.iter().flatten().max().copied().unwrap_or_default(),
    }
}

/// The figures of several phases as a table, one line per stream:
/// `phase  from  family  target  sent  lost  max rtt  lost seqs`.
pub fn table(phases: &[(&str, &[Outcome])]) -> String {
    let mut out = format!(
        "{:<7} {:<6} {:<6} {:<14} {:>5} {:>5} {:>9}  lost seqs\n",
        "phase", "from", "family", "to", "sent", "lost", "max rtt"
    );
    for (phase, outcomes) in phases {
        for o in *outcomes {
            let family = if o.target.is_ipv4() { "IPv4" } else { "IPv6" };
            let ranges: Vec<String> = o
                .lost_ranges
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            out.push_str(&format!(
                "{:<7} {:<6} {:<6} {:<14} {:>5} {:>5} {:>7.1}ms  {}\n",
                phase,
                o.label,
                family,
                o.target.to_string(),
                o.sent,
                o.lost,
                o.max_rtt.as_secs_f64() * 1000.0,
                ranges.join(",")
            ));
        }
    }
    out
}
