//! `env-qemu run [start options] -- COMMAND…`: the seed's `emule_pc` script done right.
//! Starts the bridge if needed, runs COMMAND, and stops the bridge when COMMAND exits or on
//! Ctrl-C/SIGTERM/SIGHUP, unless other VMs still use it: each `run` registers its PID in
//! the state, and only the last one out (with no tap left attached) stops. A bridge started
//! by hand is never stopped by `run`. COMMAND's exit status is passed through.

use std::process::ExitCode;

use env_qemu_core::commands;
use env_qemu_core::model::IfName;
use env_qemu_core::store::{FileStore, StateStore};
use env_qemu_core::Kernel;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::RunArgs;
use crate::cmd::start;
use crate::context::Ctx;
use crate::exit::{Code, Failure};
use crate::output::Out;

pub async fn run(ctx: &Ctx, out: Out, a: &RunArgs) -> Result<ExitCode, Failure> {
    let store = ctx.store();
    let me = std::process::id();
    // Handlers first: a signal during start must neither kill us half-way through the plan
    // nor be lost; it reaches the command as soon as the command exists.
    let mut signals = Signals::new()?;
    enter(ctx, out, a, &store, me).await?;
    let status = supervise(out, &a.command, &mut signals).await;
    let left = leave(ctx, out, &store, me).await;
    let code = status?;
    left?;
    Ok(code)
}

/// Starts the bridge unless it runs already, and registers this process as a holder.
async fn enter(
    ctx: &Ctx,
    out: Out,
    a: &RunArgs,
    store: &FileStore,
    me: u32,
) -> Result<(), Failure> {
    let _lock = store.lock()?;
    if store.load()?.is_none() {
        let mut observer = out.observer();
        let mut env = ctx.env(store, &mut observer);
        let req = start::request(ctx, &env, &a.start).await?;
        commands::start(&mut env, &req).await?;
        out.say(format!("env-qemu: {} is up on {}", req.bridge, req.uplink));
        let mut st = store.load()?.ok_or(commands::CommandError::NotStarted)?;
        st.holders.push(me);
        store.save(&st)?;
    } else {
        let mut st = store.load()?.ok_or(commands::CommandError::NotStarted)?;
        if st.holders.is_empty() {
            out.say(format!(
                "env-qemu: {} was started by hand: it stays up after the command",
                st.request.bridge
            ));
        } else {
            st.holders.push(me);
            store.save(&st)?;
        }
    }
    Ok(())
}

/// Runs the command; forwards SIGTERM/SIGHUP to it (Ctrl-C reaches it directly, being in
/// the same process group) and waits for it either way.
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

async fn supervise(out: Out, argv: &[String], signals: &mut Signals) -> Result<ExitCode, Failure> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Failure::usage("no command given after --"))?;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .spawn()
        .map_err(|e| Failure::new(Code::NotFound, format!("running {prog}: {e}")))?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = signals.term.recv() => forward(out, pid, nix::sys::signal::Signal::SIGTERM),
            _ = signals.hup.recv() => forward(out, pid, nix::sys::signal::Signal::SIGHUP),
            _ = signals.int.recv() => out.say("env-qemu: interrupted; waiting for the command to exit"),
        }
    }
    .map_err(|e| Failure::new(Code::Kernel, format!("waiting for {prog}: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn forward(out: Out, pid: Option<nix::unistd::Pid>, s: nix::sys::signal::Signal) {
    out.say(format!("env-qemu: passing {s} to the command"));
    if let Some(pid) = pid {
        let _ = nix::sys::signal::kill(pid, s);
    }
}

/// Unregisters this process (and holders that died without leaving); the last one out stops
/// the bridge if no VM tap is left on it.
async fn leave(ctx: &Ctx, out: Out, store: &FileStore, me: u32) -> Result<(), Failure> {
    let _lock = store.lock()?;
    let Some(mut st) = store.load()? else {
        return Ok(());
    };
    if st.holders.is_empty() {
        return Ok(());
    }
    st.holders
        .retain(|&p| p != me && std::path::Path::new(&format!("/proc/{p}")).exists());
    store.save(&st)?;
    let live = ctx.kernel.dump().await?;
    let br: &IfName = &st.request.bridge;
    let taps: Vec<&str> = live
        .ports_of(br)
        .filter(|l| l.name != st.request.uplink)
        .map(|l| l.name.as_str())
        .collect();
    if !st.holders.is_empty() || !taps.is_empty() {
        out.say(format!(
            "env-qemu: {br} stays up: still used by {}",
            if taps.is_empty() {
                format!("{} other run(s)", st.holders.len())
            } else {
                taps.join(", ")
            }
        ));
        return Ok(());
    }
    let mut observer = out.observer();
    let mut env = ctx.env(store, &mut observer);
    commands::stop(&mut env, false).await?;
    out.say(format!("env-qemu: {br} removed, network restored"));
    Ok(())
}
