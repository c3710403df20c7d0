//! Why a plan cannot be made. Each variant names the object and says what to do.

use crate::model::{IfName, LinkKind};

/// Why a plan cannot be made: the request contradicts what is on the machine (a wrong interface, a
/// bridge name that is taken, an attached VM). Nothing has been changed when a planner returns it.
/// Each message names the object and the way out; the CLI maps [`PlanError::is_not_found`] to its
/// "not found" exit code and the rest to "conflict".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The named interface does not exist (here: the uplink of `start`).
    #[error("interface {0} not found; list interfaces with `ip link`")]
    NoSuchInterface(IfName),
    /// The uplink named is `lo`.
    #[error("interface {0} is the loopback; choose the interface that carries your LAN (see `ip route show default`)")]
    UplinkIsLoopback(IfName),
    /// The uplink named is a bridge.
    #[error("interface {0} is a bridge already; env-qemu bridges a NIC, it does not nest bridges: name the NIC behind it")]
    UplinkIsBridge(IfName),
    /// The uplink named is a Wi-Fi device (it has a `wireless` directory in sysfs).
    #[error("interface {0} is wireless; most Wi-Fi drivers refuse to be bridged (802.11 allows one MAC per station): use a wired uplink, or NAT (e.g. QEMU `-netdev user`)")]
    UplinkIsWireless(IfName),
    /// The uplink named is a kind of link that cannot carry the host's LAN onto a bridge (a
    /// tap, a tun device).
    #[error("interface {name} is a {kind}; the uplink must be an Ethernet-like device (NIC, veth, VLAN, macvlan)")]
    UplinkUnsupported {
        /// The uplink.
        name: IfName,
        /// Its kind, as `ip -d link` names it.
        kind: String,
    },
    /// The uplink named is already a port of a bridge (or a bond).
    #[error("interface {name} is already a port of {master}; release it first (`ip link set dev {name} nomaster`) or bridge {master} directly")]
    UplinkEnslaved {
        /// The uplink.
        name: IfName,
        /// The bridge it is a port of.
        master: IfName,
    },
    /// The uplink vanished between the first plan and a re-plan (a USB NIC unplugged, a driver
    /// reloaded).
    #[error("interface {0} disappeared while it was being bridged; nothing can be moved from it any more (`ip link` shows what is left)")]
    UplinkGone(IfName),
    /// The uplink's addresses come from a program env-qemu cannot hand over to the bridge
    /// (systemd-networkd, an unknown DHCP client). `start --force` bridges anyway.
    #[error("interface {nic} is managed by {owner}, which env-qemu cannot hand over to the bridge: it would not renew the lease there{}; stop it or let it release {nic} first, or bridge anyway with `start --force`", .lease.as_ref().map(|l| format!(" ({l}, and the host then loses it)")).unwrap_or_default())]
    UnmanagedOwner {
        /// The uplink.
        nic: IfName,
        /// The program, as the user knows it (`systemd-networkd`, `udhcpc (pid 812)`).
        owner: String,
        /// When the host would lose its IPv4 address on the bridge: the longest-lived dynamic
        /// address and its remaining lifetime, if it has one.
        lease: Option<String>,
    },
    /// A link with the bridge's name exists already and is not a bridge env-qemu can take over.
    #[error("interface {0} already exists; choose another bridge name with --bridge, or stop what created it")]
    BridgeNameTaken(IfName),
    /// The bridge and the uplink have the same name.
    #[error("bridge name {0} is the uplink's own name; choose another with --bridge")]
    BridgeIsUplink(IfName),
    /// A route of the uplink shares its key (table, destination, tos, metric) with another route
    /// (`ip route append`, or the same prefix on two devices): `ip route replace` could move the
    /// wrong one. The route, as `ip route` prints it.
    #[error("{0} shares its table, destination and metric with another route (`ip route append`); env-qemu moves routes with `replace`, which cannot tell them apart: give them distinct metrics first")]
    AppendedRoute(String),
    /// The `--shm-path` given is not a tmpfs mount point. The path.
    #[error("tmpfs {0} is not mounted; pass --shm-path to a tmpfs mount point or --shm-size off")]
    ShmNotMounted(String),
    /// `add` was given a link that is not a tap; `kind` is its IFLA_INFO_KIND.
    #[error("interface {name} is a {kind}, not a tap; env-qemu attaches only tun/tap devices made for VMs")]
    NotATap {
        /// The interface.
        name: IfName,
        /// Its kind, as `ip -d link` names it.
        kind: String,
    },
    /// `add` was given the bridge itself.
    #[error("interface {0} is the bridge itself; attach taps to it, not the bridge to itself")]
    TapIsBridge(IfName),
    /// `add` or `del` was given the uplink.
    #[error("interface {0} is the bridge's uplink, not a VM tap; `env-qemu stop` releases it")]
    TapIsUplink(IfName),
    /// `add` was given a tap that is a port of another bridge.
    #[error("interface {tap} is a port of another bridge, {master}; detach it there first (`ip link set dev {tap} nomaster`)")]
    TapInOtherBridge {
        /// The tap.
        tap: IfName,
        /// The bridge it is a port of.
        master: IfName,
    },
    /// `del` was given a tap that is not a port of the bridge.
    #[error("interface {tap} is not attached to {bridge}; nothing to detach")]
    TapNotAttached {
        /// The tap.
        tap: IfName,
        /// The bridge env-qemu runs.
        bridge: IfName,
    },
    /// `tap create` was given a name that is taken.
    #[error("interface {0} already exists; choose another name for the tap, or delete that interface first")]
    TapNameTaken(IfName),
    /// No uplink was named and the main table has no default route to choose one by.
    #[error("no default route here: name the interface to bridge (`env-qemu start IFACE`, or `uplink` in /etc/env-qemu.toml)")]
    NoDefaultRoute,
    /// No uplink was named and the default routes with the lowest metric go through several devices
    /// (listed).
    #[error("default routes through {} have the same metric: name the interface to bridge (`env-qemu start IFACE`, or `uplink` in /etc/env-qemu.toml)", .0.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" and "))]
    TiedDefaultRoutes(Vec<IfName>),
    /// `stop` without `--force` while VM taps (listed) are still ports of the bridge.
    #[error("bridge {bridge} still has VM taps attached ({}); shut those VMs down, detach them with `env-qemu del TAP`, or use `stop --force`", .taps.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
    TapsAttached {
        /// The bridge.
        bridge: IfName,
        /// The taps still attached.
        taps: Vec<IfName>,
    },
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

    /// True when the request names something that is not there (an interface, a tmpfs, a
    /// default route to choose the uplink by): the CLI's "not found" exit code. Every other
    /// variant is a conflict with what is on the machine.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PlanError::NoSuchInterface(_) | PlanError::ShmNotMounted(_) | PlanError::NoDefaultRoute
        )
    }
}
