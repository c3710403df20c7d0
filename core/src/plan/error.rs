//! Why a plan cannot be made. Each variant names the object and says what to do.

use crate::model::{IfName, LinkKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("interface {0} not found; list interfaces with `ip link`")]
    NoSuchInterface(IfName),
    #[error("interface {0} is the loopback; choose the interface that carries your LAN (see `ip route show default`)")]
    UplinkIsLoopback(IfName),
    #[error("interface {0} is a bridge already; env-qemu bridges a NIC, it does not nest bridges: name the NIC behind it")]
    UplinkIsBridge(IfName),
    #[error("interface {0} is wireless; most Wi-Fi drivers refuse to be bridged (802.11 allows one MAC per station): use a wired uplink, or NAT (e.g. QEMU `-netdev user`)")]
    UplinkIsWireless(IfName),
    #[error("interface {name} is a {kind}; the uplink must be an Ethernet-like device (NIC, veth, VLAN, macvlan)")]
    UplinkUnsupported { name: IfName, kind: String },
    #[error("interface {name} is already a port of {master}; release it first (`ip link set dev {name} nomaster`) or bridge {master} directly")]
    UplinkEnslaved { name: IfName, master: IfName },
    #[error("interface {0} disappeared while it was being bridged; nothing can be moved from it any more (`ip link` shows what is left)")]
    UplinkGone(IfName),
    #[error("interface {nic} is managed by {owner}, which env-qemu cannot hand over to the bridge: it would not renew the lease there{}; stop it or let it release {nic} first, or bridge anyway with `start --force`", .lease.as_ref().map(|l| format!(" ({l}, and the host then loses it)")).unwrap_or_default())]
    UnmanagedOwner {
        nic: IfName,
        owner: String,
        lease: Option<String>,
    },
    #[error("interface {0} already exists; choose another bridge name with --bridge, or stop what created it")]
    BridgeNameTaken(IfName),
    #[error("bridge name {0} is the uplink's own name; choose another with --bridge")]
    BridgeIsUplink(IfName),
    #[error("{0} shares its table, destination and metric with another route (`ip route append`); env-qemu moves routes with `replace`, which cannot tell them apart: give them distinct metrics first")]
    AppendedRoute(String),
    #[error("tmpfs {0} is not mounted; pass --shm-path to a tmpfs mount point or --shm-size off")]
    ShmNotMounted(String),
    #[error("interface {name} is a {kind}, not a tap; env-qemu attaches only tun/tap devices made for VMs")]
    NotATap { name: IfName, kind: String },
    #[error("interface {0} is the bridge itself; attach taps to it, not the bridge to itself")]
    TapIsBridge(IfName),
    #[error("interface {0} is the bridge's uplink, not a VM tap; `env-qemu stop` releases it")]
    TapIsUplink(IfName),
    #[error("interface {tap} is a port of another bridge, {master}; detach it there first (`ip link set dev {tap} nomaster`)")]
    TapInOtherBridge { tap: IfName, master: IfName },
    #[error("interface {tap} is not attached to {bridge}; nothing to detach")]
    TapNotAttached { tap: IfName, bridge: IfName },
    #[error("interface {0} already exists; choose another name for the tap, or delete that interface first")]
    TapNameTaken(IfName),
    #[error("no default route here: name the interface to bridge (`env-qemu start IFACE`, or `uplink` in /etc/env-qemu.toml)")]
    NoDefaultRoute,
    #[error("default routes through {} have the same metric: name the interface to bridge (`env-qemu start IFACE`, or `uplink` in /etc/env-qemu.toml)", .0.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" and "))]
    TiedDefaultRoutes(Vec<IfName>),
    #[error("bridge {bridge} still has VM taps attached ({}); shut those VMs down, detach them with `env-qemu del TAP`, or use `stop --force`", .taps.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
    TapsAttached { bridge: IfName, taps: Vec<IfName> },
}

impl PlanError {
    pub(crate) fn unsupported_uplink(name: &IfName, kind: &LinkKind) -> PlanError {
        match kind {
            LinkKind::Loopback => PlanError::UplinkIsLoopback(name.clone()),
            LinkKind::Bridge(_) => PlanError::UplinkIsBridge(name.clone()),
            LinkKind::Wireless => PlanError::UplinkIsWireless(name.clone()),
            k => PlanError::UplinkUnsupported {
                name: name.clone(),
                kind: k.name().to_string(),
            },
        }
    }

    /// True when the request itself is wrong (exit code "usage"), as opposed to a conflict
    /// with what is on the machine.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PlanError::NoSuchInterface(_) | PlanError::ShmNotMounted(_) | PlanError::NoDefaultRoute
        )
    }
}
