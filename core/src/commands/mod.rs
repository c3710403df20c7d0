//! The commands as whole transactions: observe, plan, persist, execute, record. The CLI and
//! the property tests drive env-qemu through these, so both exercise the same paths.

mod error;
mod journal;
mod start;
mod stop;
mod tap;

pub use error::CommandError;
pub use start::{ensure_not_started, plan as plan_start, start};
pub use stop::{plan as plan_stop, stop};
pub use tap::{add, del};

use crate::exec::Event;
use crate::kernel::Kernel;
use crate::state::{Phase, State};
use crate::store::StateStore;

/// What every command works with.
pub struct Env<'a> {
    pub kernel: &'a dyn Kernel,
    pub store: &'a dyn StateStore,
    /// The identity of the namespace `kernel` acts on (see [`State::netns`]).
    pub netns: String,
    pub observer: &'a mut (dyn FnMut(Event<'_>) + Send),
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
