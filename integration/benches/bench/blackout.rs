//! Datagrams lost during start and stop: integration's fixed-rate UDP echo (1,000/s) from
//! the LAN router and from the far host, to the host's IPv4 and IPv6 addresses, for the
//! env-qemu binary and for the script, several rounds each.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_integration::session::TestDir;
use env_qemu_integration::stream::{lan_and_far, table, EchoServer, Outcome, Streams};
use serde_json::{json, Value};

use crate::drivers::{Binary, Cmd, Script};
use crate::lab::{Lab, HOST_V4, HOST_V6};
use crate::Ctx;

pub const RATE: u32 = 1000;
/// Each stream lasts this long; the command starts `COMMAND_AT` into it.
const STREAM: Duration = Duration::from_millis(2500);
const COMMAND_AT: Duration = Duration::from_millis(1000);
/// How long after a stream's last datagram an echo still counts.
const WINDOW: Duration = Duration::from_secs(1);

/// Every round of one method.
pub struct Losses {
    pub key: &'static str,
    pub label: &'static str,
    /// Per round: the streams during start, during stop.
    pub rounds: Vec<(Vec<Outcome>, Vec<Outcome>)>,
    /// Per round: what the command printed as it went, on the streams' clock
    /// (`ms  line`: datagram n left at n ms), during start, during stop.
    pub timelines: Vec<(String, String)>,
    pub report: String,
}

/// Runs `c` with stderr read line by line as it comes, each line stamped in ms after
/// `t0`; returns the wall time and the stamped lines (plus the command's start and end).
fn run_traced(mut c: Command, t0: Instant) -> (Duration, String) {
    let at = |i: Instant| i.saturating_duration_since(t0).as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|l| (Instant::now(), l))
            .collect::<Vec<_>>()
    });
    let status = child.wait().expect("wait");
    let took = t.elapsed();
    let lines = reader.join().expect("stderr reader");
    assert!(status.success(), "{c:?} failed: {lines:?}");
    let mut out = format!("{:9.2} ms  (command starts)\n", at(t));
    // env-qemu prints each operation once done; `bash -x` each command before it runs,
    // of which only the `ip` ones matter here.
    for (i, l) in lines {
        let l = l.trim();
        if !l.starts_with('+') || l.trim_start_matches('+').starts_with(" ip ") {
            let _ = writeln!(out, "{:9.2} ms  {l}", at(i));
        }
    }
    let _ = writeln!(out, "{:9.2} ms  (command exits)", at(t + took));
    (took, out)
}

impl Losses {
    /// Datagrams lost in all rounds during start (`phase` 0) or stop (1).
    pub fn lost(&self, phase: usize) -> u32 {
        self.outcomes(phase).map(|o| o.lost).sum()
    }

    pub fn sent(&self, phase: usize) -> u32 {
        self.outcomes(phase).map(|o| o.sent).sum()
    }

    /// Rounds in which at least one datagram was lost during the phase.
    pub fn lossy_rounds(&self, phase: usize) -> usize {
        self.rounds
            .iter()
            .filter(|r| {
                let o = if phase == 0 { &r.0 } else { &r.1 };
                o.iter().any(|o| o.lost > 0)
            })
            .count()
    }

    fn outcomes(&self, phase: usize) -> impl Iterator<Item = &Outcome> {
        self.rounds
            .iter()
            .flat_map(move |r| if phase == 0 { &r.0 } else { &r.1 })
    }

    pub fn json(&self) -> Value {
        let phase = |p: usize| {
            let streams: Vec<Value> = self
                .rounds
                .iter()
                .enumerate()
                .flat_map(|(round, r)| {
                    let o = if p == 0 { &r.0 } else { &r.1 };
                    o.iter().map(move |o| {
                        json!({
                            "round": round + 1,
                            "from": o.label,
                            "to": o.target.to_string(),
                            "sent": o.sent,
                            "lost": o.lost,
                            "lost_seqs": o.lost_ranges,
                            "max_rtt_ms": crate::stats::ms(o.max_rtt),
                        })
                    })
                })
                .collect();
            json!({
                "sent": self.sent(p),
                "lost": self.lost(p),
                "rounds_with_loss": self.lossy_rounds(p),
                "streams": streams,
            })
        };
        let timelines: Vec<Value> = self
            .timelines
            .iter()
            .map(|(a, b)| json!({"start": a, "stop": b}))
            .collect();
        json!({
            "label": self.label,
            "rounds": self.rounds.len(),
            "timelines": timelines,
            "start": phase(0),
            "stop": phase(1),
        })
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

pub fn run(ctx: &Ctx) -> Vec<Losses> {
    let mut all = Vec::new();
    for (key, label) in [
        ("env_qemu", "env-qemu binary"),
        ("script", "iproute2 script"),
    ] {
        progress!(
            "blackout: {label}: {} round(s) of start and stop under {RATE} datagrams/s × 4 streams",
            ctx.blackout_rounds
        );
        let lab = Lab::new(true);
        let (host, lan) = (lab.host(), &lab.topo.lan);
        let far = lab.topo.far.as_ref().expect("far host");
        let specs = lan_and_far(host, lan, far, [ip(HOST_V4), ip(HOST_V6)]);
        let _server = EchoServer::start(host);
        let dir = TestDir::new();
        let script = Script {
            path: ctx.script.clone(),
            netns: host.name().to_string(),
            state_file: dir.path().join("bridge.state"),
        };
        let bin = Binary::new(&ctx.bin, host, dir.path());
        let command = |cmd: Cmd<'_>| {
            if key == "script" {
                script.command_traced(cmd)
            } else {
                bin.command_loud(&Binary::args(cmd))
            }
        };
        let mut losses = Losses {
            key,
            label,
            rounds: Vec::new(),
            timelines: Vec::new(),
            report: String::new(),
        };
        for round in 0..ctx.blackout_rounds {
            let mut phases = Vec::new();
            let mut timelines = Vec::new();
            for cmd in [Cmd::Start, Cmd::Stop] {
                let streams = Streams::spawn(&specs, RATE, STREAM, WINDOW);
                std::thread::sleep(COMMAND_AT);
                let (took, timeline) = run_traced(command(cmd), streams.t0());
                timelines.push(timeline);
                let outcomes = streams.finish();
                let lost: u32 = outcomes.iter().map(|o| o.lost).sum();
                progress!(
                    "  round {}: {} took {:.1} ms, {lost} datagram(s) lost",
                    round + 1,
                    cmd.name(),
                    took.as_secs_f64() * 1e3
                );
                phases.push(outcomes);
            }
            let stop = phases.pop().expect("stop");
            let start = phases.pop().expect("start");
            let stop_steps = timelines.pop().expect("stop");
            let start_steps = timelines.pop().expect("start");
            let lossy = |o: &[Outcome]| o.iter().any(|o| o.lost > 0);
            if lossy(&start) || lossy(&stop) {
                let _ = write!(
                    losses.report,
                    "{label}, round {} (datagram n left at n ms):\n{}",
                    round + 1,
                    table(&[("start", &start), ("stop", &stop)])
                );
                if lossy(&start) {
                    let _ = write!(losses.report, "start's steps:\n{start_steps}");
                }
                if lossy(&stop) {
                    let _ = write!(losses.report, "stop's steps:\n{stop_steps}");
                }
            }
            losses.rounds.push((start, stop));
            losses.timelines.push((start_steps, stop_steps));
        }
        all.push(losses);
    }
    all
}
