//! Settling the real kernel's linkwatch between steps.
//!
//! Operstate (and what follows from it) lags carrier on the real kernel: carrier changes
//! are queued for linkwatch, which handles non-urgent events at most once a second,
//! machine-wide. Until it does, a device can read operstate UNKNOWN with no carrier.
//! Measured: a tap brought up without a reader and enslaved within that second counts
//! as a live port; the bridge gains carrier for a moment and becomes IPv6-ready (its
//! link-local and fe80::/64 stay after the carrier goes again). Whether that happens
//! depends on what other namespaces on the machine did in the last second.
//!
//! The simulator models the kernel at rest. So after every step the harness asks the
//! real kernel for each device's link state with `SIOCETHTOOL`/`ETHTOOL_GLINK`: veth,
//! tun and bridge answer it with `ethtool_op_get_link`, which first runs
//! `linkwatch_sync_dev` — the pending event is handled at once, exactly as linkwatch
//! would have handled it a little later. Nothing else changes.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use env_qemu_core::model::NetState;
use nix::sched::{setns, CloneFlags};

use crate::TestNs;

const ETHTOOL_GLINK: u32 = 0x0000_000a;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with `ifr_data`: 16 bytes of name, then the 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _rest: [u8; 16],
}

/// A datagram socket inside the namespace; ioctls on it resolve names there.
pub struct Linkwatch {
    sock: OwnedFd,
}

impl Linkwatch {
    /// Opens the socket on a short-lived thread that enters the namespace: a socket
    /// belongs to the namespace it was created in, whichever thread uses it later.
    pub fn open(ns: &TestNs) -> io::Result<Linkwatch> {
        let path = ns.path();
        std::thread::spawn(move || -> io::Result<Linkwatch> {
            let f = File::open(path)?;
            setns(&f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            // SAFETY: plain socket(2); the fd is checked and owned at once.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh, valid descriptor nobody else owns.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok(Linkwatch { sock })
        })
        .join()
        .map_err(|_| io::Error::other("linkwatch socket thread panicked"))?
    }

    /// Handles `dev`'s pending linkwatch event now. A missing device, or one without
    /// the ethtool operation, is simply skipped.
    pub fn sync(&self, dev: &str) {
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GLINK,
            data: 0,
        };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: &mut value,
            _rest: [0; 16],
        };
        let n = dev.len().min(libc::IFNAMSIZ - 1);
        req.name[..n].copy_from_slice(&dev.as_bytes()[..n]);
        // SAFETY: SIOCETHTOOL reads a `struct ifreq` whose ifr_data points at an
        // ethtool_value; both live until the call returns.
        let _ = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    }

    /// Handles the pending events of every device of `state` in linkwatch's own
    /// priority: devices with carrier first (a carrier-on event of a device whose queues
    /// are not yet active is "urgent": handled at once, while carrier-off events wait
    /// for the next once-a-second run), then the others. The caller repeats it with a
    /// fresh dump, since handling one event can queue another (a port going down
    /// changes its bridge's carrier).
    pub fn settle(&self, state: &NetState) {
        for carrier in [true, false] {
            for l in state.links.iter().filter(|l| l.carrier == carrier) {
                self.sync(l.name.as_str());
            }
        }
    }
}
