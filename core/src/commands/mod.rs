//! The commands as whole transactions: observe, plan, persist, converge, verify, record.
//! The CLI and the property tests drive env-qemu through these, so both exercise the same
//! paths.

mod confirm;
mod drift;
mod error;
mod journal;
mod made;
mod run;
mod start;
mod stop;
mod tap;
mod uplink;

pub use confirm::{
    agent_wake, confirm, extend, log_stopped, peek, revert, settle, AgentAlive, AgentStep,
    Confirmed, Now, Reverted, Wake,
};
pub use drift::drift;
pub use error::{CommandError, Unreached};
pub use made::{delete_tap, make_tap, Made, TapRequest, TAP_PREFIX};
pub use run::{join, leave, Joined, Left, RunRequest};
pub use start::{ensure_not_started, plan as plan_start, start, start_confirmed, Arming, Guard};
pub use stop::{plan as plan_stop, stop};
pub use tap::{add, del};
pub use uplink::choose_uplink;

use crate::converge::Progress;
use crate::exec::Event;
use crate::kernel::Kernel;
use crate::plan::Plan;
use crate::state::{Phase, State};
use crate::store::StateStore;

/// What every command works with.
pub struct Env<'a> {
    /// The kernel of the namespace the command acts on: a `NetlinkKernel`, or a simulated
    /// `SimKernel` in tests.
    pub kernel: &'a dyn Kernel,
    /// The programs that manage the uplink ([`crate::host::NoHost`] where none is reachable).
    pub host: &'a dyn crate::host::Host,
    /// Where the state is saved and the journal appended (a file, or memory in tests).
    pub store: &'a dyn StateStore,
    /// The identity of the namespace `kernel` acts on (see [`State::netns`]).
    pub netns: String,
    /// Receives each round and step as it happens (progress output, checks in tests).
    pub observer: &'a mut (dyn FnMut(Event<'_>) + Send),
}

/// What a command that reached its goal did: its first plan (what `--dry-run` showed) and
/// how it converged, verified by a dump.
#[derive(Debug)]
pub struct Report {
    /// The plan as first made: what `--dry-run` would have printed.
    pub plan: Plan,
    /// How it converged: rounds, steps applied, the verification.
    pub progress: Progress,
}

/// Loads the state a command other than `start` needs, refusing one from another namespace.
fn load_started(env: &Env<'_>) -> Result<State, CommandError> {
    let state = env.store.load()?.ok_or(CommandError::NotStarted)?;
    if state.netns != env.netns {
        return Err(CommandError::WrongNamespace {
            saved: state.netns,
            here: env.netns.clone(),
        });
    }
    Ok(state)
}

fn require_running(state: &State) -> Result<(), CommandError> {
    match state.phase {
        Phase::Running => Ok(()),
        phase => Err(CommandError::Interrupted {
            bridge: state.request.bridge.clone(),
            phase,
        }),
    }
}
