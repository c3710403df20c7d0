//! The revert agent of `start --confirm` as a process: where it runs (a transient systemd
//! service, or a double-forked detached process), how it is started from a copy of the
//! binary under the state directory, and how it answers before the first change. What it
//! decides is the core's ([`env_qemu_core::commands::agent_wake`]); its loop is
//! `cmd::agent`.

pub mod wait;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_core::commands::Guard;
use env_qemu_core::pending::{AgentId, AgentPath};
use env_qemu_core::state::State;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long the agent has to answer before `start --confirm` gives up (nothing changed).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the programs the agent and its starter run are looked for (no `$PATH`).
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How this host runs the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// `systemd-run --unit=… --collect`: a transient service, outside every login session.
    Systemd { systemd_run: PathBuf },
    /// Double fork, `setsid`, SIGHUP ignored, stdio on /dev/null; `why` systemd is not used.
    Detached { why: String },
}

impl Runner {
    /// What `doctor` and `start --confirm` say.
    pub fn describe(&self) -> String {
        match self {
            Runner::Systemd { systemd_run } => format!(
                "systemd is PID 1: start --confirm runs its revert agent as a transient service ({} --unit=env-qemu-revert-… --collect), outside the SSH session",
                systemd_run.display()
            ),
            Runner::Detached { why } => format!(
                "{why}: start --confirm runs its revert agent as a detached process (double fork, setsid, SIGHUP ignored, stdio on /dev/null), outside the SSH session's session and process group"
            ),
        }
    }
}

/// What decides the runner, read from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `/proc/1/comm`.
    pub pid1: Option<String>,
    /// `/run/systemd/system` is a directory (sd_booted(3)).
    pub systemd_booted: bool,
    pub systemd_run: Option<PathBuf>,
    /// The agent reaches the target namespace from PID 1's world: `--netns NAME`, or this
    /// process is in PID 1's network namespace (a service starts in PID 1's).
    pub netns_reachable: bool,
}

impl HostFacts {
    pub fn read(netns_named: bool) -> HostFacts {
        let ino = |p: &str| {
            fs::metadata(p)
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        HostFacts {
            pid1: fs::read_to_string("/proc/1/comm")
                .ok()
                .map(|s| s.trim().to_string()),
            systemd_booted: Path::new("/run/systemd/system").is_dir(),
            systemd_run: find_program("systemd-run"),
            netns_reachable: netns_named
                || matches!((ino("/proc/self/ns/net"), ino("/proc/1/ns/net")), (Some(a), Some(b)) if a == b),
        }
    }

    /// The runner these facts call for.
    pub fn runner(&self) -> Runner {
        let why = match (&self.pid1, self.systemd_booted, &self.systemd_run) {
            (Some(p), true, Some(run)) if p == "systemd" => {
                if self.netns_reachable {
                    return Runner::Systemd {
                        systemd_run: run.clone(),
                    };
                }
                "this command runs in a network namespace PID 1 is not in (give it with --netns to use systemd)".to_string()
            }
            (Some(p), true, None) if p == "systemd" => "systemd-run is not installed".to_string(),
            (Some(p), _, _) => format!("PID 1 is `{p}`, not systemd"),
            (None, _, _) => "PID 1 cannot be read".to_string(),
        };
        Runner::Detached { why }
    }
}

/// What may kill a detached agent before its deadline, for `doctor` and `start --confirm`.
pub fn hazards(runner: &Runner) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(runner, Runner::Detached { .. }) && kill_user_processes() {
        out.push("logind has KillUserProcesses=yes: a detached revert agent started from an SSH login is killed when that session ends, and then reverts nothing until the next env-qemu command; run start --confirm where systemd is PID 1, or set KillUserProcesses=no".to_string());
    }
    if let Some(marker) = container_marker() {
        out.push(format!(
            "this looks like a container ({marker}): if its PID namespace dies, the revert agent dies with it and nothing reverts the change (its network namespace may outlive it)"
        ));
    }
    out
}

/// Whether logind's configuration (the main file and its drop-ins, last one wins) says
/// `KillUserProcesses=yes`.
fn kill_user_processes() -> bool {
    let mut files = vec![PathBuf::from("/etc/systemd/logind.conf")];
    for dir in [
        "/usr/lib/systemd/logind.conf.d",
        "/usr/local/lib/systemd/logind.conf.d",
        "/run/systemd/logind.conf.d",
        "/etc/systemd/logind.conf.d",
    ] {
        let mut more: Vec<PathBuf> = fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        more.sort();
        files.extend(
            more.into_iter()
                .filter(|p| p.extension().is_some_and(|x| x == "conf")),
        );
    }
    let mut value = false;
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("KillUserProcesses=") {
                value = matches!(v.trim(), "yes" | "true" | "1" | "on");
            }
        }
    }
    value
}

/// The file or variable that marks this system as a container, if one does.
fn container_marker() -> Option<String> {
    for f in ["/.dockerenv", "/run/.containerenv"] {
        if Path::new(f).exists() {
            return Some(f.to_string());
        }
    }
    let environ = fs::read("/proc/1/environ").ok()?;
    environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|v| v.strip_prefix("container="))
        .map(|c| format!("container={c} in PID 1's environment"))
}

/// `name` in the usual system directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    SAFE_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `STATE_DIR/agent-TOKEN`: the agent's copy of the binary and its answer FIFO.
pub fn agent_dir(state_dir: &Path, token: &str) -> PathBuf {
    state_dir.join(format!("agent-{token}"))
}

/// A random token: 16 bytes from the kernel, in hex.
pub fn token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts agents for `start --confirm` ([`Guard`]).
#[derive(Debug)]
pub struct Spawner {
    pub runner: Runner,
    pub state_dir: PathBuf,
    /// The global options the agent runs with (`--state-dir`, `--config`, `--bridge`,
    /// `--netns`), so it acts on exactly what its starter did.
    pub global: Vec<OsString>,
}

impl Guard for Spawner {
    fn arm(&mut self, state: &State) -> Result<AgentId, String> {
        let token = state
            .pending
            .as_ref()
            .map(|p| p.token.clone())
            .ok_or("no pending change to guard")?;
        let dir = agent_dir(&self.state_dir, &token);
        let armed = self.spawn(&dir, &token);
        if armed.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        armed
    }
}

impl Spawner {
    fn spawn(&self, dir: &Path, token: &str) -> Result<AgentId, String> {
        let at = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| at("creating", dir, e))?;
        // A copy of the binary: upgrading, moving or deleting the one that armed it
        // leaves the agent's revert intact.
        let copy = dir.join("env-qemu");
        fs::copy("/proc/self/exe", &copy).map_err(|e| at("copying this program to", &copy, e))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o700))
            .map_err(|e| at("chmod", &copy, e))?;
        let fifo = dir.join("ready");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(|e| at("mkfifo", &fifo, e.into()))?;
        // Open before the agent starts, so that its non-blocking open for writing finds
        // a reader; no writer yet is no end of file.
        let answers = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| at("opening", &fifo, e))?;
        let mut args = self.global.clone();
        args.extend(
            ["-q", "__agent", "--token", token, "--ready"]
                .iter()
                .map(OsString::from),
        );
        args.push(fifo.clone().into_os_string());
        let path = match &self.runner {
            Runner::Systemd { systemd_run } => {
                let unit = format!("env-qemu-revert-{}", &token[..token.len().min(12)]);
                let status = Command::new(systemd_run)
                    .env_clear()
                    .env("PATH", SAFE_PATH)
                    .args([
                        &format!("--unit={unit}"),
                        "--collect",
                        "--quiet",
                        "--service-type=exec",
                        "--description=env-qemu revert agent (start --confirm)",
                        "--",
                    ])
                    .arg(&copy)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .status()
                    .map_err(|e| at("running", systemd_run, e))?;
                if !status.success() {
                    return Err(format!(
                        "{} --unit={unit} failed: {status}",
                        systemd_run.display()
                    ));
                }
                AgentPath::Systemd { unit }
            }
            Runner::Detached { .. } => {
                let mut cmd = Command::new(&copy);
                cmd.args(&args)
                    .arg("--detach")
                    .env_clear()
                    .env("PATH", SAFE_PATH)
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // SAFETY: between fork and exec only async-signal-safe calls: setsid(2)
                // and close_range(2).
                unsafe {
                    cmd.pre_exec(|| {
                        // A session of its own, away from the terminal and its hangup.
                        nix::unistd::setsid().map_err(io::Error::from)?;
                        // Nothing inherited beyond stdio (a terminal, a socket of the SSH
                        // session): marked close-on-exec, not closed, so that the
                        // standard library's own exec-error pipe keeps working.
                        libc::syscall(
                            libc::SYS_close_range,
                            3u32,
                            u32::MAX,
                            libc::CLOSE_RANGE_CLOEXEC,
                        );
                        Ok(())
                    });
                }
                // The launcher forks the agent and exits at once.
                let status = cmd.status().map_err(|e| {
                    let noexec = e.kind() == io::ErrorKind::PermissionDenied;
                    let mut m = at("starting", &copy, e);
                    if noexec {
                        m.push_str(" (is the state directory mounted noexec? give another with --state-dir)");
                    }
                    m
                })?;
                if !status.success() {
                    return Err(format!(
                        "the agent's launcher {} exited with {status}",
                        copy.display()
                    ));
                }
                AgentPath::Detached
            }
        };
        let (pid, started) = await_answer(&answers, &fifo)?;
        let _ = fs::remove_file(&fifo);
        Ok(AgentId { pid, started, path })
    }
}

/// Reads the agent's `PID STARTTICKS` line from the FIFO within [`ANSWER_TIMEOUT`].
fn await_answer(fifo: &File, path: &Path) -> Result<(u32, u64), String> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no answer on {} within {} s",
                path.display(),
                ANSWER_TIMEOUT.as_secs()
            ));
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting on {}: {e}", path.display())),
        }
        let mut buf = [0u8; 128];
        match (&*fifo).read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "the agent closed {} without answering",
                    path.display()
                ))
            }
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        if let Some(end) = text.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&text[..end]).into_owned();
            if let Some(why) = line.strip_prefix("error ") {
                return Err(format!("the agent failed: {why}"));
            }
            return parse_answer(&line)
                .ok_or_else(|| format!("the agent answered {line:?}, not `ready PID STARTTIME`"));
        }
    }
}

/// The agent's answer: `ready PID STARTTIME`.
pub fn answer_line(pid: u32, started: u64) -> String {
    format!("ready {pid} {started}\n")
}

/// The agent's answer when it cannot guard the change: `error MESSAGE`.
pub fn error_line(message: &str) -> String {
    format!("error {}\n", message.replace('\n', " "))
}

fn parse_answer(line: &str) -> Option<(u32, u64)> {
    let mut w = line.split_whitespace();
    (w.next()? == "ready").then_some(())?;
    let pid = w.next()?.parse().ok()?;
    let started = w.next()?.parse().ok()?;
    w.next().is_none().then_some((pid, started))
}

/// The agent's first moments, before any thread exists (signal masks are inherited by
/// threads): with `detach`, fork once more so the agent is no session leader (it can
/// never acquire a controlling terminal) and its launcher's parent sees the launcher
/// exit at once; then SIGHUP, SIGINT and SIGPIPE ignored, SIGTERM and SIGUSR1 blocked
/// (read from a signalfd by [`wait::Waiter`]).
pub fn prepare_process(detach: bool) -> io::Result<()> {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    if detach {
        // SAFETY: no thread exists yet (this runs before the runtime is built), so the
        // child may run anything.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Parent { .. } => std::process::exit(0),
            nix::unistd::ForkResult::Child => {}
        }
    }
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal(s, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    // SIGTERM may have been ignored by the starter (SIG_IGN survives exec): the agent
    // reads it from its signalfd, for which it must be at its default and blocked.
    for s in [Signal::SIGTERM, Signal::SIGUSR1] {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { signal(s, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGUSR1);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(io::Error::from)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pid1: &str, booted: bool, run: bool, reachable: bool) -> HostFacts {
        HostFacts {
            pid1: Some(pid1.to_string()),
            systemd_booted: booted,
            systemd_run: run.then(|| PathBuf::from("/usr/bin/systemd-run")),
            netns_reachable: reachable,
        }
    }

    #[test]
    fn systemd_as_pid_1_runs_a_transient_service() {
        assert_eq!(
            facts("systemd", true, true, true).runner(),
            Runner::Systemd {
                systemd_run: PathBuf::from("/usr/bin/systemd-run")
            }
        );
    }

    #[test]
    fn anything_else_runs_a_detached_process_and_says_why() {
        let why = |f: HostFacts| match f.runner() {
            Runner::Detached { why } => why,
            r => panic!("{r:?}"),
        };
        assert_eq!(
            why(facts("process_api", false, false, true)),
            "PID 1 is `process_api`, not systemd"
        );
        assert_eq!(
            why(facts("systemd", true, false, true)),
            "systemd-run is not installed"
        );
        assert!(why(facts("systemd", true, true, false)).contains("--netns"));
        // A systemd binary that did not boot the system (a container's init): no systemd.
        assert!(why(facts("init", true, true, true)).contains("`init`"));
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(error_line("a\nb"), "error a b\n");
    }

    #[test]
    fn answers_read_back() {
        assert_eq!(
            parse_answer(answer_line(812, 4242).trim_end()),
            Some((812, 4242))
        );
        assert_eq!(parse_answer("ready 812"), None);
        assert_eq!(parse_answer("ready 812 4242 x"), None);
        assert_eq!(parse_answer("ok 812 4242"), None);
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
