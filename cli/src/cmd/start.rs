//! `env-qemu start [IFACE]`.

use env_qemu_core::commands::{self, Env};
use env_qemu_core::model::IfName;
use env_qemu_core::plan::{ShmRequest, StartRequest};

use crate::args::StartArgs;
use crate::context::{ifname, size, Ctx, DEFAULT_SHM};
use crate::exit::Failure;
use crate::output::Out;

/// The uplink named by the arguments, else by the config file; `None`: the core chooses
/// the interface carrying the default route.
pub fn named_uplink(ctx: &Ctx, a: &StartArgs) -> Result<Option<IfName>, Failure> {
    a.iface
        .as_deref()
        .or(ctx.config.uplink.as_deref())
        .map(ifname)
        .transpose()
}

/// The shm request from the arguments, then the config file, then the default.
pub fn shm(ctx: &Ctx, a: &StartArgs) -> Result<Option<ShmRequest>, Failure> {
    let shm_size = a
        .shm_size
        .as_deref()
        .or(ctx.config.shm_size.as_deref())
        .unwrap_or(DEFAULT_SHM);
    Ok(match shm_size {
        "off" => None,
        s => Some(ShmRequest {
            path: a.shm_path.clone(),
            size_bytes: size(s)?,
        }),
    })
}

/// The request from arguments, then the config file, then the defaults.
pub async fn request(ctx: &Ctx, env: &Env<'_>, a: &StartArgs) -> Result<StartRequest, Failure> {
    let uplink = match named_uplink(ctx, a)? {
        Some(name) => name,
        None => commands::choose_uplink(env).await?,
    };
    Ok(StartRequest {
        uplink,
        bridge: ctx.bridge.clone(),
        shm: shm(ctx, a)?,
        force: a.force,
    })
}

pub async fn run(ctx: &Ctx, out: Out, a: &StartArgs) -> Result<(), Failure> {
    // A dry run changes nothing, so it needs no lock (nor root to create one).
    let (store, _lock) = if a.dry_run {
        let found = ctx.find_store().await?;
        if !found.stale_at_key {
            commands::ensure_not_started(&found.store, &found.netns_id)?;
        }
        (found.store, None)
    } else {
        let store = ctx.store(out).await?;
        let lock = store.lock()?;
        commands::ensure_not_started(&store, &ctx.netns_id)?;
        (store, Some(lock))
    };
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    let req = request(ctx, &env, a).await?;
    if a.dry_run {
        out.plan(&commands::plan_start(&env, &req).await?);
        return Ok(());
    }
    let report = commands::start(&mut env, &req).await?;
    notes(out, &report);
    out.say(format!(
        "env-qemu: {} bridged on {} in {} ({} operations); verified by a dump of {}; attach VMs with `env-qemu add TAP` or QEMU's script=/etc/qemu-ifup",
        req.uplink,
        req.bridge,
        ctx.netns_label,
        report.progress.applied,
        checked(&req),
    ));
    Ok(())
}

/// What the verifying dump read: the objects the result is claimed for.
pub fn checked(req: &StartRequest) -> String {
    let mut s = format!("{} and {}", req.uplink, req.bridge);
    if let Some(shm) = &req.shm {
        s.push_str(&format!(" and {}", shm.path.display()));
    }
    s
}

/// The plan's notes, and the surprises met on the way to a verified result.
pub fn notes(out: Out, report: &commands::Report) {
    for n in &report.plan.notes {
        out.say(format!("note: {n}"));
    }
    let p = &report.progress;
    if !p.failures.is_empty() {
        out.say(format!(
            "note: {} step(s) were refused on the way (the host changed under env-qemu); re-planned from fresh dumps in {} rounds",
            p.failures.len(),
            p.rounds
        ));
    }
}
