//! Drift: what differs, while running, from what env-qemu set up (a route someone deleted,
//! a port someone removed). `status` shows it; `stop` repairs it anyway, being a diff.

use super::{StartRequest, TapRecord};
use crate::model::{RouteProtocol, Snapshot};

pub fn drift(
    pre: &Snapshot,
    req: &StartRequest,
    taps: &[TapRecord],
    live: &Snapshot,
) -> Vec<String> {
    let (nic, br) = (&req.uplink, &req.bridge);
    let mut out = Vec::new();
    let Some(bridge) = live.net.link(br).filter(|l| l.kind.is_bridge()) else {
        out.push(format!("bridge {br} is gone"));
        return out;
    };
    match live.net.link(nic) {
        None => out.push(format!("uplink {nic} is gone")),
        Some(l) if l.master.as_ref() != Some(br) => {
            out.push(format!("uplink {nic} is no longer a port of {br}"));
        }
        Some(_) => {}
    }
    if let Some(was) = pre.net.link(nic) {
        if bridge.mac != was.mac {
            out.push(format!(
                "{br} has MAC {}, not {nic}'s {}",
                bridge.mac, was.mac
            ));
        }
    }
    for a in pre.net.addresses_of(nic) {
        if !live
            .net
            .addresses_of(br)
            .any(|b| b.ip == a.ip && b.prefix_len == a.prefix_len)
        {
            out.push(format!("address {} is missing from {br}", a.cidr()));
        }
    }
    for r in pre
        .net
        .routes_via(nic)
        .filter(|r| r.protocol != RouteProtocol::Kernel)
    {
        let moved = r.on(br);
        if !live
            .net
            .routes
            .iter()
            .any(|l| l.same_ignoring_expiry(&moved))
        {
            out.push(format!("{moved} is missing"));
        }
    }
    for t in taps {
        match live.net.link(&t.name) {
            None => out.push(format!(
                "tap {} is gone (its VM exited without detaching)",
                t.name
            )),
            Some(l) if l.master.as_ref() != Some(br) => {
                out.push(format!("tap {} is no longer on {br}", t.name));
            }
            Some(_) => {}
        }
    }
    out
}
