//! `env-qemu stop [--force]`.

use env_qemu_core::commands::{self, Env};

use crate::args::StopArgs;
use crate::context::Ctx;
use crate::exit::Failure;
use crate::output::Out;

pub async fn run(ctx: &Ctx, out: Out, a: &StopArgs) -> Result<(), Failure> {
    let store = ctx.store();
    let _lock = store.lock()?;
    let mut observer = out.observer();
    let mut env = Env {
        kernel: &ctx.kernel,
        store: &store,
        netns: ctx.netns_id.clone(),
        observer: &mut observer,
    };
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
