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
    let plan = commands::stop(&mut env, a.force).await?;
    for n in &plan.notes {
        out.say(format!("note: {n}"));
    }
    out.say(format!(
        "env-qemu: {} removed, network restored ({} operations)",
        ctx.bridge,
        plan.steps.len()
    ));
    Ok(())
}
