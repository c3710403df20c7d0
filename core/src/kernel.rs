//! The one interface between plans and a kernel, real or simulated.

use std::fmt;
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{DumpFilter, IfName, Neighbour, NetState, SysctlKey, Tmpfs};
use crate::op::Op;

/// A kernel env-qemu can observe and change: the real one through rtnetlink, or the
/// simulated one. Both see the same [`Op`] values, so journal, undo, fault injection and
/// `--dry-run` are uniform.
#[async_trait]
pub trait Kernel: Send + Sync {
    /// Links, addresses and routes of every table but `local`.
    async fn dump(&self) -> Result<NetState, KernelError>;
    /// Performs one operation, or fails without having changed anything.
    async fn apply(&self, op: &Op) -> Result<(), KernelError>;
    /// `sysctl net.ipv6.conf.DEV.KNOB`.
    async fn read_sysctl(&self, key: &SysctlKey) -> Result<String, KernelError>;
    /// The tmpfs mounted at `path` and its size.
    async fn read_tmpfs(&self, path: &Path) -> Result<Tmpfs, KernelError>;
    /// `ip neigh show [dev DEV]`: the ARP and NDP entries of `dev`, or of every device.
    async fn neighbours(&self, dev: Option<&IfName>) -> Result<Vec<Neighbour>, KernelError>;

    /// What [`DumpFilter::apply`] keeps of [`Kernel::dump`], read without dumping the
    /// rest: commands that concern a few devices do not pay for the whole namespace.
    async fn dump_filtered(&self, filter: &DumpFilter) -> Result<NetState, KernelError>;
}

/// What kind of failure, independent of which errno carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// EEXIST, ENOTEMPTY: the object is there already (a route with the same key, an address,
    /// a link name).
    AlreadyExists,
    /// ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL, ENXIO: the object (or the device it names) does
    /// not exist.
    NotFound,
    /// ENETUNREACH, EHOSTUNREACH, ENETDOWN: a route's gateway is not reachable through its
    /// device, or the device is down.
    Unreachable,
    /// EPERM, EACCES: not allowed (no CAP_NET_ADMIN in the namespace's user namespace).
    PermissionDenied,
    /// EBUSY: the object is in use (a device that is a port elsewhere, a mount in use).
    Busy,
    /// EOPNOTSUPP, EAFNOSUPPORT, EPROTONOSUPPORT: the kernel lacks the feature (IPv6 disabled, a
    /// module missing).
    Unsupported,
    /// EINVAL, ERANGE, E2BIG, ELOOP: the kernel rejected the request's values (an MTU out of range,
    /// a bad attribute).
    Invalid,
    /// ECONNREFUSED, ECONNRESET, EPIPE, EBADF: the kernel (or a host program's control socket)
    /// could not be reached at all (netlink socket gone, namespace deleted).
    Unavailable,
    /// Any other errno, or a failure without one.
    Other,
}

impl ErrorKind {
    /// The errno → kind mapping both backends share, so the same failure gives the same
    /// kind whichever kernel produced it.
    pub fn from_errno(errno: i32) -> ErrorKind {
        match errno {
            libc::EEXIST | libc::ENOTEMPTY => ErrorKind::AlreadyExists,
            libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENXIO => {
                ErrorKind::NotFound
            }
            libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN => ErrorKind::Unreachable,
            libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
            libc::EBUSY => ErrorKind::Busy,
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => ErrorKind::Unsupported,
            libc::EINVAL | libc::ERANGE | libc::E2BIG | libc::ELOOP => ErrorKind::Invalid,
            libc::ECONNREFUSED | libc::ECONNRESET | libc::EPIPE | libc::EBADF => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Other,
        }
    }

    fn words(self) -> &'static str {
        match self {
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Busy => "busy",
            ErrorKind::Unsupported => "not supported",
            ErrorKind::Invalid => "rejected as invalid",
            ErrorKind::Unavailable => "out of reach",
            ErrorKind::Other => "failed",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            ErrorKind::AlreadyExists => "remove it first or pick another name",
            ErrorKind::NotFound => "check it with `ip link`, `ip addr` or `ip route show table all`",
            ErrorKind::Unreachable => {
                "the gateway must be on a subnet of an up device (or the route needs `onlink`)"
            }
            ErrorKind::PermissionDenied => "run as root or with CAP_NET_ADMIN",
            ErrorKind::Busy => {
                "something else holds it (an interface: a macvlan, a bond or another bridge; a mount: a process using it): release it first"
            }
            ErrorKind::Unsupported => "load the kernel module for it (e.g. `modprobe bridge`, `modprobe tun`)",
            ErrorKind::Invalid => "the request does not fit this object; see the kernel's message",
            ErrorKind::Unavailable => "the netlink connection or namespace is gone; run the command again",
            ErrorKind::Other => "see the kernel's message",
        }
    }
}

/// A kernel refusal, naming the object and the fix. Built once, at the backend boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct KernelError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// `interface eth0`, `route default via 192.0.2.1 dev eth0 table 100`…
    pub object: String,
    /// Positive errno, when the kernel gave one.
    pub errno: Option<i32>,
    /// The kernel's extended ack message, if any ("Nexthop has invalid gateway").
    pub detail: Option<String>,
    /// The fix, when the kind's own hint does not fit the object: failures of the host's
    /// programs (a dhcpcd control socket, a PID to signal) are no netlink refusals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl KernelError {
    /// The error for a kernel refusal with `errno` (either sign) on `object`, with the kernel's
    /// extended ack message if any. The errno → kind mapping is [`ErrorKind::from_errno`]; backends
    /// call this once, where the errno arrives.
    pub fn from_errno(errno: i32, object: impl Into<String>, detail: Option<String>) -> Self {
        let errno = errno.abs();
        KernelError {
            kind: ErrorKind::from_errno(errno),
            object: object.into(),
            errno: Some(errno),
            detail,
            fix: None,
        }
    }

    /// An error without an errno (a dump that cannot be parsed, a host program that does not
    /// answer).
    pub fn new(kind: ErrorKind, object: impl Into<String>, detail: impl Into<String>) -> Self {
        KernelError {
            kind,
            object: object.into(),
            errno: None,
            detail: Some(detail.into()),
            fix: None,
        }
    }

    /// Replaces the kind's generic hint with `fix`.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl KernelError {
    /// The refusal in a few words with its errno: `not found (ESRCH)`.
    pub fn kind_words(&self) -> String {
        match self.errno {
            Some(e) => format!("{} ({})", self.kind.words(), errno_name(e)),
            None => self.kind.words().to_string(),
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.kind.words())?;
        match (self.errno, &self.detail) {
            (Some(e), Some(d)) => write!(f, " ({}: {d})", errno_name(e))?,
            (Some(e), None) => write!(f, " ({})", errno_name(e))?,
            (None, Some(d)) => write!(f, " ({d})")?,
            (None, None) => {}
        }
        match &self.fix {
            Some(fix) => write!(f, "; {fix}"),
            None => write!(f, "; {}", self.kind.hint()),
        }
    }
}

/// The symbolic name of an errno (`EEXIST`), for messages people can search for.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ERANGE => "ERANGE",
        libc::ELOOP => "ELOOP",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EPIPE => "EPIPE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_object_errno_and_fix() {
        let e = KernelError::from_errno(
            -libc::ENETUNREACH,
            "route default via 192.0.2.1 dev lepont table 100",
            Some("Nexthop has invalid gateway".into()),
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "route default via 192.0.2.1 dev lepont table 100: unreachable \
             (ENETUNREACH: Nexthop has invalid gateway); the gateway must be on a subnet of an \
             up device (or the route needs `onlink`)"
        );
    }

    #[test]
    fn a_fix_replaces_the_kinds_hint() {
        let e = KernelError::from_errno(
            libc::ECONNREFUSED,
            "dhcpcd control socket /run/dhcpcd/sock",
            Some("connect".into()),
        )
        .with_fix("dhcpcd is not running: start it, or run without it");
        assert_eq!(
            e.to_string(),
            "dhcpcd control socket /run/dhcpcd/sock: out of reach (ECONNREFUSED: connect); \
             dhcpcd is not running: start it, or run without it"
        );
    }

    #[test]
    fn errno_kinds() {
        assert_eq!(
            ErrorKind::from_errno(libc::EEXIST),
            ErrorKind::AlreadyExists
        );
        assert_eq!(ErrorKind::from_errno(libc::ESRCH), ErrorKind::NotFound);
        assert_eq!(
            ErrorKind::from_errno(libc::EADDRNOTAVAIL),
            ErrorKind::NotFound
        );
        assert_eq!(ErrorKind::from_errno(libc::EBUSY), ErrorKind::Busy);
        assert_eq!(ErrorKind::from_errno(9999), ErrorKind::Other);
    }
}
