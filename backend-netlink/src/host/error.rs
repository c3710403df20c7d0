//! The host backend's failure type and its one conversion into [`KernelError`].
//!
//! A program of the host is not the kernel: what went wrong with a dhcpcd control socket
//! or a PID needs its own fix, not the kind's netlink hint. Every failure carries its
//! errno (when a system call gave one), what happened, and what to do;
//! [`HostFailure::into_kernel_error`] names the object (the [`HostOp`]'s) and maps the
//! errno, once, with [`KernelError::from_errno`].
//!
//! [`HostOp`]: env_qemu_core::host::HostOp

use std::io;

use env_qemu_core::{ErrorKind, KernelError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFailure {
    kind: ErrorKind,
    errno: Option<i32>,
    detail: String,
    fix: String,
}

impl HostFailure {
    /// A failure without errno.
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        HostFailure {
            kind,
            errno: None,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    /// A failed system call: `what` says which (`connect`, `pidfd_open`).
    pub(crate) fn io(e: &io::Error, what: &str, fix: impl Into<String>) -> Self {
        match e.raw_os_error() {
            Some(errno) => HostFailure {
                kind: ErrorKind::from_errno(errno),
                errno: Some(errno),
                detail: what.to_string(),
                fix: fix.into(),
            },
            None => HostFailure::new(ErrorKind::Other, format!("{what}: {e}"), fix),
        }
    }

    /// The one place an errno of the host backend becomes a typed error.
    pub(crate) fn into_kernel_error(self, object: impl Into<String>) -> KernelError {
        let error = match self.errno {
            Some(errno) => KernelError::from_errno(errno, object, Some(self.detail)),
            None => KernelError::new(self.kind, object, self.detail),
        };
        error.with_fix(self.fix)
    }
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errno {
            Some(e) => write!(
                f,
                "{} ({})",
                self.detail,
                std::io::Error::from_raw_os_error(e)
            ),
            None => f.write_str(&self.detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_errno_once_and_keeps_the_fix() {
        let e = HostFailure::io(
            &io::Error::from_raw_os_error(libc::ENOENT),
            "connect",
            "dhcpcd is not running",
        )
        .into_kernel_error("dhcpcd control socket /run/dhcpcd/sock");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.errno, Some(libc::ENOENT));
        assert_eq!(
            e.to_string(),
            "dhcpcd control socket /run/dhcpcd/sock: not found (ENOENT: connect); dhcpcd is not running"
        );
    }
}
