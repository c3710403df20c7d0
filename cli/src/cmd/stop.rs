//! `env-qemu stop [--force]`.

use env_qemu_backend_netlink::SystemClock;
use env_qemu_core::commands;
use env_qemu_core::plan::VmTaps;

use crate::args::StopArgs;
use crate::context::Ctx;
use crate::exit::Failure;
use crate::output::Out;
use crate::statedir;

pub async fn run(ctx: &Ctx, out: Out, a: &StopArgs) -> Result<(), Failure> {
    if a.stale {
        return stale(ctx, out, a.dry_run).await;
    }
    let mut observer = out.observer();
    if a.dry_run {
        // Changes nothing: an older version's state file is read where it is.
        let found = ctx.find_store().await?;
        if found.stale_at_key {
            return Err(commands::CommandError::NotStarted.into());
        }
        let _lock = found.store.lock()?;
        let mut env = ctx.env(&found.store, &mut observer);
        env.netns = found.netns_id.clone();
        let (plan, _) = commands::plan_stop(&env, vm_taps(a)).await?;
        out.plan(&plan);
        return Ok(());
    }
    let store = ctx.store(out).await?;
    let _lock = store.lock()?;
    let mut env = ctx.env(&store, &mut observer);
    // A pending change (`start --confirm`) ended by hand: logged, its agent told.
    let boot = super::confirm::this_boot()?;
    let pending = commands::peek(&store, &boot).ok().flatten();
    let report = commands::stop(&mut env, vm_taps(a)).await;
    if let Some(p) = &pending {
        let clock = SystemClock;
        let now = commands::Now {
            clock: &clock,
            boot_id: &boot,
        };
        commands::log_stopped(&store, now, p, report.is_ok());
        super::confirm::poke(p);
    }
    let report = report?;
    super::start::notes(out, &report);
    out.say(format!(
        "env-qemu: {} removed ({} operations); verified by a dump: {}",
        ctx.bridge,
        report.progress.applied,
        report.progress.goal.describe()
    ));
    Ok(())
}

/// `stop --stale`: removes the state files of network namespaces that no longer exist, and
/// nothing else (no network change: their bridges went with their namespaces).
async fn stale(ctx: &Ctx, out: Out, dry_run: bool) -> Result<(), Failure> {
    let files = ctx.stale_files().await?;
    let (certain, doubtful): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.certain);
    for f in &certain {
        if dry_run {
            println!("rm {}", f.file.display());
        } else if statedir::remove_stale(f)? {
            out.say(format!(
                "env-qemu: removed stale state file {}",
                f.describe_removed()
            ));
        } else {
            out.say(format!(
                "env-qemu: left {}: it changed since it was found stale; run `env-qemu status` again",
                f.file.display()
            ));
        }
    }
    for f in &doubtful {
        out.say(format!("env-qemu: left {}", f.describe()));
    }
    if certain.is_empty() && !dry_run {
        out.say(format!(
            "env-qemu: no state file of a namespace that no longer exists in {}",
            ctx.state_dir.display()
        ));
    }
    Ok(())
}

/// `--force`: detach the VMs' taps; otherwise refuse while they are attached.
fn vm_taps(a: &StopArgs) -> VmTaps {
    if a.force {
        VmTaps::Detach
    } else {
        VmTaps::Refuse
    }
}
