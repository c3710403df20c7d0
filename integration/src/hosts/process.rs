//! Ending the processes of a test namespace by PID, and only those.
//!
//! A process is held by a pidfd before it is checked: the check (`ip netns identify PID`
//! names the test's namespace) and the signal then concern the same process, even if the
//! PID were recycled in between (the signal would fail with ESRCH instead of reaching
//! someone else).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cmd::run;

/// A process held by a pidfd.
#[derive(Debug)]
pub struct NsProcess {
    pid: u32,
    fd: OwnedFd,
}

impl NsProcess {
    /// Holds `pid`, or `None` if no such process runs.
    pub fn open(pid: u32) -> Option<NsProcess> {
        let raw = i32::try_from(pid).ok()?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        if fd < 0 {
            return None;
        }
        let fd = i32::try_from(fd).expect("fd fits i32");
        // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
        Some(NsProcess {
            pid,
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has ended (its pidfd is readable).
    pub fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to end; returns whether it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, for the length given.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n > 0
    }

    /// Sends `signal` if the process is in the network namespace `netns` (as
    /// `ip netns identify PID` names it), and is not this test process.
    pub fn signal_in(&self, netns: &str, signal: Signal) -> Result<(), String> {
        if self.pid == std::process::id() {
            return Err(format!("pid {} is this test process", self.pid));
        }
        let names = netns_of(self.pid);
        if names.is_empty() && self.has_exited() {
            return Err(format!("pid {} has already ended", self.pid));
        }
        if !names.iter().any(|n| n == netns) {
            return Err(format!(
                "pid {} ({}) is not in netns {netns} (ip netns identify: {names:?}): left alone",
                self.pid,
                describe(self.pid)
            ));
        }
        // SAFETY: a live pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "signal {signal} to pid {}: {}",
                self.pid,
                std::io::Error::last_os_error()
            ))
        }
    }
}

/// `ip netns identify PID`: the names under /run/netns of `pid`'s network namespace.
pub fn netns_of(pid: u32) -> Vec<String> {
    run("ip", &["netns", "identify", &pid.to_string()])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `ip netns pids NAME`: every process whose network namespace is `netns`.
pub fn pids_in(netns: &str) -> Vec<u32> {
    run("ip", &["netns", "pids", netns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `/proc/PID/ns/KIND`'s target (`mnt:[4026532442]`), if the process still runs.
pub fn ns_id(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The process's command line, NULs as spaces (daemons rewrite it: `dhcpcd: [manager]`).
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The source of the mount at /run in the process's mount namespace (the top one), from
/// /proc/PID/mountinfo: `env-qemu-test-eqt-<pid>-<n>-run` for a confined host's process.
pub fn run_mount_source(pid: u32) -> Option<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    info.lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == Some("/run"))
        .find_map(|l| l.split(" - ").nth(1)?.split(' ').nth(1).map(str::to_string))
}

/// The test namespace a process serves (`eqt-<pid>-<n>`), read from the names of the
/// harness's mounts in its mount namespace (`env-qemu-test-eqt-<pid>-<n>-run`); what
/// `ci/check-leftovers` reads. A chrooted process (dhcpcd's manager) does not see them:
/// ask its holder, whose mount namespace it shares.
pub fn test_of(pid: u32) -> Option<String> {
    test_of_source(&run_mount_source(pid)?)
}

/// `env-qemu-test-eqt-12-3-run` → `eqt-12-3`.
fn test_of_source(source: &str) -> Option<String> {
    let rest = source.strip_prefix("env-qemu-test-")?;
    let mut parts = rest.splitn(4, '-');
    let (kind, owner, n) = (parts.next()?, parts.next()?, parts.next()?);
    (kind.starts_with("eq") && owner.parse::<u32>().is_ok() && n.parse::<u32>().is_ok())
        .then(|| format!("{kind}-{owner}-{n}"))
}

/// `PID (comm) cmdline`, for messages.
pub fn describe(pid: u32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("{pid} ({}) {}", comm.trim(), cmdline(pid))
}

/// Ends every process of the network namespace `netns` except the PIDs in `keep`:
/// SIGTERM, up to `grace` to exit, then SIGKILL to what is left (and to what was forked
/// meanwhile). Each is checked to be in `netns` first. Returns what it did, one line per
/// process, for the test's log.
pub fn end_all_in(netns: &str, keep: &[u32], grace: Duration) -> Vec<String> {
    let list = || -> Vec<u32> {
        pids_in(netns)
            .into_iter()
            .filter(|p| !keep.contains(p))
            .collect()
    };
    let mut report = end(netns, &list, grace);
    let left: Vec<String> = list().into_iter().map(describe).collect();
    if !left.is_empty() {
        report.push(format!("still in {netns} after SIGKILL: {left:?}"));
    }
    report
}

/// Ends the processes `pids` like [`end_all_in`], each checked to be in `netns` first.
pub fn end_pids(netns: &str, pids: &[u32], grace: Duration) -> Vec<String> {
    end(netns, &|| pids.to_vec(), grace)
}

fn end(netns: &str, list: &dyn Fn() -> Vec<u32>, grace: Duration) -> Vec<String> {
    let mut report = Vec::new();
    for (signal, wait) in [
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, Duration::from_secs(5)),
    ] {
        let held: Vec<NsProcess> = list()
            .into_iter()
            .filter(|p| *p != std::process::id())
            .filter_map(NsProcess::open)
            .filter(|p| !p.has_exited())
            .collect();
        if held.is_empty() {
            return report;
        }
        let mut sent = Vec::new();
        for p in held {
            let what = describe(p.pid());
            match p.signal_in(netns, signal) {
                Ok(()) => {
                    report.push(format!("{signal} {what}"));
                    sent.push(p);
                }
                // Ended meanwhile (a daemon's helper goes with the daemon).
                Err(_) if p.has_exited() => {}
                Err(e) => report.push(e),
            }
        }
        let deadline = Instant::now() + wait;
        for p in &sent {
            p.wait_exit(deadline.saturating_duration_since(Instant::now()));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_a_mount_names() {
        assert_eq!(
            test_of_source("env-qemu-test-eqt-4242-7-run").as_deref(),
            Some("eqt-4242-7")
        );
        assert_eq!(
            test_of_source("env-qemu-test-eqt-4242-7-dnsmasq-run").as_deref(),
            Some("eqt-4242-7")
        );
        assert_eq!(test_of_source("tmpfs"), None);
        assert_eq!(test_of_source("env-qemu-test-run"), None);
    }

    #[test]
    fn this_process_is_no_test_host() {
        assert_eq!(test_of(std::process::id()), None);
        assert!(netns_of(std::process::id()).len() <= 1);
    }
}
