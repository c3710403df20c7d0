//! The tmpfs that backs QEMU's shared memory (`/dev/shm` by default).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A mounted tmpfs and its size limit. Growing it is a remount (`mount -o remount,size=`),
/// never umount + mount: other programs have files in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Its mount point (`/dev/shm`).
    pub path: PathBuf,
    /// Its size limit in bytes (`size=`), as `statfs` reports it.
    pub size_bytes: u64,
}

/// Parses the sizes `mount -o size=` and `--shm-size` take: `512M`, `2G`, `1048576`, `64k`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The shortest exact spelling of a size (`536870912` → `512M`).
pub fn format_size(bytes: u64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("k", 10)] {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// A duration in seconds as people read it: `45s`, `12m30s`, `3h5m`, `2d4h`.
pub fn format_duration(secs: u32) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(720), "12m");
        assert_eq!(format_duration(750), "12m30s");
        assert_eq!(format_duration(3 * 3600 + 5 * 60 + 9), "3h5m");
        assert_eq!(format_duration(2 * 86400 + 4 * 3600), "2d4h");
    }

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(format_size(4097), "4097");
    }
}
