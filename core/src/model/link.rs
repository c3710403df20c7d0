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
    /// The user allowed to open it (`user U`, TUNSETOWNER); `None`: any user with CAP_NET_ADMIN.
    pub owner: Option<u32>,
    /// The group allowed to open it (`group G`, TUNSETGROUP).
    pub group: Option<u32>,
    /// Survives its opener closing it (TUNSETPERSIST). QEMU's own taps are not persistent.
    pub persist: bool,
}

/// What a link is. Devices without an rtnetlink kind are physical NICs (`Ethernet`) or
/// `Wireless` (a `wireless` directory in sysfs), which most drivers cannot bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// `lo` (IFF_LOOPBACK).
    Loopback,
    /// A device without an rtnetlink kind and without wireless: a physical NIC, usually.
    Ethernet,
    /// A Wi-Fi device (has `/sys/class/net/NAME/wireless`); most drivers refuse to be bridged.
    Wireless,
    /// One end of a veth pair (`type veth`).
    Veth,
    /// An 802.1Q VLAN device (`type vlan`).
    Vlan,
    /// A macvlan device (`type macvlan`).
    Macvlan,
    /// A Linux bridge (`type bridge`), with its settings.
    Bridge(BridgeInfo),
    /// A tap device (layer 2 tun/tap), what QEMU opens, with its persistent attributes.
    Tap(TapInfo),
    /// A tun (layer 3) device: never a bridge port.
    Tun,
    /// Any other rtnetlink kind (`dummy`, `bond`, `wireguard`…), by its IFLA_INFO_KIND.
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

    /// Whether it is a bridge.
    pub fn is_bridge(&self) -> bool {
        matches!(self, LinkKind::Bridge(_))
    }

    /// Whether it is a tap.
    pub fn is_tap(&self) -> bool {
        matches!(self, LinkKind::Tap(_))
    }
}

/// One interface. `index` is chosen by the kernel and never reused; everything else in the
/// model refers to links by name, so a restored state compares equal without it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    /// The ifindex the kernel gave it (`ip link` prints it first); zeroed by normalisation.
    pub index: u32,
    /// Its name (`dev NAME`).
    pub name: IfName,
    /// What kind of link it is.
    pub kind: LinkKind,
    /// Its MAC address (`link/ether`).
    pub mac: MacAddr,
    /// Its MTU (`mtu`).
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Lower layer up (IFF_LOWER_UP / carrier).
    pub carrier: bool,
    /// The bridge this link is a port of.
    pub master: Option<IfName>,
}
