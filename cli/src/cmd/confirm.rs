//! `env-qemu confirm [--this-session] [--extend=SECONDS]` and `env-qemu revert`: the
//! admin's side of `start --confirm`. Each is one transaction under the state lock, with
//! the agent and any other command: exactly one of them ends the pending change.

use std::time::Duration;

use env_qemu_backend_netlink::{agent_alive, boot_id, SystemClock};
use env_qemu_core::commands::{self, Now};
use env_qemu_core::pending::{BootTime, Clock, Pending, Proof};
use env_qemu_core::store::FileStore;

use crate::args::ConfirmArgs;
use crate::context::Ctx;
use crate::exit::{Code, Failure};
use crate::output::Out;

/// `/proc/sys/kernel/random/boot_id`, as a failure naming it.
pub fn this_boot() -> Result<String, Failure> {
    boot_id().map_err(|e| {
        Failure::new(
            Code::Kernel,
            format!("reading /proc/sys/kernel/random/boot_id: {e}; is /proc mounted?"),
        )
    })
}

/// Seconds as `--confirm=` and `--extend=` take them: a positive number, fractions allowed
/// (`120`, `0.5`).
pub fn seconds(text: &str, option: &str) -> Result<Duration, Failure> {
    let bad = || {
        Failure::usage(format!(
            "{option}={text:?} is not a number of seconds; write it like {option}=120 or {option}=0.5"
        ))
    };
    let s: f64 = text.trim().parse().map_err(|_| bad())?;
    if !(s.is_finite() && s > 0.0 && s <= 31_536_000.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(s))
}

/// Wakes the agent of `pending` (SIGUSR1: look again) once another command ended the
/// change, so it leaves at once instead of at its deadline. Only a live agent, known by
/// its PID running the agent of that change.
pub fn poke(pending: &Pending) {
    let Some(agent) = &pending.agent else { return };
    if agent_alive(pending) {
        // Checked just above; a PID reused within these microseconds is the only way
        // this reaches another process.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent.pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
}

/// When `until` falls, in words: `in 97 s`.
pub fn countdown(clock: &dyn Clock, until: BootTime) -> String {
    let left = clock.boottime().until(until);
    format!("in {:.0} s", left.as_secs_f64().ceil())
}

pub async fn run(ctx: &Ctx, out: Out, a: &ConfirmArgs) -> Result<(), Failure> {
    let store = ctx.store(out).await?;
    if let Some(text) = &a.extend {
        let by = seconds(text, "--extend")?;
        let boot = this_boot()?;
        let clock = SystemClock;
        let now = Now {
            clock: &clock,
            boot_id: &boot,
        };
        let _lock = store.lock()?;
        let mut observer = out.observer();
        let mut env = ctx.env(&store, &mut observer);
        let deadline = commands::extend(&mut env, now, &agent_alive, by).await?;
        out.say(format!(
            "env-qemu: the change on {} is still pending; reverted {} unless confirmed",
            ctx.bridge,
            countdown(&clock, deadline)
        ));
        return Ok(());
    }
    confirm(ctx, out, &store, a.this_session).await
}

/// One confirm transaction on `store`, with the origin of this process.
pub async fn confirm(
    ctx: &Ctx,
    out: Out,
    store: &FileStore,
    this_session: bool,
) -> Result<(), Failure> {
    let boot = this_boot()?;
    let clock = SystemClock;
    let now = Now {
        clock: &clock,
        boot_id: &boot,
    };
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(store, &mut observer);
    let ssh = std::env::var("SSH_CONNECTION").ok();
    let origin = ctx
        .kernel
        .origin(ssh.as_deref(), std::process::id())
        .await?;
    let proof = Proof {
        origin,
        this_session,
    };
    let done = commands::confirm(&mut env, now, &agent_alive, &proof).await?;
    for w in &done.warnings {
        out.say(format!("warning: {w}"));
    }
    poke(&done.pending);
    out.say(format!(
        "env-qemu: confirmed: bridge {} stays in {}; its revert agent stands down",
        ctx.bridge, ctx.netns_label
    ));
    Ok(())
}

pub async fn revert(ctx: &Ctx, out: Out, store: &FileStore) -> Result<(), Failure> {
    let boot = this_boot()?;
    let clock = SystemClock;
    let now = Now {
        clock: &clock,
        boot_id: &boot,
    };
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(store, &mut observer);
    let r = commands::revert(&mut env, now, &agent_alive).await?;
    poke(&r.pending);
    out.say(format!(
        "env-qemu: reverted ({}): {} removed; verified by a dump: {}",
        r.cause,
        ctx.bridge,
        r.report.progress.goal.describe()
    ));
    Ok(())
}
