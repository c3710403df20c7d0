//! Issue 10's acceptance against real daemons: hosts whose NIC a real DHCP client owns,
//! bridged by the env-qemu binary for three lease lifetimes (dnsmasq's 2-minute leases),
//! env-qemu running inside the host as a real host's runs (see cli/tests/real_hosts.rs and
//! `env_qemu_integration::hosts`).
//!
//! For a dhcpcd manager host, a per-interface dhcpcd host and a dhclient host (kernel SLAAC
//! for its IPv6), each with a LAN, a far host and namespaces of its own:
//! - `start`, with 1,000/s UDP streams from the LAN's router and from the far (routed) host
//!   to the host's IPv4 and IPv6 addresses: at most one datagram lost per stream (the
//!   kernel drops a frame that reaches the NIC in the tens of microseconds it takes to make
//!   it a port or to release it: README "blackout", integration/tests/blackout.rs);
//! - a tap attached (`ip tuntap add` + `env-qemu add`);
//! - bridged for three lease lifetimes, probed every 2.5 s from the LAN and the far host
//!   over IPv4 and IPv6: none lost; polled every second: the leased address stays on lepont
//!   and its valid_lft goes back up at each renewal, which dnsmasq logs as DHCPACKs for the
//!   same address and MAC; lepont keeps its default routes; eth0, the port, never gets an
//!   IPv4 or global IPv6 address or route back;
//! - the tap detached, `stop` with the streams again;
//! - after stop: eth0 as before start apart from lifetimes (the harness's comparison, with
//!   the two objects of the kernel's SLAAC that user space cannot put back, see
//!   [`restore_difference`], checked on their own), the NIC's client running on eth0 again
//!   (same command line, the manager the same process) and nothing left running for
//!   lepont, a DHCPACK after stop and eth0's valid_lft going back up (the client renews on
//!   eth0), no state file, the machine's files unchanged.
//!
//! And a host whose NIC an unknown DHCP client holds (BusyBox's udhcpc with a script that
//! puts the lease on eth0): `start` refuses with exit 4, naming udhcpc and the remaining
//! lease, and changes nothing; `start --force` bridges, and stop restores. And a dhclient
//! host stopped late in its lease, which must keep it on eth0 until dhclient renews there.
//!
//! libtest runs as many tests at once as the machine has CPUs (2 here and in CI): the three
//! hosts of seven minutes each run on threads of one test, so that they overlap whatever
//! that count is; each is reported under its own name. Only counts and states are
//! asserted; every duration is printed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use env_qemu_core::model::{AddrFlag, AddrScope, Family, IfName, NetState, Route, RouteProtocol};
use env_qemu_integration::compare::{difference, without_lifetimes};
use env_qemu_integration::guard::{wait_until, ChildGuard, ScratchDir, Stopwatch};
use env_qemu_integration::hosts::probe::stream_specs;
use env_qemu_integration::hosts::process::{cmdline, NsProcess};
use env_qemu_integration::hosts::{
    streams_during, ClientHost, Footprint, HostSpec, Lan, LanSpec, LogMark, Manager, Pinger,
    HOST_MAC, ROUTER_V4, UPLINK,
};
use env_qemu_integration::qemu::find_program;
use env_qemu_integration::require_netns;
use env_qemu_integration::session::settled_state;
use env_qemu_integration::stream::{table, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_env-qemu");
const BRIDGE: &str = "lepont";
const TAP: &str = "tap0";
/// Datagrams per second of each stream during start and stop.
const RATE: u32 = 1000;
/// The bridged period, in lease lifetimes.
const LIFETIMES: u32 = 3;
/// One probe from each source to each target this often while bridged.
const PROBE_EVERY: Duration = Duration::from_millis(2500);
/// lepont and eth0 are read this often while bridged.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// What start and stop may take for the streams to cover them (dhcpcd for one interface
/// is started and waited for until it has its lease: 1.3–3 s measured).
const COMMAND_BUDGET: Duration = Duration::from_secs(12);
const UP_WITHIN: Duration = Duration::from_secs(30);
/// After stop: eth0 as before start, the client back on it.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
/// The renewals counted as such come this long after start (the handover's own exchange
/// comes within seconds).
const RENEWALS_FROM: Duration = Duration::from_secs(30);

/// One of the hosts whose NIC a real client owns.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    manager: Manager,
}

const CASES: [Case; 3] = [
    Case {
        name: "dhcpcd_manager",
        manager: Manager::DhcpcdManager,
    },
    Case {
        name: "dhcpcd_per_interface",
        manager: Manager::DhcpcdPerInterface,
    },
    Case {
        name: "dhclient",
        manager: Manager::Dhclient,
    },
];

/// A host's report, line by line, straight to stderr (past libtest's capture, so CI's log
/// has it), each line prefixed with the host's name and the seconds since it began.
struct Say {
    name: &'static str,
    t0: Instant,
}

impl Say {
    fn new(name: &'static str) -> Say {
        Say {
            name,
            t0: Instant::now(),
        }
    }

    fn line(&self, text: impl AsRef<str>) {
        let at = self.t0.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        for l in text.as_ref().lines() {
            let _ = writeln!(err, "[{} {at:7.2} s] {l}", self.name);
        }
    }
}

fn name(s: &str) -> IfName {
    IfName::new(s).expect("interface name")
}

/// Whether `prev`, a valid_lft read at `at`, has been renewed if `now_valid` is read at
/// `now`: it counts down a second per second, so anything above that (with a 2 s margin
/// for the rounding of two reads) was set again.
fn refreshed(prev: (Instant, u32), now: Instant, now_valid: u32) -> bool {
    let aged = f64::from(prev.1) - now.duration_since(prev.0).as_secs_f64();
    f64::from(now_valid) > aged + 2.0
}

/// Link-scoped IPv6 destinations (fe80::/10, multicast): a port keeps those.
fn link_scoped(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast(),
    }
}

/// What a port must not have: IPv4 or global IPv6 addresses, IPv4 routes, IPv6 routes to
/// anything but link-scoped destinations, in any table.
fn on_port(state: &NetState, port: &IfName) -> Vec<String> {
    let addrs = state
        .addresses_of(port)
        .filter(|a| a.family() == Family::Inet || a.scope == AddrScope::Global)
        .map(|a| format!("address {a}"));
    let routes = state
        .routes_via(port)
        .filter(|r| r.family() == Family::Inet || !link_scoped(r.dst.addr()))
        .map(|r| format!("route {r} (table {})", r.table));
    addrs.chain(routes).collect()
}

/// An IPv6 default route the kernel made from a router advertisement (it expires).
fn ra_default(r: &Route) -> bool {
    r.family() == Family::Inet6
        && r.dst.is_default()
        && r.protocol == RouteProtocol::Ra
        && r.expires.is_some()
}

/// What differs between `now` and `before`, lifetimes aside (the harness's
/// [`without_lifetimes`] comparison), apart from two objects of the kernel's SLAAC that user
/// space cannot put back as they were, which env-qemu's own verification accepts
/// (core/src/verify.rs) and which the caller checks on their own:
/// - a privacy (temporary) address: the flag is the kernel's, so stop puts the old address
///   back as a plain copy (its connections live on until it expires) and the kernel makes
///   a new temporary one beside it at the next RA;
/// - the RA default route: stop adds a copy one metric above the kernel's (a copy at the
///   kernel's metric makes every later RA fail there, shared/real-hosts.md), which stays
///   beside the kernel's own, back at the next RA, until it expires.
///
/// The kernel's RA route at its own metric, and every other address and route, must be
/// as before.
fn restore_difference(before: &NetState, now: &NetState) -> String {
    let temporaries: Vec<IpAddr> = before
        .addresses
        .iter()
        .filter(|a| a.has(AddrFlag::Temporary))
        .map(|a| a.ip)
        .collect();
    let strip = |s: &NetState| {
        let mut s = s.clone();
        s.addresses
            .retain(|a| !a.has(AddrFlag::Temporary) && !temporaries.contains(&a.ip));
        let ra: Vec<Route> = s.routes.iter().filter(|r| ra_default(r)).cloned().collect();
        s.routes.retain(|r| {
            !(ra_default(r)
                && ra.iter().any(|k| {
                    k.dev == r.dev
                        && k.gateway == r.gateway
                        && k.table == r.table
                        && k.metric < r.metric
                }))
        });
        s
    };
    difference(&strip(before), &strip(now))
}

/// The two exceptions of [`restore_difference`] on `dev`, for the report and for their own
/// checks: the pre-start temporary addresses missing from `now`, whether `now` has a
/// temporary address of the kernel's, and the RA default copies above the kernel's.
fn kernel_slaac_after(
    before: &NetState,
    now: &NetState,
    dev: &IfName,
) -> (Vec<IpAddr>, bool, Vec<String>) {
    let missing = before
        .addresses_of(dev)
        .filter(|a| a.has(AddrFlag::Temporary))
        .filter(|a| !now.addresses_of(dev).any(|n| n.ip == a.ip))
        .map(|a| a.ip)
        .collect();
    let temporary = now.addresses_of(dev).any(|a| a.has(AddrFlag::Temporary));
    let ra: Vec<&Route> = now.routes_via(dev).filter(|r| ra_default(r)).collect();
    let copies = ra
        .iter()
        .filter(|r| {
            ra.iter()
                .any(|k| k.gateway == r.gateway && k.metric < r.metric)
        })
        .map(|r| r.to_string())
        .collect();
    (missing, temporary, copies)
}

/// `1m57s`, `45s`, `2m` (as env-qemu prints a remaining lifetime) in seconds.
fn seconds_of(text: &str) -> Option<u32> {
    let (mut total, mut n) = (0u32, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += n.parse::<u32>().ok()? * unit;
        n.clear();
    }
    n.is_empty().then_some(total)
}

/// The remaining lifetime a refusal names: `… (198.51.100.122/24 expires in 1m57s, …`.
fn remaining_lease(message: &str, cidr: &str) -> Option<u32> {
    let rest = message.split(&format!("{cidr} expires in ")).nth(1)?;
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    seconds_of(&word)
}

/// What the polls of the bridged period saw.
#[derive(Debug, Default)]
struct Watch {
    polls: u32,
    /// The lease on lepont renewed: (seconds after start, valid_lft before, after).
    refreshes: Vec<(f64, u32, u32)>,
    v6_refreshes: u32,
    min_valid: Option<u32>,
    last_v4: Option<(Instant, u32)>,
    last_v6: Option<(Instant, u32)>,
    /// What lepont lacked, or eth0 had: first seen (seconds after start), how many polls.
    missing: BTreeMap<String, (f64, u32)>,
    on_port: BTreeMap<String, (f64, u32)>,
}

impl Watch {
    fn note(map: &mut BTreeMap<String, (f64, u32)>, what: String, at: f64) {
        map.entry(what).or_insert((at, 0)).1 += 1;
    }

    fn poll(&mut self, state: &NetState, lease: Ipv4Addr, v6: Ipv6Addr, since: Instant) {
        let (now, at) = (Instant::now(), since.elapsed().as_secs_f64());
        let (br, port) = (name(BRIDGE), name(UPLINK));
        self.polls += 1;
        let find = |ip: IpAddr| state.addresses_of(&br).find(|a| a.ip == ip);
        match find(IpAddr::V4(lease)).map(|a| a.valid_lft) {
            Some(Some(v)) => {
                if let Some(prev) = self.last_v4 {
                    if refreshed(prev, now, v) {
                        self.refreshes.push((at, prev.1, v));
                    }
                }
                self.last_v4 = Some((now, v));
                self.min_valid = Some(self.min_valid.map_or(v, |m| m.min(v)));
            }
            Some(None) => Self::note(
                &mut self.missing,
                format!("a lifetime on the lease {lease} (permanent on {BRIDGE})"),
                at,
            ),
            None => Self::note(
                &mut self.missing,
                format!("the lease {lease} on {BRIDGE}"),
                at,
            ),
        }
        match find(IpAddr::V6(v6)).map(|a| a.valid_lft) {
            Some(v) => {
                if let (Some(prev), Some(v)) = (self.last_v6, v) {
                    if refreshed(prev, now, v) {
                        self.v6_refreshes += 1;
                    }
                }
                self.last_v6 = v.map(|v| (now, v));
            }
            None => Self::note(&mut self.missing, format!("{v6} on {BRIDGE}"), at),
        }
        let router: IpAddr = ROUTER_V4.parse().expect("router");
        let default = |family: Family| {
            state.routes.iter().any(|r| {
                r.via(&br)
                    && r.dst.is_default()
                    && r.family() == family
                    && (family == Family::Inet6 || r.gateway == Some(router))
            })
        };
        if !default(Family::Inet) {
            let what = format!("the IPv4 default route via {ROUTER_V4} on {BRIDGE}");
            Self::note(&mut self.missing, what, at);
        }
        if !default(Family::Inet6) {
            let what = format!("an IPv6 default route on {BRIDGE}");
            Self::note(&mut self.missing, what, at);
        }
        for what in on_port(state, &port) {
            Self::note(&mut self.on_port, what, at);
        }
    }

    fn summary(&self) -> String {
        let list = |m: &BTreeMap<String, (f64, u32)>| {
            m.iter()
                .map(|(w, (at, n))| format!("\n    {w} (first at {at:.1} s, {n} polls)"))
                .collect::<String>()
        };
        let refreshes: Vec<String> = self
            .refreshes
            .iter()
            .map(|(at, from, to)| format!("{at:.0} s: {from}→{to}"))
            .collect();
        format!(
            "{} polls of {BRIDGE} and {UPLINK}; the lease's valid_lft on {BRIDGE} went back up \
             {} times ({}), never below {} s; the IPv6 address's {} times\n  \
             missing on {BRIDGE}:{}\n  on {UPLINK}, the port:{}",
            self.polls,
            self.refreshes.len(),
            refreshes.join(", "),
            self.min_valid.map_or("?".into(), |v| v.to_string()),
            self.v6_refreshes,
            if self.missing.is_empty() {
                " nothing".to_string()
            } else {
                list(&self.missing)
            },
            if self.on_port.is_empty() {
                " nothing".to_string()
            } else {
                list(&self.on_port)
            },
        )
    }
}

/// The client of eth0 as its pid file names it: PID and command line, if it runs.
fn nic_client(host: &ClientHost) -> Option<(u32, String)> {
    let pid = host.daemon_pid()?;
    let held = NsProcess::open(pid)?;
    (!held.has_exited()).then(|| (pid, cmdline(pid)))
}

/// The processes of the host that name lepont (a client left on the bridge).
fn on_bridge(host: &ClientHost) -> Vec<String> {
    host.processes()
        .into_iter()
        .filter(|p| p.cmdline.split_whitespace().any(|w| w.contains(BRIDGE)))
        .map(|p| format!("{} {}", p.pid, p.cmdline))
        .collect()
}

/// The DHCPACKs dnsmasq sent after `mark` for `ip` and the host's MAC, and the lines of
/// any other ACK or NAK to the host's MAC.
fn acks(lan: &Lan, mark: LogMark, ip: Ipv4Addr) -> (Vec<String>, Vec<String>) {
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for e in lan.dhcp_events_since(mark) {
        if e.mac.as_deref() != Some(HOST_MAC) {
            continue;
        }
        match e.kind.as_str() {
            "DHCPACK" if e.ip == Some(ip) => same.push(e.line),
            "DHCPACK" | "DHCPNAK" => other.push(e.line),
            _ => {}
        }
    }
    (same, other)
}

fn losses(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.lost > 1 || o.send_errors > 0)
        .map(|o| {
            format!(
                "{} → {}: {} lost ({} send errors)",
                o.label, o.target, o.lost, o.send_errors
            )
        })
        .collect()
}

/// env-qemu's state files (its lock file stays, as on a real host).
fn state_files(host: &ClientHost) -> Vec<String> {
    std::fs::read_dir(host.env_qemu_state_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the host and the LAN logged since the marks, for a failure's report.
fn diagnostics(host: &ClientHost, lan: &Lan, daemon: LogMark, dnsmasq: LogMark) -> String {
    let dhcp: Vec<String> = lan
        .dhcp_events_since(dnsmasq)
        .into_iter()
        .map(|e| e.line)
        .collect();
    format!(
        "-- {:?}'s log since before start:\n{}-- dnsmasq's DHCP messages since before \
         start:\n{}\n-- the host now:\n{}{}",
        host.spec().manager,
        host.daemon_log()
            .map(|l| l.since(daemon))
            .unwrap_or_default(),
        dhcp.join("\n"),
        host.ns().ip("addr show"),
        host.ns().ip("route show table all"),
    )
}

/// One host for three lease lifetimes, start to stop (see the module's documentation).
fn lease_lifetimes(case: Case) {
    let say = Say::new(case.name);
    let mut clock = Stopwatch::new(case.name);
    let machine = Footprint::take();
    let lan = Lan::start(LanSpec::default());
    let lease_time = lan.spec().lease;
    let mut host = ClientHost::start(&lan, HostSpec::new(case.manager));
    let up = host.wait_up(UP_WITHIN);
    let lease = up.v4.expect("a lease on eth0");
    let v6 = up.v6_public().expect("a public IPv6 address on eth0");
    let before = settled_state(host.ns());
    let client = nic_client(&host).expect("the NIC's client runs");
    let (_monitor, monitor) = host.monitor();
    host.serve_echo();
    let specs = stream_specs(&lan, &host, [IpAddr::V4(lease.ip), IpAddr::V6(v6)]);
    let log = host.daemon_log().expect("the client's log");
    let (log_mark, dnsmasq_mark) = (log.mark(), lan.mark());
    let bin = Path::new(BIN);
    clock.step("host up");
    say.line(format!(
        "{:?} host up after {:.2?}: {}/{} (valid_lft {} s), {v6}; client pid {}: {}",
        case.manager, up.took, lease.ip, lease.prefix_len, lease.valid_lft, client.0, client.1
    ));
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    // start, under the streams.
    let ((start, started, after_start), start_streams, start_took) =
        streams_during(&specs, RATE, COMMAND_BUDGET, || {
            let run = host.env_qemu(bin, &["start", UPLINK]);
            (run, Instant::now(), lan.mark())
        });
    clock.step("start (with its streams)");
    say.line(start.to_string());
    assert!(
        start.success() && start.stderr.contains("verified by a dump"),
        "{}: start failed on a {:?} host:\n{start}\n{}",
        case.name,
        case.manager,
        diagnostics(&host, &lan, log_mark, dnsmasq_mark)
    );
    let pinger = Pinger::from_lan(&lan, &[IpAddr::V4(lease.ip), IpAddr::V6(v6)], PROBE_EVERY);
    let on_bridge_at_start = host.v4_lease(BRIDGE);
    check(
        on_bridge_at_start.map(|l| l.ip) == Some(lease.ip),
        format!("the lease is not on {BRIDGE} after start: {on_bridge_at_start:?}"),
    );

    // A tap, as a VM's.
    host.ns().ip(&format!("tuntap add {TAP} mode tap"));
    let add = host.env_qemu(bin, &["add", TAP]);
    say.line(add.to_string());
    let tap = host.ns().ip_json(&format!("link show dev {TAP}"));
    check(
        add.success() && tap[0]["master"] == BRIDGE,
        format!("{TAP} not attached to {BRIDGE}: {add}\n{tap}"),
    );
    clock.step("tap attached");

    // Three lease lifetimes, bridged.
    let until = started + lease_time * LIFETIMES;
    let mut watch = Watch::default();
    let mut renewals_from = None;
    while Instant::now() < until {
        let tick = Instant::now();
        watch.poll(&host.ns().read_state(), lease.ip, v6, started);
        if renewals_from.is_none() && started.elapsed() >= RENEWALS_FROM {
            renewals_from = Some(lan.mark());
        }
        std::thread::sleep(POLL_EVERY.saturating_sub(tick.elapsed()));
    }
    let probes = pinger.stop();
    let bridged_for = started.elapsed();
    clock.step("bridged for three lease lifetimes");
    let (renewals, foreign) = acks(&lan, renewals_from.unwrap_or(after_start), lease.ip);
    let (acks_after_start, _) = acks(&lan, after_start, lease.ip);
    let in_file = lan.lease_of(HOST_MAC);
    say.line(format!(
        "bridged for {:.1} s (three lease lifetimes: {:?}):\n{}\n{}\n\
         dnsmasq: {} DHCPACKs for {} {HOST_MAC} after start, {} of them renewals (from {} s \
         on):\n  {}\nits lease file: {in_file:?}",
        bridged_for.as_secs_f64(),
        lease_time * LIFETIMES,
        probes.table().trim_end(),
        watch.summary(),
        acks_after_start.len(),
        lease.ip,
        renewals.len(),
        RENEWALS_FROM.as_secs(),
        renewals.join("\n  ")
    ));
    for t in &probes.targets {
        check(
            t.lost == 0 && t.send_errors == 0 && t.sent > 100,
            format!(
                "probes from {} to {} while bridged: {} sent, {} lost",
                t.from, t.target, t.sent, t.lost
            ),
        );
    }
    check(
        watch.missing.is_empty(),
        format!(
            "lepont lacked something while bridged:\n{}",
            watch.summary()
        ),
    );
    check(
        watch.on_port.is_empty(),
        format!("something reappeared on the port:\n{}", watch.summary()),
    );
    check(
        watch.refreshes.len() >= 3,
        format!(
            "the lease's lifetime on {BRIDGE} went back up {} times in three lease lifetimes",
            watch.refreshes.len()
        ),
    );
    check(
        renewals.len() >= 3,
        format!(
            "{} DHCPACKs for {} {HOST_MAC} in three lease lifetimes",
            renewals.len(),
            lease.ip
        ),
    );
    check(
        foreign.is_empty(),
        format!("dnsmasq acknowledged something else: {foreign:?}"),
    );

    // The tap detached and gone, then stop under the streams.
    let del = host.env_qemu(bin, &["del", TAP]);
    say.line(del.to_string());
    check(del.success(), format!("del {TAP}: {del}"));
    host.ns().ip(&format!("tuntap del {TAP} mode tap"));
    let left_on_bridge_at_stop = host.v4_lease(BRIDGE).map(|l| l.valid_lft);
    let (stop_log, stop_mark, stop_monitor) = (log.mark(), lan.mark(), monitor.mark());
    // The host read as soon as stop returns (the streams go on until their end).
    let ((stop, stopped, at_stop), stop_streams, stop_took) =
        streams_during(&specs, RATE, COMMAND_BUDGET, || {
            let run = host.env_qemu(bin, &["stop"]);
            (run, Instant::now(), host.ns().read_state())
        });
    let exact_at_once = restore_difference(&before, &at_stop).is_empty();
    clock.step("stop (with its streams)");
    say.line(stop.to_string());
    check(
        stop.success()
            && stop
                .stderr
                .contains("verified by a dump: eth0 as it was before start"),
        format!("stop: {stop}"),
    );
    let bridge_left = host.ns().try_ip(&format!("link show {BRIDGE}")).is_ok();
    check(!bridge_left, format!("{BRIDGE} still there after stop"));
    let files = state_files(&host);
    check(
        files.is_empty(),
        format!("env-qemu's state left after stop: {files:?}"),
    );

    // The host as before, its client back on eth0 and renewing there. (Looked at again
    // once the streams have ended, a dozen seconds after stop returned.)
    let restored = if exact_at_once {
        Some(Duration::ZERO)
    } else {
        wait_until(SETTLE_WITHIN, || {
            restore_difference(&before, &host.ns().read_state())
                .is_empty()
                .then(|| stopped.elapsed())
        })
    };
    check(
        restored.is_some(),
        format!(
            "eth0 not as before start (apart from lifetimes) {SETTLE_WITHIN:?} after stop:\n{}",
            restore_difference(&before, &host.ns().read_state())
        ),
    );
    // The kernel's privacy extension at work on eth0 again, the old temporary addresses
    // still there (as plain copies), on hosts that have them.
    let privacy = before.addresses.iter().any(|a| a.has(AddrFlag::Temporary));
    let slaac = wait_until(SETTLE_WITHIN, || {
        let found = kernel_slaac_after(&before, &host.ns().read_state(), &name(UPLINK));
        (!privacy || (found.0.is_empty() && found.1)).then_some(found)
    });
    check(
        slaac.is_some(),
        format!(
            "eth0's privacy addresses after stop (missing, a kernel temporary one, RA copies): {:?}",
            kernel_slaac_after(&before, &host.ns().read_state(), &name(UPLINK))
        ),
    );
    let back = wait_until(SETTLE_WITHIN, || {
        nic_client(&host).filter(|(pid, argv)| {
            *argv == client.1 && (case.manager != Manager::DhcpcdManager || *pid == client.0)
        })
    });
    check(
        back.is_some(),
        format!(
            "the NIC's client is not back on eth0 as it was ({:?}): now {:?}",
            client,
            nic_client(&host)
        ),
    );
    let left_on_bridge = wait_until(SETTLE_WITHIN, || on_bridge(&host).is_empty().then_some(()));
    check(
        left_on_bridge.is_some(),
        format!("still running for {BRIDGE}: {:?}", on_bridge(&host)),
    );
    // A 2-minute lease renews at T1, a minute in (dhclient draws from 45 s on), rebinds at
    // T2 (105 s).
    let renew_within = lease_time * 3 / 4;
    let acked = wait_until(renew_within, || {
        (!acks(&lan, stop_mark, lease.ip).0.is_empty()).then(|| stopped.elapsed())
    });
    check(
        acked.is_some(),
        format!(
            "no DHCPACK for {} {HOST_MAC} within {renew_within:?} after stop",
            lease.ip
        ),
    );
    // Renewed on eth0 after stop: its valid_lft back above what stop left it.
    let nic_at_stop = at_stop
        .addresses_of(&name(UPLINK))
        .find(|a| a.ip == IpAddr::V4(lease.ip))
        .and_then(|a| a.valid_lft);
    let renewed_on_nic = nic_at_stop.and_then(|v| {
        wait_until(renew_within, || {
            let now = host.v4_lease(UPLINK)?;
            refreshed((stopped, v), Instant::now(), now.valid_lft).then(|| (stopped.elapsed(), now))
        })
    });
    check(
        renewed_on_nic.is_some(),
        format!(
            "eth0's lease not renewed within {renew_within:?} after stop (on {BRIDGE} before \
             stop: {left_on_bridge_at_stop:?}; on eth0 at stop: {nic_at_stop:?}, now: {:?})",
            host.v4_lease(UPLINK)
        ),
    );
    // Still as before start once the client has renewed.
    let still = wait_until(Duration::from_secs(10), || {
        restore_difference(&before, &host.ns().read_state())
            .is_empty()
            .then_some(())
    });
    check(
        still.is_some(),
        format!(
            "eth0 changed after its client renewed:\n{}",
            restore_difference(&before, &host.ns().read_state())
        ),
    );
    clock.step("after stop: restored, client back, renewed");
    let (after_stop, _) = acks(&lan, stop_mark, lease.ip);
    say.line(format!(
        "blackout, {RATE} datagrams/s per stream (start took {start_took:.2?}, stop \
         {stop_took:.2?}):\n{}\
         after stop: eth0 as before start (apart from lifetimes) {}; restored {}; \
         client back: {back:?}; DHCPACKs after stop: {} (seen {acked:?} after stop \
         returned):\n  {}\n\
         the lease had {:?} s left on {BRIDGE} before stop, {nic_at_stop:?} s on eth0 at stop; \
         eth0's lease renewed by its client after {:?}; what the kernel's SLAAC has that user \
         space cannot restore (old temporaries missing, a new temporary, RA default copies): \
         {slaac:?}; strictly as it was (lifetimes aside, kernel SLAAC included): {}",
        table(&[("start", &start_streams), ("stop", &stop_streams)]),
        if exact_at_once {
            "as soon as stop returned".to_string()
        } else {
            format!("NOT at once:\n{}", restore_difference(&before, &at_stop))
        },
        match restored {
            Some(Duration::ZERO) => "when stop returned".to_string(),
            Some(at) => format!("by {at:.2?} after stop returned"),
            None => "NOT".to_string(),
        },
        after_stop.len(),
        after_stop.join("\n  "),
        left_on_bridge_at_stop,
        renewed_on_nic.map(|(at, l)| format!("{at:.2?}, valid_lft {} s", l.valid_lft)),
        without_lifetimes(&host.ns().read_state()) == without_lifetimes(&before),
    ));
    for (phase, outcomes) in [("start", &start_streams), ("stop", &stop_streams)] {
        let lossy = losses(outcomes);
        check(
            lossy.is_empty(),
            format!("more than one datagram lost in a stream during {phase}: {lossy:?}"),
        );
    }
    if !failures.is_empty() || !exact_at_once {
        say.line(format!(
            "-- ip monitor of the host from before stop:\n{}",
            monitor.since(stop_monitor)
        ));
    }
    if !failures.is_empty() {
        say.line(diagnostics(&host, &lan, log_mark, dnsmasq_mark));
        say.line(format!(
            "-- its log since before stop:\n{}",
            log.since(stop_log)
        ));
    }
    drop(host);
    drop(lan);
    let changed = Footprint::take();
    let footprint = machine.diff(&changed);
    clock.step("torn down");
    clock.summary();
    assert!(
        failures.is_empty() && footprint.is_empty(),
        "{} ({:?} host): {} check(s) failed:\n- {}\nthe machine changed: {footprint:?}",
        case.name,
        case.manager,
        failures.len(),
        failures.join("\n- ")
    );
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The dhcpcd manager, per-interface dhcpcd and dhclient hosts, each on a thread of its own
/// (see the module's documentation), each bridged for three lease lifetimes.
#[test]
fn three_lease_lifetimes_bridged() {
    require_netns!();
    let t0 = Instant::now();
    let results: Vec<(&str, std::thread::Result<()>)> = std::thread::scope(|s| {
        let running: Vec<_> = CASES
            .iter()
            .map(|c| {
                let thread = std::thread::Builder::new()
                    .name(c.name.into())
                    .spawn_scoped(s, move || lease_lifetimes(*c))
                    .expect("spawn a host's thread");
                (c.name, thread)
            })
            .collect();
        running.into_iter().map(|(n, t)| (n, t.join())).collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{n}: {}", panic_text(&**e)))
        })
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "TIMING three_lease_lifetimes_bridged: {:.1} s for {} hosts in parallel ({} failed)",
        t0.elapsed().as_secs_f64(),
        CASES.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// A udhcpc script as a small distribution's: the lease on the interface, with the
/// lease's lifetime, and the default route.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
case "$1" in
bound|renew)
  ip -4 addr replace "$ip/${mask:-24}" dev "$interface" valid_lft "$lease" preferred_lft "$lease"
  [ -n "$router" ] && ip -4 route replace default via "${router%% *}" dev "$interface" proto dhcp
  ;;
esac
exit 0
"#;

/// A NIC held by a DHCP client env-qemu cannot hand over (BusyBox's udhcpc, found by its
/// name and the interface its command line names): start refuses with exit 4, names it and
/// what is left of its lease, and changes nothing; `--force` bridges anyway (udhcpc left
/// alone), and stop restores.
#[test]
fn unknown_dhcp_client_refused_unless_forced() {
    require_netns!();
    let mut clock = Stopwatch::new("unknown_dhcp_client_refused_unless_forced");
    let machine = Footprint::take();
    let busybox = find_program("busybox").expect("busybox is installed (busybox-static)");
    let lan = Lan::start(LanSpec::default());
    let host = ClientHost::start(&lan, HostSpec::new(Manager::KernelSlaac));
    host.wait_up(UP_WITHIN);
    let dir = ScratchDir::new();
    let udhcpc = dir.join("udhcpc");
    std::os::unix::fs::symlink(&busybox, &udhcpc).expect("udhcpc → busybox");
    let script = dir.join("udhcpc.script");
    env_qemu_integration::cmd::write_executable(&script, UDHCPC_SCRIPT);
    let mut cmd = host.holder().command(&udhcpc);
    cmd.args(["-f", "-i", UPLINK, "-s"])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("udhcpc.log")).expect("udhcpc.log"));
    let mut client = ChildGuard::spawn("udhcpc", &mut cmd);
    let lease = wait_until(UP_WITHIN, || {
        let routes = host.ns().ip(&format!("-4 route show default dev {UPLINK}"));
        host.v4_lease(UPLINK).filter(|_| routes.contains(ROUTER_V4))
    })
    .unwrap_or_else(|| {
        panic!(
            "udhcpc put no lease on eth0 within {UP_WITHIN:?}:\n{}",
            std::fs::read_to_string(dir.join("udhcpc.log")).unwrap_or_default()
        )
    });
    let before = settled_state(host.ns());
    let bin = Path::new(BIN);
    clock.step("udhcpc holds eth0");

    let lft_before = host.v4_lease(UPLINK).map(|l| l.valid_lft);
    let refused = host.env_qemu(bin, &["start", UPLINK]);
    let lft_after = host.v4_lease(UPLINK).map(|l| l.valid_lft);
    let after = host.ns().read_state();
    eprintln!("{refused}");
    clock.step("start refused");
    assert_eq!(refused.code, Some(4), "{refused}");
    let named = format!("udhcpc (pid {})", client.pid());
    assert!(
        refused.stderr.contains(&named),
        "{named} not named:\n{refused}"
    );
    assert!(refused.stderr.contains("--force"), "{refused}");
    let cidr = format!("{}/{}", lease.ip, lease.prefix_len);
    let remaining = remaining_lease(&refused.stderr, &cidr);
    let (low, high) = (lft_after.unwrap_or(0), lft_before.unwrap_or(0));
    assert!(
        remaining.is_some_and(|r| r + 2 >= low && r <= high + 2),
        "the refusal names {remaining:?} s left of {cidr}, eth0 read {high} s before and \
         {low} s after:\n{refused}"
    );
    assert_eq!(
        without_lifetimes(&after),
        without_lifetimes(&before),
        "the refused start changed the host:\n{}",
        difference(&before, &after)
    );
    assert!(state_files(&host).is_empty(), "{:?}", state_files(&host));
    assert!(client.try_wait().is_none(), "udhcpc ended");

    let forced = host.env_qemu(bin, &["start", "--force", UPLINK]);
    eprintln!("{forced}");
    clock.step("start --force");
    assert!(forced.success(), "{forced}");
    assert_eq!(host.v4_lease(BRIDGE).map(|l| l.ip), Some(lease.ip));
    assert_eq!(host.v4_lease(UPLINK), None);
    let port = host.ns().ip_json(&format!("link show dev {UPLINK}"));
    assert_eq!(port[0]["master"], BRIDGE, "{port}");
    assert!(
        client.try_wait().is_none(),
        "udhcpc ended: --force does not hand it over"
    );

    let stop = host.env_qemu(bin, &["stop"]);
    eprintln!("{stop}");
    clock.step("stop");
    assert!(stop.success(), "{stop}");
    let restored = wait_until(SETTLE_WITHIN, || {
        restore_difference(&before, &host.ns().read_state())
            .is_empty()
            .then_some(())
    });
    assert!(
        restored.is_some(),
        "not restored:\n{}",
        restore_difference(&before, &host.ns().read_state())
    );
    assert!(state_files(&host).is_empty());
    drop(client);
    drop(host);
    drop(lan);
    drop(dir);
    machine.assert_unchanged();
    clock.summary();
}

#[test]
fn lifetimes_read_back() {
    assert_eq!(seconds_of("1m57s"), Some(117));
    assert_eq!(seconds_of("45s"), Some(45));
    assert_eq!(seconds_of("2m"), Some(120));
    assert_eq!(seconds_of("2x"), None);
    assert_eq!(seconds_of("12"), None);
    let msg = "… renew the lease there (198.51.100.122/24 expires in 1m58s, and the host";
    assert_eq!(remaining_lease(msg, "198.51.100.122/24"), Some(118));
    assert_eq!(remaining_lease(msg, "198.51.100.123/24"), None);
    let t = Instant::now();
    // Counting down is no renewal; going back up is.
    assert!(!refreshed((t, 100), t + Duration::from_secs(5), 95));
    assert!(!refreshed((t, 100), t + Duration::from_secs(5), 97));
    assert!(refreshed((t, 100), t + Duration::from_secs(5), 120));
    assert!(refreshed((t, 40), t + Duration::from_secs(30), 20));
    assert!(link_scoped("fe80::1".parse().unwrap()));
    assert!(link_scoped("ff00::".parse().unwrap()));
    assert!(!link_scoped("2001:db8:42::".parse().unwrap()));
    assert!(!link_scoped("198.51.100.0".parse().unwrap()));
}

/// A dhclient host stopped late in its lease: the copy on lepont has 30 s left (as after
/// a renewal the server did not answer, or a stop just before dhclient's next renewal).
/// dhclient, started again on eth0 at stop, gets its ACK at once (INIT-REBOOT), but its
/// hook's `ip addr add` fails on the address stop put back (EEXIST), so that address keeps
/// the lifetime stop gave it until dhclient's first renewal, at T1 (45–60 s). With the
/// copy's 30 s, eth0 would lose IPv4 before then, and dhclient's unicast renewal would
/// fail with it (docs/kernel-behaviour.md C8: a 91 s blackout, measured at start, where the copy is
/// given a whole lease): eth0 must keep the lease, reachable from the LAN and the far
/// host, until dhclient refreshes it.
#[test]
fn dhclient_stopped_late_in_its_lease_keeps_it() {
    require_netns!();
    let mut clock = Stopwatch::new("dhclient_stopped_late_in_its_lease_keeps_it");
    let machine = Footprint::take();
    let lan = Lan::start(LanSpec::default());
    let lease_time = lan.spec().lease;
    let mut host = ClientHost::start(&lan, HostSpec::new(Manager::Dhclient));
    let up = host.wait_up(UP_WITHIN);
    let lease = up.v4.expect("a lease");
    host.serve_echo();
    let bin = Path::new(BIN);
    let start = host.env_qemu(bin, &["start", UPLINK]);
    eprintln!("{start}");
    assert!(start.success(), "{start}");
    clock.step("start");
    let cidr = format!("{}/{}", lease.ip, lease.prefix_len);
    host.ns().ip(&format!(
        "addr change {cidr} brd + dev {BRIDGE} valid_lft 30 preferred_lft 30"
    ));
    let left = host.v4_lease(BRIDGE).map(|l| l.valid_lft);
    assert!(left.is_some_and(|v| v <= 30), "{left:?}");
    let stop_mark = lan.mark();
    let stop = host.env_qemu(bin, &["stop"]);
    let stopped = Instant::now();
    eprintln!("{stop}");
    assert!(stop.success(), "{stop}");
    let at_stop = host.v4_lease(UPLINK);
    clock.step("stop, the copy 30 s from its end");
    let pinger = Pinger::from_lan(&lan, &[IpAddr::V4(lease.ip)], Duration::from_millis(500));
    // Until dhclient has refreshed eth0's lease (a whole lease's T1 at most, with margin),
    // the lease on eth0 at every look.
    let mut gaps: Vec<String> = Vec::new();
    let mut last = at_stop.map(|l| (stopped, l.valid_lft));
    let mut renewed = None;
    while stopped.elapsed() < lease_time * 3 / 4 && renewed.is_none() {
        std::thread::sleep(Duration::from_millis(500));
        let now = Instant::now();
        match host.v4_lease(UPLINK) {
            None => gaps.push(format!(
                "{:.1} s after stop: no lease on eth0",
                stopped.elapsed().as_secs_f64()
            )),
            Some(l) => {
                if last.is_some_and(|p| refreshed(p, now, l.valid_lft)) {
                    renewed = Some((stopped.elapsed(), l.valid_lft));
                }
                last = Some((now, l.valid_lft));
            }
        }
    }
    let probes = pinger.stop();
    clock.step("until dhclient renewed on eth0");
    let (acks_after, _) = acks(&lan, stop_mark, lease.ip);
    eprintln!(
        "{BRIDGE}'s copy had {left:?} s left at stop; eth0 got {:?}; dhclient renewed it \
         after {renewed:?}; DHCPACKs after stop: {acks_after:?}\n{}",
        at_stop.map(|l| l.valid_lft),
        probes.table()
    );
    assert!(
        gaps.is_empty(),
        "eth0 lost its lease ({} looks without it, {} to {})",
        gaps.len(),
        gaps[0],
        gaps[gaps.len() - 1]
    );
    assert!(
        renewed.is_some(),
        "dhclient did not renew eth0's lease within {:?}",
        lease_time * 3 / 4
    );
    assert_eq!(probes.lost(), 0, "{}", probes.table());
    drop(host);
    drop(lan);
    machine.assert_unchanged();
    clock.summary();
}
