//! The state file: JSON, replaced atomically (temp file in the same directory, fsync,
//! rename, fsync of the directory), read-modify-written under an exclusive `flock`; and
//! beside it, `STATE.journal`, the append-only journal of the command in flight
//! (see [`super::journal_file`]).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{journal_file, StateStore, StoreError};
use crate::pending::PendingEvent;
use crate::state::{JournalEntry, State, STATE_VERSION};

/// Only the `version` field of a state file.
#[derive(serde::Deserialize)]
struct Versioned {
    version: Option<u64>,
}

/// The state saved in a JSON file, with its journal and the log of pending changes beside it
/// (`….journal`, `….log`), locked with `flock`.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

/// Held while a command reads, changes and writes the state; released on drop (and by the
/// kernel if the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl FileStore {
    /// A store for the state file at `path` (nothing is read or created yet).
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `STATE.journal`: the steps of the command in flight, one JSON line each.
    pub fn journal_path(&self) -> PathBuf {
        self.sibling(".journal")
    }

    /// `STATE.confirm.log`: what happened to each pending change (`start --confirm`), one
    /// JSON line each; outlives the state.
    pub fn log_path(&self) -> PathBuf {
        self.sibling(".confirm.log")
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// Blocks until no other env-qemu holds this state, then holds it.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        }
        let lock_path = self.sibling(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io(&lock_path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(self.io(&lock_path, std::io::Error::last_os_error()));
        }
        self.remove_stale_temps();
        Ok(StoreLock { _file: file })
    }
}

impl FileStore {
    /// Every save happens under the lock, so once we hold it any `STATE.tmpPID` beside the
    /// state is the remnant of a process killed mid-save.
    fn remove_stale_temps(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.tmp", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

impl StateStore for FileStore {
    fn load(&self) -> Result<Option<State>, StoreError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        // The version first (skimming the rest), so another version is reported as such;
        // then the state straight from the text, without an intermediate JSON tree.
        let found = serde_json::from_slice::<Versioned>(&text)
            .map_err(|e| corrupt(e.to_string()))?
            .version
            .unwrap_or(0);
        if found != u64::from(STATE_VERSION) {
            return Err(StoreError::Version {
                path: self.path.clone(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: STATE_VERSION,
            });
        }
        let mut state: State = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        let journal = self.journal_path();
        let entries: Vec<JournalEntry> =
            journal_file::read(&journal).map_err(|e| self.io(&journal, e))?;
        state.journal.extend(entries);
        Ok(Some(state))
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let tmp = self.sibling(&format!(".tmp{}", std::process::id()));
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| StoreError::Encode(self.path.display().to_string(), e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&tmp, e));
        }
        // The saved state carries its own journal (`state.journal`), so the file's entries,
        // merged into it by `load`, go. Removed before the rename: a kill in between leaves
        // the previous state without its journal (status then names no step), never the new
        // state with entries of a command that finished.
        let journal = self.journal_path();
        if let Err(e) = journal_file::clear(&journal) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&journal, e));
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io(&self.path, e))?;
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(dir, e))
    }

    fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let journal = self.journal_path();
        journal_file::append(&journal, entry).map_err(|e| self.io(&journal, e))
    }

    fn clear_journal(&self) -> Result<(), StoreError> {
        let journal = self.journal_path();
        journal_file::clear(&journal).map_err(|e| self.io(&journal, e))
    }

    fn remove(&self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&self.path, e)),
        }
        // After the state: a journal without a state is ignored, and the next save clears it.
        let journal = self.journal_path();
        journal_file::clear(&journal).map_err(|e| self.io(&journal, e))
    }

    fn log(&self, event: &PendingEvent) -> Result<(), StoreError> {
        let log = self.log_path();
        journal_file::append(&log, event).map_err(|e| self.io(&log, e))
    }

    fn logged(&self) -> Result<Vec<PendingEvent>, StoreError> {
        let log = self.log_path();
        journal_file::read(&log).map_err(|e| self.io(&log, e))
    }
}
