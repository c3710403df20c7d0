//! Taps env-qemu makes and deletes (`tap create`, `tap delete`, `run`'s tap): recorded in
//! the state before the tap exists, made and attached through the journal, verified by a
//! dump; `stop` deletes what is recorded, so a crash right after the creation leaves
//! nothing behind that `stop` does not know of.

use super::journal::{converge_journalled, Record};
use super::tap::observe_tap;
use super::{load_started, require_running, CommandError, Env, Report, Unreached};
use crate::converge::Goal;
use crate::model::{DumpFilter, IfName};
use crate::plan::{MadeTap, PlanError};
use crate::state::State;

/// What `tap create` and `run` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    /// The tap's name; `None` picks the first free `eqtapN`.
    pub name: Option<IfName>,
    /// Who may open it (root always may).
    pub owner: Option<u32>,
    /// The group allowed to open it.
    pub group: Option<u32>,
    /// The `run` process it is for (see [`MadeTap::holder`]).
    pub holder: Option<u32>,
}

/// A tap made and attached, verified by a dump.
#[derive(Debug)]
pub struct Made {
    /// The tap's name (chosen when the request named none).
    pub name: IfName,
    /// The command's plan and convergence.
    pub report: Report,
}

/// The prefix of the names [`make_tap`] picks.
pub const TAP_PREFIX: &str = "eqtap";

/// Makes a persistent tap owned as asked and attaches it to the bridge. The tap is in the
/// saved state before its creation; if the goal cannot be reached, the tap is deleted
/// again (verified by a dump) and forgotten.
pub async fn make_tap(env: &mut Env<'_>, req: &TapRequest) -> Result<Made, CommandError> {
    let mut state = load_started(env)?;
    require_running(&state)?;
    let name = match &req.name {
        Some(n) => n.clone(),
        None => free_name(env, &state).await?,
    };
    let start = state.request.clone();
    let live = observe_tap(env, &start.bridge, &name).await?;
    if live.net.link(&name).is_some() {
        return Err(PlanError::TapNameTaken(name).into());
    }
    let tap = MadeTap {
        name: name.clone(),
        owner: req.owner,
        group: req.group,
        holder: req.holder,
    };
    let mtu = live
        .net
        .link(&start.bridge)
        .map(|b| b.mtu)
        .ok_or_else(|| PlanError::NoSuchInterface(start.bridge.clone()))?;
    let goal = Goal::Made {
        req: start,
        tap: tap.clone(),
        mtu,
    };
    let plan = goal.plan(&live)?;
    state.made.retain(|m| m.name != name);
    state.made.push(tap);
    state.journal.clear();
    env.store.save(&state)?;
    let command = format!("tap create {name}");
    let forward =
        converge_journalled(env, &command, &goal, Some(plan.clone()), Record::Required).await?;
    if forward.reached() {
        env.store.clear_journal()?;
        return Ok(Made {
            name,
            report: Report {
                plan,
                progress: forward,
            },
        });
    }
    let back = Goal::Deleted { name: name.clone() };
    let back = converge_journalled(
        env,
        &format!("{command} (going back)"),
        &back,
        None,
        Record::BestEffort,
    )
    .await?;
    if back.reached() {
        state.made.retain(|m| m.name != name);
    }
    state.journal.clear();
    env.store.save(&state)?;
    Err(Unreached {
        command,
        forward,
        back: Some(back),
        next: format!("run `env-qemu tap delete {name}`, or `env-qemu stop --force`"),
    }
    .into())
}

/// The first `eqtapN` that is neither an interface nor recorded as made, looked up by name
/// a few at a time: the cost does not grow with the rest of the namespace.
async fn free_name(env: &Env<'_>, state: &State) -> Result<IfName, CommandError> {
    const BATCH: usize = 16;
    let mut from = 0;
    loop {
        let names: Vec<IfName> = (from..from + BATCH)
            .map(|i| IfName::new(format!("{TAP_PREFIX}{i}")).expect("a short name"))
            .collect();
        let refs: Vec<&IfName> = names.iter().collect();
        let live = env.kernel.dump_filtered(&DumpFilter::links(&refs)).await?;
        let free = names
            .into_iter()
            .find(|n| live.link(n).is_none() && !state.made.iter().any(|m| &m.name == n));
        if let Some(n) = free {
            return Ok(n);
        }
        from += BATCH;
    }
}

/// Deletes the tap `name` (attached or not), and forgets it as made or attached. Works
/// while nothing is started too (then nothing is saved or journalled: there is nothing
/// for `stop` to recover). Only taps: any other interface is refused.
pub async fn delete_tap(env: &mut Env<'_>, name: &IfName) -> Result<Report, CommandError> {
    let mut state = match env.store.load()? {
        None => None,
        Some(_) => {
            let s = load_started(env)?;
            require_running(&s)?;
            Some(s)
        }
    };
    let recorded = state
        .as_ref()
        .is_some_and(|s| s.made.iter().any(|m| &m.name == name));
    let filter = DumpFilter::links(&[name]);
    let live = crate::observe::observe_filtered(env.kernel, &filter, &[], None).await?;
    if live.net.link(name).is_none() && !recorded {
        return Err(PlanError::NoSuchInterface(name.clone()).into());
    }
    let goal = Goal::Deleted { name: name.clone() };
    let plan = goal.plan(&live)?;
    let record = match state.as_mut() {
        Some(s) => {
            s.journal.clear();
            Record::Required
        }
        None => Record::Nowhere,
    };
    let command = format!("tap delete {name}");
    let progress = converge_journalled(env, &command, &goal, Some(plan.clone()), record).await?;
    if let Some(s) = state.as_mut() {
        if progress.reached() {
            s.made.retain(|m| &m.name != name);
            s.taps.retain(|r| &r.name != name);
        }
        env.store.save(s)?;
    }
    if progress.reached() {
        return Ok(Report { plan, progress });
    }
    Err(Unreached {
        command,
        forward: progress,
        back: None,
        next: format!("run `env-qemu tap delete {name}` again, or `env-qemu stop --force`"),
    }
    .into())
}
