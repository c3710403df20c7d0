//! One file per subcommand.

mod add;
mod agent;
mod confirm;
mod demo;
mod doctor;
mod generate;
mod launcher;
mod run;
mod start;
mod status;
mod stop;
mod sudoers;
mod tap;

use std::process::ExitCode;

use crate::args::{Cli, Command};
use crate::context::Ctx;
use crate::exit::Failure;
use crate::output::Out;

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let g = &cli.global;
    let out = Out {
        quiet: g.quiet,
        verbose: g.verbose,
        json: g.json,
    };
    match &cli.command {
        Command::Sudoers(a) => return sudoers::run(g, a).map(|()| ExitCode::SUCCESS),
        Command::Launcher(a) => return launcher::run(g, out, a).map(|()| ExitCode::SUCCESS),
        Command::Generate(a) => return generate::run(a).map(|()| ExitCode::SUCCESS),
        Command::Demo => return demo::run(out).await.map(|()| ExitCode::SUCCESS),
        _ => {}
    }
    if matches!(
        cli.command,
        Command::Start(_)
            | Command::Add(_)
            | Command::Del(_)
            | Command::Stop(_)
            | Command::Tap(_)
            | Command::Confirm(_)
            | Command::Revert
    ) {
        shield_signals();
    }
    if let Command::Agent(a) = &cli.command {
        return agent::run(g, out, a).await.map(|()| ExitCode::SUCCESS);
    }
    let ctx = Ctx::open(g).await?;
    // A pending change that is due (its deadline passed, its agent gone) is reverted
    // before anything else.
    settle(&ctx, out, verb(&cli.command)).await?;
    match &cli.command {
        Command::Start(a) => start::run(&ctx, out, g, a).await,
        Command::Confirm(a) => confirm::run(&ctx, out, a).await,
        Command::Revert => {
            let store = ctx.store(out).await?;
            confirm::revert(&ctx, out, &store).await
        }
        Command::Add(a) => add::run(&ctx, out, &a.tap, add::Verb::Attach).await,
        Command::Del(a) => add::run(&ctx, out, &a.tap, add::Verb::Detach).await,
        Command::Stop(a) => stop::run(&ctx, out, a).await,
        Command::Status => status::run(&ctx, out).await,
        Command::Run(a) => return run::run(&ctx, out, a, g.netns.as_deref()).await,
        Command::Tap(c) => tap::run(&ctx, out, c).await,
        Command::Doctor(a) => doctor::run(&ctx, out, a).await,
        Command::Sudoers(_)
        | Command::Launcher(_)
        | Command::Generate(_)
        | Command::Demo
        | Command::Agent(_) => {
            unreachable!("handled above")
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

/// How the log names a command that settled a pending change.
fn verb(c: &Command) -> &'static str {
    match c {
        Command::Start(_) => "env-qemu start",
        Command::Add(_) => "env-qemu add",
        Command::Del(_) => "env-qemu del",
        Command::Stop(_) => "env-qemu stop",
        Command::Status => "env-qemu status",
        Command::Confirm(_) => "env-qemu confirm",
        Command::Revert => "env-qemu revert",
        Command::Run(_) => "env-qemu run",
        Command::Tap(_) => "env-qemu tap",
        Command::Doctor(_) => "env-qemu doctor",
        _ => "env-qemu",
    }
}

/// Reverts the pending change of this bridge and namespace if it is due: its deadline
/// passed, its agent is gone (killed, its PID namespace dead), or the start that armed it
/// died. Looked at without the lock first, so commands find nothing to do cheaply (and
/// `status` needs no write access) while the change is safely pending.
async fn settle(ctx: &Ctx, out: Out, by: &str) -> Result<(), Failure> {
    use env_qemu_backend_netlink::{agent_alive, boot_id, SystemClock};
    use env_qemu_core::pending::Clock;
    let Ok(boot) = boot_id() else {
        return Ok(());
    };
    let found = ctx.find_store().await?;
    if found.stale_at_key {
        return Ok(());
    }
    // An unreadable state is the command's own business to report.
    let Ok(Some(p)) = env_qemu_core::commands::peek(&found.store, &boot) else {
        return Ok(());
    };
    let clock = SystemClock;
    let alive = agent_alive(&p);
    if alive && p.deadline.is_some_and(|d| clock.boottime() < d) {
        return Ok(());
    }
    let store = ctx.store(out).await?;
    let _lock = match store.lock() {
        Ok(l) => l,
        // Someone without write access (`status` as a user): the agent, or a command run
        // as root, reverts it.
        Err(env_qemu_core::store::StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            out.say(format!(
                "note: the pending change on {} is due to be reverted; run env-qemu as root to revert it now",
                ctx.bridge
            ));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    let now = env_qemu_core::commands::Now {
        clock: &clock,
        boot_id: &boot,
    };
    let Some(r) = env_qemu_core::commands::settle(&mut env, now, &agent_alive, by).await? else {
        return Ok(());
    };
    if agent_alive(&r.pending) {
        confirm::poke(&r.pending);
    } else {
        // Its agent will not: its copy of the binary goes.
        let _ = std::fs::remove_dir_all(crate::agent::agent_dir(&ctx.state_dir, &r.pending.token));
    }
    out.say(format!(
        "env-qemu: the pending change on {} was reverted first, because {}; verified by a dump: {}",
        ctx.bridge,
        r.cause,
        r.report.progress.goal.describe()
    ));
    Ok(())
}

/// A plan runs to its end (or its rollback) even if the SSH connection drops (SIGHUP) or
/// someone presses Ctrl-C: dying between two steps would leave a half-bridged host. Plans
/// take milliseconds; `stop` is the way back.
fn shield_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN installs no handler code; nothing runs in signal context.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}
