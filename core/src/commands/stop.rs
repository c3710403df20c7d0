//! `stop`: the diff from the live state back to the saved one. Also the recovery after a
//! crashed or interrupted start, add, del or stop.

use super::journal::execute_journalled;
use super::{load_started, CommandError, Env};
use crate::model::{DumpFilter, IfName};
use crate::observe::{observe_filtered, observe_neighbours};
use crate::plan::{plan_stop, Plan};
use crate::state::{Phase, State};

/// The plan `stop` would run now (`--dry-run`), with the state it was computed from.
pub async fn plan(env: &Env<'_>, force: bool) -> Result<(Plan, State), CommandError> {
    let state = load_started(env)?;
    let req = &state.request;
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    // The uplink, the bridge and its ports, the taps env-qemu attached: what the plan
    // restores or detaches, without reading the other devices and their routes.
    let mut links: Vec<&IfName> = vec![&req.uplink, &req.bridge];
    links.extend(state.taps.iter().map(|t| &t.name));
    let filter = DumpFilter {
        ports_of: Some(req.bridge.clone()),
        ..DumpFilter::devices(&links)
    };
    let mut live = observe_filtered(env.kernel, &filter, &[&req.uplink], shm).await?;
    for dev in [&req.bridge, &req.uplink] {
        if live.net.link(dev).is_some() {
            observe_neighbours(env.kernel, &mut live, dev).await?;
        }
    }
    let plan = plan_stop(&state.pre, req, &state.taps, &live, force)?;
    Ok((plan, state))
}

pub async fn stop(env: &mut Env<'_>, force: bool) -> Result<Plan, CommandError> {
    let (plan, mut state) = plan(env, force).await?;
    let before = state.phase;
    state.phase = Phase::Stopping;
    state.journal.clear();
    env.store.save(&state)?;
    let result = execute_journalled(env, &plan, "stop").await;
    match result {
        Ok(()) => {
            env.store.remove()?;
            Ok(plan)
        }
        Err(e) => {
            if e.rolled_back() {
                state.phase = before;
                state.journal.clear();
                env.store.save(&state)?;
            }
            Err(e.into())
        }
    }
}
