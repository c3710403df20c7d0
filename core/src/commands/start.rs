//! `start`: snapshot, plan, save the snapshot, then converge on the bridged state; if it
//! cannot be reached, converge back on the snapshot.

use super::journal::{converge_journalled, Record};
use super::{CommandError, Env, Report, Unreached};
use crate::converge::Goal;
use crate::model::DumpFilter;
use crate::observe::{observe_filtered, observe_neighbours, scoped};
use crate::plan::{plan_start, Plan, StartRequest, VmTaps};
use crate::state::{Phase, State};
use crate::store::StateStore;

/// The plan `start` would run now, without running it (`--dry-run`).
pub async fn plan(env: &Env<'_>, req: &StartRequest) -> Result<Plan, CommandError> {
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe_start(env, req, shm).await?;
    Ok(plan_start(&snap, req)?)
}

/// The uplink and the bridge name, with their addresses and routes in every table: all
/// the plan moves, and all `stop` restores; plus the other routes of the tables the
/// uplink's routes are in, so that the planner sees a route of another device with the
/// same key as one it moves (`route replace` would take that one instead). Routes of other
/// tables are not read: 50,000 of them do not slow `start`.
async fn observe_start(
    env: &Env<'_>,
    req: &StartRequest,
    shm: Option<&std::path::Path>,
) -> Result<crate::model::Snapshot, CommandError> {
    let filter = DumpFilter::devices(&[&req.uplink, &req.bridge]);
    let mut snap = observe_filtered(env.kernel, &filter, &[&req.uplink], shm).await?;
    if snap.net.link(&req.uplink).is_some() {
        observe_neighbours(env.kernel, &mut snap, &req.uplink).await?;
        snap.managers = env.host.managers(std::slice::from_ref(&req.uplink)).await?;
    }
    let mut tables: Vec<u32> = snap.net.routes_via(&req.uplink).map(|r| r.table).collect();
    tables.sort_unstable();
    tables.dedup();
    if !tables.is_empty() {
        let others = DumpFilter {
            tables,
            ..DumpFilter::default()
        };
        let more = env.kernel.dump_filtered(&others).await?;
        let mine = |r: &crate::model::Route| r.via(&req.uplink) || r.via(&req.bridge);
        snap.net
            .routes
            .extend(more.routes.into_iter().filter(|r| !mine(r)));
    }
    Ok(snap)
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

pub async fn start(env: &mut Env<'_>, req: &StartRequest) -> Result<Report, CommandError> {
    ensure_not_started(env.store, &env.netns)?;
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe_start(env, req, shm).await?;
    let plan = plan_start(&snap, req)?;

    // The snapshot is on disk before the first change: from here on, a crash at any
    // instant leaves something `stop` recovers from.
    let pre = scoped(&snap, &req.uplink);
    let mut state = State::new(env.netns.clone(), req.clone(), pre.clone());
    env.store.save(&state)?;
    let goal = Goal::Bridged {
        pre: pre.clone(),
        req: req.clone(),
    };
    let forward =
        converge_journalled(env, "start", &goal, Some(plan.clone()), Record::Required).await?;
    if forward.reached() {
        state.phase = Phase::Running;
        state.journal.clear();
        env.store.save(&state)?;
        return Ok(Report {
            plan,
            progress: forward,
        });
    }
    let back = Goal::Restored {
        pre,
        req: req.clone(),
        taps: Vec::new(),
        made: Vec::new(),
        vms: VmTaps::Detach,
    };
    let back =
        converge_journalled(env, "start (going back)", &back, None, Record::BestEffort).await?;
    // Only a verified way back forgets the snapshot; otherwise `stop` finishes the job.
    if back.reached() {
        env.store.remove()?;
    }
    Err(Unreached {
        command: "start".into(),
        forward,
        back: Some(back),
        next: "run `env-qemu stop` to bring back the saved state".into(),
    }
    .into())
}
