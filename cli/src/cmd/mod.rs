//! One file per subcommand.

mod add;
mod demo;
mod doctor;
mod generate;
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
        Command::Sudoers(a) => return sudoers::run(a).map(|()| ExitCode::SUCCESS),
        Command::Generate(a) => return generate::run(a).map(|()| ExitCode::SUCCESS),
        Command::Demo => return demo::run(out).await.map(|()| ExitCode::SUCCESS),
        _ => {}
    }
    let ctx = Ctx::open(g)?;
    match &cli.command {
        Command::Start(a) => start::run(&ctx, out, a).await,
        Command::Add(a) => add::run(&ctx, out, &a.tap, true).await,
        Command::Del(a) => add::run(&ctx, out, &a.tap, false).await,
        Command::Stop(a) => stop::run(&ctx, out, a).await,
        Command::Status => status::run(&ctx, out).await,
        Command::Run(a) => return run::run(&ctx, out, a).await,
        Command::Tap(c) => tap::run(&ctx, out, c).await,
        Command::Doctor(a) => doctor::run(&ctx, out, a).await,
        Command::Sudoers(_) | Command::Generate(_) | Command::Demo => unreachable!("handled above"),
    }
    .map(|()| ExitCode::SUCCESS)
}
