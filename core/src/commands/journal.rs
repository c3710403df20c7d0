//! The journal of a command in flight: each step appended beside the saved state before
//! it runs, so `status` can say where an interrupted command stopped.

use super::Env;
use crate::converge::{converge, Goal, Progress, Sink};
use crate::exec::Journal;
use crate::kernel::KernelError;
use crate::plan::Plan;
use crate::state::JournalEntry;
use crate::store::{StateStore, StoreError};

/// Whether a step may run when its journal entry cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// No: a command moving away from the saved state records every step first.
    Required,
    /// Yes: a command going back to the saved state (the state file on disk already
    /// says how to recover) must not stop half-way because the disk is full.
    BestEffort,
    /// Not at all: no state is saved (`tap delete` while nothing is started), so a journal
    /// would belong to nothing, and there is nothing for `stop` to recover.
    Nowhere,
}

/// Appends each entry to the store's journal before the step runs.
struct StoreJournal<'a> {
    store: &'a dyn StateStore,
    record: Record,
}

impl Journal for StoreJournal<'_> {
    fn record(&mut self, entry: &JournalEntry) -> Result<(), StoreError> {
        if self.record == Record::Nowhere {
            return Ok(());
        }
        match (self.store.append(entry), self.record) {
            (Err(e), Record::Required) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Converges toward `goal`, journalling each step before it runs. The caller has saved
/// the state the steps belong to (what `stop` needs to recover) before calling this.
pub(super) async fn converge_journalled(
    env: &mut Env<'_>,
    command: &str,
    goal: &Goal,
    first: Option<Plan>,
    record: Record,
) -> Result<Progress, KernelError> {
    let mut journal = StoreJournal {
        store: env.store,
        record,
    };
    let mut sink = Sink {
        journal: &mut journal,
        observer: &mut *env.observer,
    };
    let machine = crate::exec::Machine {
        kernel: env.kernel,
        host: env.host,
    };
    converge(machine, &mut sink, command, goal, first).await
}
