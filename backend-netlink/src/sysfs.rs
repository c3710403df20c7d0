//! `/sys/class/net` of the worker's network namespace, for the facts rtnetlink does not
//! report: a bridge's `addr_assign_type` (MAC set explicitly or inherited from ports),
//! whether a device is wireless, and the tun attributes on kernels older than 4.15.
//!
//! Why not just `/sys`: sysfs shows the network namespace of whoever *mounted* it, not
//! of the reading thread, so after `setns` the machine's `/sys/class/net` still lists
//! the machine's devices (that is why `ip netns exec` remounts /sys in a private mount
//! namespace). Instead the worker creates a *detached* sysfs mount with the new mount
//! API (`fsopen`/`fsconfig`/`fsmount`, Linux 5.2): it belongs to the worker's network
//! namespace, is attached to no mount point (invisible in every mountinfo, no change to
//! any mount namespace) and disappears when its fd closes.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// How to reach the worker namespace's `class/net`.
pub(crate) enum Sysfs {
    /// A detached sysfs mount made inside the namespace.
    Detached(OwnedFd),
    /// The machine's `/sys`: right when the worker inherited the caller's namespace
    /// and /sys belongs to it, the fallback when `fsopen` is refused.
    Host,
    /// Neither: sysfs-only facts are reported as unknown (defaults).
    Unavailable,
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;

impl Sysfs {
    /// Called on the worker thread once it is inside the namespace. `inherited`: the
    /// namespace is the caller's own, so the machine's /sys is an acceptable fallback.
    pub(crate) fn for_current_namespace(inherited: bool) -> Sysfs {
        match detached_sysfs() {
            Ok(fd) => Sysfs::Detached(fd),
            Err(_) if inherited => Sysfs::Host,
            Err(_) => Sysfs::Unavailable,
        }
    }

    /// `/sys/class/net/DEV/ATTR`, as a path the worker can open.
    fn path(&self, dev: &str, attr: &str) -> Option<PathBuf> {
        let rel = format!("class/net/{dev}/{attr}");
        match self {
            Sysfs::Detached(fd) => Some(PathBuf::from(format!(
                "/proc/self/fd/{}/{rel}",
                fd.as_raw_fd()
            ))),
            Sysfs::Host => Some(PathBuf::from("/sys").join(rel)),
            Sysfs::Unavailable => None,
        }
    }

    /// The trimmed content of an attribute file, `None` when absent or unknown.
    pub(crate) fn read(&self, dev: &str, attr: &str) -> Option<String> {
        let text = fs::read_to_string(self.path(dev, attr)?).ok()?;
        Some(text.trim().to_string())
    }

    pub(crate) fn exists(&self, dev: &str, attr: &str) -> bool {
        self.path(dev, attr).is_some_and(|p| p.exists())
    }
}

fn detached_sysfs() -> std::io::Result<OwnedFd> {
    let fs_type: &CStr = c"sysfs";
    // SAFETY: plain syscalls with a valid NUL-terminated string and integer arguments;
    // each returned fd is checked and immediately owned.
    unsafe {
        let fsfd = libc::syscall(libc::SYS_fsopen, fs_type.as_ptr(), FSOPEN_CLOEXEC);
        if fsfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fsfd = OwnedFd::from_raw_fd(fsfd as i32);
        let null = std::ptr::null::<libc::c_char>();
        let created = libc::syscall(
            libc::SYS_fsconfig,
            fsfd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            null,
            null,
            0,
        );
        if created < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mfd = libc::syscall(
            libc::SYS_fsmount,
            fsfd.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY,
        );
        if mfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(mfd as i32))
    }
}
