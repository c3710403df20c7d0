//! Reading and resizing a tmpfs (`findmnt PATH`, `mount -o remount,size=N PATH`).
//!
//! Paths are those of the caller's mount namespace: `setns(CLONE_NEWNET)` does not change
//! the mount namespace. A remount changes the tmpfs *superblock*, which every mount of it
//! shares — in every mount namespace (`ip netns exec`'s private /sys does not isolate it).

use std::fs;
use std::path::{Path, PathBuf};

use env_qemu_core::model::{parse_size, Tmpfs};
use env_qemu_core::ErrorKind;

use crate::errors::Failure;

/// One mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    mount_options: Vec<String>,
    fs_type: String,
    /// Superblock options (`rw,size=65536k,mode=755`).
    super_options: Vec<String>,
}

/// `findmnt -n -o SIZE PATH`: the size limit from the `size=` superblock option (0 when
/// unlimited, as `size=0` means). The kernel keeps it in pages: a size that is not a
/// multiple of the page size reads back rounded up.
pub(crate) fn read(path: &Path) -> Result<Tmpfs, Failure> {
    let (path, mount) = tmpfs_mount(path)?;
    let size_bytes = mount
        .super_options
        .iter()
        .find_map(|o| o.strip_prefix("size="))
        .map(|s| {
            parse_size(s).ok_or_else(|| {
                Failure::kind(
                    ErrorKind::Other,
                    format!("unreadable tmpfs size option size={s}"),
                )
            })
        })
        .transpose()?
        .unwrap_or(0);
    Ok(Tmpfs { path, size_bytes })
}

/// `mount -o remount,size=SIZE PATH`, keeping the mount's other flags.
///
/// Why the flags are passed back: mount(2) with MS_REMOUNT *replaces* the per-mount
/// flags (nosuid, nodev, noexec, ro…) and the superblock flags in MS_RMT_MASK (ro, sync,
/// lazytime…) with what the call gives; without them a remount of a `nosuid,nodev`
/// /dev/shm would silently drop both. tmpfs's own options (mode, uid, nr_inodes) are
/// kept by the kernel when the data string does not mention them.
pub(crate) fn resize(path: &Path, size_bytes: u64) -> Result<(), Failure> {
    let (path, mount) = tmpfs_mount(path)?;
    let flags = mount_flags(&mount);
    let data = format!("size={size_bytes}");
    nix::mount::mount(
        None::<&str>,
        &path,
        None::<&str>,
        flags | nix::mount::MsFlags::MS_REMOUNT,
        Some(data.as_str()),
    )
    .map_err(|e| Failure::from(e).context("mount -o remount"))
}

/// The mount at exactly `path` (the topmost, if several are stacked), checked to be tmpfs.
fn tmpfs_mount(path: &Path) -> Result<(PathBuf, Mount), Failure> {
    let path = fs::canonicalize(path).map_err(|e| Failure::from(e).context("no such path"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mount = mountinfo
        .lines()
        .filter_map(parse_line)
        .rfind(|m| m.mount_point == path)
        .ok_or_else(|| {
            Failure::kind(
                ErrorKind::NotFound,
                format!("{} is not a mount point", path.display()),
            )
        })?;
    if mount.fs_type != "tmpfs" {
        return Err(Failure::kind(
            ErrorKind::Invalid,
            format!("{} is a {} mount, not tmpfs", path.display(), mount.fs_type),
        ));
    }
    Ok((path, mount))
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// fields 5 and 6 are the mount point and per-mount options; after the `-` separator
/// come the type, the source and the superblock options.
fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    let fs_type = right.next()?.to_string();
    let _source = right.next()?;
    let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
    Some(Mount {
        mount_point: PathBuf::from(unescape(left.get(4)?)),
        mount_options: split(left.get(5)?),
        fs_type,
        super_options: split(right.next().unwrap_or_default()),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|o| {
            std::str::from_utf8(o)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The MS_* flags that reproduce the mount's current per-mount and superblock flags.
fn mount_flags(mount: &Mount) -> nix::mount::MsFlags {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    for option in mount.mount_options.iter().chain(&mount.super_options) {
        flags |= match option.as_str() {
            "ro" => F::MS_RDONLY,
            "nosuid" => F::MS_NOSUID,
            "nodev" => F::MS_NODEV,
            "noexec" => F::MS_NOEXEC,
            "noatime" => F::MS_NOATIME,
            "nodiratime" => F::MS_NODIRATIME,
            "relatime" => F::MS_RELATIME,
            "strictatime" => F::MS_STRICTATIME,
            "sync" => F::MS_SYNCHRONOUS,
            "dirsync" => F::MS_DIRSYNC,
            "lazytime" => F::MS_LAZYTIME,
            "mand" => F::MS_MANDLOCK,
            // MS_NOSYMFOLLOW (Linux 5.10) has no nix constant.
            "nosymfollow" => F::from_bits_retain(256),
            _ => F::empty(),
        };
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::MsFlags as F;

    #[test]
    fn parses_mountinfo_lines() {
        let line = "30 25 0:27 / /dev/shm rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs \
                    tmpfs rw,size=65536k,mode=1777";
        let m = parse_line(line).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/dev/shm"));
        assert_eq!(m.fs_type, "tmpfs");
        assert!(m.super_options.contains(&"size=65536k".to_string()));
        assert_eq!(
            mount_flags(&m),
            F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC | F::MS_RELATIME
        );
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape(r"/plain"), "/plain");
    }
}
