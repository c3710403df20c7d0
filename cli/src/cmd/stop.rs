//! `env-qemu stop [--force]`.

use env_qemu_core::commands;

use crate::args::StopArgs;
use crate::context::Ctx;
use crate::exit::Failure;
use crate::output::Out;

pub async fn run(ctx: &Ctx, out: Out, a: &StopArgs) -> Result<(), Failure> {
    let store = ctx.store();
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    if a.dry_run {
        let (plan, _) = commands::plan_stop(&env, a.force).await?;
        out.plan(&plan);
        return Ok(());
    }
    let report = commands::stop(&mut env, a.force).await?;
    super::start::notes(out, &report);
    out.say(format!(
        "env-qemu: {} removed ({} operations); verified by a dump: {}",
        ctx.bridge,
        report.progress.applied,
        report.progress.goal.describe()
    ));
    Ok(())
}
