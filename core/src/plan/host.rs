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

/// NetworkManager's part of `start` (docs/network-manager.md): where the NIC's profile
/// is NM's own, the bridge gets an in-memory profile carrying its IP settings and the NIC
/// one as the bridge's port, all inside a checkpoint. Each step is planned only if the
/// live state lacks what it does: the checkpoint (one made since the pre-start snapshot
/// is env-qemu's), the profiles (by their stable UUIDs), the activations.
pub(super) struct NmStart {
    h: crate::nm::Handover,
    /// NetworkManager's live view of the host; `None`: NM does not run now.
    live: Option<crate::nm::NmHost>,
    bridge_active: bool,
    port_active: bool,
}

impl NmStart {
    pub(super) fn new(
        pre: &Snapshot,
        live: &Snapshot,
        nic: &IfName,
        br: &IfName,
        plan: &mut Plan,
    ) -> Option<NmStart> {
        let h = crate::nm::handover(pre, nic, br)?;
        let live_host = crate::nm::host(live).cloned();
        if live_host.is_none() {
            plan.notes.push(format!(
                "NetworkManager managed {nic} with profile {} but does not run now: nothing will renew the lease on {br}",
                h.original.id
            ));
        }
        let on = |dev: &IfName, uuid: &str| {
            crate::nm::device(live, dev).and_then(|d| d.profile()) == Some(uuid)
        };
        Some(NmStart {
            bridge_active: on(br, &h.bridge.uuid),
            port_active: on(nic, &h.port.uuid),
            h,
            live: live_host,
        })
    }

    fn pending(&self) -> bool {
        self.live.is_some() && !(self.bridge_active && self.port_active)
    }

    fn devices(&self) -> Vec<IfName> {
        vec![self.h.port.dev.clone(), self.h.bridge.dev.clone()]
    }

    fn leftover(&self) -> bool {
        let devs = self.devices();
        let refs: Vec<&IfName> = devs.iter().collect();
        self.live
            .as_ref()
            .is_some_and(|l| l.checkpoints_since(self.h.since_ms, &refs).next().is_some())
    }

    /// First of all: the checkpoint, unless one of env-qemu's is alive already.
    pub(super) fn checkpoint(&self, plan: &mut Plan) {
        if self.pending() && !self.leftover() {
            plan.push(host(HostOp::NmCheckpointCreate {
                timeout: crate::nm::CHECKPOINT_TIMEOUT,
            }));
        }
    }

    /// Once the bridge is up and before any address is on it: the profiles, and the
    /// bridge's activated (NM flushes a device it activates a profile on; an empty one
    /// loses nothing).
    pub(super) fn adopt_bridge(&self, plan: &mut Plan) {
        let Some(live) = self.live.as_ref().filter(|_| self.pending()) else {
            return;
        };
        for p in [&self.h.bridge, &self.h.port] {
            if !live.has_profile(&p.uuid) {
                plan.push(host(HostOp::NmAdd { profile: p.clone() }));
            }
        }
        if !self.bridge_active {
            plan.push(host(HostOp::NmActivate {
                uuid: self.h.bridge.uuid.clone(),
                id: self.h.bridge.id.clone(),
                dev: self.h.bridge.dev.clone(),
                until: crate::nm::NmUntil::IpConfig,
            }));
        }
    }

    /// Once the NIC is a port carrying nothing: its port profile, until the bridge has
    /// the NIC's lease; then the checkpoint goes.
    pub(super) fn adopt_port(&self, plan: &mut Plan) {
        if self.live.is_none() {
            return;
        }
        if self.pending() && !self.port_active {
            let until = match self.h.lease {
                Some(address) => crate::nm::NmUntil::Lease {
                    dev: self.h.bridge.dev.clone(),
                    address,
                },
                None => crate::nm::NmUntil::Activated,
            };
            plan.push(host(HostOp::NmActivate {
                uuid: self.h.port.uuid.clone(),
                id: self.h.port.id.clone(),
                dev: self.h.port.dev.clone(),
                until,
            }));
        }
        if self.pending() || self.leftover() {
            plan.push(host(HostOp::NmCheckpointDestroy {
                since_ms: self.h.since_ms,
                devices: self.devices(),
            }));
        }
    }
}

/// NetworkManager's part of `stop`: the NIC's own profile activated again (NM releases
/// the port and leases on the NIC), the in-memory profiles deleted once the bridge is
/// gone, inside a checkpoint; a checkpoint left by an interrupted command destroyed
/// first (its rollback would bridge the NIC again).
pub(super) struct NmStop {
    h: crate::nm::Handover,
    live: Option<crate::nm::NmHost>,
    original_active: bool,
    /// The NIC is a port of the bridge without NM's port profile running on it (a start
    /// killed between the kernel's enslaving and the port's activation): NM fails to
    /// activate any profile on it ("dependency-failed") until it is released.
    port_behind_nms_back: bool,
    bridge_profile: bool,
    port_profile: bool,
}

impl NmStop {
    pub(super) fn new(
        pre: &Snapshot,
        live: &Snapshot,
        nic: &IfName,
        br: &IfName,
        plan: &mut Plan,
    ) -> Option<NmStop> {
        let h = crate::nm::handover(pre, nic, br)?;
        let Some(l) = crate::nm::host(live).cloned() else {
            plan.notes.push(format!(
                "NetworkManager does not run now: it activates {nic}'s profile {} itself when it starts",
                h.original.id
            ));
            return None;
        };
        let original_active = crate::nm::device(live, nic).and_then(|d| d.profile())
            == Some(h.original.uuid.as_str());
        let port_behind_nms_back = live.net.link(nic).and_then(|l| l.master.as_ref()) == Some(br)
            && crate::nm::device(live, nic).and_then(|d| d.profile()) != Some(h.port.uuid.as_str());
        Some(NmStop {
            port_behind_nms_back,
            bridge_profile: l.has_profile(&h.bridge.uuid),
            port_profile: l.has_profile(&h.port.uuid),
            original_active,
            h,
            live: Some(l),
        })
    }

    fn devices(&self) -> Vec<IfName> {
        vec![self.h.port.dev.clone(), self.h.bridge.dev.clone()]
    }

    fn pending(&self) -> bool {
        self.activates() || self.bridge_profile || self.port_profile
    }

    /// Whether stop activates the NIC's profile (which puts its link-local back): it is
    /// not active, or it is but the NIC became a port behind NM's back. NM keeps running
    /// that profile on a port, and when start then takes the port's link-local away, NM
    /// makes another one (its stable-privacy generation at the next DAD counter) that is
    /// not the NIC's; activating the profile again flushes it and makes the NIC's own
    /// (measured with NM 1.42.4).
    pub(super) fn activates(&self) -> bool {
        !self.original_active || self.port_behind_nms_back
    }

    /// Before anything else: a leftover checkpoint destroyed, a new one made, the NIC's
    /// profile activated until the NIC has its lease back.
    pub(super) fn reclaim(&self, plan: &mut Plan) {
        let devs = self.devices();
        let refs: Vec<&IfName> = devs.iter().collect();
        let leftover = self
            .live
            .as_ref()
            .is_some_and(|l| l.checkpoints_since(self.h.since_ms, &refs).next().is_some());
        if leftover {
            plan.push(host(HostOp::NmCheckpointDestroy {
                since_ms: self.h.since_ms,
                devices: devs.clone(),
            }));
        }
        if !self.pending() {
            return;
        }
        plan.push(host(HostOp::NmCheckpointCreate {
            timeout: crate::nm::CHECKPOINT_TIMEOUT,
        }));
        if self.activates() {
            let nic = &self.h.port.dev;
            if self.port_behind_nms_back {
                plan.push(Op::LinkSet {
                    name: nic.clone(),
                    change: crate::op::LinkChange::NoMaster,
                });
            }
            let until = match self.h.lease {
                Some(address) => crate::nm::NmUntil::Lease {
                    dev: nic.clone(),
                    address,
                },
                None => crate::nm::NmUntil::IpConfig,
            };
            plan.push(host(HostOp::NmActivate {
                uuid: self.h.original.uuid.clone(),
                id: self.h.original.id.clone(),
                dev: nic.clone(),
                until,
            }));
        }
    }

    /// Once the bridge is gone: the in-memory profiles deleted, the checkpoint destroyed.
    pub(super) fn finish(&self, plan: &mut Plan) {
        if !self.pending() {
            return;
        }
        for (there, p) in [
            (self.bridge_profile, &self.h.bridge),
            (self.port_profile, &self.h.port),
        ] {
            if there {
                plan.push(host(HostOp::NmDelete {
                    uuid: p.uuid.clone(),
                    id: p.id.clone(),
                }));
            }
        }
        plan.push(host(HostOp::NmCheckpointDestroy {
            since_ms: self.h.since_ms,
            devices: self.devices(),
        }));
    }
}

/// systemd-networkd's part of `start` (docs/networkd.md): the bridge's runtime file and a
/// reload once the bridge is up and empty (networkd drops a link's foreign configuration
/// when it starts configuring it: an empty bridge loses nothing), the port's once the NIC
/// is a port carrying nothing. Each step is planned only if the live state lacks it: a
/// file is written unless it is there with the same text, a reload unless networkd
/// applies the file to the device already.
pub(super) struct NetworkdStart {
    h: crate::networkd::Handover,
    /// env-qemu's runtime files present; `None`: networkd does not run now.
    live: Option<std::collections::BTreeMap<std::path::PathBuf, String>>,
    bridge_runs: bool,
    port_runs: bool,
}

impl NetworkdStart {
    pub(super) fn new(
        pre: &Snapshot,
        live: &Snapshot,
        nic: &IfName,
        br: &IfName,
        plan: &mut Plan,
    ) -> Option<NetworkdStart> {
        let h = crate::networkd::handover(pre, nic, br)?;
        let files = crate::networkd::host(live).cloned();
        if files.is_none() {
            plan.notes.push(format!(
                "systemd-networkd managed {nic} with {} but does not run now: nothing will renew the lease on {br}",
                h.original.display()
            ));
        }
        let runs = |f: &crate::networkd::RuntimeFile| {
            crate::networkd::link(live, &f.dev).is_some_and(|l| l.runs(&f.path))
        };
        Some(NetworkdStart {
            bridge_runs: runs(&h.bridge),
            port_runs: runs(&h.port),
            h,
            live: files,
        })
    }

    fn hand(&self, f: &crate::networkd::RuntimeFile, runs: bool, plan: &mut Plan) {
        let Some(files) = &self.live else {
            return;
        };
        if runs {
            return;
        }
        if files.get(&f.path) != Some(&f.text) {
            plan.push(host(HostOp::NetworkdWrite {
                path: f.path.clone(),
                text: f.text.clone(),
            }));
        }
        plan.push(host(HostOp::NetworkdReload {
            wait: vec![(f.dev.clone(), f.path.clone())],
            link_local: vec![],
        }));
    }

    /// Once the bridge is up and before any address is on it.
    pub(super) fn adopt_bridge(&self, plan: &mut Plan) {
        self.hand(&self.h.bridge, self.bridge_runs, plan);
    }

    /// Once the NIC is a port carrying nothing.
    pub(super) fn adopt_port(&self, plan: &mut Plan) {
        self.hand(&self.h.port, self.port_runs, plan);
    }
}

/// Whether stop gives the NIC back to networkd (it does not run the NIC's own file now).
pub(super) fn networkd_reclaims(
    pre: &Snapshot,
    live: &Snapshot,
    nic: &IfName,
    br: &IfName,
) -> bool {
    let Some(h) = crate::networkd::handover(pre, nic, br) else {
        return false;
    };
    crate::networkd::host(live).is_some()
        && !crate::networkd::link(live, nic).is_some_and(|l| l.runs(&h.original))
}

/// systemd-networkd's part of `stop`: once env-qemu has moved everything back and the
/// bridge is gone, env-qemu's runtime files removed and a reload, until networkd applies
/// the NIC's own file to it again (it then renews the lease on the NIC).
pub(super) fn networkd_stop(
    pre: &Snapshot,
    live: &Snapshot,
    nic: &IfName,
    br: &IfName,
    plan: &mut Plan,
) {
    let Some(h) = crate::networkd::handover(pre, nic, br) else {
        return;
    };
    let Some(files) = crate::networkd::host(live) else {
        if crate::networkd::host(pre).is_some() {
            plan.notes.push(format!(
                "systemd-networkd does not run now: remove {} and {} if they are still there before it starts",
                h.bridge.path.display(),
                h.port.path.display()
            ));
        }
        return;
    };
    let mut changed = false;
    for f in [&h.port, &h.bridge] {
        if files.contains_key(&f.path) {
            plan.push(host(HostOp::NetworkdRemove {
                path: f.path.clone(),
            }));
            changed = true;
        }
    }
    let back = crate::networkd::link(live, nic).is_some_and(|l| l.runs(&h.original));
    if changed || !back {
        let link_local = pre.net.addresses_of(nic).any(|a| a.is_link_local());
        plan.push(host(HostOp::NetworkdReload {
            wait: vec![(nic.clone(), h.original)],
            link_local: if link_local {
                vec![nic.clone()]
            } else {
                vec![]
            },
        }));
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
