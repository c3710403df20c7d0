//! The write-ahead journal kept inside the state file.

use crate::exec::Journal;
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
