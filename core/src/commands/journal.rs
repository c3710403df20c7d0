//! The write-ahead journal kept inside the state file.

use super::Env;
use crate::exec::{execute, ExecError, Journal};
use crate::plan::Plan;
use crate::state::{JournalEntry, State};
use crate::store::{StateStore, StoreError};

/// Appends each entry to the state and saves it before the step runs.
pub(super) struct StateJournal<'a> {
    pub store: &'a dyn StateStore,
    pub state: &'a mut State,
}

impl Journal for StateJournal<'_> {
    fn record(&mut self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.state.journal.push(entry.clone());
        self.store.save(self.state)
    }
}

/// Executes `plan`, journalling each step into `state` (saved before the step runs).
pub(super) async fn execute_journalled(
    env: &mut Env<'_>,
    plan: &Plan,
    command: &str,
    state: &mut State,
) -> Result<(), ExecError> {
    let mut journal = StateJournal {
        store: env.store,
        state,
    };
    execute(env.kernel, plan, command, &mut journal, env.observer).await
}
