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
/// // QEMU made tap0 and holds it open.
/// let tap0 = name("tap0");
/// sim.add_tap_with_reader(&tap0);
/// commands::add(&mut env, &tap0).await?;
///
/// let net = sim.net();
/// let tap = net.link(&tap0).unwrap();
/// assert_eq!(tap.master.as_ref(), Some(&lepont));
/// assert!(tap.up);
/// assert_eq!(tap.mtu, net.link(&lepont).unwrap().mtu);
/// # Ok(())
/// # }
/// ```
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
/// let tap0 = name("tap0");
/// sim.add_tap_with_reader(&tap0);
/// let was = sim.net().link(&tap0).unwrap().clone();
/// commands::add(&mut env, &tap0).await?;
/// commands::del(&mut env, &tap0).await?;
///
/// // tap0 is off the bridge, as it was before `add`.
/// let tap = sim.net().link(&tap0).unwrap().clone();
/// assert_eq!(tap.master, None);
/// assert_eq!((tap.up, tap.mtu), (was.up, was.mtu));
/// # Ok(())
/// # }
/// ```
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
