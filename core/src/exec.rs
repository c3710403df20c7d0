//! The executor: applies one round of a plan step by step, journalling each step before it
//! runs. A step the kernel refuses is looked at again: if what it is for already holds (a
//! deletion of something absent, an addition of something identical already there), it
//! counts as done; otherwise the round ends there and [`crate::converge`] decides what
//! comes next from a fresh observation.

use std::fmt;

use crate::host::Host;
use crate::kernel::{Kernel, KernelError};
use crate::observe::observe_for;
use crate::op::Op;
use crate::plan::Plan;
use crate::state::JournalEntry;
use crate::store::StoreError;
use crate::verify::holds;

/// Receives each step before it runs. A failure here ends the round before that step.
pub trait Journal: Send {
    /// Records `entry` durably enough for `status` to report it. An error stops the step from
    /// running ([`StepFailure::Journal`]).
    fn record(&mut self, entry: &JournalEntry) -> Result<(), StoreError>;
}

/// What the executor and the convergence loop report as they go (progress output,
/// step-by-step invariant checks in tests).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A round begins: round 1 runs the first plan, later rounds a plan made again from a
    /// fresh observation, toward `goal`.
    Round {
        /// 1 for the first plan, 2 or more for a re-plan.
        round: u32,
        /// The goal's name (`bridged`, `restored`…).
        goal: &'a str,
        /// How many steps this round's plan has.
        steps: usize,
    },
    /// The step changed the kernel (or the host).
    Applied {
        /// The round the step belongs to.
        round: u32,
        /// 1-based position of the step in the round's plan.
        step: usize,
        /// Number of steps in the round's plan.
        of: usize,
        /// The operation applied.
        op: &'a Op,
    },
    /// The kernel refused the step, but a dump shows its purpose holds already.
    AlreadyDone {
        /// The round the step belongs to.
        round: u32,
        /// 1-based position of the step in the round's plan.
        step: usize,
        /// Number of steps in the round's plan.
        of: usize,
        /// The operation refused.
        op: &'a Op,
        /// The kernel's refusal (EEXIST, ENOENT…), harmless here.
        error: &'a KernelError,
    },
    /// The kernel refused the step and its purpose does not hold: the round ends here.
    Failed {
        /// The round the step belongs to.
        round: u32,
        /// 1-based position of the step in the round's plan.
        step: usize,
        /// Number of steps in the round's plan.
        of: usize,
        /// The operation that failed.
        op: &'a Op,
        /// Why: the kernel's refusal, or a journal that could not be written.
        error: &'a StepFailure,
    },
    /// A dump of the objects the command touches was compared with `goal`.
    Verified {
        /// The goal's name.
        goal: &'a str,
        /// How many objects still differ from it (0: reached).
        differences: usize,
    },
}

/// Why a step did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StepFailure {
    /// The kernel (or the host) refused the step.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The step's journal entry could not be written (a full disk, a removed state directory), so
    /// the step was not run. The store's error, as text.
    #[error("could not journal it: {0}")]
    Journal(String),
}

impl From<StoreError> for StepFailure {
    fn from(e: StoreError) -> Self {
        StepFailure::Journal(e.to_string())
    }
}

/// A step that failed, and where.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The command (`start`, `add tap0`, `stop`…).
    pub command: String,
    /// The round (1: the first plan).
    pub round: u32,
    /// 1-based position of the step in the round's plan.
    pub step: usize,
    /// Number of steps in the round's plan.
    pub of: usize,
    /// The operation that failed.
    pub op: Op,
    /// Why it failed.
    pub cause: StepFailure,
}

impl StepError {
    /// The kernel's error, when the kernel (not the journal) refused the step.
    pub fn kernel_error(&self) -> Option<&KernelError> {
        match &self.cause {
            StepFailure::Kernel(k) => Some(k),
            StepFailure::Journal(_) => None,
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: step {}/{} `{}` failed: {}",
            self.command, self.step, self.of, self.op, self.cause
        )
    }
}

/// What plans act on: the kernel, and the programs of the host that manage the uplink.
#[derive(Clone, Copy)]
pub struct Machine<'a> {
    /// The kernel all [`Op`]s but [`Op::Host`] go to.
    pub kernel: &'a dyn Kernel,
    /// The programs [`Op::Host`] goes to.
    pub host: &'a dyn Host,
}

impl Machine<'_> {
    /// Applies `op` where it belongs: [`Op::Host`] to the host, the rest to the kernel.
    pub async fn apply(&self, op: &Op) -> Result<(), KernelError> {
        match op {
            Op::Host { host } => self.host.apply(host).await,
            _ => self.kernel.apply(op).await,
        }
    }
}

/// Where a round runs: which command, which round.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The command (`start`, `stop`…), as the journal records it.
    pub command: &'a str,
    /// 1 for the first plan, more for a re-plan.
    pub round: u32,
}

/// What a round did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Steps that changed the kernel.
    pub applied: usize,
    /// The step that ended the round early, if one did.
    pub failed: Option<StepError>,
}

/// Applies `plan` through `kernel` until its end or its first step that fails without its
/// purpose holding.
pub async fn execute(
    machine: Machine<'_>,
    plan: &Plan,
    at: Round<'_>,
    journal: &mut dyn Journal,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> Executed {
    let of = plan.steps.len();
    let mut applied = 0;
    for (i, op) in plan.steps.iter().enumerate() {
        let (round, step) = (at.round, i + 1);
        let entry = JournalEntry {
            command: at.command.to_string(),
            round,
            step,
            of,
            op: op.clone(),
        };
        let outcome = match journal.record(&entry) {
            Ok(()) => machine.apply(op).await.map_err(StepFailure::from),
            Err(e) => Err(StepFailure::from(e)),
        };
        let cause = match outcome {
            Ok(()) => {
                applied += 1;
                observer(Event::Applied {
                    round,
                    step,
                    of,
                    op,
                });
                continue;
            }
            Err(StepFailure::Kernel(error)) => {
                if purpose_holds(machine.kernel, op).await {
                    observer(Event::AlreadyDone {
                        round,
                        step,
                        of,
                        op,
                        error: &error,
                    });
                    continue;
                }
                StepFailure::Kernel(error)
            }
            Err(journal) => journal,
        };
        observer(Event::Failed {
            round,
            step,
            of,
            op,
            error: &cause,
        });
        return Executed {
            applied,
            failed: Some(StepError {
                command: at.command.to_string(),
                round,
                step,
                of,
                op: op.clone(),
                cause,
            }),
        };
    }
    Executed {
        applied,
        failed: None,
    }
}

/// Whether a dump of what `op` touches shows its purpose holding. A kernel that cannot be
/// read says no.
async fn purpose_holds(kernel: &dyn Kernel, op: &Op) -> bool {
    match observe_for(kernel, op).await {
        Ok(live) => holds(op, &live),
        Err(_) => false,
    }
}
