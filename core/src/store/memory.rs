//! An in-memory store that still goes through JSON, so tests exercise serialisation.

use std::sync::{Arc, Mutex};

use super::{StateStore, StoreError};
use crate::pending::PendingEvent;
use crate::state::{JournalEntry, State};

/// Clones share one slot: a "restarted process" in a test sees what the crashed one saved.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    slot: Arc<Mutex<Slot>>,
}

/// The saved state and the journal lines appended since, as [`super::FileStore`] keeps them.
#[derive(Debug, Default)]
struct Slot {
    state: Option<String>,
    journal: Vec<String>,
    /// The log of pending changes: kept by `remove`, as the file is.
    log: Vec<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode("memory".into(), e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Encode("memory".into(), e.to_string()))
}

impl StateStore for MemoryStore {
    fn load(&self) -> Result<Option<State>, StoreError> {
        let slot = self.slot();
        let Some(text) = slot.state.as_deref() else {
            return Ok(None);
        };
        let mut state: State = decode(text)?;
        for line in &slot.journal {
            state.journal.push(decode(line)?);
        }
        Ok(Some(state))
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let json = encode(state)?;
        let mut slot = self.slot();
        slot.journal.clear();
        slot.state = Some(json);
        Ok(())
    }

    fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let line = encode(entry)?;
        self.slot().journal.push(line);
        Ok(())
    }

    fn clear_journal(&self) -> Result<(), StoreError> {
        self.slot().journal.clear();
        Ok(())
    }

    fn remove(&self) -> Result<(), StoreError> {
        let mut slot = self.slot();
        slot.state = None;
        slot.journal.clear();
        Ok(())
    }

    fn log(&self, event: &PendingEvent) -> Result<(), StoreError> {
        let line = encode(event)?;
        self.slot().log.push(line);
        Ok(())
    }

    fn logged(&self) -> Result<Vec<PendingEvent>, StoreError> {
        self.slot().log.iter().map(|l| decode(l)).collect()
    }
}
