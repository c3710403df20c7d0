//! Datagrams lost during start and stop: integration's fixed-rate UDP echo (1,000/s) from
//! the LAN router and from the far host, to the host's IPv4 and IPv6 addresses, for the
//! env-qemu binary and for the script, several rounds each. A round that loses anything
//! prints its streams and the command's steps on the streams' clock.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_integration::session::TestDir;
use env_qemu_integration::stream::{lan_and_far, table, EchoServer, Outcome, Streams};

use crate::drivers::{Binary, Cmd, Script};
use crate::lab::{Lab, HOST_V4, HOST_V6};
use crate::Ctx;

pub const RATE: u32 = 1000;
/// Each stream lasts this long; the command starts `COMMAND_AT` into it.
const STREAM: Duration = Duration::from_millis(2500);
const COMMAND_AT: Duration = Duration::from_millis(1000);
/// How long after a stream's last datagram an echo still counts.
const WINDOW: Duration = Duration::from_secs(1);

/// Runs `c` with stderr read line by line as it comes, each line stamped in ms after
/// `t0`; returns the stamped lines (plus the command's start and end). env-qemu prints
/// each operation once done; `bash -x` each command before it runs (only `ip` kept).
fn run_traced(mut c: Command, t0: Instant) -> String {
    let at = |i: Instant| i.saturating_duration_since(t0).as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let lines = BufReader::new(stderr).lines().map_while(Result::ok);
        lines.map(|l| (Instant::now(), l)).collect::<Vec<_>>()
    });
    let status = child.wait().expect("wait");
    let end = Instant::now();
    let lines = reader.join().expect("stderr reader");
    assert!(status.success(), "{c:?} failed: {lines:?}");
    let mut out = format!("{:9.2} ms  (command starts)\n", at(t));
    for (i, l) in lines {
        let l = l.trim();
        if !l.starts_with('+') || l.trim_start_matches('+').starts_with(" ip ") {
            let _ = writeln!(out, "{:9.2} ms  {l}", at(i));
        }
    }
    let _ = writeln!(out, "{:9.2} ms  (command exits)", at(end));
    out
}

pub fn run(ctx: &Ctx) {
    ctx.section(&format!(
        "datagrams lost ({RATE}/s per stream; LAN and far host × IPv4 and IPv6)"
    ));
    for label in ["env-qemu binary", "iproute2 script"] {
        let rounds = ctx.blackout_rounds;
        progress!("blackout: {label}: {rounds} round(s) of start and stop under 4 streams");
        let lab = Lab::new(true);
        let (host, lan) = (lab.host(), &lab.topo.lan);
        let far = lab.topo.far.as_ref().expect("far host");
        let targets = [HOST_V4, HOST_V6].map(|a| a.parse().expect("address"));
        let specs = lan_and_far(host, lan, far, targets);
        let _server = EchoServer::start(host);
        let dir = TestDir::new();
        let script = Script::new(ctx, host, dir.path());
        let bin = Binary::new(&ctx.bin, host, dir.path());
        let command = |cmd: Cmd<'_>| match label {
            "iproute2 script" => script.command(cmd, &["-x"]),
            _ => bin.command(&Binary::args(cmd)),
        };
        // Per phase (start, stop): datagrams sent, lost, rounds with a loss.
        let mut totals = [(0, 0, 0); 2];
        let mut lossy = String::new();
        for round in 1..=rounds {
            for (phase, cmd) in [Cmd::Start, Cmd::Stop].into_iter().enumerate() {
                let streams = Streams::spawn(&specs, RATE, STREAM, WINDOW);
                std::thread::sleep(COMMAND_AT);
                let steps = run_traced(command(cmd), streams.t0());
                let outcomes: Vec<Outcome> = streams.finish();
                let lost: u32 = outcomes.iter().map(|o| o.lost).sum();
                let t = &mut totals[phase];
                t.0 += outcomes.iter().map(|o| o.sent).sum::<u32>();
                t.1 += lost;
                t.2 += usize::from(lost > 0);
                if lost > 0 {
                    let name = cmd.name();
                    let _ = write!(
                        lossy,
                        "{label}, {name}, round {round} (datagram n left at n ms):\n{}{name}'s steps:\n{steps}",
                        table(&[(name, &outcomes)])
                    );
                }
            }
        }
        for (phase, (sent, lost, rounds_lossy)) in totals.into_iter().enumerate() {
            let name = ["start", "stop"][phase];
            println!("{label:<20} {name:<6} lost {lost:>4} of {sent:>6}; rounds with a loss: {rounds_lossy} of {rounds}");
        }
        print!("{lossy}");
    }
}
