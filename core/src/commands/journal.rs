//! The write-ahead journal: each step appended beside the saved state before it runs.

use super::Env;
use crate::exec::{execute, ExecError, Journal};
use crate::plan::Plan;
use crate::state::JournalEntry;
use crate::store::{StateStore, StoreError};

/// Appends each entry to the store's journal before the step runs.
struct StoreJournal<'a> {
    store: &'a dyn StateStore,
}

impl Journal for StoreJournal<'_> {
    fn record(&mut self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.store.append(entry)
    }
}

/// Executes `plan`, journalling each step before it runs. The caller has saved the state
/// the steps belong to (what `stop` needs to recover) before calling this.
pub(super) async fn execute_journalled(
    env: &mut Env<'_>,
    plan: &Plan,
    command: &str,
) -> Result<(), ExecError> {
    let mut journal = StoreJournal { store: env.store };
    execute(env.kernel, plan, command, &mut journal, env.observer).await
}
