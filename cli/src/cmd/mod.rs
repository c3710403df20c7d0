//! One file per subcommand.

mod add;
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
        Command::Start(_) | Command::Add(_) | Command::Del(_) | Command::Stop(_) | Command::Tap(_)
    ) {
        shield_signals();
    }
    let ctx = Ctx::open(g).await?;
    match &cli.command {
        Command::Start(a) => start::run(&ctx, out, a).await,
        Command::Add(a) => add::run(&ctx, out, &a.tap, add::Verb::Attach).await,
        Command::Del(a) => add::run(&ctx, out, &a.tap, add::Verb::Detach).await,
        Command::Stop(a) => stop::run(&ctx, out, a).await,
        Command::Status => status::run(&ctx, out).await,
        Command::Run(a) => return run::run(&ctx, out, a, g.netns.as_deref()).await,
        Command::Tap(c) => tap::run(&ctx, out, c).await,
        Command::Doctor(a) => doctor::run(&ctx, out, a).await,
        Command::Sudoers(_) | Command::Launcher(_) | Command::Generate(_) | Command::Demo => {
            unreachable!("handled above")
        }
    }
    .map(|()| ExitCode::SUCCESS)
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
