//! `env-qemu start` dies by SIGKILL part-way (power cut, OOM killer): `status` reports the
//! interrupted start, a new `start` refuses, and `stop` brings back exactly the pre-start
//! state. The host has 300 routes through the uplink, so the plan runs long enough to be
//! cut at random points; the seed is printed and `ENV_QEMU_CRASH_SEED` replays it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::{assert_restored, settled, EnvQemu, TempDir};
use env_qemu_core::model::NetState;
use env_qemu_integration::{require_netns, HostConfig, TestNs, Topology, TopologySpec};

const ROUTES: usize = 300;

/// A small xorshift generator: enough to spread the kill points, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("ENV_QEMU_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .subsec_nanos() as u64
            });
        eprintln!("crash seed: ENV_QEMU_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// When the child is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after spawning: may land before the first change.
    Spawn(Duration),
    /// Once the plan printed step `permille`/1000 of its way, plus a jitter.
    Step { permille: u64, jitter: Duration },
}

/// `-v` prints `  [round.k/of] op`: the step numbers.
fn step_of(line: &str) -> Option<(usize, usize)> {
    let inner = line.trim_start().strip_prefix('[')?.split(']').next()?;
    // `[ROUND.STEP/OF]`: only the first round's steps count here.
    let inner = inner.strip_prefix("1.")?;
    let (k, of) = inner.split_once('/')?;
    Some((k.parse().ok()?, of.parse().ok()?))
}

/// `K/OF: op` (status's `interrupted_at` after `start step `): the step numbers.
fn step_of_status(text: &str) -> Option<(usize, usize)> {
    let (k, rest) = text.split_once('/')?;
    let of = rest.split(':').next()?;
    Some((k.parse().ok()?, of.parse().ok()?))
}

/// Runs `start` and SIGKILLs that one child at `at`. Returns the last step it printed
/// (0: none) and the plan length.
fn start_and_kill(eq: &EnvQemu, at: KillAt) -> (usize, usize) {
    let mut child: Child = eq
        .command(&["-v", "start", "--shm-size", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("env-qemu runs");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut last = (0, 0);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(step) = step_of(&line) {
                last = step;
                let _ = tx.send(step);
            }
        }
        last
    });
    match at {
        KillAt::Spawn(d) => std::thread::sleep(d),
        KillAt::Step { permille, jitter } => {
            while let Ok((k, of)) = rx.recv_timeout(Duration::from_secs(30)) {
                if k as u64 * 1000 >= permille * of as u64 {
                    break;
                }
            }
            std::thread::sleep(jitter);
        }
    }
    // Child::kill is SIGKILL to this PID only; it may have finished already.
    let _ = child.kill();
    let status = child.wait().expect("reap env-qemu");
    let last = reader.join().expect("stderr reader");
    eprintln!("{at:?}: {status}, last printed step {}/{}", last.0, last.1);
    last
}

/// After the kill: what `status` says, that `start` refuses, that `stop` restores.
fn recover(host: &TestNs, eq: &EnvQemu, before: &NetState, (last, of): (usize, usize)) {
    if eq.state_files().is_empty() {
        // Killed before the snapshot was saved: nothing may have changed yet.
        assert_restored(host, before, "killed before the state was saved");
        assert_eq!(eq.status()["started"], false);
        assert_eq!(eq.run(&["stop"]).code, Some(3), "stop: nothing to do");
        return;
    }
    let s = eq.status();
    assert_eq!(s["started"], true, "{s}");
    if last < of || of == 0 {
        // The last step never printed, so the final save (phase running) never happened.
        assert_eq!(s["phase"], "starting", "{s}");
        let text = eq.ok(&["status"]).stdout;
        assert!(text.contains("INTERRUPTED while starting"), "{text}");
        let again = eq.run(&["start", "--shm-size", "off"]);
        assert_eq!(again.code, Some(4), "start after a crash: {again:?}");
        assert!(again.stderr.contains("interrupted"), "{}", again.stderr);
    }
    if last > 0 && last < of {
        // The journal is written before each step and the step printed after it, so the
        // step named is the last printed one or the next.
        let at = s["interrupted_at"].as_str().unwrap_or_default();
        let named = at.strip_prefix("start step ").and_then(step_of_status);
        assert!(
            named == Some((last, of)) || named == Some((last + 1, of)),
            "last printed step {last}/{of}, interrupted_at: {s}"
        );
    }
    eq.ok(&["-q", "stop"]);
    assert!(eq.state_files().is_empty(), "stop removes the state file");
    assert_restored(
        host,
        before,
        &format!("stop after a kill at step {last}/{of}"),
    );
}

/// The topology, its settled state, and the kill points of one test.
fn crash_lab(runs: usize) -> (Topology, NetState, Vec<KillAt>) {
    let mut host = HostConfig::dhcp_like();
    host.routes.extend((0..ROUTES).map(|i| {
        let net = if i < 200 { "198.51.100" } else { "203.0.113" };
        format!("{net}.{}/32 via 192.0.2.1 dev eth0 table 100", i % 200)
    }));
    let topo = Topology::build(&TopologySpec { host, far: false });
    let before = settled(&topo.host);
    let mut rng = Rng::seeded();
    let mut points = vec![KillAt::Spawn(Duration::from_millis(rng.below(60)))];
    points.extend((1..runs).map(|_| KillAt::Step {
        permille: 1 + rng.below(900),
        jitter: Duration::from_millis(rng.below(15)),
    }));
    (topo, before, points)
}

#[test]
fn stop_recovers_a_start_killed_at_random_points() {
    require_netns!();
    let (topo, before, points) = crash_lab(5);
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    let mut mid_plan = 0;
    for at in points {
        let (last, of) = start_and_kill(&eq, at);
        mid_plan += usize::from(last > 0 && last < of);
        recover(&topo.host, &eq, &before, (last, of));
    }
    assert!(mid_plan >= 1, "no kill landed inside the plan");
}

/// A kill during a state save (before the first step, after the last) leaves the save's
/// temp file `netns-…-lepont.json.tmpPID`; a kill mid-plan leaves the journal
/// `netns-…-lepont.json.journal`. Stop removes both, so nothing piles up in /run/env-qemu.
#[test]
fn stop_leaves_no_temp_files_of_a_killed_start() {
    require_netns!();
    let (topo, before, points) = crash_lab(4);
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    for at in points {
        let step = start_and_kill(&eq, at);
        recover(&topo.host, &eq, &before, step);
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.ends_with(".journal"))
        .collect();
    assert!(
        left.is_empty(),
        "temp files left in the state dir: {left:?}"
    );
}
