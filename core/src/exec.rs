//! The executor: applies a plan step by step, journalling each step before it runs; on the
//! first failure it applies the undos of the steps already done, in reverse, and reports the
//! failed step together with every undo that failed too (it never stops at the first).

use std::fmt;

use crate::kernel::{Kernel, KernelError};
use crate::op::Op;
use crate::plan::Plan;
use crate::state::JournalEntry;
use crate::store::StoreError;

/// Receives each step before it runs. A failure here aborts the plan before that step.
pub trait Journal: Send {
    fn record(&mut self, entry: &JournalEntry) -> Result<(), StoreError>;
}

/// What the executor reports as it goes (progress output, step-by-step invariant checks).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Applied { step: usize, of: usize, op: &'a Op },
    Undone { op: &'a Op },
    UndoFailed { op: &'a Op, error: &'a KernelError },
}

/// Why a step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("could not journal it: {0}")]
    Journal(#[from] StoreError),
}

/// A plan that failed at `step` and was rolled back, completely or not.
#[derive(Debug)]
pub struct ExecError {
    pub command: String,
    pub step: usize,
    pub of: usize,
    pub op: Op,
    pub cause: StepFailure,
    /// Undos that ran fine.
    pub undone: usize,
    /// Undos that failed: the state is neither before nor after the command.
    pub undo_errors: Vec<(Op, KernelError)>,
}

impl ExecError {
    /// True when the rollback left everything as the command found it.
    pub fn rolled_back(&self) -> bool {
        self.undo_errors.is_empty()
    }

    pub fn kernel_error(&self) -> Option<&KernelError> {
        match &self.cause {
            StepFailure::Kernel(k) => Some(k),
            StepFailure::Journal(_) => None,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: step {}/{} `{}` failed: {}",
            self.command, self.step, self.of, self.op, self.cause
        )?;
        if self.rolled_back() {
            write!(
                f,
                "\n{}: rolled back the {} step(s) done before it: nothing was changed",
                self.command, self.undone
            )
        } else {
            write!(f, "\n{}: the rollback failed too:", self.command)?;
            for (op, e) in &self.undo_errors {
                write!(f, "\n  `{op}`: {e}")?;
            }
            write!(
                f,
                "\n{}: run `env-qemu stop` to bring back the saved state",
                self.command
            )
        }
    }
}

impl std::error::Error for ExecError {}

/// Applies `plan` through `kernel`. See the module documentation.
pub async fn execute(
    kernel: &dyn Kernel,
    plan: &Plan,
    command: &str,
    journal: &mut dyn Journal,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<(), ExecError> {
    let of = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let entry = JournalEntry {
            command: command.to_string(),
            step: i + 1,
            of,
            op: step.op.clone(),
            undo: step.undo.clone(),
        };
        let outcome = match journal.record(&entry) {
            Ok(()) => kernel.apply(&step.op).await.map_err(StepFailure::from),
            Err(e) => Err(StepFailure::from(e)),
        };
        match outcome {
            Ok(()) => observer(Event::Applied {
                step: i + 1,
                of,
                op: &step.op,
            }),
            Err(cause) => {
                let (undone, undo_errors) = rollback(kernel, plan, i, observer).await;
                return Err(ExecError {
                    command: command.to_string(),
                    step: i + 1,
                    of,
                    op: step.op.clone(),
                    cause,
                    undone,
                    undo_errors,
                });
            }
        }
    }
    Ok(())
}

/// Undoes steps `0..done` in reverse, collecting every failure.
async fn rollback(
    kernel: &dyn Kernel,
    plan: &Plan,
    done: usize,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> (usize, Vec<(Op, KernelError)>) {
    let mut undone = 0;
    let mut errors = Vec::new();
    for step in plan.steps[..done].iter().rev() {
        for undo in &step.undo {
            match kernel.apply(undo).await {
                Ok(()) => {
                    undone += 1;
                    observer(Event::Undone { op: undo });
                }
                Err(e) => {
                    observer(Event::UndoFailed {
                        op: undo,
                        error: &e,
                    });
                    errors.push((undo.clone(), e));
                }
            }
        }
    }
    (undone, errors)
}
