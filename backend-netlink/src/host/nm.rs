//! NetworkManager over D-Bus (zbus's blocking API, on the host backend's own threads):
//! what it says of the devices, and the operations of a handover (docs/network-manager.md;
//! the calls are those measured against NetworkManager 1.42, docs/kernel-behaviour.md C10).
//!
//! The bus is the system bus named by `DBUS_SYSTEM_BUS_ADDRESS` when env-qemu started, or
//! the default path: never another. Before anything is asked, the bus daemon must say
//! that `org.freedesktop.NetworkManager` there is the NetworkManager process found in the
//! target network namespace: a bus reaching another namespace's NetworkManager is
//! refused, not asked.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use env_qemu_core::model::IfName;
use env_qemu_core::nm::{
    NmActive, NmActiveState, NmCarried, NmCheckpoint, NmDevice, NmHost, NmProfile, NmProfileKind,
    NmProfileRef, NmSection, NmUntil, NmValue, CHECKPOINT_FLAGS,
};
use env_qemu_core::ErrorKind;
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::error::HostFailure;

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub(crate) const DEFAULT_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
const SERVICE: &str = "org.freedesktop.NetworkManager";
const MANAGER: &str = "/org/freedesktop/NetworkManager";
const SETTINGS: &str = "/org/freedesktop/NetworkManager/Settings";
const I_MANAGER: &str = "org.freedesktop.NetworkManager";
const I_SETTINGS: &str = "org.freedesktop.NetworkManager.Settings";
const I_CONNECTION: &str = "org.freedesktop.NetworkManager.Settings.Connection";
const I_DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const I_ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const I_DHCP4: &str = "org.freedesktop.NetworkManager.DHCP4Config";
const I_CHECKPOINT: &str = "org.freedesktop.NetworkManager.Checkpoint";

/// NMDeviceState IP_CONFIG: the device is past the activation's flush.
const STATE_IP_CONFIG: u32 = 70;
/// NMDeviceState FAILED.
const STATE_FAILED: u32 = 120;
/// NMActivationStateFlags EXTERNAL: a configuration NM only assumed.
const FLAG_EXTERNAL: u32 = 0x80;
/// NMSettingsConnectionFlags UNSAVED: an in-memory profile.
const FLAG_UNSAVED: u32 = 0x1;
/// AddConnection2 flags: IN_MEMORY | BLOCK_AUTOCONNECT.
const ADD_FLAGS: u32 = 0x2 | 0x20;
/// How long an activation may take to reach what it waits for (NM's own DHCP timeout
/// is 45 s; the measured handover takes 0.3 s).
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

const FIX_LOG: &str =
    "see NetworkManager's log (`journalctl -u NetworkManager`); `env-qemu stop` puts the host back";

/// A connection to NetworkManager on the bus at `address`.
pub(crate) struct Nm {
    conn: Connection,
    address: String,
}

fn failure(e: &zbus::Error, what: &str, fix: &str) -> HostFailure {
    super::bus::failure(e, "NetworkManager", what, fix)
}

fn is_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str() == name)
}

impl Nm {
    /// Connects to `address` and checks that the NetworkManager there is process `pid`.
    pub(crate) fn connect(address: &str, pid: u32) -> Result<Nm, HostFailure> {
        let fix = "run env-qemu where NetworkManager's system bus is, or point DBUS_SYSTEM_BUS_ADDRESS at it";
        let conn = super::bus::connect_to(
            address,
            SERVICE,
            pid,
            "NetworkManager",
            "NetworkManager",
            fix,
        )?;
        Ok(Nm {
            conn,
            address: address.to_string(),
        })
    }

    fn call<B, R>(&self, path: &str, iface: &str, method: &str, body: &B) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        self.conn
            .call_method(Some(SERVICE), path, Some(iface), method, body)?
            .body()
            .deserialize()
    }

    fn all(&self, path: &str, iface: &str) -> zbus::Result<HashMap<String, OwnedValue>> {
        self.call(path, "org.freedesktop.DBus.Properties", "GetAll", &(iface,))
    }

    fn prop(&self, path: &str, iface: &str, name: &str) -> zbus::Result<OwnedValue> {
        self.call(
            path,
            "org.freedesktop.DBus.Properties",
            "Get",
            &(iface, name),
        )
    }

    /// The object path of device `dev`, or `None` if NetworkManager does not know it.
    fn device_path(&self, dev: &str) -> zbus::Result<Option<OwnedObjectPath>> {
        match self.call(MANAGER, I_MANAGER, "GetDeviceByIpIface", &(dev,)) {
            Ok(p) => Ok(Some(p)),
            Err(e) if is_error(&e, "org.freedesktop.NetworkManager.UnknownDevice") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn connection_path(&self, uuid: &str) -> zbus::Result<Option<OwnedObjectPath>> {
        match self.call(SETTINGS, I_SETTINGS, "GetConnectionByUuid", &(uuid,)) {
            Ok(p) => Ok(Some(p)),
            Err(e)
                if is_error(
                    &e,
                    "org.freedesktop.NetworkManager.Settings.InvalidConnection",
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// What NetworkManager says of the host as a whole.
    fn host(&self) -> zbus::Result<NmHost> {
        let now_ms = boottime_ms();
        let mut checkpoints = Vec::new();
        let paths: Vec<OwnedObjectPath> =
            self.prop(MANAGER, I_MANAGER, "Checkpoints")?.try_into()?;
        for path in paths {
            let Ok(p) = self.all(path.as_str(), I_CHECKPOINT) else {
                continue; // destroyed or rolled back meanwhile
            };
            let mut devices = Vec::new();
            if let Some(ds) = p
                .get("Devices")
                .and_then(|v| Vec::<OwnedObjectPath>::try_from(v.clone()).ok())
            {
                for d in ds {
                    let name = self
                        .prop(d.as_str(), I_DEVICE, "Interface")
                        .ok()
                        .and_then(|v| String::try_from(v).ok())
                        .and_then(|n| IfName::new(&n).ok());
                    devices.extend(name);
                }
            }
            checkpoints.push(NmCheckpoint {
                path: path.to_string(),
                created_ms: get(&p, "Created")
                    .and_then(|v| i64::try_from(v).ok())
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
                timeout: get(&p, "RollbackTimeout")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                devices,
            });
        }
        let mut unsaved = Vec::new();
        let profiles: Vec<OwnedObjectPath> =
            self.call(SETTINGS, I_SETTINGS, "ListConnections", &())?;
        for path in profiles {
            let flags = self
                .prop(path.as_str(), I_CONNECTION, "Flags")
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0);
            if flags & FLAG_UNSAVED == 0 {
                continue;
            }
            let Ok(settings) = self.settings(path.as_str()) else {
                continue;
            };
            let conn = settings.get("connection");
            let text = |k: &str| {
                conn.and_then(|c| c.get(k))
                    .and_then(|v| String::try_from(v.clone()).ok())
                    .unwrap_or_default()
            };
            unsaved.push(NmProfileRef {
                uuid: text("uuid"),
                id: text("id"),
            });
        }
        Ok(NmHost {
            now_ms,
            checkpoints,
            unsaved,
        })
    }

    fn settings(&self, path: &str) -> zbus::Result<HashMap<String, HashMap<String, OwnedValue>>> {
        self.call(path, I_CONNECTION, "GetSettings", &())
    }

    /// NetworkManager's view of each of `devs` it knows.
    pub(crate) fn devices(&self, devs: &[IfName]) -> Result<Vec<(IfName, NmDevice)>, HostFailure> {
        let what = |e: zbus::Error| {
            failure(
                &e,
                &format!("ask NetworkManager on {}", self.address),
                FIX_LOG,
            )
        };
        let host = self.host().map_err(what)?;
        let mut out = Vec::new();
        for dev in devs {
            let Some(path) = self.device_path(dev.as_str()).map_err(what)? else {
                continue;
            };
            let d = self.all(path.as_str(), I_DEVICE).map_err(what)?;
            let active_path = get(&d, "ActiveConnection")
                .and_then(|v| OwnedObjectPath::try_from(v).ok())
                .filter(|p| p.as_str() != "/");
            let mut device = NmDevice {
                active: None,
                carried: None,
                host: host.clone(),
            };
            if let Some(ap) = active_path {
                // Gone meanwhile: no profile active.
                if let Ok(a) = self.all(ap.as_str(), I_ACTIVE) {
                    let text = |k| {
                        get(&a, k)
                            .and_then(|v| String::try_from(v).ok())
                            .unwrap_or_default()
                    };
                    let flags = get(&a, "StateFlags")
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(0);
                    let active = NmActive {
                        uuid: text("Uuid"),
                        id: text("Id"),
                        state: NmActiveState::from_raw(
                            get(&a, "State")
                                .and_then(|v| u32::try_from(v).ok())
                                .unwrap_or(0),
                        ),
                        external: flags & FLAG_EXTERNAL != 0,
                    };
                    if !active.external {
                        let profile =
                            get(&a, "Connection").and_then(|v| OwnedObjectPath::try_from(v).ok());
                        let dhcp =
                            get(&d, "Dhcp4Config").and_then(|v| OwnedObjectPath::try_from(v).ok());
                        device.carried = Some(self.carried(profile, dhcp).map_err(what)?);
                    }
                    device.active = Some(active);
                }
            }
            out.push((dev.clone(), device));
        }
        Ok(out)
    }

    /// The IP settings of `profile` and what NM's DHCP client sent and got.
    fn carried(
        &self,
        profile: Option<OwnedObjectPath>,
        dhcp: Option<OwnedObjectPath>,
    ) -> zbus::Result<NmCarried> {
        let mut c = NmCarried::default();
        if let Some(p) = profile.filter(|p| p.as_str() != "/") {
            let s = self.settings(p.as_str())?;
            let section = |name: &str| -> NmSection {
                s.get(name)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), from_value(v)?)))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            c.ipv4 = section("ipv4");
            c.ipv6 = section("ipv6");
        }
        if let Some(d) = dhcp.filter(|p| p.as_str() != "/") {
            let options = self.dhcp_options(d.as_str())?;
            c.dhcp_client_id = options.get("dhcp_client_identifier").cloned();
            c.lease = options.get("ip_address").and_then(|a| a.parse().ok());
        }
        Ok(c)
    }

    fn dhcp_options(&self, path: &str) -> zbus::Result<HashMap<String, String>> {
        let options: HashMap<String, OwnedValue> =
            self.prop(path, I_DHCP4, "Options")?.try_into()?;
        Ok(options
            .into_iter()
            .filter_map(|(k, v)| Some((k, String::try_from(v).ok()?)))
            .collect())
    }

    pub(crate) fn checkpoint_create(&self, timeout: u32) -> Result<(), HostFailure> {
        let devices: Vec<OwnedObjectPath> = Vec::new();
        let _: OwnedObjectPath = self
            .call(MANAGER, I_MANAGER, "CheckpointCreate", &(devices, timeout, CHECKPOINT_FLAGS))
            .map_err(|e| {
                failure(
                    &e,
                    "CheckpointCreate",
                    "another checkpoint holds the devices (`busctl get-property org.freedesktop.NetworkManager /org/freedesktop/NetworkManager org.freedesktop.NetworkManager Checkpoints`): wait for it to end, then run the command again",
                )
            })?;
        Ok(())
    }

    /// Destroys the checkpoints made since `since_ms` that hold one of `devices`.
    pub(crate) fn checkpoint_destroy(
        &self,
        since_ms: u64,
        devices: &[IfName],
    ) -> Result<(), HostFailure> {
        let host = self
            .host()
            .map_err(|e| failure(&e, "list NetworkManager's checkpoints", FIX_LOG))?;
        let refs: Vec<&IfName> = devices.iter().collect();
        for c in host.checkpoints_since(since_ms, &refs) {
            let path = zbus::zvariant::ObjectPath::try_from(c.path.as_str())
                .map_err(|e| failure(&zbus::Error::Variant(e), "CheckpointDestroy", FIX_LOG))?;
            match self.call::<_, ()>(MANAGER, I_MANAGER, "CheckpointDestroy", &(path,)) {
                Ok(()) => {}
                // Rolled back or destroyed meanwhile: gone is what is wanted.
                Err(e) if is_error(&e, "org.freedesktop.NetworkManager.InvalidArguments") => {}
                Err(e) => {
                    return Err(failure(
                        &e,
                        &format!("CheckpointDestroy {}", c.path),
                        FIX_LOG,
                    ))
                }
            }
        }
        Ok(())
    }

    pub(crate) fn add(&self, p: &NmProfile) -> Result<(), HostFailure> {
        let settings = profile_settings(p);
        let args: HashMap<&str, Value<'_>> = HashMap::new();
        let _: (OwnedObjectPath, HashMap<String, OwnedValue>) = self
            .call(SETTINGS, I_SETTINGS, "AddConnection2", &(settings, ADD_FLAGS, args))
            .map_err(|e| failure(&e, "AddConnection2", "NetworkManager refused the profile: run `env-qemu start --dry-run` to see it as nmcli would add it"))?;
        Ok(())
    }

    pub(crate) fn delete(&self, uuid: &str) -> Result<(), HostFailure> {
        let Some(path) = self
            .connection_path(uuid)
            .map_err(|e| failure(&e, "GetConnectionByUuid", FIX_LOG))?
        else {
            return Ok(());
        };
        match self.call::<_, ()>(path.as_str(), I_CONNECTION, "Delete", &()) {
            Ok(()) => Ok(()),
            Err(e)
                if is_error(&e, "org.freedesktop.DBus.Error.UnknownMethod")
                    || is_error(&e, "org.freedesktop.DBus.Error.UnknownObject") =>
            {
                Ok(())
            }
            Err(e) => Err(failure(&e, "Delete", FIX_LOG)),
        }
    }

    /// Activates profile `uuid` on `dev`, then waits for `until`.
    pub(crate) fn activate(
        &self,
        uuid: &str,
        dev: &IfName,
        until: &NmUntil,
    ) -> Result<(), HostFailure> {
        let fix = "is the profile still there (`nmcli connection show`)? `env-qemu stop` puts the host back";
        let profile = self
            .connection_path(uuid)
            .map_err(|e| failure(&e, "GetConnectionByUuid", fix))?
            .ok_or_else(|| {
                HostFailure::new(
                    ErrorKind::NotFound,
                    "NetworkManager has no such profile",
                    fix,
                )
            })?;
        let device = self
            .device_path(dev.as_str())
            .map_err(|e| failure(&e, "GetDeviceByIpIface", fix))?
            .ok_or_else(|| {
                HostFailure::new(
                    ErrorKind::NotFound,
                    format!("NetworkManager does not know {dev}"),
                    "is the device unmanaged (`nmcli device`)? `env-qemu stop` puts the host back",
                )
            })?;
        let none = zbus::zvariant::ObjectPath::from_static_str_unchecked("/");
        let active: OwnedObjectPath = self
            .call(
                MANAGER,
                I_MANAGER,
                "ActivateConnection",
                &(profile.as_ref(), device.as_ref(), none),
            )
            .map_err(|e| failure(&e, "ActivateConnection", FIX_LOG))?;
        self.wait(&active, &device, dev, until)
    }

    fn wait(
        &self,
        active: &OwnedObjectPath,
        device: &OwnedObjectPath,
        dev: &IfName,
        until: &NmUntil,
    ) -> Result<(), HostFailure> {
        let start = Instant::now();
        let u32_of = |path: &str, iface: &str, name: &str| {
            self.prop(path, iface, name)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
        };
        loop {
            let ac = u32_of(active.as_str(), I_ACTIVE, "State").map(NmActiveState::from_raw);
            let state = u32_of(device.as_str(), I_DEVICE, "State").unwrap_or(0);
            if matches!(ac, Some(NmActiveState::Deactivated) | None) || state == STATE_FAILED {
                let reason = self
                    .prop(device.as_str(), I_DEVICE, "StateReason")
                    .ok()
                    .and_then(|v| <(u32, u32)>::try_from(v).ok())
                    .map_or(0, |(_, r)| r);
                return Err(HostFailure::new(
                    ErrorKind::Other,
                    format!("NetworkManager gave up the activation on {dev} (device state reason {reason})"),
                    FIX_LOG,
                ));
            }
            let done = match until {
                NmUntil::IpConfig => state >= STATE_IP_CONFIG,
                NmUntil::Activated => ac == Some(NmActiveState::Activated),
                NmUntil::Lease { dev: on, address } => {
                    state >= STATE_IP_CONFIG && self.leased(on, *address)
                }
            };
            if done {
                return Ok(());
            }
            if start.elapsed() > WAIT {
                return Err(HostFailure::new(
                    ErrorKind::Other,
                    format!(
                        "NetworkManager did not get {dev} to {until:?} within {} s (device state {state}, activation {ac:?})",
                        WAIT.as_secs()
                    ),
                    FIX_LOG,
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether NM's DHCP client on `dev` holds a lease of `address`.
    fn leased(&self, dev: &IfName, address: IpAddr) -> bool {
        let Ok(Some(path)) = self.device_path(dev.as_str()) else {
            return false;
        };
        let dhcp = self
            .prop(path.as_str(), I_DEVICE, "Dhcp4Config")
            .ok()
            .and_then(|v| OwnedObjectPath::try_from(v).ok())
            .filter(|p| p.as_str() != "/");
        dhcp.and_then(|p| self.dhcp_options(p.as_str()).ok())
            .and_then(|o| o.get("ip_address").and_then(|a| a.parse::<IpAddr>().ok()))
            == Some(address)
    }
}

fn get(m: &HashMap<String, OwnedValue>, k: &str) -> Option<OwnedValue> {
    m.get(k).and_then(|v| v.try_clone().ok())
}

/// CLOCK_BOOTTIME in milliseconds: the clock of a checkpoint's `Created`.
fn boottime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
                + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000
        })
        .unwrap_or(0)
}

/// A setting's value, if it has one of the types [`NmValue`] knows.
fn from_value(v: &Value<'_>) -> Option<NmValue> {
    Some(match v {
        Value::Bool(b) => NmValue::Bool(*b),
        Value::Str(s) => NmValue::Str(s.to_string()),
        Value::I32(x) => NmValue::I32(*x),
        Value::U32(x) => NmValue::U32(*x),
        Value::I64(x) => NmValue::I64(*x),
        Value::U64(x) => NmValue::U64(*x),
        Value::Value(inner) => return from_value(inner),
        Value::Array(a) => {
            let items = a.iter();
            match a.element_signature().to_string().as_str() {
                "y" => NmValue::Bytes(items.map(|x| u8::try_from(x).ok()).collect::<Option<_>>()?),
                "s" => NmValue::Strs(
                    items
                        .map(|x| match x {
                            Value::Str(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                "u" => NmValue::U32s(
                    items
                        .map(|x| u32::try_from(x).ok())
                        .collect::<Option<_>>()?,
                ),
                "ay" => NmValue::BytesList(
                    items
                        .map(|x| match from_value(x) {
                            Some(NmValue::Bytes(b)) => Some(b),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                "a{sv}" => NmValue::Dicts(
                    items
                        .map(|x| match x {
                            Value::Dict(d) => Some(
                                d.iter()
                                    .filter_map(|(k, v)| match k {
                                        Value::Str(k) => Some((k.to_string(), from_value(v)?)),
                                        _ => None,
                                    })
                                    .collect::<BTreeMap<String, NmValue>>(),
                            ),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            }
        }
        _ => return None,
    })
}

fn to_value(v: &NmValue) -> Value<'static> {
    match v {
        NmValue::Bool(b) => Value::from(*b),
        NmValue::Str(s) => Value::from(s.clone()),
        NmValue::I32(x) => Value::from(*x),
        NmValue::U32(x) => Value::from(*x),
        NmValue::I64(x) => Value::from(*x),
        NmValue::U64(x) => Value::from(*x),
        NmValue::Bytes(b) => Value::from(b.clone()),
        NmValue::Strs(s) => Value::from(s.clone()),
        NmValue::U32s(x) => Value::from(x.clone()),
        NmValue::BytesList(x) => Value::from(x.clone()),
        NmValue::Dicts(ds) => {
            let dicts: Vec<HashMap<String, Value<'static>>> = ds
                .iter()
                .map(|d| d.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
                .collect();
            Value::from(dicts)
        }
    }
}

/// The profile as `AddConnection2` takes it (a{sa{sv}}).
fn profile_settings(p: &NmProfile) -> HashMap<&'static str, HashMap<String, Value<'static>>> {
    let mut s: HashMap<&'static str, HashMap<String, Value<'static>>> = HashMap::new();
    let mut conn: HashMap<String, Value<'static>> = HashMap::new();
    conn.insert("id".into(), Value::from(p.id.clone()));
    conn.insert("uuid".into(), Value::from(p.uuid.clone()));
    conn.insert("interface-name".into(), Value::from(p.dev.to_string()));
    conn.insert("autoconnect".into(), Value::from(false));
    match &p.kind {
        NmProfileKind::Bridge { mac } => {
            conn.insert("type".into(), Value::from("bridge"));
            let mut bridge: HashMap<String, Value<'static>> = HashMap::new();
            bridge.insert("mac-address".into(), Value::from(mac.0.to_vec()));
            bridge.insert("stp".into(), Value::from(false));
            bridge.insert("forward-delay".into(), Value::from(2u32));
            s.insert("bridge", bridge);
            let section = |x: &NmSection| -> HashMap<String, Value<'static>> {
                x.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()
            };
            s.insert("ipv4", section(&p.ipv4));
            s.insert("ipv6", section(&p.ipv6));
        }
        NmProfileKind::Port { master } => {
            conn.insert("type".into(), Value::from("802-3-ethernet"));
            conn.insert("master".into(), Value::from(master.clone()));
            conn.insert("slave-type".into(), Value::from("bridge"));
            s.insert("802-3-ethernet", HashMap::new());
            s.insert("bridge-port", HashMap::new());
        }
    }
    s.insert("connection", conn);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_values_read_back_what_they_write() {
        let mut route = BTreeMap::new();
        route.insert("dest".to_string(), NmValue::Str("192.0.2.0".into()));
        route.insert("prefix".to_string(), NmValue::U32(24));
        for v in [
            NmValue::Bool(true),
            NmValue::Str("01:02:00:5e:10:00:01".into()),
            NmValue::I32(-1),
            NmValue::I64(100),
            NmValue::Bytes(vec![2, 0, 0x5e]),
            NmValue::Strs(vec!["a".into(), "b".into()]),
            NmValue::U32s(vec![16_843_009]),
            NmValue::BytesList(vec![vec![0x20, 1], vec![]]),
            NmValue::Dicts(vec![route]),
        ] {
            assert_eq!(from_value(&to_value(&v)), Some(v.clone()), "{v:?}");
        }
    }
}
