//! [`LogFile`]: a daemon's log in a test directory, read whole or from a mark on.

use std::path::{Path, PathBuf};

/// A position in a log: what was written after it is what happened after it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LogMark(u64);

/// A log file some daemon appends to.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    pub fn new(path: impl Into<PathBuf>) -> LogFile {
        LogFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything so far (empty before the daemon wrote anything).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.path).unwrap_or_default()).into_owned()
    }

    /// The end of the log now.
    pub fn mark(&self) -> LogMark {
        LogMark(std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0))
    }

    /// What was written after `mark`.
    pub fn since(&self, mark: LogMark) -> String {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let from = usize::try_from(mark.0)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_a_mark() {
        let dir = crate::guard::ScratchDir::new();
        let log = LogFile::new(dir.join("x.log"));
        assert_eq!(log.mark(), LogMark(0));
        std::fs::write(log.path(), "one\n").unwrap();
        let mark = log.mark();
        std::fs::write(log.path(), "one\ntwo\n").unwrap();
        assert_eq!(log.since(mark), "two\n");
        assert_eq!(log.text(), "one\ntwo\n");
    }
}
