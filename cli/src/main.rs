//! `env-qemu`: the command. Also answers to `qemu-ifup TAP` / `qemu-ifdown TAP` when
//! installed under those names, so QEMU's `script=`/`downscript=` can point straight at it.

mod agent;
mod args;
mod cmd;
mod context;
mod exit;
mod managers;
mod output;
mod statedir;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use args::Cli;
use exit::Failure;

/// `qemu-ifup tap0` is `env-qemu add tap0`; QEMU passes only the tap name.
fn argv() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let prog = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let verb = match prog.as_str() {
        "qemu-ifup" => "add",
        "qemu-ifdown" => "del",
        _ => return args,
    };
    args[0] = "env-qemu".into();
    args.insert(1, verb.into());
    args
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(argv()) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let args::Command::Agent(a) = &cli.command {
        // Before any thread exists: the fork and the signal mask.
        if let Err(e) = agent::prepare_process(a.detach) {
            eprintln!("env-qemu: the revert agent cannot start: {e}");
            return ExitCode::from(1);
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("env-qemu: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            output::line(format_args!("env-qemu: {message}"));
            ExitCode::from(code as u8)
        }
    }
}
