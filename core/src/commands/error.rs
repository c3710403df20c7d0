//! Why a command did nothing, or did not finish.

use std::fmt;

use crate::converge::Progress;
use crate::exec::StepError;
use crate::kernel::KernelError;
use crate::model::IfName;
use crate::plan::PlanError;
use crate::state::Phase;
use crate::store::StoreError;
use crate::verify::Difference;

/// Why a command did nothing, or did not finish. Each variant's message names the object and what
/// to run next; the CLI maps the variants to exit codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A command other than `start` found no saved state for this bridge and namespace.
    #[error("not started here (no saved state for this bridge and namespace); run `env-qemu start` first")]
    NotStarted,
    /// `start` found a state saved by an earlier `start` that finished.
    #[error("already started: bridge {bridge} on {uplink}; run `env-qemu stop` first, or `env-qemu status` to see it")]
    AlreadyStarted {
        /// The bridge that is up.
        bridge: IfName,
        /// Its uplink.
        uplink: IfName,
    },
    /// `start`, `add`… found a state whose last command did not finish (a crash, a kill): only
    /// `stop` is allowed.
    #[error("the last command on bridge {bridge} was interrupted while {}; run `env-qemu stop` to bring back the saved state", match .phase { Phase::Starting => "starting", Phase::Stopping => "stopping", Phase::Running => "running" })]
    Interrupted {
        /// The bridge of that state.
        bridge: IfName,
        /// Where its command was.
        phase: Phase,
    },
    /// The saved state was written for another network namespace (see [`crate::state::NetnsId`]).
    #[error("the saved state belongs to network namespace {saved}, not {here}; use --netns or --state-dir to point at the right one")]
    WrongNamespace {
        /// The namespace the state names.
        saved: String,
        /// The namespace this command runs in.
        here: String,
    },
    /// The request cannot be planned (nothing was changed).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The state could not be read (a dump failed) before anything was changed.
    #[error("reading the current state: {0}")]
    Observe(#[from] KernelError),
    /// The command could not reach its goal; see [`Unreached`].
    #[error(transparent)]
    Unreached(Box<Unreached>),
    /// The state file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `confirm`, `revert`: nothing is pending (never armed, or confirmed already).
    #[error("no change is pending{}{}; `env-qemu status` shows the bridge", bridge.as_ref().map(|b| format!(" on bridge {b}")).unwrap_or_else(|| " (nothing is started on this bridge and namespace)".to_string()), last.as_deref().map(|l| format!(": {l}")).unwrap_or_default())]
    NoPending {
        /// `None` when no state is saved.
        bridge: Option<IfName>,
        /// What happened to the last one, if the log says.
        last: Option<String>,
    },
    /// `confirm`, `revert`: the change was reverted before (or by) this command.
    #[error("the change{bridge} is reverted: {how}; the network is as before `start --confirm`. Run `env-qemu start --confirm` again to retry")]
    AlreadyReverted {
        /// ` on bridge NAME`, when known.
        bridge: String,
        /// What reverted it and when, as the log of pending changes has it.
        how: String,
    },
    /// `confirm`: the proof does not hold; the change stays pending.
    #[error("confirm refused: {}; the change on bridge {bridge} stays pending and is reverted in {} s unless confirmed (`env-qemu confirm --extend=SECONDS` gives more time)", reasons.join("; and "), left.as_secs())]
    ProofFailed {
        /// The bridge of the pending change.
        bridge: IfName,
        /// Why the proof does not hold (each a sentence).
        reasons: Vec<String>,
        /// How long until the change is reverted.
        left: std::time::Duration,
    },
    /// `start --confirm`: the revert agent did not answer; no change was made.
    #[error("start --confirm: the revert agent did not start ({why}); nothing was changed. `env-qemu doctor` shows how this host runs it")]
    Unarmed {
        /// Why the agent did not start or answer.
        why: String,
    },
}

impl From<Unreached> for CommandError {
    fn from(u: Unreached) -> Self {
        CommandError::Unreached(Box::new(u))
    }
}

/// A command that did not reach its goal: what it tried, whether it went back to the
/// state it found, and what a dump shows still differs.
#[derive(Debug)]
pub struct Unreached {
    /// `start`, `stop`, `add tap0`…
    pub command: String,
    /// Toward the command's goal.
    pub forward: Progress,
    /// Back toward the state the command found, for commands that go back (`start`,
    /// `add`); `stop` and `del` never go back.
    pub back: Option<Progress>,
    /// What `stop` (or the next command) is to do about it.
    pub next: String,
}

impl Unreached {
    /// True when a dump proved the command went back to exactly what it found.
    pub fn nothing_changed(&self) -> bool {
        self.back.as_ref().is_some_and(Progress::reached)
    }

    /// The refused step that started it, if a step was refused.
    pub fn cause(&self) -> Option<&StepError> {
        self.forward.first_failure()
    }

    /// The kernel's refusal behind it, for the exit code.
    pub fn kernel_error(&self) -> Option<&KernelError> {
        self.cause().and_then(StepError::kernel_error)
    }

    /// What still differs from where the command ended up aiming: the found state if it
    /// went back, else its goal.
    pub fn residual(&self) -> &[Difference] {
        match &self.back {
            Some(b) => &b.residual,
            None => &self.forward.residual,
        }
    }
}

impl fmt::Display for Unreached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.command;
        let fwd = &self.forward;
        match (self.cause(), &fwd.stopped) {
            (Some(e), _) => write!(f, "{e}")?,
            (None, Some(why)) => write!(f, "{c}: {why}")?,
            (None, None) => write!(f, "{c}: did not reach its goal")?,
        }
        write!(
            f,
            "\n{c}: {} after {} round(s) did not reach {}",
            plural(fwd.applied, "change"),
            fwd.rounds,
            fwd.goal.describe()
        )?;
        if let Some(why) = fwd.stopped.as_ref().filter(|_| self.cause().is_some()) {
            write!(f, " ({why})")?;
        }
        let last = match &self.back {
            Some(b) if b.reached() => {
                return write!(
                    f,
                    "\n{c}: went back ({}); a dump shows {}: nothing was changed",
                    plural(b.applied, "change"),
                    b.goal.describe()
                );
            }
            Some(b) => {
                write!(
                    f,
                    "\n{c}: going back did not reach {} either",
                    b.goal.describe()
                )?;
                b
            }
            None => fwd,
        };
        write!(f, "\n{c}: a dump shows what still differs:")?;
        for d in &last.residual {
            write!(f, "\n  - {d}")?;
            for op in &d.fix {
                write!(f, "\n      fix: {op}")?;
            }
        }
        write!(f, "\n{c}: {}", self.next)
    }
}

impl std::error::Error for Unreached {}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
