//! `add TAP` / `del TAP`, what QEMU's ifup/ifdown scripts call.

use super::journal::{converge_journalled, Record};
use super::{load_started, require_running, CommandError, Env, Report, Unreached};
use crate::converge::Goal;
use crate::model::{DumpFilter, IfName};
use crate::observe::observe_filtered;
use crate::plan::{plan_add, plan_del, TapRecord};

/// `add TAP`: attaches an existing tap to the bridge, up, at the bridge's MTU, recording what it
/// changed (for `del` and `stop`) before the first change. If the goal cannot be reached, the tap
/// is put back as it was.
pub async fn add(env: &mut Env<'_>, tap: &IfName) -> Result<Report, CommandError> {
    let mut state = load_started(env)?;
    require_running(&state)?;
    let live = observe_tap(env, &state.request.bridge, tap).await?;
    let req = state.request.clone();
    let (plan, found) = plan_add(&live, &req.bridge, &req.uplink, tap)?;
    // A tap attached before keeps the record of how it was before that.
    let record = state
        .taps
        .iter()
        .find(|r| &r.name == tap)
        .cloned()
        .unwrap_or(found);
    let mtu = live.net.link(&req.bridge).map_or(0, |b| b.mtu);
    let goal = Goal::Attached {
        req: req.clone(),
        record: record.clone(),
        mtu,
    };
    if plan.is_empty() {
        // Attached already: verified, nothing saved.
        let progress = converge_journalled(env, "add", &goal, None, Record::Required).await?;
        return Ok(Report { plan, progress });
    }
    // Saved before the first change, so `del` and `stop --force` know what to put back
    // even if this process dies half-way.
    state.taps.retain(|r| &r.name != tap);
    state.taps.push(record.clone());
    state.journal.clear();
    env.store.save(&state)?;
    let command = format!("add {tap}");
    let forward =
        converge_journalled(env, &command, &goal, Some(plan.clone()), Record::Required).await?;
    if forward.reached() {
        // The saved state is already the one after the add: only its journal goes.
        env.store.clear_journal()?;
        return Ok(Report {
            plan,
            progress: forward,
        });
    }
    let back = Goal::Detached { req, record };
    let back = converge_journalled(
        env,
        &format!("{command} (going back)"),
        &back,
        None,
        Record::BestEffort,
    )
    .await?;
    if back.reached() {
        state.taps.retain(|r| &r.name != tap);
    }
    state.journal.clear();
    env.store.save(&state)?;
    Err(Unreached {
        command,
        forward,
        back: Some(back),
        next: format!("run `env-qemu del {tap}`, or `env-qemu stop --force`"),
    }
    .into())
}

/// `del TAP`: detaches a tap `add` attached and puts back what `add` changed on it. Never goes
/// back: what cannot be done is reported.
pub async fn del(env: &mut Env<'_>, tap: &IfName) -> Result<Report, CommandError> {
    let mut state = load_started(env)?;
    require_running(&state)?;
    let live = observe_tap(env, &state.request.bridge, tap).await?;
    let req = state.request.clone();
    let record = state.taps.iter().find(|r| &r.name == tap).cloned();
    let plan = plan_del(&live, &req.bridge, &req.uplink, tap, record.as_ref())?;
    // A tap env-qemu did not attach keeps what it has; only its port goes.
    let record = record.unwrap_or_else(|| {
        let t = live.net.link(tap).expect("plan_del checked the tap");
        TapRecord {
            name: tap.clone(),
            mtu: t.mtu,
            up: t.up,
        }
    });
    let goal = Goal::Detached { req, record };
    let command = format!("del {tap}");
    let progress =
        converge_journalled(env, &command, &goal, Some(plan.clone()), Record::Required).await?;
    state.journal.clear();
    if progress.reached() {
        state.taps.retain(|r| &r.name != tap);
        env.store.save(&state)?;
        return Ok(Report { plan, progress });
    }
    env.store.save(&state)?;
    Err(Unreached {
        command,
        forward: progress,
        back: None,
        next: format!("run `env-qemu del {tap}` again, or `env-qemu stop --force`"),
    }
    .into())
}

/// The tap and the bridge, links only: `add` and `del` read nothing else, so their cost
/// does not grow with the taps already on the bridge or the routes of the namespace.
pub(super) async fn observe_tap(
    env: &Env<'_>,
    bridge: &IfName,
    tap: &IfName,
) -> Result<crate::model::Snapshot, CommandError> {
    let filter = DumpFilter::links(&[tap, bridge]);
    Ok(observe_filtered(env.kernel, &filter, &[], None).await?)
}
