//! Persistent taps through the tun driver's ioctls (`ip tuntap add dev NAME mode tap
//! [user U] [group G]`). rtnetlink cannot create taps ("tun/tap creation via rtnetlink
//! is not supported"), and the tap lands in the network namespace of the thread that
//! opens /dev/net/tun, so this runs on the namespace worker.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use env_qemu_core::model::IfName;

use crate::errors::Failure;

/// `struct ifreq` as TUNSETIFF reads it: the name, then `ifr_flags` in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _union_rest: [u8; 22],
}

/// With IFF_TUN_EXCL, TUNSETIFF fails with EBUSY if any device of that name exists
/// instead of silently attaching to an existing persistent tap.
const IFF_TUN_EXCL: libc::c_int = 0x8000;

/// Creates `name` as a persistent tap, down and without carrier, owned by `owner` and
/// `group` when given (an opener must then match both). If anything fails before
/// TUNSETPERSIST, closing the fd destroys the half-made tap: no change is left behind.
pub(crate) fn create(name: &IfName, owner: Option<u32>, group: Option<u32>) -> Result<(), Failure> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| Failure::from(e).context("open /dev/net/tun"))?;
    let fd = tun.as_raw_fd();

    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | IFF_TUN_EXCL)
            as libc::c_short,
        _union_rest: [0; 22],
    };
    // IfName guarantees at most 15 bytes, so the name stays NUL-terminated.
    req.name[..name.as_str().len()].copy_from_slice(name.as_str().as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq`; `req` has its layout and outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            // EBUSY under IFF_TUN_EXCL means the name is taken; report it like rtnetlink
            // reports a duplicate link.
            Some(libc::EBUSY) => Failure::errno(
                libc::EEXIST,
                Some("TUNSETIFF: an interface with this name exists".to_string()),
            ),
            _ => Failure::from(err).context("TUNSETIFF"),
        });
    }
    if let Some(uid) = owner {
        set(fd, libc::TUNSETOWNER, uid as libc::c_ulong, "TUNSETOWNER")?;
    }
    if let Some(gid) = group {
        set(fd, libc::TUNSETGROUP, gid as libc::c_ulong, "TUNSETGROUP")?;
    }
    set(fd, libc::TUNSETPERSIST, 1, "TUNSETPERSIST")
    // `tun` closes here; the persistent tap stays.
}

/// Opens the existing tap `name` as QEMU would (`-netdev tap,ifname=NAME`: IFF_TAP,
/// IFF_NO_PI, IFF_VNET_HDR), for a process to inherit (`-netdev tap,fd=N`): the opener
/// then needs no access to /dev/net/tun at all. Root may open any tap; the kernel refuses
/// a device that is not a tap (EINVAL) or a tap already opened (EBUSY). Close-on-exec:
/// the caller decides what inherits it.
pub(crate) fn open(name: &IfName) -> Result<OwnedFd, Failure> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| Failure::from(e).context("open /dev/net/tun"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _union_rest: [0; 22],
    };
    req.name[..name.as_str().len()].copy_from_slice(name.as_str().as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq`; `req` has its layout and outlives the call.
    let r = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(Failure::from(std::io::Error::last_os_error()).context("TUNSETIFF"));
    }
    Ok(OwnedFd::from(tun))
}

fn set(fd: RawFd, request: libc::Ioctl, value: libc::c_ulong, what: &str) -> Result<(), Failure> {
    // SAFETY: these tun ioctls take their argument by value, not as a pointer.
    let r = unsafe { libc::ioctl(fd, request, value) };
    if r < 0 {
        return Err(Failure::from(std::io::Error::last_os_error()).context(what));
    }
    Ok(())
}
