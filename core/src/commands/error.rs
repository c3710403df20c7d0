//! Why a command did nothing, or did not finish.

use crate::exec::ExecError;
use crate::kernel::KernelError;
use crate::model::IfName;
use crate::plan::PlanError;
use crate::state::Phase;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("not started here (no saved state for this bridge and namespace); run `env-qemu start` first")]
    NotStarted,
    #[error("already started: bridge {bridge} on {uplink}; run `env-qemu stop` first, or `env-qemu status` to see it")]
    AlreadyStarted { bridge: IfName, uplink: IfName },
    #[error("the last command on bridge {bridge} was interrupted while {}; run `env-qemu stop` to bring back the saved state", match .phase { Phase::Starting => "starting", Phase::Stopping => "stopping", Phase::Running => "running" })]
    Interrupted { bridge: IfName, phase: Phase },
    #[error("the saved state belongs to network namespace {saved}, not {here}; use --netns or --state-dir to point at the right one")]
    WrongNamespace { saved: String, here: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("reading the current state: {0}")]
    Observe(#[from] KernelError),
    #[error(transparent)]
    Exec(Box<ExecError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ExecError> for CommandError {
    fn from(e: ExecError) -> Self {
        CommandError::Exec(Box::new(e))
    }
}
