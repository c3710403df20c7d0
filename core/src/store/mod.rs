//! Where [`State`] lives between commands. Saves are atomic: a crash at any instant leaves
//! either the old state or the new one, never a torn file. The journal of the command in
//! flight is appended beside it, one entry per step, instead of saving the whole state
//! before every step.

mod file;
mod journal_file;
pub mod key;
mod memory;

use std::path::PathBuf;

pub use file::{FileStore, StoreLock};
pub use memory::MemoryStore;

use crate::pending::PendingEvent;
use crate::state::{JournalEntry, State};

/// Where a bridge's [`State`] is kept between commands, with the journal of the command in flight
/// and the log of pending changes. [`FileStore`] in production, [`MemoryStore`] in tests.
pub trait StateStore: Send + Sync {
    /// The saved state, its `journal` followed by the entries appended since the save.
    fn load(&self) -> Result<Option<State>, StoreError>;
    /// Replaces the state atomically and durably; entries appended before are dropped
    /// (the caller's `state.journal` is what is kept).
    fn save(&self, state: &State) -> Result<(), StoreError>;
    /// Adds one entry to the journal of the saved state, cheaply: called before every step.
    fn append(&self, entry: &JournalEntry) -> Result<(), StoreError>;
    /// Drops the entries appended since the last save, keeping the saved state: for a
    /// command whose finished state is the one it saved before its first step.
    fn clear_journal(&self) -> Result<(), StoreError>;
    /// Removes the state and its journal (not the log of pending changes).
    fn remove(&self) -> Result<(), StoreError>;
    /// Appends one line to the log of pending changes (`start --confirm`): kept when the
    /// state is removed, so that `confirm` tells an already reverted change from none.
    fn log(&self, event: &PendingEvent) -> Result<(), StoreError>;
    /// That log, oldest first.
    fn logged(&self) -> Result<Vec<PendingEvent>, StoreError>;
}

/// Why the state could not be read or written. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error(
        "state file {path}: {source}; check that the state directory is writable (run as root)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state this version can parse (hand-edited, truncated by a disk error).
    #[error("state file {path} is unreadable ({reason}); env-qemu cannot tell what to restore from it. Inspect it (it is JSON: the uplink's addresses and routes are under `pre`), restore by hand if a bridge is still up (`ip link del BRIDGE`, then the uplink's addresses and routes), and delete the file")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file was written by a version of env-qemu with another format.
    #[error("state file {path} has version {found}, this env-qemu understands {expected}; stop with the version that started")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// This build's ([`crate::state::STATE_VERSION`]).
        expected: u32,
    },
    /// A state or log entry could not be encoded (or an in-memory one decoded): what, and why.
    #[error("state {0}: {1}")]
    Encode(String, String),
}
