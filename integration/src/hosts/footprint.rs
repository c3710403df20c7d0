//! [`Footprint`]: what a confined daemon could leave on the machine, taken before a test
//! and compared after it.
//!
//! The hostname; md5 of the files the daemons' hooks rewrite (`/etc/resolv.conf`,
//! `/etc/hostname`, `/etc/hosts`, the clients' own configuration); the file lists (name,
//! kind, size, modification time) of `/etc` and of every `/run` and `/var/lib` directory
//! the daemons use, and the names directly under `/run`; mounts named `env-qemu-test-…`
//! in the machine's mount namespace. `/run/netns` is left out: other tests (and other
//! people) add and delete namespaces there all the time.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::cmd::run;

/// Files whose content is compared (by md5).
pub const WATCHED_FILES: [&str; 6] = [
    "/etc/resolv.conf",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/dhcpcd.conf",
    "/etc/dhcp/dhclient.conf",
    "/etc/NetworkManager/NetworkManager.conf",
];

/// Trees whose file lists are compared.
pub const WATCHED_TREES: [&str; 11] = [
    "/etc",
    "/var/lib/dhcp",
    "/var/lib/dhcpcd",
    "/var/lib/NetworkManager",
    "/var/lib/misc",
    "/run/dhcpcd",
    "/run/NetworkManager",
    "/run/dbus",
    "/run/resolvconf",
    "/run/systemd/netif",
    "/run/env-qemu",
];

/// Names directly under /run that change for reasons of their own.
const RUN_IGNORED: [&str; 3] = ["netns", "user", "sudo"];

/// A snapshot of the machine's files, hostname and mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub hostname: String,
    /// Path → md5 (`missing` if absent).
    pub md5: BTreeMap<String, String>,
    /// Path → `dir`, `link -> TARGET`, or `file SIZE MTIME_NS`.
    pub files: BTreeMap<String, String>,
    /// /proc/self/mountinfo lines of mounts named `env-qemu-test-…`.
    pub mounts: Vec<String>,
}

impl Footprint {
    pub fn take() -> Footprint {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
        let md5 = WATCHED_FILES
            .iter()
            .map(|f| {
                let sum = run("md5sum", &["--", f])
                    .ok()
                    .and_then(|o| o.split_whitespace().next().map(str::to_string))
                    .unwrap_or_else(|| "missing".to_string());
                (f.to_string(), sum)
            })
            .collect();
        let mut files = BTreeMap::new();
        for tree in WATCHED_TREES {
            walk(Path::new(tree), &mut files);
        }
        if let Ok(entries) = std::fs::read_dir("/run") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !RUN_IGNORED.contains(&name.as_str()) {
                    files
                        .entry(format!("/run/{name}"))
                        .or_insert_with(|| describe(&e.path()));
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("env-qemu-test-"))
            .map(str::to_string)
            .collect();
        Footprint {
            hostname,
            md5,
            files,
            mounts,
        }
    }

    /// What differs from `after`, one line per difference.
    pub fn diff(&self, after: &Footprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.hostname != after.hostname {
            out.push(format!(
                "hostname: {:?} -> {:?}",
                self.hostname, after.hostname
            ));
        }
        map_diff("md5", &self.md5, &after.md5, &mut out);
        map_diff("file", &self.files, &after.files, &mut out);
        for m in after.mounts.iter().filter(|m| !self.mounts.contains(m)) {
            out.push(format!("new mount in the machine's namespace: {m}"));
        }
        out
    }

    /// Panics with the differences if the machine changed since `self` was taken.
    pub fn assert_unchanged(&self) {
        let now = Footprint::take();
        let diff = self.diff(&now);
        assert!(diff.is_empty(), "the machine changed:\n{}", diff.join("\n"));
    }
}

fn map_diff(
    what: &str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{what} {k}: gone (was {v})")),
            Some(w) if w != v => out.push(format!("{what} {k}: {v} -> {w}")),
            Some(_) => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("{what} {k}: new ({v})"));
        }
    }
}

fn describe(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Err(_) => "vanished".to_string(),
        Ok(m) if m.file_type().is_symlink() => format!(
            "link -> {}",
            std::fs::read_link(p)
                .map(|t| t.display().to_string())
                .unwrap_or_default()
        ),
        Ok(m) if m.is_dir() => "dir".to_string(),
        Ok(m) => format!(
            "file {} {}",
            m.len(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec()
        ),
    }
}

/// Every path under `root` (root included, if it exists), symlinks not followed.
fn walk(root: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return;
    };
    out.insert(root.display().to_string(), describe(root));
    if !meta.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        walk(&e.path(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_sees_new_changed_and_gone_files() {
        let dir = crate::guard::ScratchDir::new();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a"), "1").unwrap();
        std::fs::write(dir.join("b"), "1").unwrap();
        let list = || {
            let mut files = BTreeMap::new();
            walk(dir.path(), &mut files);
            files
        };
        let before = list();
        assert_eq!(before.len(), 4, "{before:#?}");
        std::fs::write(dir.join("sub/a"), "22").unwrap();
        std::fs::remove_file(dir.join("b")).unwrap();
        std::fs::write(dir.join("sub/c"), "").unwrap();
        let mut out = Vec::new();
        map_diff("file", &before, &list(), &mut out);
        assert_eq!(out.len(), 3, "{out:#?}");
    }

    #[test]
    fn diff_names_each_change() {
        let before = Footprint {
            hostname: "box".into(),
            md5: [("/etc/resolv.conf".to_string(), "aa".to_string())].into(),
            files: [
                ("/etc/a".to_string(), "file 1 1".to_string()),
                ("/run/x".to_string(), "dir".to_string()),
            ]
            .into(),
            mounts: Vec::new(),
        };
        assert!(before.diff(&before).is_empty());
        let mut after = before.clone();
        after.hostname = "eqt-1-2".into();
        after.md5.insert("/etc/resolv.conf".into(), "bb".into());
        after.files.remove("/run/x");
        after.files.insert("/run/dhcpcd".into(), "dir".into());
        after
            .mounts
            .push("99 1 0:5 / /run rw - tmpfs env-qemu-test-run rw".into());
        let diff = before.diff(&after);
        assert_eq!(diff.len(), 5, "{diff:#?}");
        assert!(diff.iter().any(|d| d.contains("/run/dhcpcd: new")));
        assert!(diff.iter().any(|d| d.contains("/run/x: gone")));
    }
}
