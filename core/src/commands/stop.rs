//! `stop`: converge from the live state back on the saved one. Also the recovery after a
//! crashed or interrupted start, add, del or stop. Never goes back to the bridged state:
//! what it cannot finish, the next `stop` does.

use super::journal::{converge_journalled, Record};
use super::{load_started, CommandError, Env, Report, Unreached};
use crate::converge::Goal;
use crate::observe::observe_machine;
use crate::plan::{plan_stop, Plan, VmTaps};
use crate::state::{Phase, State};

/// The plan `stop` would run now (`--dry-run`), with the state it was computed from.
pub async fn plan(env: &Env<'_>, vms: VmTaps) -> Result<(Plan, State), CommandError> {
    let state = load_started(env)?;
    let goal = goal(&state, vms);
    let machine = crate::exec::Machine {
        kernel: env.kernel,
        host: env.host,
    };
    let live = observe_machine(machine, &goal.scope()).await?;
    let plan = plan_stop(&state.pre, &state.request, &state.taps, &live, vms)?;
    Ok((plan, state))
}

fn goal(state: &State, vms: VmTaps) -> Goal {
    Goal::Restored {
        pre: state.pre.clone(),
        req: state.request.clone(),
        taps: state.taps.clone(),
        made: state.made.iter().map(|m| m.name.clone()).collect(),
        vms,
    }
}

/// `stop`: brings the host back to the saved pre-start snapshot and removes the state. VM taps
/// still attached are refused ([`crate::plan::VmTaps::Refuse`], nothing changed) or detached first
/// ([`crate::plan::VmTaps::Detach`]). Works after a crashed `start` too; a second `stop` finds
/// [`CommandError::NotStarted`].
pub async fn stop(env: &mut Env<'_>, vms: VmTaps) -> Result<Report, CommandError> {
    let (plan, mut state) = plan(env, vms).await?;
    state.phase = Phase::Stopping;
    state.journal.clear();
    env.store.save(&state)?;
    let goal = goal(&state, vms);
    let progress =
        converge_journalled(env, "stop", &goal, Some(plan.clone()), Record::Required).await?;
    if progress.reached() {
        env.store.remove()?;
        return Ok(Report { plan, progress });
    }
    // The state stays: `stop` run again finishes the job.
    state.journal.clear();
    env.store.save(&state)?;
    Err(Unreached {
        command: "stop".into(),
        forward: progress,
        back: None,
        next:
            "the saved state is kept: run `env-qemu stop` again to finish, or apply the fixes above"
                .into(),
    }
    .into())
}
