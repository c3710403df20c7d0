//! `start --confirm` on the real kernel, in throwaway namespaces: the nine cases of
//! issue 14's "Done when", each ending with the host's state read back by `ip -j`.
//!
//! The revert agents these tests start (through the binary) are found by their command
//! line (`__agent` and the test's own state directory) and, if still alive when a test
//! ends, SIGKILLed by PID; nothing else is signalled. This host has no systemd as PID 1:
//! the agent is the detached process, and `doctor` says so (checked below). The systemd
//! path has a test of its own, ignored where systemd is not PID 1.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::{master_of, settled, EnvQemu, Outcome, TempDir, BIN};
use env_qemu_backend_netlink::boottime;
use env_qemu_core::model::NetState;
use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::{
    require_netns, require_tun, HostConfig, TestNs, Topology, TopologySpec,
};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How much later than its deadline a revert may be seen (the bound).
const SLACK: Duration = Duration::from_secs(1);

/// A host (and, with `far`, a machine behind its router), its settled state, a state
/// directory and the binary confined to them. Agents left alive are ended on drop,
/// before the directory and the namespaces go.
struct Lab {
    topo: Topology,
    before: NetState,
    eq: EnvQemu,
    dir: TempDir,
}

impl Lab {
    fn new(far: bool) -> Lab {
        Lab::with(HostConfig::dhcp_like(), far, |_| {})
    }

    /// `prepare` runs on the host before its state is read.
    fn with(host: HostConfig, far: bool, prepare: impl FnOnce(&TestNs)) -> Lab {
        let topo = Topology::build(&TopologySpec { host, far });
        prepare(&topo.host);
        let before = settled(&topo.host);
        let dir = TempDir::new();
        let eq = EnvQemu::new(&topo.host, &dir);
        Lab {
            topo,
            before,
            eq,
            dir,
        }
    }

    fn host(&self) -> &TestNs {
        &self.topo.host
    }

    fn far(&self) -> &TestNs {
        self.topo.far.as_ref().expect("a far host")
    }

    /// `start --confirm=WINDOW` with stdin on /dev/null (the command returns once armed
    /// and bridged); the pending change as saved.
    fn start(&self, window: &str) -> Armed {
        let out: Outcome = self
            .eq
            .command(&["start", &format!("--confirm={window}"), "--shm-size", "off"])
            .env_remove("SSH_CONNECTION")
            .stdin(Stdio::null())
            .output()
            .expect("env-qemu runs")
            .into();
        assert!(out.success(), "start --confirm: {out:?}");
        assert!(out.stderr.contains("PENDING"), "{}", out.stderr);
        self.armed()
    }

    /// The pending change in the state file (read directly: `status` would settle it).
    fn armed(&self) -> Armed {
        let p = self.pending().expect("a pending change is saved");
        Armed::from(&p)
    }

    fn pending(&self) -> Option<Value> {
        let file = self.eq.state_files().into_iter().next()?;
        let text = std::fs::read_to_string(file).ok()?;
        let state: Value = serde_json::from_str(&text).expect("state is JSON");
        Some(state["pending"].clone()).filter(|p| !p.is_null())
    }

    /// `env-qemu ARGS` run as from a console (no `$SSH_CONNECTION`).
    fn run(&self, args: &[&str]) -> Outcome {
        self.eq
            .command(args)
            .env_remove("SSH_CONNECTION")
            .output()
            .expect("env-qemu runs")
            .into()
    }

    /// The log of pending changes, one JSON value per line.
    fn log(&self) -> Vec<Value> {
        let Some(file) = std::fs::read_dir(self.dir.path())
            .expect("state dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".confirm.log"))
        else {
            return Vec::new();
        };
        std::fs::read_to_string(file)
            .expect("read log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
            .collect()
    }

    /// The revert of `armed` in the log (written just after the restore a dump verified:
    /// waited for a moment).
    fn revert_of(&self, armed: &Armed) -> Value {
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let found =
                self.log().into_iter().rev().find(|e| {
                    e["event"]["kind"] == "reverted" && e["token"] == armed.token.as_str()
                });
            match found {
                Some(e) => return e,
                None if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                None => panic!("no revert logged: {:?}", self.log()),
            }
        }
    }

    fn bridged(&self) -> bool {
        master_of(self.host(), "eth0").as_deref() == Some("lepont")
    }

    /// Waits until `ip -j` reads the host back as before, at the latest `until`; when
    /// that happened.
    fn restored_by(&self, until: Instant, what: &str) -> Instant {
        loop {
            let now = self.host().read_state();
            let at = Instant::now();
            if same_state(&self.before, &now) {
                return at;
            }
            assert!(
                at < until,
                "{what}: not restored in time (left: before, right: now):\n{}",
                difference(&self.before, &now)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restored now (a few seconds for DAD to settle), and nothing of env-qemu left: no
    /// state, no agent, no copy of the binary.
    fn assert_clean(&self, what: &str) {
        self.restored_by(Instant::now() + Duration::from_secs(5), what);
        assert!(self.eq.state_files().is_empty(), "{what}: state left");
        wait_gone(&agents_of(self.dir.path()), Duration::from_secs(3), what);
        let copies: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("state dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
            })
            .collect();
        assert!(copies.is_empty(), "{what}: agent files left: {copies:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        end_agents(self.dir.path());
    }
}

/// A pending change as the state file has it.
#[derive(Debug, Clone)]
struct Armed {
    token: String,
    agent: u32,
    /// When the agent reverts, on this test's clock.
    deadline: Instant,
    deadline_ms: u64,
}

impl Armed {
    fn from(p: &Value) -> Armed {
        let deadline_ms = p["deadline"].as_u64().expect("a deadline once armed");
        Armed {
            token: p["token"].as_str().expect("a token").to_string(),
            agent: p["agent"]["pid"].as_u64().expect("an agent") as u32,
            deadline: instant_of(deadline_ms),
            deadline_ms,
        }
    }
}

/// CLOCK_BOOTTIME milliseconds as an [`Instant`] of this process.
fn instant_of(boot_ms: u64) -> Instant {
    let now_ms = boottime().as_millis() as u64;
    let now = Instant::now();
    if boot_ms >= now_ms {
        now + Duration::from_millis(boot_ms - now_ms)
    } else {
        now - Duration::from_millis(now_ms - boot_ms)
    }
}

/// The revert agents of the state directory `dir`, by their command line.
fn agents_of(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a == "__agent") && args.iter().any(|a| a.starts_with(&dir))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn wait_gone(pids: &[u32], within: Duration, what: &str) {
    let until = Instant::now() + within;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < until,
            "{what}: agent(s) still alive: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs the agents of `dir` (ours: started by this test's runs of the binary).
fn end_agents(dir: &Path) {
    for pid in agents_of(dir) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let left = agents_of(dir);
    let until = Instant::now() + Duration::from_secs(3);
    while left.iter().any(|p| alive(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(session, process group)` of `pid`, from /proc/PID/stat.
fn session_of(pid: u32) -> (u32, u32) {
    env_qemu_backend_netlink::session_of(pid).expect("stat of a live process")
}

/// A pseudo-terminal: the child's end is the controlling terminal of a new session.
struct Pty {
    master: File,
    slave: OwnedFd,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).expect("openpty");
    Pty {
        master: File::from(p.master),
        slave: p.slave,
    }
}

/// Runs `cmd` as the session leader of a new session whose controlling terminal is the
/// pty's slave (stdin, stdout, stderr), as sshd runs a login shell.
fn spawn_on_pty(mut cmd: Command, pty: &Pty) -> Child {
    let stdio = || Stdio::from(pty.slave.try_clone().expect("dup pty"));
    cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn on the pty")
}

/// What the terminal shows, line by line, as it comes.
fn read_terminal(master: File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut master = master;
        let mut buf = [0u8; 4096];
        let mut text = String::new();
        // EIO once the last slave descriptor closes.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut String) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            if line.contains(needle) {
                return;
            }
        }
    }
    panic!("{needle:?} never shown; the terminal showed:\n{seen}");
}

// --- (1) ---------------------------------------------------------------------------

/// (1) SSH loss: `start --confirm=5` is the session leader of a new pseudo-terminal. Once
/// it is armed (its prompt shows), the terminal's master closes (the hangup an SSH drop
/// is) and the process group is SIGKILLed. The agent lives in another session and
/// process group, and restores the host within the deadline + 1 s — not before it.
#[test]
fn ssh_loss_reverts_by_the_deadline() {
    require_netns!();
    let lab = Lab::new(false);
    let pty = pty();
    let mut cmd = lab
        .eq
        .command(&["start", "--confirm=5", "--shm-size", "off"]);
    cmd.env_remove("SSH_CONNECTION");
    let mut child = spawn_on_pty(cmd, &pty);
    let Pty { master, slave } = pty;
    drop(slave);
    let rx = read_terminal(master.try_clone().expect("dup master"));
    let mut shown = String::new();
    wait_for_line(&rx, "type `confirm`", &mut shown);
    let armed = lab.armed();
    assert!(lab.bridged(), "bridged once armed");

    let client = child.id();
    assert_eq!(
        session_of(client),
        (client, client),
        "the client leads its session and group"
    );
    let (agent_sid, agent_pgid) = session_of(armed.agent);
    assert_ne!(agent_sid, client, "the agent is in another session");
    assert_ne!(agent_pgid, client, "the agent is in another process group");
    assert_ne!(
        armed.agent, agent_sid,
        "the agent leads no session: it can take no terminal"
    );

    // The connection drops: the terminal hangs up, then the whole group is killed.
    drop(master);
    let _ = kill(Pid::from_raw(-(client as i32)), Signal::SIGKILL);
    let status = child.wait().expect("reap the client");
    assert!(!status.success(), "the client died: {status:?}");
    assert!(alive(armed.agent), "the agent survived the session");

    // Not reverted early: still bridged half a second before the deadline.
    let early = armed.deadline - Duration::from_millis(500);
    std::thread::sleep(early.saturating_duration_since(Instant::now()));
    assert!(lab.bridged(), "reverted before the deadline");
    let at = lab.restored_by(armed.deadline + SLACK, "after the SSH loss");
    eprintln!(
        "restored {} ms after the deadline",
        at.saturating_duration_since(armed.deadline).as_millis()
    );
    assert_eq!(lab.revert_of(&armed)["event"]["cause"], "deadline");
    lab.assert_clean("after the SSH loss");
}

// --- (2) and (3) ---------------------------------------------------------------------

/// Runs `f` on a thread inside the namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("open netns");
        setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A TCP connection standing for an SSH session: its server end held by a process of its
/// own (as sshd forks one per connection), its client end by this test.
struct Session {
    ssh_connection: String,
    holder: Child,
    _client: TcpStream,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Opens a connection from `client_ns` to `server:port` in `server_ns`, and hands its
/// server end to a fresh `sleep` process.
fn session(server_ns: &str, server: &'static str, client_ns: &str) -> Session {
    let listener = in_netns(server_ns, move || {
        TcpListener::bind((server, 0)).expect("listen on the host")
    });
    let port = listener.local_addr().expect("port").port();
    let client = in_netns(client_ns, move || {
        TcpStream::connect((server, port)).expect("connect to the host")
    });
    let (accepted, peer) = listener.accept().expect("accept");
    let fd = accepted.as_raw_fd();
    let mut cmd = Command::new("sleep");
    cmd.arg("120").stdin(Stdio::null());
    // SAFETY: fcntl is async-signal-safe; it clears close-on-exec on the child's copy
    // only, which the holder then keeps.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let holder = cmd.spawn().expect("spawn the connection's holder");
    drop(accepted);
    drop(listener);
    Session {
        ssh_connection: format!("{} {} {server} {port}", peer.ip(), peer.port()),
        holder,
        _client: client,
    }
}

impl Lab {
    fn confirm_over(&self, s: &Session, extra: &[&str]) -> Outcome {
        let mut args = vec!["confirm"];
        args.extend_from_slice(extra);
        self.eq
            .command(&args)
            .env("SSH_CONNECTION", &s.ssh_connection)
            .output()
            .expect("env-qemu runs")
            .into()
    }
}

/// (2) A confirm from a connection opened after the change (a TCP connection from the far
/// namespace, `SSH_CONNECTION` naming it, its server end held by a process started after
/// the plan) keeps the bridge: past the deadline it is still there, the agent gone.
#[test]
fn confirm_from_a_new_connection_keeps_the_bridge() {
    require_netns!();
    let lab = Lab::new(true);
    let armed = lab.start("4");
    // A new login, after the plan ended.
    std::thread::sleep(Duration::from_millis(50));
    let s = session(lab.host().name(), "192.0.2.10", lab.far().name());
    let out = lab.confirm_over(&s, &[]);
    assert!(out.success(), "confirm: {out:?}");
    assert!(out.stderr.contains("confirmed"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("warning"),
        "nothing to warn about: {}",
        out.stderr
    );
    let confirmed = lab
        .log()
        .into_iter()
        .rev()
        .find(|e| e["event"]["kind"] == "confirmed");
    let origin = confirmed.expect("confirm logged")["event"]["origin"].clone();
    assert!(
        origin.as_str().unwrap_or("").contains("198.51.100.2"),
        "the log names the connection: {origin}"
    );
    assert!(lab.pending().is_none(), "nothing pending after confirm");
    wait_gone(
        &[armed.agent],
        Duration::from_secs(2),
        "the agent after confirm",
    );

    std::thread::sleep((armed.deadline + SLACK).saturating_duration_since(Instant::now()));
    assert!(lab.bridged(), "the deadline passed: still bridged");
    let status = lab.eq.status();
    assert_eq!(status["phase"], "running", "{status}");
    assert_eq!(status["drift"], serde_json::json!([]), "{status}");
    assert!(status.get("pending").is_none(), "{status}");
    assert_eq!(
        lab.run(&["confirm"]).code,
        Some(8),
        "nothing pending any more"
    );
    assert!(lab.run(&["-q", "stop"]).success());
    lab.assert_clean("stop after a confirm");
}

/// (3) A confirm from the connection that ran `start` (opened before the change) is
/// refused, proof failed, the change still pending; one whose client is routed around the
/// bridge is refused even with `--this-session`; `--this-session` accepts the old one,
/// with a warning.
#[test]
fn confirm_from_the_old_connection_needs_this_session() {
    require_netns!();
    let lab = Lab::new(true);
    let old = session(lab.host().name(), "192.0.2.10", lab.far().name());
    std::thread::sleep(Duration::from_millis(50));
    let armed = lab.start("60");

    let out = lab.confirm_over(&old, &[]);
    assert_eq!(out.code, Some(10), "proof failed: {out:?}");
    assert!(
        out.stderr.contains("before the change ended"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--this-session"), "{}", out.stderr);
    assert!(out.stderr.contains("stays pending"), "{}", out.stderr);
    assert!(lab.pending().is_some(), "still pending");
    assert!(lab.bridged());
    assert!(alive(armed.agent));

    // A new connection, but over loopback: replies to it never cross the bridge.
    let local = session(lab.host().name(), "127.0.0.1", lab.host().name());
    let out = lab.confirm_over(&local, &["--this-session"]);
    assert_eq!(out.code, Some(10), "route check: {out:?}");
    assert!(
        out.stderr.contains("goes through lo, not lepont"),
        "{}",
        out.stderr
    );
    assert!(lab.pending().is_some(), "still pending");

    let out = lab.confirm_over(&old, &["--this-session"]);
    assert!(out.success(), "--this-session: {out:?}");
    assert!(out.stderr.contains("warning"), "{}", out.stderr);
    assert!(out.stderr.contains("--this-session"), "{}", out.stderr);
    assert!(lab.pending().is_none());
    assert!(lab.bridged());
    wait_gone(
        &[armed.agent],
        Duration::from_secs(2),
        "the agent after confirm",
    );
    assert!(lab.run(&["-q", "stop"]).success());
    lab.assert_clean("stop after --this-session");
}

// --- (4) ---------------------------------------------------------------------------

/// A small xorshift generator: jitter reproducible by seed (`ENV_QEMU_RACE_SEED`).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("ENV_QEMU_RACE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .subsec_nanos() as u64
            });
        eprintln!("race seed: ENV_QEMU_RACE_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// (4) `confirm` racing the deadline, 200 runs, each confirm sent within ±80 ms of the
/// deadline: every run ends either confirmed (exit 0) and bridged, the agent gone without
/// reverting, or reverted (exit 9, already reverted) and exactly restored. Both happen.
#[test]
fn confirm_racing_the_deadline_has_one_winner() {
    require_netns!();
    let lab = Lab::new(false);
    let mut rng = Rng::seeded();
    let (mut confirmed, mut reverted) = (0, 0);
    for run in 0..200 {
        let armed = lab.start("0.3");
        let jitter = rng.below(160) as i64 - 80;
        let at = if jitter >= 0 {
            armed.deadline + Duration::from_millis(jitter as u64)
        } else {
            armed.deadline - Duration::from_millis((-jitter) as u64)
        };
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let out = lab.run(&["-q", "confirm"]);
        let what = format!("run {run} (confirm {jitter:+} ms from the deadline)");
        match out.code {
            Some(0) => {
                confirmed += 1;
                // The agent leaves without reverting, however late it wakes.
                wait_gone(&[armed.agent], Duration::from_secs(2), &what);
                assert!(lab.bridged(), "{what}: confirmed, then not bridged");
                assert!(lab.pending().is_none(), "{what}: confirmed, still pending");
                let stop = lab.run(&["-q", "stop"]);
                assert!(stop.success(), "{what}: stop after confirm: {stop:?}");
            }
            Some(9) => {
                reverted += 1;
                assert!(out.stderr.contains("reverted"), "{what}: {}", out.stderr);
                wait_gone(&[armed.agent], Duration::from_secs(2), &what);
                assert!(
                    lab.eq.state_files().is_empty(),
                    "{what}: reverted, state left"
                );
            }
            _ => panic!("{what}: confirm ended neither way: {out:?}"),
        }
        lab.restored_by(Instant::now() + Duration::from_secs(5), &what);
    }
    eprintln!("200 races: {confirmed} confirmed, {reverted} reverted");
    assert!(
        confirmed > 0 && reverted > 0,
        "the race was not run: {confirmed} confirmed, {reverted} reverted"
    );
    lab.assert_clean("after the races");
}

// --- (5) ---------------------------------------------------------------------------

/// (5) The agent SIGKILLed: the next `status` reverts (and says so), as does the next
/// `confirm` (exit 9, already reverted); SIGTERM to the agent reverts at once.
#[test]
fn a_killed_agent_is_replaced_by_the_next_command_and_sigterm_reverts() {
    require_netns!();
    let lab = Lab::new(false);

    let armed = lab.start("60");
    kill(Pid::from_raw(armed.agent as i32), Signal::SIGKILL).expect("kill our agent");
    wait_gone(&[armed.agent], Duration::from_secs(2), "SIGKILLed agent");
    assert!(lab.bridged(), "a killed agent reverts nothing itself");
    let out = lab.run(&["status"]);
    assert!(out.success(), "status: {out:?}");
    assert!(out.stderr.contains("reverted first"), "{}", out.stderr);
    assert!(
        out.stderr.contains("revert agent is gone"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("not started"), "{}", out.stdout);
    let logged = lab.revert_of(&armed);
    assert_eq!(logged["event"]["cause"], "agent_gone");
    assert_eq!(logged["event"]["by"], "env-qemu status");
    lab.assert_clean("status after SIGKILL");

    let armed = lab.start("60");
    kill(Pid::from_raw(armed.agent as i32), Signal::SIGKILL).expect("kill our agent");
    wait_gone(&[armed.agent], Duration::from_secs(2), "SIGKILLed agent");
    let out = lab.run(&["confirm"]);
    assert_eq!(out.code, Some(9), "confirm after SIGKILL: {out:?}");
    assert!(
        out.stderr.contains("revert agent is gone"),
        "{}",
        out.stderr
    );
    lab.assert_clean("confirm after SIGKILL");

    let armed = lab.start("60");
    let sent = Instant::now();
    kill(Pid::from_raw(armed.agent as i32), Signal::SIGTERM).expect("term our agent");
    let at = lab.restored_by(sent + SLACK, "SIGTERM");
    eprintln!(
        "SIGTERM: restored after {} ms",
        at.duration_since(sent).as_millis()
    );
    assert_eq!(lab.revert_of(&armed)["event"]["cause"], "terminated");
    assert_eq!(lab.run(&["revert"]).code, Some(9), "already reverted");
    lab.assert_clean("SIGTERM");
}

// --- (6) ---------------------------------------------------------------------------

/// (6) The deadline is kept on CLOCK_BOOTTIME, shown without touching this machine's
/// clock: `start --confirm=2` runs in a time namespace whose CLOCK_BOOTTIME is 10 days
/// ahead of this machine's (CLOCK_MONOTONIC and the wall clock unchanged). The saved
/// deadline is on that clock (10 days past this machine's), and the agent, whose timer
/// runs on the same clock, reverts 2 s after the plan — not 10 days later, not at once.
/// (That a step of the wall clock reverts nothing early is the core's test with a stepped
/// clock: `backend-fake/tests/confirm.rs`.)
#[test]
fn the_deadline_is_kept_on_boottime() {
    require_netns!();
    let lab = Lab::new(false);
    const AHEAD: u64 = 10 * 24 * 3600;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--time",
        "--boottime",
        &AHEAD.to_string(),
        "--fork",
        "--",
        BIN,
    ])
    .args(lab.eq.confinement())
    .args(["start", "--confirm=2", "--shm-size", "off"])
    .env_remove("SSH_CONNECTION")
    .stdin(Stdio::null());
    let out: Outcome = cmd.output().expect("unshare runs").into();
    let returned = Instant::now();
    assert!(out.success(), "start in a time namespace: {out:?}");
    let p = lab.pending().expect("pending");
    let deadline = p["deadline"].as_u64().expect("deadline");
    let plan_ended = p["plan_ended"].as_u64().expect("plan end");
    let here_ms = boottime().as_millis() as u64;
    assert!(
        deadline > here_ms + AHEAD * 1000 - 60_000,
        "the deadline {deadline} ms is on the namespace's CLOCK_BOOTTIME ({here_ms} ms here + {AHEAD} s)"
    );
    assert_eq!(
        deadline - plan_ended,
        2000,
        "counted from the end of the plan"
    );
    let armed = Armed::from(&p);
    let agent = armed.agent;
    let theirs = std::fs::read_link(format!("/proc/{agent}/ns/time")).expect("agent's time ns");
    let ours = std::fs::read_link("/proc/self/ns/time").expect("our time ns");
    assert_ne!(theirs, ours, "the agent runs in the time namespace");

    std::thread::sleep(Duration::from_millis(1200));
    assert!(lab.bridged(), "not reverted early");
    let at = lab.restored_by(returned + Duration::from_secs(2) + SLACK, "time namespace");
    eprintln!(
        "restored {} ms after start returned",
        at.duration_since(returned).as_millis()
    );
    assert_eq!(lab.revert_of(&armed)["event"]["cause"], "deadline");
    lab.assert_clean("time namespace");
}

// --- (7) ---------------------------------------------------------------------------

/// (7) The binary that armed the change (a copy made for the test) is deleted, and the
/// uplink's gateway made unreachable, right after arming: the agent still reverts on
/// time. It ran under strace: its own system calls open nothing of NSS or DNS
/// (`nsswitch.conf`, `resolv.conf`, `hosts`, `passwd`, `group`), no terminal, and no
/// IPv4 or IPv6 socket (netlink only).
#[test]
fn the_revert_needs_neither_the_binary_nor_the_network() {
    require_netns!();
    let lab = Lab::new(false);
    let bin_dir = TempDir::new();
    let copy = bin_dir.path().join("env-qemu");
    env_qemu_integration::cmd::place_executable(Path::new(BIN), &copy);
    let trace = bin_dir.path().join("trace");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-ff", "-e", "trace=%file,%network,%desc", "-o"])
        .arg(&trace)
        .arg(&copy)
        .args(lab.eq.confinement())
        .args(["start", "--confirm=3", "--shm-size", "off"])
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(bin_dir.path().join("stderr")).expect("stderr file"));
    let mut strace = strace.spawn().expect("strace runs");
    // strace follows the agent too: it exits when the agent does, so start's end is
    // read from its output.
    let until = Instant::now() + Duration::from_secs(30);
    let mut stderr = String::new();
    while !stderr.contains("PENDING") {
        assert!(Instant::now() < until, "start under strace: {stderr}");
        std::thread::sleep(Duration::from_millis(20));
        stderr = std::fs::read_to_string(bin_dir.path().join("stderr")).unwrap_or_default();
    }
    let armed = lab.armed();
    std::fs::remove_file(&copy).expect("delete the binary that armed it");
    lab.topo.lan.ip("addr flush dev lan0");
    assert!(lab.bridged());
    let at = lab.restored_by(armed.deadline + SLACK, "binary deleted, gateway gone");
    assert!(
        at + Duration::from_millis(100) >= armed.deadline,
        "reverted early"
    );
    let status = strace.wait().expect("strace ends with the agent");
    assert!(status.success(), "strace: {status:?}");

    let own = std::fs::read_to_string(format!("{}.{}", trace.display(), armed.agent))
        .expect("the agent's own trace");
    assert!(
        own.contains("__agent") || own.contains("timerfd") || own.contains("flock"),
        "{own}"
    );
    for forbidden in [
        "nsswitch.conf",
        "resolv.conf",
        "/etc/hosts",
        "/etc/passwd",
        "/etc/group",
        "/dev/tty",
        "/dev/pts",
        "socket(AF_INET",
        "sa_family=AF_INET",
    ] {
        let lines: Vec<&str> = own.lines().filter(|l| l.contains(forbidden)).collect();
        assert!(lines.is_empty(), "the agent used {forbidden}: {lines:#?}");
    }
    lab.assert_clean("binary deleted, gateway gone");
}

// --- (8) ---------------------------------------------------------------------------

/// (8) Taps added during the window — a VM's persistent tap attached with `add`, and one
/// `tap create` made — are detached (the made one deleted) by the revert, and the host is
/// restored exactly, the VM's tap as it was.
#[test]
fn taps_added_in_the_window_are_detached() {
    require_netns!();
    require_tun!();
    let lab = Lab::with(HostConfig::dhcp_like(), false, |host| {
        host.ip("tuntap add tap0 mode tap");
    });
    let armed = lab.start("3");
    let out = lab.run(&["-q", "add", "tap0"]);
    assert!(out.success(), "add tap0: {out:?}");
    let out = lab.run(&["-q", "tap", "create", "--user", "0"]);
    assert!(out.success(), "tap create: {out:?}");
    assert_eq!(master_of(lab.host(), "tap0").as_deref(), Some("lepont"));
    let status = lab.eq.status();
    assert_eq!(status["taps"].as_array().map(Vec::len), Some(2), "{status}");
    lab.restored_by(armed.deadline + SLACK, "taps in the window");
    assert_eq!(master_of(lab.host(), "tap0"), None, "tap0 detached");
    lab.assert_clean("taps in the window");
}

// --- (9) ---------------------------------------------------------------------------

/// (9) stdin at end of file neither confirms nor reverts early: `</dev/null`, `nohup`,
/// and a terminal whose user pressed Ctrl-D at the prompt. Half a second before each
/// deadline the host is bridged and the change pending; by the deadline + 1 s restored.
#[test]
fn stdin_at_eof_neither_confirms_nor_reverts() {
    require_netns!();
    let lab = Lab::new(false);

    let armed = lab.start("3");
    check_window(&lab, &armed, "</dev/null");

    let out: Outcome = Command::new("nohup")
        .arg(BIN)
        .args(lab.eq.confinement())
        .args(["start", "--confirm=3", "--shm-size", "off"])
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .output()
        .expect("nohup runs")
        .into();
    assert!(out.success(), "nohup start: {out:?}");
    check_window(&lab, &lab.armed(), "nohup");

    let pty = pty();
    let mut cmd = lab
        .eq
        .command(&["start", "--confirm=3", "--shm-size", "off"]);
    cmd.env_remove("SSH_CONNECTION");
    let mut child = spawn_on_pty(cmd, &pty);
    let Pty { master, slave } = pty;
    drop(slave);
    let rx = read_terminal(master.try_clone().expect("dup master"));
    let mut shown = String::new();
    wait_for_line(&rx, "type `confirm`", &mut shown);
    let mut writer = master.try_clone().expect("dup master");
    writer.write_all(&[4]).expect("Ctrl-D"); // VEOF: read(2) returns 0
    wait_for_line(&rx, "end of input", &mut shown);
    let status = child.wait().expect("start exits");
    assert!(status.success(), "start at EOF: {status:?}\n{shown}");
    check_window(&lab, &lab.armed(), "Ctrl-D at the prompt");
    drop(master);
}

fn check_window(lab: &Lab, armed: &Armed, what: &str) {
    let early = armed.deadline - Duration::from_millis(500);
    std::thread::sleep(early.saturating_duration_since(Instant::now()));
    assert!(lab.bridged(), "{what}: reverted early");
    assert_eq!(
        lab.pending().and_then(|p| p["deadline"].as_u64()),
        Some(armed.deadline_ms),
        "{what}: not confirmed, not extended"
    );
    lab.restored_by(armed.deadline + SLACK, what);
    assert_eq!(lab.revert_of(armed)["event"]["cause"], "deadline", "{what}");
    lab.assert_clean(what);
}

// --- doctor, extend, revert ----------------------------------------------------------

/// `doctor` states how this host runs the agent: here, without systemd as PID 1, the
/// detached process, and why.
#[test]
fn doctor_says_which_agent_this_host_runs() {
    require_netns!();
    let lab = Lab::new(false);
    let out = lab.run(&["--json", "doctor", "eth0"]);
    let checks: Value = serde_json::from_str(&out.stdout).expect("doctor --json");
    let agent: Vec<&Value> = checks
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == "revert agent")
        .collect();
    let detail = agent.first().expect("a revert agent check")["detail"]
        .as_str()
        .expect("detail")
        .to_string();
    let pid1 = std::fs::read_to_string("/proc/1/comm")
        .expect("PID 1")
        .trim()
        .to_string();
    if pid1 == "systemd" && Path::new("/run/systemd/system").is_dir() {
        assert!(detail.contains("transient service"), "{detail}");
    } else {
        assert!(detail.contains("detached process"), "{detail}");
        assert!(detail.contains(&format!("PID 1 is `{pid1}`")), "{detail}");
    }
}

/// `confirm --extend` moves the deadline (the agent sleeps on), `revert` reverts at once,
/// and both say when nothing is pending (exit 8) or it is reverted already (exit 9).
#[test]
fn extend_then_revert() {
    require_netns!();
    let lab = Lab::new(false);
    assert_eq!(lab.run(&["confirm"]).code, Some(8), "nothing started");
    assert_eq!(lab.run(&["revert"]).code, Some(8), "nothing started");
    let armed = lab.start("2");
    let out = lab.run(&["confirm", "--extend=5"]);
    assert!(out.success(), "extend: {out:?}");
    let extended = Armed::from(&lab.pending().expect("pending"));
    assert!(
        extended.deadline_ms >= armed.deadline_ms + 2500,
        "{extended:?} vs {armed:?}"
    );
    std::thread::sleep((armed.deadline + SLACK).saturating_duration_since(Instant::now()));
    assert!(lab.bridged(), "the old deadline passed: still bridged");
    assert!(alive(armed.agent), "the agent sleeps on");
    let out = lab.run(&["revert"]);
    assert!(out.success(), "revert: {out:?}");
    assert_eq!(lab.revert_of(&armed)["event"]["cause"], "requested");
    lab.assert_clean("revert");
    let out = lab.run(&["confirm"]);
    assert_eq!(out.code, Some(9), "reverted already: {out:?}");
    assert!(out.stderr.contains("env-qemu revert"), "{}", out.stderr);
}

/// The systemd path, where systemd is PID 1: the agent runs in a transient service
/// (its cgroup is the unit's) and reverts at the deadline.
#[test]
#[ignore = "needs systemd as PID 1 (creates a transient unit in the machine's systemd)"]
fn the_agent_is_a_transient_service_under_systemd() {
    require_netns!();
    let lab = Lab::new(false);
    let armed = lab.start("3");
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", armed.agent)).expect("cgroup");
    assert!(cgroup.contains("env-qemu-revert-"), "{cgroup}");
    lab.restored_by(armed.deadline + SLACK, "systemd agent");
    lab.assert_clean("systemd agent");
}
