//! The namespace as `Kernel::dump` reports it.

use env_qemu_core::model::{BridgeInfo, DumpFilter, Link, LinkKind, NetState};

use crate::routes::in_dump_order;
use crate::state::{Kind, Ns};

pub(crate) fn net_state(ns: &Ns) -> NetState {
    let links = ns
        .devs
        .values()
        .map(|d| Link {
            index: d.index,
            name: d.name.clone(),
            kind: link_kind(&d.kind),
            mac: d.mac,
            mtu: d.mtu,
            up: d.up,
            carrier: ns.carrier(d.index),
            master: d.master.map(|m| ns.name(m)),
        })
        .collect();
    // Per device by ifindex, IPv4 then IPv6, each in the kernel's list order.
    let addresses = ns
        .devs
        .values()
        .flat_map(|d| d.v4.iter().chain(d.v6.iter().flat_map(|v| v.addrs.iter())))
        .cloned()
        .collect();
    let routes = in_dump_order(ns)
        .into_iter()
        .map(|k| ns.routes[k].clone())
        .collect();
    NetState {
        links,
        addresses,
        routes,
    }
}

/// What the kernel's filtered dumps return: the full dump's answer, cut to the filter (the
/// meaning [`DumpFilter::apply`] gives it; the real backend gets it from the kernel's own
/// filtering by name, master, ifindex and oif).
pub(crate) fn filtered(ns: &Ns, filter: &DumpFilter) -> NetState {
    filter.apply(&net_state(ns))
}

fn link_kind(k: &Kind) -> LinkKind {
    match k {
        Kind::Loopback => LinkKind::Loopback,
        Kind::Ethernet { .. } => LinkKind::Ethernet,
        Kind::Wireless { .. } => LinkKind::Wireless,
        Kind::Veth { .. } => LinkKind::Veth,
        Kind::Tap { info, .. } => LinkKind::Tap(*info),
        Kind::Bridge(b) => LinkKind::Bridge(BridgeInfo {
            stp: b.stp,
            forward_delay: b.forward_delay,
            mac_fixed: b.mac_fixed,
        }),
    }
}
