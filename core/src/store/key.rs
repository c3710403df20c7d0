//! Which state file belongs to which network namespace and bridge: one file per pair, in
//! one directory (`/run/env-qemu`).
//!
//! - `netns-cookie-COOKIE-BRIDGE.json`: keyed by the namespace's cookie, which the kernel
//!   never gives two namespaces while it runs. A namespace created after another was
//!   deleted (and given its inode number) finds no state of the dead one under its key.
//! - `netns-INODE-BRIDGE.json`: keyed by the inode. Written where the kernel has no cookie
//!   (before Linux 5.14), and by env-qemu versions before cookies: the CLI checks such a
//!   file against the devices it names before taking it for this namespace's, and moves an
//!   older version's file under the cookie key.
//!
//! The two forms never collide: an inode key starts with a digit.

use crate::model::IfName;
use crate::state::NetnsId;

/// What a state file's name says about the namespace it was written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKey {
    /// `netns-cookie-COOKIE-BRIDGE.json`: written where the kernel has namespace cookies.
    Cookie(u64),
    /// `INODE-BRIDGE.json`: written by kernels without cookies, or older env-qemu.
    Inode(u64),
}

/// The state file of `bridge` in the namespace `id`: by cookie where there is one.
pub fn state_file_name(id: &NetnsId, bridge: &IfName) -> String {
    match id.cookie {
        Some(cookie) => format!("netns-cookie-{cookie}-{bridge}.json"),
        None => inode_file_name(id.inode, bridge),
    }
}

/// The inode-keyed name: the only one before cookies, the fallback without them.
pub fn inode_file_name(inode: u64, bridge: &IfName) -> String {
    format!("netns-{inode}-{bridge}.json")
}

/// The key and bridge of a state file's name; `None` for any other file (its lock, its
/// journal, a temporary file of a save, a file of someone else).
pub fn parse_file_name(name: &str) -> Option<(FileKey, IfName)> {
    let rest = name.strip_prefix("netns-")?.strip_suffix(".json")?;
    let (key, rest): (fn(u64) -> FileKey, &str) = match rest.strip_prefix("cookie-") {
        Some(r) => (FileKey::Cookie, r),
        None => (FileKey::Inode, rest),
    };
    let (number, bridge) = rest.split_once('-')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((key(number.parse().ok()?), IfName::new(bridge).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(name: &str) -> IfName {
        IfName::new(name).expect("valid name")
    }

    #[test]
    fn the_cookie_keys_the_file_where_there_is_one() {
        let with = NetnsId {
            inode: 4026532840,
            cookie: Some(4097),
        };
        let without = NetnsId {
            inode: 4026532840,
            cookie: None,
        };
        assert_eq!(
            state_file_name(&with, &br("lepont")),
            "netns-cookie-4097-lepont.json"
        );
        assert_eq!(
            state_file_name(&without, &br("lepont")),
            "netns-4026532840-lepont.json"
        );
        // Two namespaces that had the same inode, one after the other, never share a file.
        let reused = NetnsId {
            cookie: Some(5000),
            ..with
        };
        assert_ne!(
            state_file_name(&with, &br("lepont")),
            state_file_name(&reused, &br("lepont"))
        );
    }

    #[test]
    fn names_read_back_and_other_files_are_not_state_files() {
        for (name, key, bridge) in [
            (
                "netns-cookie-4097-lepont.json",
                FileKey::Cookie(4097),
                "lepont",
            ),
            (
                "netns-4026532840-lepont.json",
                FileKey::Inode(4026532840),
                "lepont",
            ),
            // Bridge names may hold dashes and digits, and look like keys.
            ("netns-12-br-0.json", FileKey::Inode(12), "br-0"),
            ("netns-12-cookie-3.json", FileKey::Inode(12), "cookie-3"),
            ("netns-cookie-7-12.json", FileKey::Cookie(7), "12"),
        ] {
            assert_eq!(parse_file_name(name), Some((key, br(bridge))), "{name}");
        }
        for name in [
            "netns-cookie-4097-lepont.json.lock",
            "netns-cookie-4097-lepont.json.journal",
            "netns-cookie-4097-lepont.json.tmp123",
            "netns--lepont.json",
            "netns-cookie--lepont.json",
            "netns-12.json",
            "netns-12-.json",
            "netns-x1-lepont.json",
            "state.json",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }
}
