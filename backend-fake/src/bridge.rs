//! The bridge driver: ports, the MAC and MTU a bridge derives from them, port states and
//! the carrier that follows; plus `settle`, which propagates carrier changes.

use env_qemu_core::model::{IfName, MacAddr};

use crate::error::{Fail, Res};
use crate::ipv6;
use crate::links::set_mtu;
use crate::state::{Kind, Ns, PortState};

/// `ip link set DEV master BR`.
pub(crate) fn set_master(ns: &mut Ns, i: u32, master: &IfName) -> Res {
    // The real backend resolves the name to an ifindex before sending anything: a
    // missing master fails there, with nothing changed.
    let b = ns.require(master)?;
    let old = ns.dev(i).master;
    if old == Some(b) {
        return Ok(());
    }
    // do_set_master releases the device from its current master first and does not
    // undo that when the new master refuses it.
    if old.is_some() {
        release(ns, i);
    }
    let refuse = |errno, msg: &str| Err(Fail::new(errno, msg).kept_partial(old.is_some()));
    if !ns.is_bridge(b) {
        return refuse(libc::EOPNOTSUPP, "Operation not supported");
    }
    // br_add_if's checks, in its order.
    let d = ns.dev(i);
    if matches!(d.kind, Kind::Loopback) || d.mac.is_zero() {
        return refuse(libc::EINVAL, "Invalid argument");
    }
    if ns.is_bridge(i) {
        return refuse(libc::ELOOP, "Can not enslave a bridge to a bridge");
    }
    if matches!(d.kind, Kind::Wireless { .. }) {
        return refuse(
            libc::EOPNOTSUPP,
            "Device does not allow enslaving to a bridge",
        );
    }
    let d = ns.dev_mut(i);
    d.master = Some(b);
    d.port = PortState::Disabled;
    // Joining only triggers a port-state selection if the port comes up forwarding
    // (settle sees that) or the bridge id changes: a dead port joining a bridge with a
    // fixed MAC leaves its carrier alone.
    recalc_id(ns, b);
    mtu_auto(ns, b);
    Ok(())
}

/// `nomaster`, or the bridge going away: the port keeps its up/down state, addresses and
/// routes; the bridge always re-selects port states (del_nbp disables the port).
pub(crate) fn release(ns: &mut Ns, i: u32) {
    let d = ns.dev_mut(i);
    let Some(b) = d.master.take() else {
        return;
    };
    d.port = PortState::Disabled;
    if let Some(br) = ns.bridge_mut(b) {
        br.recalc = true;
    }
    recalc_id(ns, b);
    mtu_auto(ns, b);
}

/// br_stp_recalculate_bridge_id: unless the MAC was set by the user, the bridge takes
/// the lowest MAC among its ports, up or down; with no port left that is all zeroes.
pub(crate) fn recalc_id(ns: &mut Ns, br: u32) {
    let Kind::Bridge(b) = &ns.dev(br).kind else {
        return;
    };
    if b.mac_fixed {
        return;
    }
    let lowest = ns
        .ports(br)
        .into_iter()
        .map(|p| ns.dev(p).mac)
        .min()
        .unwrap_or(MacAddr::ZERO);
    if lowest != b.id {
        change_id(ns, br, lowest);
    }
}

/// br_stp_change_bridge_id: new id and device MAC, then a port-state selection.
pub(crate) fn change_id(ns: &mut Ns, br: u32, mac: MacAddr) {
    ns.dev_mut(br).mac = mac;
    if let Some(b) = ns.bridge_mut(br) {
        b.id = mac;
        b.recalc = true;
    }
}

/// br_mtu_auto_adjust: unless pinned by `ip link set mtu`, the bridge MTU is the lowest
/// port MTU, or 1500 without ports.
pub(crate) fn mtu_auto(ns: &mut Ns, br: u32) {
    let Kind::Bridge(b) = &ns.dev(br).kind else {
        return;
    };
    if b.mtu_user_set {
        return;
    }
    let mtu = ns
        .ports(br)
        .into_iter()
        .map(|p| ns.dev(p).mtu)
        .min()
        .unwrap_or(1500);
    set_mtu(ns, br, mtu);
}

/// Brings derived state up to date after any change: port states (and with them bridge
/// carrier), then IPv6 on devices that just became ready. Bridges cannot be ports, so
/// one pass reaches the fixed point.
pub(crate) fn settle(ns: &mut Ns) {
    let bridges: Vec<u32> = ns
        .devs
        .values()
        .filter(|d| matches!(d.kind, Kind::Bridge(_)))
        .map(|d| d.index)
        .collect();
    for br in bridges {
        let up = ns.dev(br).up;
        let Some(b) = ns.bridge_mut(br) else {
            continue;
        };
        let stp = b.stp;
        let mut selection = std::mem::take(&mut b.recalc);
        let ports = ns.ports(br);
        for &p in &ports {
            let live = up && ns.carrier(p);
            let old = ns.dev(p).port;
            let new = match (live, stp, old) {
                (false, _, _) => PortState::Disabled,
                // STP off: forwarding the moment it has carrier, whatever forward_delay.
                (true, false, _) => PortState::Forwarding,
                (true, true, PortState::Disabled) => PortState::Listening,
                (true, true, s) => s,
            };
            if new != old {
                ns.dev_mut(p).port = new;
                selection = true;
            }
        }
        if selection {
            // br_port_state_selection: carrier iff some port forwards; a portless
            // bridge therefore loses the carrier it was born with.
            let forwarding = ports
                .iter()
                .any(|&p| ns.dev(p).port == PortState::Forwarding);
            if let Some(b) = ns.bridge_mut(br) {
                b.lower = forwarding;
            }
        }
    }
    ipv6::settle_ready(ns);
}

/// A port comes up without carrier (a tap without reader, a veth whose peer is down) on
/// an up bridge with STP off. The kernel has not yet settled the port's operstate (a tap
/// reads UNKNOWN, which counts as up, until linkwatch marks it DOWN), so the bridge's
/// NETDEV_UP handler may see the port up and make it forward: the bridge gets carrier
/// for a moment. Whether the bridge's carrier-on event is handled before the port's
/// DOWN is a race of linkwatch (measured: usually for a tap when linkwatch ran in the
/// last second anywhere on the machine, never after a second of quiet, in about one
/// case of seven for a veth). If it is, a bridge that was not IPv6-ready becomes ready
/// for good (link-local, fe80::/64). Either way the bridge ends without carrier from
/// this port. The simulator takes the quiet outcome unless
/// [`crate::SimKernel::set_port_up_flash`] says otherwise.
pub(crate) fn carrierless_port_up(ns: &mut Ns, port: u32) {
    let Some(br) = ns.dev(port).master else {
        return;
    };
    let Kind::Bridge(b) = &ns.dev(br).kind else {
        return;
    };
    if b.stp || !ns.dev(br).up || ns.lower(port) {
        return;
    }
    if let Some(b) = ns.bridge_mut(br) {
        b.recalc = true;
    }
    let ready = ns.dev(br).v6.as_ref().is_none_or(|v| v.ready || v.await_up);
    if !ready && ns.port_up_flash {
        ipv6::make_ready(ns, br);
    }
}

/// Time passes: STP ports that have been listening/learning start forwarding.
pub(crate) fn stp_timers(ns: &mut Ns) {
    for d in ns.devs.values_mut() {
        if d.port == PortState::Listening {
            d.port = PortState::Forwarding;
        }
    }
    let masters: Vec<u32> = ns.devs.values().filter_map(|d| d.master).collect();
    for br in masters {
        if let Some(b) = ns.bridge_mut(br) {
            b.recalc = true;
        }
    }
}
