//! Neighbour tables (ARP and NDP): entries per device, and when the kernel flushes them.
//!
//! Measured in a namespace (`ip neigh replace` on veths, bridges, taps, lo):
//! - admin down flushes every entry of the device, permanent ones too; entries added to a
//!   down device stay, and survive its coming up;
//! - carrier loss flushes all but permanent entries;
//! - a MAC change (set by hand, even to the same MAC, or a bridge following its ports)
//!   flushes everything;
//! - deleting a device's last IPv4 address flushes its IPv4 entries, permanent too; IPv6
//!   entries stay;
//! - an MTU below 1280 (IPv6 torn off) drops the IPv6 entries, and new ones are refused
//!   (EINVAL, "IPv6 is disabled on this device"); enslaving and releasing change nothing;
//! - on a loopback device every IPv4 entry has the key 0.0.0.0 (arp keys IFF_LOOPBACK
//!   devices by INADDR_ANY);
//! - `replace` overwrites any entry, a permanent one too, and clears the router flag
//!   when it is not given.

use std::net::{IpAddr, Ipv4Addr};

use env_qemu_core::model::{IfName, MacAddr, Neighbour, NudState};

use crate::error::{Fail, Res};
use crate::state::{Kind, Ns};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub dev: u32,
    pub ip: IpAddr,
    pub lladdr: MacAddr,
    pub state: NudState,
    pub router: bool,
}

/// `ip neigh replace IP lladdr MAC dev DEV nud STATE [router]`.
pub(crate) fn replace(
    ns: &mut Ns,
    dev: &IfName,
    ip: IpAddr,
    lladdr: MacAddr,
    state: NudState,
    router: bool,
) -> Res {
    let i = ns.require(dev)?;
    let ip = match ip {
        IpAddr::V4(_) if !ns.has_inet4(i) => {
            return Err(Fail::new(libc::EINVAL, "Invalid argument"));
        }
        IpAddr::V6(_) if ns.dev(i).v6.is_none() => {
            return Err(Fail::new(libc::EINVAL, "IPv6 is disabled on this device"));
        }
        ip => key(ns, i, ip),
    };
    ns.neigh.retain(|e| !(e.dev == i && e.ip == ip));
    ns.neigh.push(Entry {
        dev: i,
        ip,
        lladdr,
        state,
        router,
    });
    Ok(())
}

/// `ip neigh del IP dev DEV`.
pub(crate) fn del(ns: &mut Ns, dev: &IfName, ip: IpAddr) -> Res {
    let i = ns.require(dev)?;
    let ip = key(ns, i, ip);
    let before = ns.neigh.len();
    ns.neigh.retain(|e| !(e.dev == i && e.ip == ip));
    if ns.neigh.len() == before {
        return Err(Fail::new(libc::ENOENT, "No such file or directory"));
    }
    Ok(())
}

/// The table key of `ip` on device `i`: arp keys loopback devices by INADDR_ANY.
fn key(ns: &Ns, i: u32, ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) if matches!(ns.dev(i).kind, Kind::Loopback) => {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
        ip => ip,
    }
}

/// NETDEV_CHANGEADDR: every entry of device `i` goes.
pub(crate) fn flush(ns: &mut Ns, i: u32) {
    ns.neigh.retain(|e| e.dev != i);
}

/// The flushes the kernel does on device events, found by comparing each device before
/// and after one change.
pub(crate) fn reconcile(before: &Ns, after: &mut Ns) {
    let keep = |e: &Entry, after: &Ns| -> bool {
        let Some(now) = after.devs.get(&e.dev) else {
            return false;
        };
        let Some(was) = before.devs.get(&e.dev) else {
            return true;
        };
        let permanent = e.state == NudState::Permanent;
        let went_down = was.up && !now.up;
        let lost_carrier = before.carrier(e.dev) && !after.carrier(e.dev);
        let v4_gone = match e.ip {
            IpAddr::V4(_) => {
                (!was.v4.is_empty() && now.v4.is_empty())
                    || (before.has_inet4(e.dev) && !after.has_inet4(e.dev))
            }
            IpAddr::V6(_) => now.v6.is_none(),
        };
        !(went_down || was.mac != now.mac || v4_gone || (lost_carrier && !permanent))
    };
    let entries = std::mem::take(&mut after.neigh);
    after.neigh = entries.into_iter().filter(|e| keep(e, after)).collect();
}

/// World-building: the device heard from a neighbour (an ARP reply, a neighbour
/// advertisement), so the kernel holds a reachable entry for it. A bridge port hears
/// nothing itself: what reaches it goes to its bridge.
pub(crate) fn learn(ns: &mut Ns, dev: &IfName, ip: IpAddr, lladdr: MacAddr, router: bool) -> Res {
    let i = ns.require(dev)?;
    if !ns.carrier(i) {
        return Err(Fail::new(
            libc::ENETDOWN,
            "no carrier: nothing can be heard on it",
        ));
    }
    if let Some(m) = ns.dev(i).master {
        return Err(Fail::new(
            libc::EOPNOTSUPP,
            format!(
                "a port hears nothing itself: its frames go to {}",
                ns.name(m)
            ),
        ));
    }
    replace(ns, dev, ip, lladdr, NudState::Reachable, router)
}

/// `ip neigh show`, by device then address.
pub(crate) fn dump(ns: &Ns) -> Vec<Neighbour> {
    let mut out: Vec<(u32, Neighbour)> = ns
        .neigh
        .iter()
        .map(|e| {
            (
                e.dev,
                Neighbour {
                    dev: ns.name(e.dev),
                    ip: e.ip,
                    lladdr: Some(e.lladdr),
                    state: e.state,
                    router: e.router,
                },
            )
        })
        .collect();
    out.sort_by_key(|(dev, n)| (*dev, n.ip));
    out.into_iter().map(|(_, n)| n).collect()
}
