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
///
/// # Example
///
/// ```
/// # use env_qemu_backend_fake::SimKernel;
/// # use env_qemu_core::commands::{self, Env};
/// # use env_qemu_core::exec::Event;
/// # use env_qemu_core::host::NoHost;
/// # use env_qemu_core::model::{Address, IfName, Route};
/// # use env_qemu_core::op::{LinkChange, Op};
/// # use env_qemu_core::plan::{ForeignManager, StartRequest, VmTaps};
/// # use env_qemu_core::store::MemoryStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let name = |s: &str| IfName::new(s).unwrap();
/// # let (eth0, lepont) = (name("eth0"), name("lepont"));
/// // A simulated host (eth0 up, 192.0.2.10/24, default via 192.0.2.1), started:
/// # let sim = SimKernel::new();
/// # sim.add_nic(&eth0, "52:54:00:12:34:56".parse()?, 1500);
/// # let up = LinkChange::Up;
/// # sim.apply_now(&Op::LinkSet { name: eth0.clone(), change: up })?;
/// # let address = Address::new(eth0.clone(), "192.0.2.10".parse()?, 24);
/// # sim.apply_now(&Op::AddrAdd { address })?;
/// # let gateway = Some("192.0.2.1".parse()?);
/// # let route = Route::new("default".parse()?, gateway, Some(eth0.clone()));
/// # sim.apply_now(&Op::RouteAdd { route })?;
/// # sim.advance_time();
/// let before = sim.net().normalized();
/// #
/// # // What the CLI builds for a namespace; here the simulated kernel, no DHCP client,
/// # // the state in memory.
/// # let store = MemoryStore::new();
/// # let mut env = Env {
/// #     kernel: &sim,
/// #     host: &NoHost,
/// #     store: &store,
/// #     netns: "sim".into(),
/// #     observer: &mut |_: Event<'_>| {},
/// # };
/// # let req = StartRequest {
/// #     uplink: eth0.clone(),
/// #     bridge: lepont.clone(),
/// #     shm: None,
/// #     foreign_manager: ForeignManager::Refuse,
/// # };
/// # commands::start(&mut env, &req).await?;
/// commands::stop(&mut env, VmTaps::Refuse).await?;
///
/// // The bridge is gone and eth0 has its address and routes back, exactly.
/// let net = sim.net();
/// assert!(net.link(&lepont).is_none());
/// assert_eq!(net.normalized(), before);
/// # Ok(())
/// # }
/// ```
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
