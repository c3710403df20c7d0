//! `add TAP` / `del TAP`: attach a VM's tap to the bridge and detach it again.

use super::{link_set, MadeTap, Plan, PlanError, TapRecord};
use crate::model::{IfName, Link, LinkKind, MacAddr, Snapshot, TapInfo};
use crate::op::LinkChange;
use crate::op::Op;

/// Attaches `tap` to `bridge`: the bridge's MTU (so jumbo frames reach the VM), then the
/// port, then up; only what is not so already (an attached, up tap at the bridge's MTU
/// gives an empty plan). Returns the record `del` needs to put the tap back as it is now.
pub fn plan_add(
    live: &Snapshot,
    bridge: &IfName,
    uplink: &IfName,
    tap: &IfName,
) -> Result<(Plan, TapRecord), PlanError> {
    let t = check_tap(live, bridge, uplink, tap)?;
    let br = live
        .net
        .link(bridge)
        .ok_or_else(|| PlanError::NoSuchInterface(bridge.clone()))?;
    let record = TapRecord {
        name: tap.clone(),
        mtu: t.mtu,
        up: t.up,
    };
    let mut plan = Plan::default();
    let attached = match &t.master {
        Some(m) if m == bridge => true,
        Some(m) => {
            return Err(PlanError::TapInOtherBridge {
                tap: tap.clone(),
                master: m.clone(),
            })
        }
        None => false,
    };
    if t.mtu != br.mtu {
        plan.push(link_set(tap, LinkChange::Mtu(br.mtu)));
    }
    if !attached {
        plan.push(link_set(tap, LinkChange::Master(bridge.clone())));
    }
    if !t.up {
        plan.push(link_set(tap, LinkChange::Up));
    }
    Ok((plan, record))
}

/// Detaches `tap` and puts back what `add` changed (from its record, when there is one).
pub fn plan_del(
    live: &Snapshot,
    bridge: &IfName,
    uplink: &IfName,
    tap: &IfName,
    record: Option<&TapRecord>,
) -> Result<Plan, PlanError> {
    let t = check_tap(live, bridge, uplink, tap)?;
    if t.master.as_ref() != Some(bridge) {
        return Err(PlanError::TapNotAttached {
            tap: tap.clone(),
            bridge: bridge.clone(),
        });
    }
    Ok(Plan {
        steps: detach_steps(t, record),
        notes: vec![],
    })
}

/// `add` and `del` act on VM taps only: never the bridge, its uplink, or any other device.
fn check_tap<'a>(
    live: &'a Snapshot,
    bridge: &IfName,
    uplink: &IfName,
    tap: &IfName,
) -> Result<&'a Link, PlanError> {
    let t = live
        .net
        .link(tap)
        .ok_or_else(|| PlanError::NoSuchInterface(tap.clone()))?;
    if tap == bridge {
        return Err(PlanError::TapIsBridge(tap.clone()));
    }
    if tap == uplink {
        return Err(PlanError::TapIsUplink(tap.clone()));
    }
    if !matches!(t.kind, LinkKind::Tap(_)) {
        return Err(PlanError::NotATap {
            name: tap.clone(),
            kind: t.kind.name().to_string(),
        });
    }
    Ok(t)
}

/// Reverse of [`plan_add`]'s steps, shared with `stop --force`.
pub(crate) fn detach_steps(t: &Link, record: Option<&TapRecord>) -> Vec<Op> {
    let mut steps = vec![link_set(&t.name, LinkChange::NoMaster)];
    if let Some(rec) = record {
        steps.extend(restore_steps(t, rec));
    }
    steps
}

/// What `add` changed on a tap besides attaching it (also left behind by an `add` that
/// crashed before the attach).
pub(crate) fn restore_steps(t: &Link, rec: &TapRecord) -> Vec<Op> {
    let mut steps = Vec::new();
    if rec.mtu != t.mtu {
        steps.push(link_set(&t.name, LinkChange::Mtu(rec.mtu)));
    }
    if !rec.up && t.up {
        steps.push(link_set(&t.name, LinkChange::Down));
    }
    steps
}

/// The steps that take `record`'s tap off `bridge` and back to what the record has: what
/// `del` does, and what an `add` that cannot finish goes back to. A tap that is gone
/// needs nothing.
pub fn plan_detached(live: &Snapshot, bridge: &IfName, record: &TapRecord) -> Plan {
    let steps = match live.net.link(&record.name) {
        Some(t) if t.master.as_ref() == Some(bridge) => detach_steps(t, Some(record)),
        Some(t) if t.master.is_none() => restore_steps(t, record),
        _ => Vec::new(),
    };
    Plan {
        steps,
        notes: vec![],
    }
}

/// The MTU the tun driver gives a new tap.
pub const NEW_TAP_MTU: u32 = 1500;

/// Makes `tap` and attaches it to `bridge` like [`plan_add`]: created (down, at the tun
/// driver's MTU) if it is absent, then only what is not so already. An interface of that
/// name that is not this user's tap is refused, never taken over.
pub fn plan_made(
    live: &Snapshot,
    bridge: &IfName,
    uplink: &IfName,
    tap: &MadeTap,
) -> Result<Plan, PlanError> {
    match live.net.link(&tap.name) {
        Some(l) if is_made(l, tap) => plan_add(live, bridge, uplink, &tap.name).map(|(p, _)| p),
        Some(_) => Err(PlanError::TapNameTaken(tap.name.clone())),
        None => {
            let mut made = live.clone();
            made.net.links.push(Link {
                index: 0,
                name: tap.name.clone(),
                kind: LinkKind::Tap(TapInfo {
                    owner: tap.owner,
                    group: tap.group,
                    persist: true,
                }),
                mac: MacAddr::ZERO,
                mtu: NEW_TAP_MTU,
                up: false,
                carrier: false,
                master: None,
            });
            let (attach, _) = plan_add(&made, bridge, uplink, &tap.name)?;
            let mut steps = vec![Op::LinkAdd { spec: tap.spec() }];
            steps.extend(attach.steps);
            Ok(Plan {
                steps,
                notes: vec![],
            })
        }
    }
}

/// Whether `l` is the tap `tap` describes: a tap with its owner and group.
pub(crate) fn is_made(l: &Link, tap: &MadeTap) -> bool {
    matches!(l.kind, LinkKind::Tap(i) if i.owner == tap.owner && i.group == tap.group)
}

/// Deletes the tap `name` (which also takes it off any bridge); nothing when it is gone.
/// Only taps: any other interface of that name is refused.
pub fn plan_gone(live: &Snapshot, name: &IfName) -> Result<Plan, PlanError> {
    let steps = match live.net.link(name) {
        None => Vec::new(),
        Some(l) if l.kind.is_tap() => vec![Op::LinkDel { name: name.clone() }],
        Some(l) => {
            return Err(PlanError::NotATap {
                name: name.clone(),
                kind: l.kind.name().to_string(),
            })
        }
    };
    Ok(Plan {
        steps,
        notes: vec![],
    })
}
