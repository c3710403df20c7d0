//! `start`: snapshot, plan, save the snapshot, then apply.

use super::journal::execute_journalled;
use super::{CommandError, Env};
use crate::observe::{observe, scoped};
use crate::plan::{plan_start, Plan, StartRequest};
use crate::state::{Phase, State};
use crate::store::StateStore;

/// The plan `start` would run now, without running it (`--dry-run`).
pub async fn plan(env: &Env<'_>, req: &StartRequest) -> Result<Plan, CommandError> {
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe(env.kernel, &[&req.uplink], shm).await?;
    Ok(plan_start(&snap, req)?)
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
    let snap = observe(env.kernel, &[&req.uplink], shm).await?;
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
