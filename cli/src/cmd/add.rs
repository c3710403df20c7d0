//! `env-qemu add TAP` / `env-qemu del TAP` (and `qemu-ifup` / `qemu-ifdown`).

use env_qemu_core::commands;

use crate::context::{ifname, Ctx};
use crate::exit::Failure;
use crate::output::Out;

/// Which of the two the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `add TAP` (QEMU's `script=`).
    Attach,
    /// `del TAP` (QEMU's `downscript=`).
    Detach,
}

pub async fn run(ctx: &Ctx, out: Out, tap: &str, verb: Verb) -> Result<(), Failure> {
    let tap = ifname(tap)?;
    let store = ctx.store(out).await?;
    // Concurrent adds (several VMs booting) queue here: each reads, changes and writes the
    // state in turn, so no attachment is lost.
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    match verb {
        Verb::Attach => {
            let report = commands::add(&mut env, &tap).await?;
            if report.plan.is_empty() {
                out.say(format!("env-qemu: {tap} is already on {}", ctx.bridge));
            } else {
                out.say(format!("env-qemu: {tap} attached to {}", ctx.bridge));
            }
        }
        Verb::Detach => {
            commands::del(&mut env, &tap).await?;
            out.say(format!("env-qemu: {tap} detached from {}", ctx.bridge));
        }
    }
    Ok(())
}
