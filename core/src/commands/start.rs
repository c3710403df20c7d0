//! `start`: snapshot, plan, save the snapshot, then apply.

use super::journal::execute_journalled;
use super::{CommandError, Env};
use crate::model::DumpFilter;
use crate::observe::{observe_filtered, scoped};
use crate::plan::{plan_start, Plan, StartRequest};
use crate::state::{Phase, State};
use crate::store::StateStore;

/// The plan `start` would run now, without running it (`--dry-run`).
pub async fn plan(env: &Env<'_>, req: &StartRequest) -> Result<Plan, CommandError> {
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe_start(env, req, shm).await?;
    Ok(plan_start(&snap, req)?)
}

/// The uplink and the bridge name, with their addresses and routes in every table: all
/// the plan moves, and all `stop` restores. Routes through other devices are not read, so
/// their number does not slow `start`; the planner's check that a moved route is alone
/// with its key therefore sees the uplink's own duplicates (`ip route append` on it), not
/// an IPv4 route appended with the same key on another device.
async fn observe_start(
    env: &Env<'_>,
    req: &StartRequest,
    shm: Option<&std::path::Path>,
) -> Result<crate::model::Snapshot, CommandError> {
    let filter = DumpFilter::devices(&[&req.uplink, &req.bridge]);
    Ok(observe_filtered(env.kernel, &filter, &[&req.uplink], shm).await?)
}

/// Refuses when a state is saved already: started, or interrupted and awaiting `stop`.
/// A state saved in another namespace is refused as such, not taken for this one's.
pub fn ensure_not_started(store: &dyn StateStore, netns: &str) -> Result<(), CommandError> {
    match store.load()? {
        None => Ok(()),
        Some(st) if st.netns != netns => Err(CommandError::WrongNamespace {
            saved: st.netns,
            here: netns.to_string(),
        }),
        Some(st) => Err(match st.phase {
            Phase::Running => CommandError::AlreadyStarted {
                bridge: st.request.bridge,
                uplink: st.request.uplink,
            },
            phase => CommandError::Interrupted {
                bridge: st.request.bridge,
                phase,
            },
        }),
    }
}

pub async fn start(env: &mut Env<'_>, req: &StartRequest) -> Result<Plan, CommandError> {
    ensure_not_started(env.store, &env.netns)?;
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe_start(env, req, shm).await?;
    let plan = plan_start(&snap, req)?;

    // The snapshot is on disk before the first change: from here on, a crash at any
    // instant leaves something `stop` recovers from.
    let mut state = State::new(env.netns.clone(), req.clone(), scoped(&snap, &req.uplink));
    env.store.save(&state)?;
    match execute_journalled(env, &plan, "start").await {
        Ok(()) => {
            state.phase = Phase::Running;
            state.journal.clear();
            env.store.save(&state)?;
            Ok(plan)
        }
        Err(e) => {
            if e.rolled_back() {
                env.store.remove()?;
            }
            Err(e.into())
        }
    }
}
