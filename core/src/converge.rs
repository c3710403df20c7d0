//! Convergence: run a plan, observe, verify, and re-plan on surprise.
//!
//! Every command has a [`Goal`], a target state of the objects it touches. A round runs a
//! plan ([`crate::exec::execute`]); after it, or at its first refused step, the objects are
//! dumped again and compared with the goal ([`crate::verify`]). What still differs is
//! planned again from that dump, for at most [`MAX_ROUNDS`] rounds. The model of the kernel
//! is never complete (a DHCP client deconfigures the NIC mid-handover, the kernel deletes
//! an address's temporary siblings with it, a prefix route expires): the plan is a first
//! guess, the dump is the truth.

use crate::exec::{execute, Event, Journal, Machine, Round, StepError, StepFailure};
use crate::kernel::KernelError;
use crate::model::{DumpFilter, IfName, Snapshot};
use crate::observe::{observe_machine, Scope};
use crate::plan::{
    plan_add, plan_bridged, plan_detached, plan_gone, plan_made, plan_stop, MadeTap, Plan,
    PlanError, StartRequest, TapRecord, VmTaps,
};
use crate::verify::{self, Difference, Expected, Presence};

/// Rounds of plan and execution before a command gives up on its goal.
pub const MAX_ROUNDS: u32 = 3;

/// A target state, with what it takes to observe it and to plan toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// `start`: the NIC a bridge port, its configuration on the bridge.
    Bridged {
        /// The snapshot taken before `start`.
        pre: Snapshot,
        /// What `start` was asked.
        req: StartRequest,
    },
    /// `stop`, or a `start` going back: the NIC as the pre-start snapshot has it, the
    /// bridge gone, the taps env-qemu attached detached and as they were, the taps it made
    /// deleted.
    Restored {
        /// The snapshot taken before `start`.
        pre: Snapshot,
        /// What `start` was asked.
        req: StartRequest,
        /// Taps `add` attached, with what to put back on them.
        taps: Vec<TapRecord>,
        /// Taps env-qemu made ([`MadeTap`]): gone at the end.
        made: Vec<IfName>,
        /// Whether VM taps still attached are detached (or deleted, if made) or refused.
        vms: VmTaps,
    },
    /// `add TAP`: on the bridge, up, at the bridge's MTU (`mtu`).
    Attached {
        /// The bridge's request.
        req: StartRequest,
        /// The tap, as it was before `add`.
        record: TapRecord,
        /// The bridge's MTU, which the tap takes.
        mtu: u32,
    },
    /// `del TAP`, or an `add` going back: off the bridge, as the record has it.
    Detached {
        /// The bridge's request.
        req: StartRequest,
        /// The tap, as it was before `add`.
        record: TapRecord,
    },
    /// `tap create`, and `run`'s tap: the tap exists, owned as asked, attached like
    /// [`Goal::Attached`].
    Made {
        /// The bridge's request.
        req: StartRequest,
        /// The tap to make, as recorded before its creation.
        tap: MadeTap,
        /// The bridge's MTU, which the tap takes.
        mtu: u32,
    },
    /// `tap delete`, a `run` leaving, or a tap creation going back: the tap is gone.
    Deleted {
        /// The tap's name.
        name: IfName,
    },
}

impl Goal {
    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            Goal::Bridged { req, .. } => format!("{} bridged on {}", req.uplink, req.bridge),
            Goal::Restored { req, .. } => {
                format!(
                    "{} as it was before start, without {}",
                    req.uplink, req.bridge
                )
            }
            Goal::Attached { req, record, .. } => {
                format!("{} attached to {}", record.name, req.bridge)
            }
            Goal::Detached { req, record } => {
                format!("{} detached from {}", record.name, req.bridge)
            }
            Goal::Made { req, tap, .. } => {
                format!("{} made and attached to {}", tap.name, req.bridge)
            }
            Goal::Deleted { name } => format!("{name} deleted"),
        }
    }

    /// What is read to plan toward the goal and to verify it.
    pub fn scope(&self) -> Scope {
        match self {
            Goal::Bridged { req, .. } => Scope {
                tmpfs: shm(req),
                managers: vec![req.uplink.clone(), req.bridge.clone()],
                ..Scope::devices(&[&req.uplink, &req.bridge])
            },
            Goal::Restored {
                req, taps, made, ..
            } => {
                let mut links: Vec<&IfName> = vec![&req.uplink, &req.bridge];
                links.extend(taps.iter().map(|t| &t.name));
                links.extend(made.iter());
                Scope {
                    filter: DumpFilter {
                        ports_of: Some(req.bridge.clone()),
                        ..DumpFilter::devices(&links)
                    },
                    sysctls: vec![req.uplink.clone(), req.bridge.clone()],
                    neighbours: vec![req.uplink.clone(), req.bridge.clone()],
                    tmpfs: shm(req),
                    managers: vec![req.uplink.clone(), req.bridge.clone()],
                }
            }
            Goal::Attached { req, record, .. } | Goal::Detached { req, record } => Scope {
                filter: DumpFilter::links(&[&record.name, &req.bridge]),
                ..Scope::default()
            },
            Goal::Made { req, tap, .. } => Scope {
                filter: DumpFilter::links(&[&tap.name, &req.bridge]),
                ..Scope::default()
            },
            Goal::Deleted { name } => Scope {
                filter: DumpFilter::links(&[name]),
                ..Scope::default()
            },
        }
    }

    /// The steps from `live` to the goal.
    pub fn plan(&self, live: &Snapshot) -> Result<Plan, PlanError> {
        match self {
            Goal::Bridged { pre, req } => plan_bridged(pre, req, live),
            Goal::Restored {
                pre,
                req,
                taps,
                made,
                vms,
            } => plan_restored(pre, req, taps, made, live, *vms),
            Goal::Attached { req, record, .. } => {
                plan_add(live, &req.bridge, &req.uplink, &record.name).map(|(p, _)| p)
            }
            Goal::Detached { req, record } => Ok(plan_detached(live, &req.bridge, record)),
            Goal::Made { req, tap, .. } => plan_made(live, &req.bridge, &req.uplink, tap),
            Goal::Deleted { name } => plan_gone(live, name),
        }
    }

    /// The goal as data, for [`Expected::differences`].
    pub fn expected(&self) -> Expected {
        match self {
            Goal::Bridged { pre, req } => verify::bridged(pre, req),
            Goal::Restored {
                pre,
                req,
                taps,
                made,
                ..
            } => {
                let mut e = verify::restored(pre, req, taps);
                e.links
                    .extend(made.iter().map(|m| (m.clone(), Presence::Absent)));
                e
            }
            Goal::Attached { req, record, mtu } => {
                verify::attached(&record.name, &req.bridge, *mtu)
            }
            Goal::Detached { record, .. } => verify::detached_tap(record),
            Goal::Made { req, tap, mtu } => verify::attached(&tap.name, &req.bridge, *mtu),
            Goal::Deleted { name } => Expected {
                links: vec![(name.clone(), Presence::Absent)],
                ..Expected::default()
            },
        }
    }
}

/// [`plan_stop`], the taps env-qemu made deleted first (which takes them off the bridge).
/// Unless `vms` says detach, a made tap still attached is a VM still running: refused
/// like any other attached tap.
fn plan_restored(
    pre: &Snapshot,
    req: &StartRequest,
    taps: &[TapRecord],
    made: &[IfName],
    live: &Snapshot,
    vms: VmTaps,
) -> Result<Plan, PlanError> {
    if made.is_empty() {
        return plan_stop(pre, req, taps, live, vms);
    }
    let mut plan = Plan::default();
    for name in made {
        match live.net.link(name) {
            Some(l) if l.kind.is_tap() => plan.steps.extend(plan_gone(live, name)?.steps),
            Some(l) => plan.notes.push(format!(
                "{name} is now a {}, not the tap env-qemu made: left alone",
                l.kind.name()
            )),
            None => {}
        }
    }
    let rest = match vms {
        VmTaps::Detach => {
            // Deleted above: not ports to detach any more.
            let mut without = live.clone();
            without.net.links.retain(|l| !made.contains(&l.name));
            plan_stop(pre, req, taps, &without, vms)?
        }
        VmTaps::Refuse => plan_stop(pre, req, taps, live, vms)?,
    };
    plan.steps.extend(rest.steps);
    plan.notes.extend(rest.notes);
    Ok(plan)
}

fn shm(req: &StartRequest) -> Option<std::path::PathBuf> {
    req.shm.as_ref().map(|s| s.path.clone())
}

/// How a convergence ended.
#[derive(Debug, Clone)]
pub struct Progress {
    /// What was aimed at; [`Goal::describe`] names it.
    pub goal: Goal,
    /// Rounds run (each a plan executed, in full or up to a refused step).
    pub rounds: u32,
    /// Operations that changed the kernel.
    pub applied: usize,
    /// Steps the kernel refused while their purpose did not hold, in order.
    pub failures: Vec<StepError>,
    /// Why rounds stopped before the goal was verified, if they did: the planner
    /// refused, the same step failed twice, the journal could not be written.
    pub stopped: Option<String>,
    /// What still differs from the goal in the last dump: empty when it was reached.
    pub residual: Vec<Difference>,
    /// The last dump, compared with the goal.
    pub live: Snapshot,
}

impl Progress {
    /// True when the last dump matched the goal.
    pub fn reached(&self) -> bool {
        self.residual.is_empty()
    }

    /// The first refused step: the one the user needs to hear about.
    pub fn first_failure(&self) -> Option<&StepError> {
        self.failures.first()
    }
}

/// Where a convergence writes and reports.
pub struct Sink<'a> {
    /// Where each step is recorded before it runs.
    pub journal: &'a mut dyn Journal,
    /// Receives each round, step and verification as it happens.
    pub observer: &'a mut (dyn FnMut(Event<'_>) + Send),
}

/// Runs `first` (or a plan made from a fresh dump when `None`), then verifies and re-plans
/// until the goal is verified, [`MAX_ROUNDS`] rounds have run, or no further step can be
/// planned. Fails only when the kernel cannot be read at all.
pub async fn converge(
    machine: Machine<'_>,
    sink: &mut Sink<'_>,
    command: &str,
    goal: &Goal,
    first: Option<Plan>,
) -> Result<Progress, KernelError> {
    let expected = goal.expected();
    let scope = goal.scope();
    let name = goal.describe();
    let mut p = Progress {
        goal: goal.clone(),
        rounds: 0,
        applied: 0,
        failures: Vec::new(),
        stopped: None,
        residual: Vec::new(),
        live: Snapshot::default(),
    };
    let mut next = first;
    loop {
        let plan = match next.take() {
            Some(plan) if !plan.is_empty() => plan,
            _ => {
                let live = observe_machine(machine, &scope).await?;
                let residual = expected.differences(&live);
                (sink.observer)(Event::Verified {
                    goal: &name,
                    differences: residual.len(),
                });
                let done = residual.is_empty() || p.rounds >= MAX_ROUNDS || p.stopped.is_some();
                p.residual = residual;
                p.live = live;
                if done {
                    return Ok(p);
                }
                match goal.plan(&p.live) {
                    Ok(plan) if !plan.is_empty() => plan,
                    Ok(_) => {
                        p.stopped = Some("no step of env-qemu's sets it right".into());
                        return Ok(p);
                    }
                    Err(e) => {
                        p.stopped = Some(e.to_string());
                        return Ok(p);
                    }
                }
            }
        };
        p.rounds += 1;
        (sink.observer)(Event::Round {
            round: p.rounds,
            goal: &name,
            steps: plan.steps.len(),
        });
        let at = Round {
            command,
            round: p.rounds,
        };
        let done = execute(machine, &plan, at, sink.journal, sink.observer).await;
        p.applied += done.applied;
        if let Some(e) = done.failed {
            if let Some(why) = give_up(&p.failures, &e) {
                p.stopped = Some(why);
            }
            p.failures.push(e);
        }
    }
}

/// Whether a refused step ends the rounds: a journal that cannot be written (no step may
/// run unrecorded), or the same step refused with the same error twice in a row (a new
/// plan made the same bet and lost).
fn give_up(before: &[StepError], now: &StepError) -> Option<String> {
    if let StepFailure::Journal(e) = &now.cause {
        return Some(format!("the journal cannot be written: {e}"));
    }
    let errno = |e: &StepError| e.kernel_error().and_then(|k| k.errno);
    let again = before
        .last()
        .is_some_and(|b| b.op == now.op && errno(b) == errno(now));
    again.then(|| format!("`{}` was refused twice", now.op))
}
