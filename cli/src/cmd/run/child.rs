//! Starting COMMAND: its own process group (given the terminal if env-qemu had it), the
//! network namespace of `--netns`, the tap's descriptor as fd 3 if asked, every other descriptor closed at exec, then the
//! user's groups, gid and uid, and no new privileges. All of it between fork and exec,
//! with raw system calls only (the parent has other threads).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

use super::user::Account;

/// The descriptor number COMMAND finds the tap on (`{tapfd}`, ENV_QEMU_TAP_FD).
pub const TAP_FD: RawFd = 3;

/// close_range(2)'s flag: mark close-on-exec instead of closing (Linux 5.11). Not closing
/// keeps std's own exec-error pipe working.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// What the child becomes.
pub struct Spec<'a> {
    pub argv: &'a [String],
    pub env: Vec<(OsString, OsString)>,
    /// Switch to this account (groups, gid, uid); `None` keeps env-qemu's.
    pub switch_to: Option<&'a Account>,
    pub no_new_privs: bool,
    /// Passed on as [`TAP_FD`].
    pub tap: Option<&'a OwnedFd>,
    /// The network namespace to run in (`--netns`), where the tap is.
    pub netns: Option<&'a OwnedFd>,
}

/// Whether env-qemu's stdin is a terminal whose foreground process group is env-qemu's:
/// then COMMAND gets the terminal (Ctrl-C, and QEMU's `-serial stdio`, reach it) and
/// env-qemu takes it back afterwards.
pub fn owns_terminal() -> bool {
    // SAFETY: plain queries of descriptor 0 and of this process.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Makes `pgrp` the terminal's foreground process group (SIGTTOU blocked meanwhile, as
/// a background process asking gets stopped by it otherwise).
fn give_terminal(pgrp: libc::pid_t) {
    // SAFETY: sigset manipulation on a local, then tcsetpgrp on descriptor 0; all
    // async-signal-safe (this also runs between fork and exec).
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        libc::tcsetpgrp(0, pgrp);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// Takes the terminal back after COMMAND ended.
pub fn take_terminal_back() {
    // SAFETY: getpgrp has no preconditions.
    give_terminal(unsafe { libc::getpgrp() });
}

pub fn spawn(spec: Spec<'_>, terminal: bool) -> io::Result<tokio::process::Child> {
    let (prog, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear().envs(spec.env);
    let tap: Option<RawFd> = spec.tap.map(AsRawFd::as_raw_fd);
    let netns: Option<RawFd> = spec.netns.map(AsRawFd::as_raw_fd);
    let switch = spec.switch_to.map(|a| {
        (
            a.uid,
            a.gid,
            a.groups
                .iter()
                .map(|g| *g as libc::gid_t)
                .collect::<Vec<_>>(),
        )
    });
    let nnp = spec.no_new_privs;
    // SAFETY: the closure runs in the child between fork and exec; it only makes system
    // calls (no allocation, no lock): `switch` was built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setpgid(0, 0))?;
            if let Some(ns) = netns {
                check(libc::setns(ns, libc::CLONE_NEWNET))?;
            }
            if terminal {
                give_terminal(libc::getpid());
                // Ctrl-Z would stop COMMAND's group only, while the shell waits on
                // env-qemu's: the terminal would hang. A VM is not suspended from its
                // terminal.
                libc::signal(libc::SIGTSTP, libc::SIG_IGN);
            }
            let first_closed = match tap {
                Some(fd) if fd == TAP_FD => {
                    check(libc::fcntl(fd, libc::F_SETFD, 0))?;
                    TAP_FD + 1
                }
                Some(fd) => {
                    check(libc::dup2(fd, TAP_FD))?;
                    TAP_FD + 1
                }
                None => TAP_FD,
            };
            // Descriptors env-qemu holds (its netlink socket above all: it acts with
            // the opener's privileges) must never reach COMMAND. Rust opens everything
            // close-on-exec already; this makes sure. Old kernels: ENOSYS/EINVAL, and
            // Rust's default stands.
            libc::syscall(
                libc::SYS_close_range,
                first_closed as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            );
            if let Some((uid, gid, groups)) = &switch {
                check_long(libc::syscall(
                    libc::SYS_setgroups,
                    groups.len(),
                    groups.as_ptr(),
                ))?;
                check_long(libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid))?;
                check_long(libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid))?;
                // No way back: regaining root must fail.
                if libc::syscall(libc::SYS_setresuid, 0, 0, 0) == 0
                    || libc::geteuid() != *uid
                    || libc::getegid() != *gid
                {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            if nnp {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd).spawn()
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn check_long(r: libc::c_long) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
