//! Handing the uplink's DHCP client over to the bridge and back, through the client's own
//! runtime interface (measured against dhcpcd 9.4.1 and dhclient 4.4.3):
//!
//! - dhcpcd (one daemon for every interface): `-p -x NIC` on its control socket makes it
//!   stop managing the NIC and keep what it configured (`-p`: persistent); after the
//!   bridge steps, `-n BRIDGE` makes it manage the bridge, which carries the NIC's MAC, so
//!   its client id and IAID (from the MAC) and its lease are the same. It keeps the copied
//!   address and swaps the copied routes for its own after its ACK.
//! - dhcpcd for one interface: the same `-p -x` on that daemon's socket (it exits), then a
//!   new `dhcpcd BRIDGE`.
//! - dhclient: no control interface. SIGTERM releases nothing; the same command line with
//!   the bridge in place of the NIC starts it on the bridge (INIT-REBOOT, same lease: the
//!   server knows it by the MAC). Its first address update on the bridge fails while the
//!   copy is there, so the copy lives a whole lease (see [`lease_lifetimes`]); so does the
//!   address stop puts back on the NIC, for the dhclient started again there.
//!
//! A client left on a NIC that becomes a port puts its address back on the port at its
//! next renewal, and nobody renews the bridge's copy: the host loses IPv4 at lease end.
//! The client is therefore stopped before the bridge steps, and started on the new device
//! after them.

use super::Plan;
use crate::host::{Client, DhcpcdMode, HostOp};
use crate::model::{Address, Family, IfName, Snapshot};
use crate::op::Op;

fn host(op: HostOp) -> Op {
    Op::Host { host: op }
}

/// The clients of `pre`'s `from` that env-qemu hands over.
pub(crate) fn handed<'a>(
    pre: &'a Snapshot,
    from: &'a IfName,
) -> impl Iterator<Item = &'a Client> + 'a {
    pre.managers.of(from).filter(|c| c.handed_over())
}

/// Stops, on `from`, the clients `pre` had on `nic` that `live` shows still running there.
pub(super) fn release(
    pre: &Snapshot,
    live: &Snapshot,
    nic: &IfName,
    from: &IfName,
    plan: &mut Plan,
) {
    for was in handed(pre, nic) {
        for c in live.managers.of(from).filter(|c| c.same_kind(was)) {
            match c {
                Client::Dhcpcd { socket, .. } => plan.push(host(HostOp::Dhcpcd {
                    socket: socket.clone(),
                    args: vec!["-p".into(), "-x".into(), from.to_string()],
                })),
                Client::Dhclient { pid, argv, .. } => plan.push(host(HostOp::Terminate {
                    pid: *pid,
                    argv: argv.clone(),
                })),
                _ => {}
            }
        }
    }
}

/// Starts, on `to`, the clients `pre` had on `nic` that `live` does not show there yet.
pub(super) fn adopt(pre: &Snapshot, live: &Snapshot, nic: &IfName, to: &IfName, plan: &mut Plan) {
    for was in handed(pre, nic) {
        if live.managers.of(to).any(|c| c.same_kind(was)) {
            continue;
        }
        match was {
            Client::Dhcpcd {
                mode: DhcpcdMode::Manager,
                socket,
                ..
            } => plan.push(host(HostOp::Dhcpcd {
                socket: socket.clone(),
                args: vec!["-n".into(), to.to_string()],
            })),
            Client::Dhcpcd {
                mode: DhcpcdMode::PerInterface,
                ..
            } => plan.push(host(HostOp::Spawn {
                argv: vec!["dhcpcd".into(), to.to_string()],
            })),
            Client::Dhclient { argv, .. } => plan.push(host(HostOp::Spawn {
                argv: moved_argv(argv, nic, to),
            })),
            _ => {}
        }
    }
}

/// A dhclient command line for another interface: the interface argument, and the
/// per-interface pid and lease file names (`/run/dhclient.eth0.pid`) that ifupdown
/// derives from it, now name `to`.
pub fn moved_argv(argv: &[String], from: &IfName, to: &IfName) -> Vec<String> {
    let dotted = (format!(".{from}."), format!(".{to}."));
    argv.iter()
        .map(|a| {
            if a == from.as_str() {
                to.to_string()
            } else {
                a.replace(&dotted.0, &dotted.1)
            }
        })
        .collect()
}

/// The copy of a leased IPv4 address lives at least a whole lease, on the bridge at start
/// and back on the NIC at stop: dhclient, started again on the new device, binds at once
/// (its ACK renews the lease at the server) but cannot refresh the copy before its first
/// renewal, at T1 (its hook's `ip addr add` fails on it), and a copy that expires before
/// that loses IPv4 until the client's own lease runs out (measured at start: 91 s; at stop
/// with 30 s left on the bridge's copy: IPv4 lost from 31 s after stop on).
pub(super) fn lease_lifetimes(a: &mut Address, pre: &Snapshot, nic: &IfName) {
    if a.family() != Family::Inet {
        return;
    }
    let lease = pre
        .managers
        .of(nic)
        .filter(|c| matches!(c, Client::Dhclient { .. }))
        .find_map(|c| c.lease().filter(|l| l.address == a.ip));
    if let (Some(l), Some(valid)) = (lease, a.valid_lft) {
        let at_least = |v: Option<u32>| v.map(|v| v.max(l.seconds));
        a.valid_lft = Some(valid.max(l.seconds));
        a.preferred_lft = at_least(a.preferred_lft);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    #[test]
    fn a_dhclient_command_line_moves_to_the_bridge() {
        let argv: Vec<String> = "dhclient -4 -v -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases -I -df /var/lib/dhcp/dhclient6.eth0.leases eth0"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(
            moved_argv(&argv, &n("eth0"), &n("lepont")).join(" "),
            "dhclient -4 -v -pf /run/dhclient.lepont.pid -lf /var/lib/dhcp/dhclient.lepont.leases -I -df /var/lib/dhcp/dhclient6.lepont.leases lepont"
        );
        // An option value that merely contains the name is left alone.
        let argv: Vec<String> = ["dhclient", "-cf", "/etc/eth0ish.conf", "eth0"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            moved_argv(&argv, &n("eth0"), &n("br0")),
            ["dhclient", "-cf", "/etc/eth0ish.conf", "br0"]
        );
    }
}
