//! Network interfaces as the kernel reports them (`ip -d link show`).

use serde::{Deserialize, Serialize};

use super::{IfName, MacAddr};

/// Bridge attributes env-qemu sets and restores (`ip link add … type bridge stp_state 0 forward_delay 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// Spanning tree on. Off for env-qemu's bridge: STP holds a new port ~30 s in listening/learning.
    pub stp: bool,
    /// In centiseconds, as the kernel stores and `ip -d link` prints it (1500 = 15 s).
    pub forward_delay: u32,
    /// True when the MAC was set explicitly (addr_assign_type 3): the kernel then keeps it
    /// through port changes instead of taking the lowest port MAC.
    pub mac_fixed: bool,
}

/// Persistent tun/tap attributes (`ip tuntap add … user U group G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct TapInfo {
    pub owner: Option<u32>,
    pub group: Option<u32>,
    /// Survives its opener closing it (TUNSETPERSIST). QEMU's own taps are not persistent.
    pub persist: bool,
}

/// What a link is. Devices without an rtnetlink kind are physical NICs (`Ethernet`) or
/// `Wireless` (a `wireless` directory in sysfs), which most drivers cannot bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Loopback,
    Ethernet,
    Wireless,
    Veth,
    Vlan,
    Macvlan,
    Bridge(BridgeInfo),
    Tap(TapInfo),
    /// A tun (layer 3) device: never a bridge port.
    Tun,
    Other(String),
}

impl LinkKind {
    /// The word `ip -d link` prints after the flags (`bridge`, `veth`, `tun`…).
    pub fn name(&self) -> &str {
        match self {
            LinkKind::Loopback => "loopback",
            LinkKind::Ethernet => "ethernet",
            LinkKind::Wireless => "wireless",
            LinkKind::Veth => "veth",
            LinkKind::Vlan => "vlan",
            LinkKind::Macvlan => "macvlan",
            LinkKind::Bridge(_) => "bridge",
            LinkKind::Tap(_) => "tap",
            LinkKind::Tun => "tun",
            LinkKind::Other(s) => s,
        }
    }

    pub fn is_bridge(&self) -> bool {
        matches!(self, LinkKind::Bridge(_))
    }

    pub fn is_tap(&self) -> bool {
        matches!(self, LinkKind::Tap(_))
    }
}

/// One interface. `index` is chosen by the kernel and never reused; everything else in the
/// model refers to links by name, so a restored state compares equal without it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    pub index: u32,
    pub name: IfName,
    pub kind: LinkKind,
    pub mac: MacAddr,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Lower layer up (IFF_LOWER_UP / carrier).
    pub carrier: bool,
    /// The bridge this link is a port of.
    pub master: Option<IfName>,
}
