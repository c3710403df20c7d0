//! NetworkManager as a manager of the uplink: what detection reports of it ([`NmDevice`]),
//! the in-memory profiles env-qemu gives it ([`NmProfile`]), and how they are made from
//! the NIC's own profile.
//!
//! The handover (docs/network-manager.md, measured with NetworkManager 1.42): NM adopts
//! the bridge while it is still empty — an in-memory bridge profile activated on it
//! flushes nothing then — env-qemu moves the addresses and routes, and NM adopts the NIC
//! as the bridge's port with a second in-memory profile. The bridge profile carries the
//! NIC profile's IP settings, with what keeps the host's identity: the DHCP client
//! identifier the NIC sent (same lease), EUI-64 address generation with the interface
//! identifier of the NIC's global IPv6 address as token (same IPv6 address), the route
//! metric of the NIC's routes (NM's routes then coincide with the moved ones).
//!
//! Everything here is data: no D-Bus. The backend reads and writes it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::model::{AddrFlag, AddrScope, Family, IfName, MacAddr, RouteProtocol, Snapshot};

/// The checkpoint's rollback timeout, in seconds: if env-qemu dies in the middle of a
/// handover, NetworkManager puts the host back this long after the checkpoint was made
/// (measured: a handover takes 0.3 s).
pub const CHECKPOINT_TIMEOUT: u32 = 30;

/// Checkpoint flags: DELETE_NEW_CONNECTIONS (0x2) | DISCONNECT_NEW_DEVICES (0x4). Only with
/// an empty device list (every device) does a rollback reach the bridge too.
pub const CHECKPOINT_FLAGS: u32 = 0x6;

/// NM's smallest bridge forward delay (2 s; 0 is refused): what the kernel shows once NM
/// has activated the bridge profile, in centiseconds. Harmless with STP off.
pub const FORWARD_DELAY_CS: u32 = 200;

/// A value of a profile setting, typed as NetworkManager's D-Bus API types it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum NmValue {
    /// A boolean (`b`).
    Bool(bool),
    /// A string (`s`).
    Str(String),
    /// A signed 32-bit integer (`i`).
    I32(i32),
    /// An unsigned 32-bit integer (`u`).
    U32(u32),
    /// A signed 64-bit integer (`x`).
    I64(i64),
    /// An unsigned 64-bit integer (`t`).
    U64(u64),
    /// `ay`
    Bytes(Vec<u8>),
    /// `as`
    Strs(Vec<String>),
    /// `au`
    U32s(Vec<u32>),
    /// `aay`
    BytesList(Vec<Vec<u8>>),
    /// `aa{sv}` (address-data, route-data, routing-rules)
    Dicts(Vec<BTreeMap<String, NmValue>>),
}

impl fmt::Display for NmValue {
    /// As nmcli takes it on a command line (lists comma-separated, bytes in hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        match self {
            NmValue::Bool(b) => f.write_str(if *b { "yes" } else { "no" }),
            NmValue::Str(s) => f.write_str(&shell_word(s)),
            NmValue::I32(v) => write!(f, "{v}"),
            NmValue::U32(v) => write!(f, "{v}"),
            NmValue::I64(v) => write!(f, "{v}"),
            NmValue::U64(v) => write!(f, "{v}"),
            NmValue::Bytes(b) => f.write_str(&hex(b)),
            NmValue::Strs(v) => f.write_str(&shell_word(&v.join(","))),
            NmValue::U32s(v) => {
                let words: Vec<String> = v.iter().map(u32::to_string).collect();
                f.write_str(&words.join(","))
            }
            NmValue::BytesList(v) => {
                let words: Vec<String> = v.iter().map(|b| hex(b)).collect();
                f.write_str(&words.join(","))
            }
            NmValue::Dicts(v) => {
                let items: Vec<String> = v
                    .iter()
                    .map(|d| {
                        d.iter()
                            .map(|(k, x)| format!("{k}={x}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                f.write_str(&shell_word(&items.join(", ")))
            }
        }
    }
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/,=@+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One section of a profile (`ipv4`, `ipv6`): key → value.
pub type NmSection = BTreeMap<String, NmValue>;

/// The state of an active connection (NMActiveConnectionState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NmActiveState {
    /// NM_ACTIVE_CONNECTION_STATE_ACTIVATING (1): being brought up (DHCP, DAD…).
    Activating,
    /// NM_ACTIVE_CONNECTION_STATE_ACTIVATED (2): up and configured.
    Activated,
    /// NM_ACTIVE_CONNECTION_STATE_DEACTIVATING (3): being taken down.
    Deactivating,
    /// NM_ACTIVE_CONNECTION_STATE_DEACTIVATED (4): down.
    Deactivated,
    /// NM_ACTIVE_CONNECTION_STATE_UNKNOWN (0), or a value this version does not know.
    Unknown,
}

impl NmActiveState {
    /// The state of NM's `State` property value `v`.
    pub fn from_raw(v: u32) -> NmActiveState {
        match v {
            1 => NmActiveState::Activating,
            2 => NmActiveState::Activated,
            3 => NmActiveState::Deactivating,
            4 => NmActiveState::Deactivated,
            _ => NmActiveState::Unknown,
        }
    }
}

/// The profile active on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmActive {
    /// The profile's UUID (`connection.uuid`).
    pub uuid: String,
    /// The profile's name (`connection.id`).
    pub id: String,
    /// Where its activation is.
    pub state: NmActiveState,
    /// NM only assumed the device's configuration (a profile it generated for what it
    /// found): it runs no DHCP or SLAAC there.
    pub external: bool,
}

/// What the bridge profile takes from the NIC's profile and its DHCP exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmCarried {
    /// The NIC profile's `ipv4` and `ipv6` settings, as NM returns them (deprecated
    /// duplicates left out).
    pub ipv4: NmSection,
    /// The NIC profile's `ipv6` settings, as for `ipv4`.
    pub ipv6: NmSection,
    /// The DHCP client identifier (option 61) NM sent on the NIC, `01:02:00:5e:10:00:01`.
    pub dhcp_client_id: Option<String>,
    /// The address of the NIC's DHCP lease, as NM reports it.
    pub lease: Option<IpAddr>,
}

/// A checkpoint of NetworkManager's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmCheckpoint {
    /// Its D-Bus object path (valid while NM runs).
    pub path: String,
    /// When it was made: CLOCK_BOOTTIME, in milliseconds.
    pub created_ms: u64,
    /// Its rollback timeout in seconds: NM restores the devices it holds when it expires.
    pub timeout: u32,
    /// The interfaces it holds.
    pub devices: Vec<IfName>,
}

/// An in-memory profile present in NetworkManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmProfileRef {
    /// The profile's UUID.
    pub uuid: String,
    /// The profile's name (`connection.id`).
    pub id: String,
}

/// What NetworkManager says of the whole host when a device is detected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmHost {
    /// CLOCK_BOOTTIME when detected, in milliseconds: a checkpoint created later was made
    /// after this detection.
    pub now_ms: u64,
    /// Every checkpoint NM has (it allows one per device at a time).
    pub checkpoints: Vec<NmCheckpoint>,
    /// The unsaved (in-memory) profiles.
    pub unsaved: Vec<NmProfileRef>,
}

impl NmHost {
    /// The checkpoints made since `since_ms` that hold one of `devs`: env-qemu's, made by
    /// a command that has not finished.
    pub fn checkpoints_since<'a>(
        &'a self,
        since_ms: u64,
        devs: &'a [&'a IfName],
    ) -> impl Iterator<Item = &'a NmCheckpoint> + 'a {
        self.checkpoints.iter().filter(move |c| {
            c.created_ms >= since_ms && c.devices.iter().any(|d| devs.contains(&d))
        })
    }

    /// Whether an in-memory profile with this UUID exists (one env-qemu added and did not delete).
    pub fn has_profile(&self, uuid: &str) -> bool {
        self.unsaved.iter().any(|p| p.uuid == uuid)
    }
}

/// NetworkManager's view of one device it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NmDevice {
    /// The profile active on it, if any.
    pub active: Option<NmActive>,
    /// For a device with a profile of its own (not external): what a bridge profile
    /// carries over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<NmCarried>,
    /// What NM says of the whole host.
    pub host: NmHost,
}

impl NmDevice {
    /// Whether NM itself configures the device (a profile of its own is active or
    /// activating there, not one it merely assumed).
    pub fn manages(&self) -> bool {
        self.active.as_ref().is_some_and(|a| {
            !a.external
                && matches!(
                    a.state,
                    NmActiveState::Activating | NmActiveState::Activated
                )
        })
    }

    /// The UUID of the profile NM runs on the device, if it manages it.
    pub fn profile(&self) -> Option<&str> {
        self.active
            .as_ref()
            .filter(|_| self.manages())
            .map(|a| a.uuid.as_str())
    }
}

/// What kind of profile env-qemu adds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NmProfileKind {
    /// The bridge, with the NIC's MAC, STP off.
    Bridge {
        /// The bridge's MAC: the NIC's, so DHCP leases and neighbours' caches stay valid.
        mac: MacAddr,
    },
    /// The NIC as a port of the bridge profile `master` (a UUID).
    Port {
        /// The UUID of the bridge profile.
        master: String,
    },
}

/// An in-memory profile env-qemu adds for the time it is started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NmProfile {
    /// Its UUID, derived from the start it belongs to (see [`stable_uuid`]).
    pub uuid: String,
    /// Its name (`connection.id`), as `nmcli connection show` lists it.
    pub id: String,
    /// The interface it binds to (`connection.interface-name`).
    pub dev: IfName,
    /// Bridge or port.
    pub kind: NmProfileKind,
    /// Its `ipv4` settings (the bridge carries the NIC's; a port has none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ipv4: NmSection,
    /// Its `ipv6` settings, as for `ipv4`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ipv6: NmSection,
}

impl NmProfile {
    /// `nmcli connection add save no …`: the same profile, made by nmcli.
    pub fn nmcli(&self) -> String {
        let mut s = String::from("nmcli connection add save no");
        match &self.kind {
            NmProfileKind::Bridge { mac } => {
                s.push_str(&format!(
                    " type bridge con-name {} ifname {} connection.uuid {} connection.autoconnect no bridge.mac-address {} bridge.stp no bridge.forward-delay 2",
                    shell_word(&self.id),
                    self.dev,
                    self.uuid,
                    mac.to_string().to_uppercase()
                ));
            }
            NmProfileKind::Port { master } => {
                s.push_str(&format!(
                    " type ethernet con-name {} ifname {} connection.uuid {} connection.autoconnect no master {master} slave-type bridge",
                    shell_word(&self.id),
                    self.dev,
                    self.uuid
                ));
            }
        }
        for (section, keys) in [("ipv4", &self.ipv4), ("ipv6", &self.ipv6)] {
            for (k, v) in keys {
                s.push_str(&format!(" {section}.{k} {v}"));
            }
        }
        s
    }
}

/// What `start` waits for after an activation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "until", rename_all = "snake_case")]
pub enum NmUntil {
    /// The device is configuring IP (state IP_CONFIG or later): the activation's flush of
    /// the device is over.
    IpConfig,
    /// The profile is activated.
    Activated,
    /// `dev` holds a DHCP lease of `address`, and is configuring IP or done.
    Lease {
        /// The device (the bridge).
        dev: IfName,
        /// The address leased (the NIC's).
        address: IpAddr,
    },
}

/// A UUID that depends only on `parts`: the same profile gets the same UUID in every
/// plan of one start (a re-plan finds what a previous round added), and a leftover of a
/// crashed run is recognised.
pub fn stable_uuid(parts: &[&str]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for byte in p.bytes().chain(std::iter::once(0)) {
            a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(byte))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(7);
        }
    }
    let mut x = [0u8; 16];
    x[..8].copy_from_slice(&a.to_be_bytes());
    x[8..].copy_from_slice(&b.to_be_bytes());
    // Version 8 (custom), RFC 4122 variant.
    x[6] = (x[6] & 0x0f) | 0x80;
    x[8] = (x[8] & 0x3f) | 0x80;
    let h: Vec<String> = x.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

/// NetworkManager's view of `dev` in `s`, if NM knows it.
pub fn device<'a>(s: &'a Snapshot, dev: &'a IfName) -> Option<&'a NmDevice> {
    s.managers.of(dev).find_map(|c| match c {
        crate::host::Client::NetworkManager(d) => Some(d.as_ref()),
        _ => None,
    })
}

/// Whether NetworkManager runs on the host of `s` (it reported one of the devices read).
pub fn host(s: &Snapshot) -> Option<&NmHost> {
    s.managers.managed.iter().find_map(|m| match &m.client {
        crate::host::Client::NetworkManager(d) => Some(&d.host),
        _ => None,
    })
}

/// The two profiles of a handover, and the NIC's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The bridge profile, carrying the NIC's IP settings.
    pub bridge: NmProfile,
    /// The port profile that enslaves the NIC.
    pub port: NmProfile,
    /// The NIC's own profile (what stop activates again).
    pub original: NmActive,
    /// The lease the bridge must get (the NIC's), if it had one.
    pub lease: Option<IpAddr>,
    /// When start's snapshot was taken (CLOCK_BOOTTIME ms): checkpoints since are env-qemu's.
    pub since_ms: u64,
}

/// The handover of `nic` onto `br`, computed from the pre-start snapshot: `None` unless
/// NetworkManager manages the NIC with a profile of its own.
pub fn handover(pre: &Snapshot, nic: &IfName, br: &IfName) -> Option<Handover> {
    let d = device(pre, nic).filter(|d| d.manages())?;
    let original = d.active.clone()?;
    let link = pre.net.link(nic)?;
    let carried = d.carried.clone().unwrap_or_default();
    let bridge_uuid = stable_uuid(&["env-qemu", "bridge", br.as_str(), &original.uuid]);
    let port_uuid = stable_uuid(&["env-qemu", "port", nic.as_str(), &bridge_uuid]);
    let (ipv4, ipv6) = bridge_ip(pre, nic, &carried);
    let lease = carried.lease.or_else(|| {
        pre.net
            .addresses_of(nic)
            .find(|a| a.family() == Family::Inet && a.valid_lft.is_some())
            .map(|a| a.ip)
    });
    Some(Handover {
        bridge: NmProfile {
            uuid: bridge_uuid.clone(),
            id: format!("env-qemu-{br}"),
            dev: br.clone(),
            kind: NmProfileKind::Bridge { mac: link.mac },
            ipv4,
            ipv6,
        },
        port: NmProfile {
            uuid: port_uuid,
            id: format!("env-qemu-{br}-port-{nic}"),
            dev: nic.clone(),
            kind: NmProfileKind::Port {
                master: bridge_uuid,
            },
            ipv4: NmSection::new(),
            ipv6: NmSection::new(),
        },
        original,
        lease,
        since_ms: d.host.now_ms,
    })
}

/// Keys NM returns twice (a deprecated form beside the current one) or that belong to
/// the NIC alone.
const NOT_CARRIED: [&str; 3] = ["addresses", "routes", "dhcp-iaid"];

/// The bridge profile's `ipv4` and `ipv6`: the NIC profile's, with the client identifier
/// the NIC sent, the metric of its routes, and its IPv6 address kept through EUI-64
/// generation with its interface identifier as token.
fn bridge_ip(pre: &Snapshot, nic: &IfName, carried: &NmCarried) -> (NmSection, NmSection) {
    let strip = |s: &NmSection| -> NmSection {
        s.iter()
            .filter(|(k, _)| !NOT_CARRIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (mut v4, mut v6) = (strip(&carried.ipv4), strip(&carried.ipv6));
    let method = |s: &NmSection, default: &str| match s.get("method") {
        Some(NmValue::Str(m)) => m.clone(),
        _ => default.to_string(),
    };
    if method(&v4, "auto") == "auto" {
        if let Some(id) = &carried.dhcp_client_id {
            v4.insert("dhcp-client-id".into(), NmValue::Str(id.clone()));
        }
    }
    for (fam, section) in [(Family::Inet, &mut v4), (Family::Inet6, &mut v6)] {
        let default = pre
            .net
            .routes_via(nic)
            .filter(|r| r.family() == fam && r.dst.is_default())
            .filter(|r| {
                matches!(
                    r.protocol,
                    RouteProtocol::Dhcp
                        | RouteProtocol::Ra
                        | RouteProtocol::Static
                        | RouteProtocol::Boot
                )
            })
            .map(|r| r.metric)
            .min();
        if let Some(m) = default {
            section.insert("route-metric".into(), NmValue::I64(i64::from(m)));
        }
    }
    let global = pre.net.addresses_of(nic).find(|a| {
        a.family() == Family::Inet6
            && a.scope == AddrScope::Global
            && a.valid_lft.is_some()
            && !a.has(AddrFlag::Temporary)
    });
    if let (Some(a), "auto") = (global, method(&v6, "auto").as_str()) {
        if let IpAddr::V6(ip) = a.ip {
            let mut iid = ip.octets();
            iid[..8].fill(0);
            v6.insert("addr-gen-mode".into(), NmValue::I32(0));
            v6.insert(
                "token".into(),
                NmValue::Str(Ipv6Addr::from(iid).to_string()),
            );
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_uuids_are_uuids_and_depend_on_their_parts() {
        let a = stable_uuid(&["env-qemu", "bridge", "lepont", "5f0d8d5e"]);
        assert_eq!(
            a,
            stable_uuid(&["env-qemu", "bridge", "lepont", "5f0d8d5e"])
        );
        assert_ne!(a, stable_uuid(&["env-qemu", "bridge", "br0", "5f0d8d5e"]));
        assert_ne!(
            stable_uuid(&["ab", "c"]),
            stable_uuid(&["a", "bc"]),
            "parts are separated"
        );
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{a}");
    }

    #[test]
    fn values_render_as_nmcli_takes_them() {
        assert_eq!(NmValue::Bool(false).to_string(), "no");
        assert_eq!(NmValue::Bytes(vec![2, 0, 0x5e]).to_string(), "02:00:5e");
        assert_eq!(
            NmValue::Strs(vec!["a.example".into(), "b".into()]).to_string(),
            "a.example,b"
        );
        assert_eq!(NmValue::Str("two words".into()).to_string(), "'two words'");
    }
}
