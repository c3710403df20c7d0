//! An in-memory store that still goes through JSON, so tests exercise serialisation.

use std::sync::{Arc, Mutex};

use super::{StateStore, StoreError};
use crate::state::State;

/// Clones share one slot: a "restarted process" in a test sees what the crashed one saved.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    slot: Arc<Mutex<Option<String>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl StateStore for MemoryStore {
    fn load(&self) -> Result<Option<State>, StoreError> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_deref()
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| StoreError::Encode("memory".into(), e.to_string()))
            })
            .transpose()
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let json = serde_json::to_string(state)
            .map_err(|e| StoreError::Encode("memory".into(), e.to_string()))?;
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(json);
        Ok(())
    }

    fn remove(&self) -> Result<(), StoreError> {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}
