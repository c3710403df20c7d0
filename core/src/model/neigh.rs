//! Neighbour cache entries (`ip neigh`): the ARP and NDP tables of a device.
//!
//! env-qemu does not restore neighbour caches (they are the kernel's to keep), but it reads
//! the bridge's at `stop` and copies them to the NIC before the NIC takes the traffic back:
//! start emptied the NIC's ARP cache (deleting a device's last IPv4 address flushes it),
//! and while the NIC is still a bridge port it cannot fill it again, because ARP and
//! NDP replies to a port are consumed by the bridge.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Family, IfName, MacAddr};

/// `NUD_*`: the state of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudState {
    /// NUD_INCOMPLETE: address resolution under way.
    Incomplete,
    /// NUD_REACHABLE: confirmed recently.
    Reachable,
    /// NUD_STALE: known, not confirmed recently; checked on next use.
    Stale,
    /// NUD_DELAY: used while stale; waiting briefly for a confirmation before probing.
    Delay,
    /// NUD_PROBE: being probed by unicast.
    Probe,
    /// NUD_FAILED: resolution failed.
    Failed,
    /// NUD_NOARP: no resolution needed (multicast, point-to-point).
    Noarp,
    /// NUD_PERMANENT: a static entry (`ip neigh add … nud permanent`), never expires: the only
    /// state env-qemu restores.
    Permanent,
    /// NUD_NONE: no state yet.
    None,
}

impl NudState {
    /// The word `ip neigh` prints and accepts after `nud`.
    pub fn ip_word(self) -> &'static str {
        match self {
            NudState::Incomplete => "incomplete",
            NudState::Reachable => "reachable",
            NudState::Stale => "stale",
            NudState::Delay => "delay",
            NudState::Probe => "probe",
            NudState::Failed => "failed",
            NudState::Noarp => "noarp",
            NudState::Permanent => "permanent",
            NudState::None => "none",
        }
    }

    /// An entry the kernel learnt and holds a usable link-layer address for (NUD_VALID
    /// minus the administrative states).
    pub fn is_learnt(self) -> bool {
        matches!(
            self,
            NudState::Reachable | NudState::Stale | NudState::Delay | NudState::Probe
        )
    }
}

/// One entry of a device's neighbour table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Neighbour {
    /// The device of the entry.
    pub dev: IfName,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// None while unresolved (`incomplete`, `failed`).
    pub lladdr: Option<MacAddr>,
    /// The entry's state.
    pub state: NudState,
    /// NTF_ROUTER: the IPv6 neighbour announced itself as a router.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub router: bool,
}

impl Neighbour {
    /// IPv4 (ARP) or IPv6 (NDP).
    pub fn family(&self) -> Family {
        Family::of(&self.ip)
    }
}

impl fmt::Display for Neighbour {
    /// As errors name it: `neighbour 192.0.2.1 on eth0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "neighbour {} on {}", self.ip, self.dev)
    }
}
