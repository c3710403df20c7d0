//! Processes, read from `/proc`: which ones live in the target network namespace, what
//! they run, whether their files are the ones env-qemu sees; signalling a checked PID and
//! starting a detached program.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use env_qemu_core::ErrorKind;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::error::HostFailure;

/// A live process of the target network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `/proc/PID/comm`: the executable's name, which title rewriting (dhcpcd) leaves alone.
    pub comm: String,
    /// `/proc/PID/cmdline`, split (a rewritten title is one word with spaces).
    pub argv: Vec<String>,
}

/// The processes of one network namespace.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub procs: Vec<Proc>,
    /// Processes whose namespace could not be read (not root: other users' processes).
    pub unreadable: usize,
}

impl Scan {
    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.iter().find(|p| p.pid == pid)
    }

    pub fn named<'a>(&'a self, comm: &'a str) -> impl Iterator<Item = &'a Proc> + 'a {
        self.procs.iter().filter(move |p| p.comm == comm)
    }
}

/// The inode of a network namespace (`net:[4026532840]`): unique among live namespaces.
pub(crate) fn netns_of(pid: u32) -> io::Result<u64> {
    Ok(fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

/// Every live (not zombie) user-space process whose network namespace is `netns`.
pub(crate) fn scan(netns: u64) -> io::Result<Scan> {
    let mut out = Scan::default();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        match netns_of(pid) {
            Ok(ino) if ino == netns => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                out.unreadable += 1;
                continue;
            }
            // Exited meanwhile.
            Err(_) => continue,
        }
        let Ok((state, ppid)) = stat(pid) else {
            continue;
        };
        let argv = read_argv(pid).unwrap_or_default();
        // Zombies have exited; kernel threads have no command line.
        if matches!(state, 'Z' | 'X' | 'x') || argv.is_empty() {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim_end_matches('\n').to_string())
            .unwrap_or_default();
        out.procs.push(Proc {
            pid,
            ppid,
            comm,
            argv,
        });
    }
    out.procs.sort_by_key(|p| p.pid);
    Ok(out)
}

/// State letter and parent PID, from `/proc/PID/stat` (after the parenthesised comm, which
/// may itself hold spaces and parentheses).
pub(crate) fn stat(pid: u32) -> io::Result<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

fn parse_stat(text: &str) -> Option<(char, u32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// `/proc/PID/cmdline` as words.
pub(crate) fn read_argv(pid: u32) -> io::Result<Vec<String>> {
    Ok(split_cmdline(&fs::read(format!("/proc/{pid}/cmdline"))?))
}

/// NUL-separated words; the trailing NULs (one per word, more after a rewritten title)
/// end the list.
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if end == 0 {
        return Vec::new();
    }
    bytes[..end]
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// Whether `pid` sees the same file at `path` as env-qemu does. In the same mount
/// namespace it does (a chroot aside: dhcpcd's manager and helpers run chrooted in the
/// dhcpcd user's home, while its files are written by its privileged, unchrooted part).
/// In another (a confined daemon, a service's private mounts), `path` is looked up through
/// the root of a process of that namespace that is not chrooted, `pid` or one of `scan`,
/// and compared at its deepest ancestor that exists there; without such a process, no.
/// When the process cannot be looked at (gone, not permitted), the answer is yes, there
/// being nothing better to go by.
pub(crate) fn sees_same(scan: &Scan, pid: u32, path: &Path) -> bool {
    let mnt = |p: &str| {
        fs::metadata(format!("/proc/{p}/ns/mnt"))
            .map(|m| m.ino())
            .ok()
    };
    let theirs = mnt(&pid.to_string());
    if theirs.is_none() || theirs == mnt("self") {
        return true;
    }
    let unrooted = std::iter::once(pid)
        .chain(scan.procs.iter().map(|p| p.pid))
        .filter(|q| mnt(&q.to_string()) == theirs)
        .find(|q| fs::read_link(format!("/proc/{q}/root")).is_ok_and(|r| r == Path::new("/")));
    unrooted.is_some_and(|q| same_file_through(q, path))
}

/// `path` through `/proc/PID/root`, compared with env-qemu's at the deepest ancestor
/// that exists there.
fn same_file_through(pid: u32, path: &Path) -> bool {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut at = path;
    loop {
        let theirs = root.join(at.strip_prefix("/").unwrap_or(at));
        match fs::metadata(&theirs) {
            Ok(t) => {
                return fs::metadata(at).is_ok_and(|o| (o.dev(), o.ino()) == (t.dev(), t.ino()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match at.parent() {
                Some(parent) => at = parent,
                None => return true,
            },
            Err(_) => return true,
        }
    }
}

/// SIGTERM to `pid` if it still runs `argv` in network namespace `netns`, then up to
/// `wait` for it to exit. A pidfd pins the process between the check and the signal: a
/// PID reused meanwhile is never signalled.
pub(crate) fn terminate(
    pid: u32,
    argv: &[String],
    netns: u64,
    wait: Duration,
) -> Result<(), HostFailure> {
    let look =
        "see who manages the interface now with `env-qemu status`, then run the command again";
    let gone = || {
        HostFailure::new(
            ErrorKind::NotFound,
            "it exited since it was detected; not signalled",
            look,
        )
    };
    let pidfd =
        match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(gone()),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Err(HostFailure::io(
                &e,
                "pidfd_open",
                "signalling a checked process needs Linux 5.3 or later; stop the program yourself",
            )),
            Err(e) => return Err(HostFailure::io(&e, "pidfd_open", "run env-qemu as root")),
        };
    match stat(pid) {
        Ok((state, _)) if !matches!(state, 'Z' | 'X' | 'x') => {}
        _ => return Err(gone()),
    }
    let now = read_argv(pid).map_err(|_| gone())?;
    if now != argv {
        return Err(HostFailure::new(
            ErrorKind::NotFound,
            format!(
                "PID {pid} now runs `{}`, not `{}`: not signalled",
                now.join(" "),
                argv.join(" ")
            ),
            look,
        ));
    }
    if netns_of(pid).map_err(|_| gone())? != netns {
        return Err(HostFailure::new(
            ErrorKind::Invalid,
            format!("PID {pid} runs in another network namespace than the one env-qemu acts on: not signalled"),
            "run env-qemu in the namespace of the interface (`--netns NAME`)",
        ));
    }
    pidfd_send_signal(&pidfd, libc::SIGTERM).map_err(|e| {
        if e.raw_os_error() == Some(libc::ESRCH) {
            gone()
        } else {
            HostFailure::io(&e, "pidfd_send_signal SIGTERM", "run env-qemu as root")
        }
    })?;
    if exited(&pidfd, wait).map_err(|e| HostFailure::io(&e, "poll pidfd", look))? {
        return Ok(());
    }
    Err(HostFailure::new(
        ErrorKind::Busy,
        format!("still running {:.1} s after SIGTERM", wait.as_secs_f64()),
        format!(
            "end it yourself (`kill -KILL {pid}`) or stop its service, then run the command again"
        ),
    ))
}

pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open(2) takes a PID and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo asks for the default one; the descriptor outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process of `pidfd` exits within `wait` (a pidfd polls readable once it has).
pub(crate) fn exited(pidfd: &OwnedFd, wait: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Where the program of `argv[0]` is: as given when it holds a slash, else on PATH or in
/// the sbin directories (dhclient and dhcpcd live in /usr/sbin, which a user's PATH may
/// lack).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// How [`spawn`] left the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spawned {
    /// It exited with status 0: a daemon that went to the background.
    Daemonized,
    /// Still in the foreground after the wait (a client that has no lease yet, or one
    /// that never forks): it keeps running, detached.
    Running,
}

/// Starts `argv` in its own session, stdio on /dev/null, working directory `/`, in the
/// calling thread's network namespace; its `argv[0]` stays as given, so its command line
/// reads as `argv`. Waits up to `wait` for a daemonizing program's parent to exit.
pub(crate) fn spawn(argv: &[String], wait: Duration) -> Result<Spawned, HostFailure> {
    let Some(name) = argv.first() else {
        return Err(HostFailure::new(
            ErrorKind::Invalid,
            "an empty command line",
            "this is a bug in the plan: report it",
        ));
    };
    let program = find_program(name).ok_or_else(|| {
        HostFailure::io(
            &io::Error::from_raw_os_error(libc::ENOENT),
            &format!("no program {name} on PATH nor in the sbin directories"),
            "install it, or put its directory on PATH",
        )
    })?;
    let mut cmd = Command::new(&program);
    cmd.arg0(name)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: setsid(2) and sigaction(2) are async-signal-safe and touch no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            default_signals()
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        HostFailure::io(
            &e,
            &format!("exec {}", program.display()),
            "check that it is installed and executable",
        )
    })?;
    let deadline = Instant::now() + wait;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(Spawned::Daemonized),
            Ok(Some(status)) => {
                return Err(HostFailure::new(
                    ErrorKind::Other,
                    format!("{} before going to the background", describe(status)),
                    "run the same command by hand to see its messages",
                ))
            }
            Ok(None) if Instant::now() >= deadline => return Ok(Spawned::Running),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(HostFailure::io(&e, "waitpid", "run the command again")),
        }
    }
}

/// Every signal back to its default action. An ignored signal stays ignored across exec,
/// and env-qemu ignores SIGHUP, SIGINT and SIGTERM while it changes the network: a daemon
/// started then would ignore SIGTERM for the rest of its life (and `stop` could not end
/// it). Handlers are reset by exec anyway.
fn default_signals() -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { sigaction(s, &default) }.map_err(io::Error::from)?;
    }
    Ok(())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words() {
        let argv = split_cmdline(b"dhclient\0-4\0-pf\0/run/dhclient.eth0.pid\0eth0\0");
        assert_eq!(
            argv,
            ["dhclient", "-4", "-pf", "/run/dhclient.eth0.pid", "eth0"]
        );
        // A rewritten title: one word, padded with NULs.
        assert_eq!(
            split_cmdline(b"dhcpcd: [manager] [ip4] [ip6]\0\0\0\0"),
            ["dhcpcd: [manager] [ip4] [ip6]"]
        );
        // An empty argument inside the list stays.
        assert_eq!(split_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert!(split_cmdline(b"").is_empty());
        assert!(split_cmdline(b"\0\0").is_empty());
    }

    #[test]
    fn stat_fields_after_a_comm_with_parentheses() {
        assert_eq!(
            parse_stat("812 (dhcp (x) d) S 1 812 812 0 -1"),
            Some(('S', 1))
        );
        assert_eq!(parse_stat("9 (z) Z 4 9"), Some(('Z', 4)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_sees_its_own_files() {
        let none = Scan::default();
        assert!(sees_same(
            &none,
            std::process::id(),
            Path::new("/proc/self")
        ));
        assert!(sees_same(
            &none,
            std::process::id(),
            Path::new("/no/such/file")
        ));
        assert!(same_file_through(std::process::id(), Path::new("/etc")));
        assert!(same_file_through(
            std::process::id(),
            Path::new("/etc/no/such")
        ));
    }

    #[test]
    fn terminate_refuses_a_pid_running_something_else() {
        // This test process: its command line is not `sleep 1000`, so nothing is signalled.
        let me = std::process::id();
        let netns = netns_of(me).expect("own netns");
        let e = terminate(me, &["sleep".into(), "1000".into()], netns, Duration::ZERO)
            .expect_err("another command line");
        let e = e.into_kernel_error(format!("process {me} (sleep)"));
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.to_string().contains("not signalled"), "{e}");
    }

    #[test]
    fn spawn_reports_an_exit_status() {
        let e = spawn(&["false".into()], Duration::from_secs(5)).expect_err("false fails");
        assert!(
            e.clone()
                .into_kernel_error("program false")
                .to_string()
                .contains("exited with status 1"),
            "{e:?}"
        );
        assert_eq!(
            spawn(&["true".into()], Duration::from_secs(5)),
            Ok(Spawned::Daemonized)
        );
        let e = spawn(&["env-qemu-no-such-program".into()], Duration::ZERO)
            .expect_err("missing")
            .into_kernel_error("program env-qemu-no-such-program");
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    /// env-qemu ignores SIGHUP, SIGINT and SIGTERM while it changes the network; a program
    /// it starts then must not inherit that. SIGHUP is ignored here for the test's length
    /// (no test of this binary uses it); the child checks that it ignores no standard signal.
    #[test]
    fn a_started_program_ignores_no_signal() {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: SIG_IGN and SIG_DFL install no handler code.
        unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }.expect("ignore SIGHUP");
        let checked = spawn(
            &[
                "sh".into(),
                "-c".into(),
                // The standard signals (1 to 31); 32 and 33 are glibc's own.
                "m=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status); [ $((0x$m & 0x7fffffff)) -eq 0 ]"
                    .into(),
            ],
            Duration::from_secs(5),
        );
        // SAFETY: as above.
        unsafe { signal(Signal::SIGHUP, SigHandler::SigDfl) }.expect("restore SIGHUP");
        assert_eq!(checked, Ok(Spawned::Daemonized));
    }
}
