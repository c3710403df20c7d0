//! The backend's internal failure type and its one conversion into [`KernelError`].
//!
//! Every module reports a [`Failure`] (an errno plus the kernel's extended-ack message,
//! or a kind without errno). Only [`crate::NetlinkKernel`] turns it into a
//! [`KernelError`], naming the object with [`env_qemu_core::Op::object`]: errno is mapped
//! once, at the boundary.

use env_qemu_core::{ErrorKind, KernelError};
use rtnetlink::packet_core::{ErrorMessage, NLM_F_ACK_TLVS, NLM_F_CAPPED};

/// Why a kernel request failed, before we know how to name the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The kernel refused with this (positive) errno.
    Errno { errno: i32, detail: Option<String> },
    /// Something without an errno (the netlink connection is gone, a path is not a tmpfs).
    Kind { kind: ErrorKind, detail: String },
}

impl Failure {
    pub(crate) fn errno(errno: i32, detail: impl Into<Option<String>>) -> Failure {
        Failure::Errno {
            errno: errno.abs(),
            detail: detail.into(),
        }
    }

    pub(crate) fn kind(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure::Kind {
            kind,
            detail: detail.into(),
        }
    }

    /// The netlink socket or the namespace worker went away.
    pub(crate) fn unavailable(detail: impl Into<String>) -> Failure {
        Failure::kind(ErrorKind::Unavailable, detail)
    }

    /// Adds context to an errno failure that has no kernel message of its own
    /// (ioctl, mount, sysctl writes): `TUNSETIFF`, `mount`…
    pub(crate) fn context(self, what: &str) -> Failure {
        match self {
            Failure::Errno {
                errno,
                detail: None,
            } => Failure::Errno {
                errno,
                detail: Some(what.to_string()),
            },
            other => other,
        }
    }

    /// The one place errno becomes a typed error.
    pub(crate) fn into_kernel_error(self, object: impl Into<String>) -> KernelError {
        match self {
            Failure::Errno { errno, detail } => KernelError::from_errno(errno, object, detail),
            Failure::Kind { kind, detail } => KernelError::new(kind, object, detail),
        }
    }

    /// From a netlink NACK, with the extended-ack text when the kernel sent one.
    /// `flags` are the flags of the NLMSG_ERROR message itself.
    pub(crate) fn from_nack(err: &ErrorMessage, flags: u16) -> Failure {
        Failure::errno(err.raw_code(), extack_message(&err.header, flags))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e.raw_os_error() {
            Some(errno) => Failure::errno(errno, None),
            None => Failure::kind(ErrorKind::Other, e.to_string()),
        }
    }
}

impl From<nix::Error> for Failure {
    fn from(e: nix::Error) -> Failure {
        Failure::errno(e as i32, None)
    }
}

/// NLMSGERR_ATTR_MSG: the human-readable extended ack ("Nexthop has invalid gateway").
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGHDR_LEN: usize = 16;

/// Extracts NLMSGERR_ATTR_MSG from the payload of an NLMSG_ERROR after its errno.
///
/// The payload is the offending request's header (only the 16-byte header when the
/// kernel "capped" it, which we ask for with NETLINK_CAP_ACK; the whole request
/// otherwise), followed by TLVs when NLM_F_ACK_TLVS is set (NETLINK_EXT_ACK).
pub(crate) fn extack_message(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSGHDR_LEN {
        return None;
    }
    let skip = if flags & NLM_F_CAPPED != 0 {
        NLMSGHDR_LEN
    } else {
        let len = u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize;
        align4(len)
    };
    let mut tlvs = payload.get(skip..)?;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        tlvs = tlvs.get(align4(len)..).unwrap_or_default();
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn finds_the_message_after_a_capped_header() {
        let mut payload = vec![0u8; 16];
        payload[0..4].copy_from_slice(&44u32.to_ne_bytes());
        payload.extend(tlv(2, &8u32.to_ne_bytes()));
        payload.extend(tlv(1, b"Nexthop has invalid gateway\0"));
        assert_eq!(
            extack_message(&payload, NLM_F_ACK_TLVS | NLM_F_CAPPED).as_deref(),
            Some("Nexthop has invalid gateway")
        );
    }

    #[test]
    fn skips_an_uncapped_request() {
        let mut payload = vec![0u8; 20];
        payload[0..4].copy_from_slice(&18u32.to_ne_bytes());
        payload.extend(tlv(1, b"Invalid prefsrc address\0"));
        assert_eq!(
            extack_message(&payload, NLM_F_ACK_TLVS).as_deref(),
            Some("Invalid prefsrc address")
        );
    }

    #[test]
    fn no_tlvs_no_message() {
        assert_eq!(extack_message(&[0u8; 16], NLM_F_CAPPED), None);
        assert_eq!(extack_message(&[0u8; 3], NLM_F_ACK_TLVS), None);
    }

    #[test]
    fn maps_once_naming_the_object() {
        let e = Failure::errno(-libc::EEXIST, None).into_kernel_error("interface br0");
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert_eq!(e.errno, Some(libc::EEXIST));
        assert_eq!(e.object, "interface br0");
    }
}
