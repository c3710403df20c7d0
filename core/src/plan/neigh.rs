//! Neighbour entries in plans: static ones carried between NIC and bridge, learnt ones
//! copied to the NIC at stop.

use crate::model::{IfName, Neighbour, NudState, Snapshot};
use crate::op::Op;

/// `ip neigh replace` putting `n` on `dev` as `state`; none for an unresolved entry.
pub(super) fn put_on(n: &Neighbour, dev: &IfName, state: NudState) -> Option<Op> {
    Some(Op::NeighReplace {
        dev: dev.clone(),
        ip: n.ip,
        lladdr: n.lladdr?,
        state,
        router: n.router,
    })
}

/// The static (`nud permanent`) entries `s` holds for `dev`.
pub(super) fn statics<'a>(s: &'a Snapshot, dev: &'a IfName) -> impl Iterator<Item = &'a Neighbour> {
    s.neighbours_of(dev)
        .filter(|n| n.state == NudState::Permanent)
}
