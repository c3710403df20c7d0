//! Whether the LAN's traffic to and through the host flows in a given state: the route the
//! kernel would pick for each of the uplink's original destinations, and whether a packet
//! sent on it leaves at once.
//!
//! Two ways a reply can be lost that the state alone shows:
//! - it is routed to a bridge that has no port left (at the instant the NIC is released,
//!   the bridge's routes are still there: the kernel releases the port before it flushes
//!   them);
//! - it is routed straight out of a bridge port whose neighbour cache lacks the next hop:
//!   the ARP or NDP reply would go to the bridge, not to the port, so it waits for ever.

use std::net::IpAddr;

use env_qemu_core::model::{Family, IfName, MacAddr, NetState, Route};

use crate::SimKernel;

/// The route the kernel picks for `r`'s destination in `r`'s table: the lowest metric,
/// first in table order among equals.
fn chosen<'a>(s: &'a NetState, r: &Route) -> Option<&'a Route> {
    let same = s
        .routes
        .iter()
        .filter(|q| q.table == r.table && q.dst == r.dst && q.tos == r.tos);
    let best = same.clone().map(|q| q.metric).min()?;
    same.clone().find(|q| q.metric == best)
}

/// The original routes of `nic` whose traffic is checked: link-local destinations are
/// left out (their sender names the interface).
fn checked<'a>(initial: &'a NetState, nic: &'a IfName) -> impl Iterator<Item = &'a Route> + 'a {
    initial
        .routes_via(nic)
        .filter(move |_| initial.link(nic).is_some_and(|l| l.up))
        .filter(|r| !(r.family() == Family::Inet6 && r.dst.to_string().starts_with("fe80:")))
}

/// The next hop a packet on `r` is handed to.
fn next_hop(r: &Route) -> Option<IpAddr> {
    r.gateway
}

/// Where traffic that `initial` sent through `nic` would be lost in `now`: one line per
/// original route of `nic` (of an up `nic`, link-local destinations left out) whose
/// traffic would stall. Empty when it all flows. `sim` supplies the neighbour caches.
pub fn stalls(initial: &NetState, nic: &IfName, now: &NetState, sim: &SimKernel) -> Vec<String> {
    let neighbours = sim.neighbours_now();
    let mut out = Vec::new();
    for r in checked(initial, nic) {
        let Some(q) = chosen(now, r) else { continue };
        let Some(dev) = q.dev.as_ref().and_then(|d| now.link(d)) else {
            continue;
        };
        if dev.kind.is_bridge() && now.ports_of(&dev.name).all(|p| !p.carrier) {
            out.push(format!("{r}: now via {q}, a bridge without a working port"));
        }
        if let (Some(_), Some(hop)) = (&dev.master, next_hop(q)) {
            let known = neighbours
                .iter()
                .any(|n| n.dev == dev.name && n.ip == hop && n.lladdr.is_some());
            if !known {
                out.push(format!(
                    "{r}: now via {q}, out of a bridge port that has no neighbour entry for {hop}"
                ));
            }
        }
    }
    out
}

/// The state at the instant `nic` is released from its bridge, before the kernel has
/// flushed anything of the bridge's: `before` with the NIC out of the bridge.
pub fn mid_release(before: &NetState, nic: &IfName) -> NetState {
    let mut s = before.clone();
    if let Some(l) = s.links.iter_mut().find(|l| &l.name == nic) {
        l.master = None;
    }
    s
}

/// The LAN's routers answer on `dev` (a bridge after start): the kernel learns them. The
/// gateways of the NIC's original routes, each with its own MAC.
pub fn learn_gateways(sim: &SimKernel, initial: &NetState, nic: &IfName, dev: &IfName) {
    let mut gws: Vec<IpAddr> = initial.routes_via(nic).filter_map(|r| r.gateway).collect();
    gws.sort();
    gws.dedup();
    for (i, gw) in gws.into_iter().enumerate() {
        let mac = MacAddr([0x02, 0xaa, 0, 0, 0, i as u8 + 1]);
        // A gateway on a subnet the bridge has no address for answers nothing: skipped.
        let _ = sim.learn_neighbour(dev, gw, mac, gw.is_ipv6());
    }
}
