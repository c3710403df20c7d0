//! `env-qemu run [start options] -- COMMAND…`: the seed's `emule_pc` script done right.
//! Starts the bridge if needed, makes a tap for the VM, runs COMMAND as the user who
//! asked (never as root unless `--as-root`), and when COMMAND exits (or on
//! Ctrl-C/SIGTERM/SIGHUP, passed on to it) deletes the tap and stops the bridge, unless
//! other runs or VM taps still use it. A bridge started by hand is never stopped by `run`.
//! COMMAND's exit status is passed through. The bookkeeping (holders, the tap) is the
//! core's ([`commands::join`], [`commands::make_tap`], [`commands::leave`]).

mod child;
mod user;

use std::os::fd::OwnedFd;
use std::process::ExitCode;

use env_qemu_core::commands::{self, Env, Joined, Left, RunRequest, TapRequest};
use env_qemu_core::model::IfName;
use env_qemu_core::store::FileStore;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::RunArgs;
use crate::cmd::start;
use crate::context::Ctx;
use crate::exit::{Code, Failure};
use crate::output::Out;

use child::TAP_FD;
use user::RunAs;

/// `netns`: `--netns NAME`; COMMAND then runs in that namespace (its network, like
/// `ip netns exec NAME`), where its tap is.
pub async fn run(
    ctx: &Ctx,
    out: Out,
    a: &RunArgs,
    netns: Option<&str>,
) -> Result<ExitCode, Failure> {
    // Who COMMAND runs as, and where, is settled before anything changes.
    let who = RunAs::resolve(a)?;
    let netns = netns.map(open_netns).transpose()?;
    let uses = |s: &str| a.command.iter().any(|c| c.contains(s));
    let wants_fd = a.tap_fd || uses("{tapfd}");
    if a.no_tap && (wants_fd || uses("{tap}")) {
        return Err(Failure::usage(
            "COMMAND uses {tap} or {tapfd}, but --no-tap makes no tap: drop one of them",
        ));
    }
    let store = ctx.store(out).await?;
    let me = std::process::id();
    // Handlers first: a signal during start must neither kill us half-way through the plan
    // nor be lost; it reaches the command as soon as the command exists.
    let mut signals = Signals::new()?;
    let tap = enter(ctx, out, a, &store, me, &who).await?;
    let status = async {
        let fd = match (&tap, wants_fd) {
            (Some(t), true) => Some(ctx.kernel.open_tap(t).await?),
            _ => None,
        };
        let place = Place {
            tap: tap.as_ref(),
            fd,
            netns: netns.as_ref(),
        };
        supervise(out, a, &who, place, &mut signals).await
    }
    .await;
    let left = leave(ctx, out, &store, me).await;
    let code = status?;
    left?;
    Ok(code)
}

/// Starts the bridge unless it runs already, registers this process as a holder, and
/// makes the tap. If the tap cannot be made, leaves again before failing.
async fn enter(
    ctx: &Ctx,
    out: Out,
    a: &RunArgs,
    store: &FileStore,
    me: u32,
    who: &RunAs,
) -> Result<Option<IfName>, Failure> {
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(store, &mut observer);
    let req = RunRequest {
        uplink: start::named_uplink(ctx, &a.start)?,
        bridge: ctx.bridge.clone(),
        shm: start::shm(ctx, &a.start)?,
        foreign_manager: env_qemu_core::plan::ForeignManager::from(a.start.force),
    };
    let joined = commands::join(&mut env, &req, me).await?;
    let bridge = &joined.request().bridge;
    match &joined {
        Joined::Started { req, report } => {
            start::notes(out, report);
            out.say(format!("env-qemu: {} is up on {}", req.bridge, req.uplink));
        }
        Joined::Held { .. } => {}
        Joined::ByHand { .. } => out.say(format!(
            "env-qemu: {bridge} was started by hand: it stays up after the command"
        )),
    }
    if a.no_tap {
        return Ok(None);
    }
    let treq = TapRequest {
        name: None,
        owner: who.tap_owner(),
        group: None,
        holder: Some(me),
    };
    match commands::make_tap(&mut env, &treq).await {
        Ok(made) => {
            let owner = match who.tap_owner() {
                Some(_) => format!(" for {}", who.account().describe()),
                None => String::new(),
            };
            out.say(format!(
                "env-qemu: {} made{owner} and attached to {bridge}",
                made.name
            ));
            Ok(Some(made.name))
        }
        Err(e) => {
            // Already holding the bridge (and maybe its starter): let go before failing.
            let _ = leave_locked(&mut env, out, me, &ctx.bridge).await;
            Err(e.into())
        }
    }
}

/// SIGTERM, SIGHUP and SIGINT, caught from before start until COMMAND has ended.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        let sig =
            |k| signal(k).map_err(|e| Failure::new(Code::Kernel, format!("signal handler: {e}")));
        Ok(Signals {
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
            int: sig(SignalKind::interrupt())?,
        })
    }
}

/// `{tap}` and `{tapfd}` in each argument.
fn substitute(argv: &[String], tap: Option<&IfName>) -> Vec<String> {
    argv.iter()
        .map(|arg| match tap {
            Some(t) => arg
                .replace("{tapfd}", &TAP_FD.to_string())
                .replace("{tap}", t.as_str()),
            None => arg.clone(),
        })
        .collect()
}

fn open_netns(name: &str) -> Result<OwnedFd, Failure> {
    let path = std::path::Path::new("/run/netns").join(name);
    std::fs::File::open(&path).map(OwnedFd::from).map_err(|e| {
        Failure::new(
            Code::NotFound,
            format!(
                "network namespace {}: {e}; list them with `ip netns list`",
                path.display()
            ),
        )
    })
}

/// Where COMMAND runs: its tap (name and, if asked, descriptor) and namespace.
struct Place<'a> {
    tap: Option<&'a IfName>,
    fd: Option<OwnedFd>,
    netns: Option<&'a OwnedFd>,
}

/// Runs COMMAND as `who`; passes SIGTERM, SIGHUP and SIGINT on to its process group, and
/// waits for it either way.
async fn supervise(
    out: Out,
    a: &RunArgs,
    who: &RunAs,
    place: Place<'_>,
    signals: &mut Signals,
) -> Result<ExitCode, Failure> {
    let Place { tap, fd, netns } = place;
    let argv = substitute(&a.command, tap);
    let prog = argv
        .first()
        .cloned()
        .ok_or_else(|| Failure::usage("no command given after --"))?;
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(t) = tap {
        extra.push(("ENV_QEMU_TAP", t.to_string()));
    }
    if fd.is_some() {
        extra.push(("ENV_QEMU_TAP_FD", TAP_FD.to_string()));
    }
    let acc = who.account();
    let spec = child::Spec {
        argv: &argv,
        env: user::environment(std::env::vars_os(), acc, &extra),
        switch_to: who.switch_to(),
        no_new_privs: who.no_new_privs(),
        tap: fd.as_ref(),
        netns,
    };
    if out.verbose {
        out.say(format!(
            "env-qemu: running {prog} as {} (gid {}, groups {}){}",
            acc.describe(),
            acc.gid,
            acc.group_names(),
            if who.no_new_privs() {
                ", no new privileges"
            } else {
                ""
            }
        ));
    }
    let terminal = child::owns_terminal();
    let mut child = child::spawn(spec, terminal).map_err(|e| {
        Failure::new(
            Code::NotFound,
            format!("running {prog} as {}: {e}", acc.describe()),
        )
    })?;
    // COMMAND has its copy: ours goes, so the tap loses its carrier when COMMAND ends.
    drop(fd);
    let group = child.id().map(|p| nix::unistd::Pid::from_raw(-(p as i32)));
    use nix::sys::signal::Signal;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = signals.term.recv() => forward(out, group, Signal::SIGTERM),
            _ = signals.hup.recv() => forward(out, group, Signal::SIGHUP),
            _ = signals.int.recv() => forward(out, group, Signal::SIGINT),
        }
    };
    if terminal {
        child::take_terminal_back();
    }
    let status =
        status.map_err(|e| Failure::new(Code::Kernel, format!("waiting for {prog}: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Passes `s` on to COMMAND's process group.
fn forward(out: Out, group: Option<nix::unistd::Pid>, s: nix::sys::signal::Signal) {
    out.say(format!("env-qemu: passing {s} to the command"));
    if let Some(g) = group {
        let _ = nix::sys::signal::kill(g, s);
    }
}

/// Whether process `pid` still exists.
fn alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    !matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Deletes this run's tap, unregisters it (and runs that died without leaving); the last
/// one out stops the bridge if no VM tap is left on it.
async fn leave(ctx: &Ctx, out: Out, store: &FileStore, me: u32) -> Result<(), Failure> {
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(store, &mut observer);
    leave_locked(&mut env, out, me, &ctx.bridge).await
}

async fn leave_locked(
    env: &mut Env<'_>,
    out: Out,
    me: u32,
    bridge: &IfName,
) -> Result<(), Failure> {
    match commands::leave(env, me, &alive).await? {
        Left::Stopped { deleted, report } => {
            said_deleted(out, &deleted);
            start::notes(out, &report);
            out.say(format!("env-qemu: {bridge} removed, network restored"));
        }
        Left::Stays {
            deleted,
            holders,
            taps,
        } => {
            said_deleted(out, &deleted);
            let names: Vec<&str> = taps.iter().map(IfName::as_str).collect();
            let by = match (holders, names.is_empty()) {
                (0, true) => "whoever started it by hand".to_string(),
                (n, true) => format!("{n} other run(s)"),
                (_, false) => names.join(", "),
            };
            out.say(format!("env-qemu: {bridge} stays up: still used by {by}"));
        }
        Left::Gone => {}
    }
    Ok(())
}

fn said_deleted(out: Out, deleted: &[IfName]) {
    for d in deleted {
        out.say(format!("env-qemu: {d} deleted"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_and_tapfd_are_substituted_in_every_argument() {
        let argv: Vec<String> = [
            "qemu",
            "-netdev",
            "tap,id=n0,fd={tapfd}",
            "-name",
            "{tap}-{tap}",
        ]
        .map(String::from)
        .to_vec();
        let tap = IfName::new("eqtap1").unwrap();
        assert_eq!(
            substitute(&argv, Some(&tap)),
            [
                "qemu",
                "-netdev",
                "tap,id=n0,fd=3",
                "-name",
                "eqtap1-eqtap1"
            ]
        );
        assert_eq!(substitute(&argv, None), argv);
    }
}
