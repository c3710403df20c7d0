//! `start`: snapshot, plan, save the snapshot, then converge on the bridged state; if it
//! cannot be reached, converge back on the snapshot.

use std::time::Duration;

use super::journal::{converge_journalled, Record};
use super::{CommandError, Env, Report, Unreached};
use crate::converge::Goal;
use crate::model::DumpFilter;
use crate::observe::{observe_filtered, observe_neighbours, scoped};
use crate::pending::{unix_seconds, AgentId, Clock, Happened, Pending, PendingEvent};
use crate::plan::{plan_start, Plan, StartRequest, VmTaps};
use crate::state::{Phase, State};
use crate::store::StateStore;

/// What `start --confirm` adds to `start`: a pending change, and its revert agent
/// started and answering before the first change.
pub struct Arming<'a> {
    /// Random, unique to this change.
    pub token: String,
    /// `/proc/sys/kernel/random/boot_id`: a change is only reverted in the boot it was made in.
    pub boot_id: String,
    /// How long after the end of the plan the change is reverted unless confirmed.
    pub window: Duration,
    /// The clock the window is measured by (CLOCK_BOOTTIME).
    pub clock: &'a dyn Clock,
    /// Starts the revert agent.
    pub guard: &'a mut dyn Guard,
}

/// Starts the revert agent of a pending change.
pub trait Guard: Send {
    /// Starts the agent for `state` (saved, its `pending` set) and waits for its answer:
    /// the agent must hold everything its revert needs before the first change.
    fn arm(&mut self, state: &State) -> Result<AgentId, String>;
}

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

/// `start`: bridges `req.uplink` onto a new bridge `req.bridge`. Observes the uplink, plans
/// ([`crate::plan::plan_start`]), saves the snapshot, then converges on
/// [`crate::converge::Goal::Bridged`]; if that cannot be reached, converges back on the snapshot
/// and returns [`CommandError::Unreached`]. A refused request ([`CommandError::Plan`]) changes
/// nothing.
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
/// // A simulated host: eth0 up, 192.0.2.10/24, default route via 192.0.2.1.
/// let sim = SimKernel::new();
/// sim.add_nic(&eth0, "52:54:00:12:34:56".parse()?, 1500);
/// let up = LinkChange::Up;
/// sim.apply_now(&Op::LinkSet { name: eth0.clone(), change: up })?;
/// let address = Address::new(eth0.clone(), "192.0.2.10".parse()?, 24);
/// sim.apply_now(&Op::AddrAdd { address })?;
/// let gateway = Some("192.0.2.1".parse()?);
/// let route = Route::new("default".parse()?, gateway, Some(eth0.clone()));
/// sim.apply_now(&Op::RouteAdd { route })?;
/// sim.advance_time(); // DAD finishes: the host is settled
///
/// // What the CLI builds for a namespace; here the simulated kernel, no DHCP client,
/// // the state in memory.
/// let store = MemoryStore::new();
/// let mut env = Env {
///     kernel: &sim,
///     host: &NoHost,
///     store: &store,
///     netns: "sim".into(),
///     observer: &mut |_: Event<'_>| {},
/// };
/// let req = StartRequest {
///     uplink: eth0.clone(),
///     bridge: lepont.clone(),
///     shm: None,
///     foreign_manager: ForeignManager::Refuse,
/// };
/// commands::start(&mut env, &req).await?;
///
/// // eth0 is a port of lepont, which carries its address and its routes.
/// let net = sim.net();
/// assert_eq!(net.link(&eth0).unwrap().master.as_ref(), Some(&lepont));
/// assert!(net.addresses_of(&lepont).any(|a| a.cidr() == "192.0.2.10/24"));
/// assert_eq!(net.addresses_of(&eth0).count(), 0);
/// assert!(net.routes_via(&lepont).any(|r| r.dst.is_default()));
/// # Ok(())
/// # }
/// ```
pub async fn start(env: &mut Env<'_>, req: &StartRequest) -> Result<Report, CommandError> {
    run(env, req, None).await.map(|(report, _)| report)
}

/// `start --confirm`: `start`, armed first. Returns the pending change, its deadline
/// counted from the end of the plan.
pub async fn start_confirmed(
    env: &mut Env<'_>,
    req: &StartRequest,
    arming: Arming<'_>,
) -> Result<(Report, Pending), CommandError> {
    let (report, pending) = run(env, req, Some(arming)).await?;
    Ok((
        report,
        pending.expect("an armed start returns its pending change"),
    ))
}

async fn run(
    env: &mut Env<'_>,
    req: &StartRequest,
    mut arming: Option<Arming<'_>>,
) -> Result<(Report, Option<Pending>), CommandError> {
    ensure_not_started(env.store, &env.netns)?;
    let shm = req.shm.as_ref().map(|s| s.path.as_path());
    let snap = observe_start(env, req, shm).await?;
    let plan = plan_start(&snap, req)?;

    // The snapshot is on disk before the first change: from here on, a crash at any
    // instant leaves something `stop` recovers from.
    let pre = scoped(&snap, &req.uplink);
    let mut state = State::new(env.netns.clone(), req.clone(), pre.clone());
    if let Some(a) = &arming {
        let now = a.clock.boottime();
        state.pending = Some(Pending::new(
            a.token.clone(),
            a.boot_id.clone(),
            a.window,
            now,
        ));
    }
    env.store.save(&state)?;
    if let Some(a) = arming.as_mut() {
        // Armed before the first change, or no change.
        match a.guard.arm(&state) {
            Ok(agent) => {
                if let Some(p) = state.pending.as_mut() {
                    p.agent = Some(agent);
                }
                env.store.save(&state)?;
            }
            Err(why) => {
                env.store.remove()?;
                return Err(CommandError::Unarmed { why });
            }
        }
    }
    let goal = Goal::Bridged {
        pre: pre.clone(),
        req: req.clone(),
    };
    let forward =
        converge_journalled(env, "start", &goal, Some(plan.clone()), Record::Required).await?;
    if forward.reached() {
        state.phase = Phase::Running;
        state.journal.clear();
        // The window starts when the plan has ended, verified.
        let armed = arming.as_ref().zip(state.pending.as_mut()).map(|(a, p)| {
            p.plan_ended(a.clock.boottime());
            (a.clock, p.clone())
        });
        env.store.save(&state)?;
        if let Some((clock, p)) = &armed {
            // The state is the record; the log only tells the story.
            let _ = env.store.log(&PendingEvent {
                token: p.token.clone(),
                boot_id: p.boot_id.clone(),
                at: clock.boottime(),
                wall: unix_seconds(clock.wall()),
                event: Happened::Armed {
                    deadline: p.deadline.unwrap_or(p.armed_at),
                    agent: p.agent.clone(),
                },
            });
        }
        let report = Report {
            plan,
            progress: forward,
        };
        return Ok((report, armed.map(|(_, p)| p)));
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
