//! The write-ahead journal of the command in flight, beside the state file: one JSON line
//! per step, appended before the step runs.
//!
//! Why there is no fsync per line: the journal only tells `status` which step a command
//! was in when it died, and gives nothing to `stop`, which diffs the live state against the
//! pre-start snapshot (that snapshot is saved and fsynced once, before the first change).
//! A SIGKILL, an OOM kill or a panic loses nothing written with `write(2)`: the page cache
//! survives the process. Only a power loss or a kernel crash can lose the tail of the
//! journal, and those also reset the network configuration the journal describes.
//!
//! A process killed inside `write(2)` (or a full disk) may leave a torn last line: reading
//! stops at the first line that does not parse, keeping every entry before it.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

/// Appends `entry` as one line, in one `write(2)` on an `O_APPEND` descriptor.
pub(super) fn append<T: serde::Serialize>(path: &Path, entry: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&line)
}

/// The entries in `path` (none when it is absent), up to the first torn or garbled line.
pub(super) fn read<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Vec<T>> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .split(|&b| b == b'\n')
        .map_while(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// Empties the journal (removes the file); absent is fine.
pub(super) fn clear(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
