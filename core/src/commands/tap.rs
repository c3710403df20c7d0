//! `add TAP` / `del TAP`, what QEMU's ifup/ifdown scripts call.

use super::journal::execute_journalled;
use super::{load_started, require_running, CommandError, Env};
use crate::model::{DumpFilter, IfName};
use crate::observe::observe_filtered;
use crate::plan::{plan_add, plan_del, Plan};

pub async fn add(env: &mut Env<'_>, tap: &IfName) -> Result<Plan, CommandError> {
    let mut state = load_started(env)?;
    require_running(&state)?;
    let live = observe_tap(env, &state.request.bridge, tap).await?;
    let req = &state.request;
    let (plan, record) = plan_add(&live, &req.bridge, &req.uplink, tap)?;
    if plan.is_empty() {
        return Ok(plan);
    }
    // Saved before the first change, so `del` and `stop --force` know what to put back
    // even if this process dies half-way.
    state.taps.retain(|r| &r.name != tap);
    state.taps.push(record);
    state.journal.clear();
    env.store.save(&state)?;
    let command = format!("add {tap}");
    let result = execute_journalled(env, &plan, &command).await;
    state.journal.clear();
    match result {
        // The saved state is already the one after the add: only its journal goes.
        Ok(()) => {
            env.store.clear_journal()?;
            Ok(plan)
        }
        Err(e) => {
            if e.rolled_back() {
                state.taps.retain(|r| &r.name != tap);
            }
            env.store.save(&state)?;
            Err(e.into())
        }
    }
}

pub async fn del(env: &mut Env<'_>, tap: &IfName) -> Result<Plan, CommandError> {
    let mut state = load_started(env)?;
    require_running(&state)?;
    let live = observe_tap(env, &state.request.bridge, tap).await?;
    let record = state.taps.iter().find(|r| &r.name == tap).cloned();
    let req = &state.request;
    let plan = plan_del(&live, &req.bridge, &req.uplink, tap, record.as_ref())?;
    let command = format!("del {tap}");
    let result = execute_journalled(env, &plan, &command).await;
    state.journal.clear();
    if result.is_ok() {
        state.taps.retain(|r| &r.name != tap);
    }
    env.store.save(&state)?;
    result.map(|()| plan).map_err(Into::into)
}

/// The tap and the bridge, links only: `add` and `del` read nothing else, so their cost
/// does not grow with the taps already on the bridge or the routes of the namespace.
async fn observe_tap(
    env: &Env<'_>,
    bridge: &IfName,
    tap: &IfName,
) -> Result<crate::model::Snapshot, CommandError> {
    let filter = DumpFilter::links(&[tap, bridge]);
    Ok(observe_filtered(env.kernel, &filter, &[], None).await?)
}
