//! systemd-networkd as a manager of the uplink: what detection reports of a link it
//! manages ([`NetworkdLink`]), and the runtime `.network` files env-qemu gives it for the
//! time the NIC is bridged ([`Handover`]).
//!
//! The handover (docs/networkd.md, measured with systemd 252): networkd adopts the empty
//! bridge through `/run/systemd/network/00-env-qemu-BRIDGE.network`, which carries the
//! NIC's own `.network` file (its DHCP and IPv6 settings) with the NIC's DHCP IAID pinned
//! (networkd derives the IAID from the interface: pinned, the bridge sends the NIC's client
//! identifier and the server renews the same lease) and `IgnoreCarrierLoss=yes`; a reload
//! (`org.freedesktop.network1.Manager.Reload`); env-qemu's zero-loss move; then
//! `00-env-qemu-NIC.network` (`Bridge=`, `KeepMaster=yes`) and a reload, so that no later
//! reload detaches the port. Runtime files only: the host's own configuration is never
//! written. `stop` moves everything back, removes both files and reloads: networkd then
//! runs the NIC's own file again and renews on it.
//!
//! Everything here is data: no files, no D-Bus. The backend reads and writes them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Family, IfName, Snapshot};

/// Where networkd reads runtime `.network` files (before /etc/systemd/network's of the
/// same name; `00-` sorts before a host's own).
pub const RUNTIME_DIR: &str = "/run/systemd/network";

/// The runtime file env-qemu writes for `dev`: `/run/systemd/network/00-env-qemu-DEV.network`.
pub fn runtime_file(dev: &IfName) -> PathBuf {
    Path::new(RUNTIME_DIR).join(format!("00-env-qemu-{dev}.network"))
}

/// Whether `path` is one of env-qemu's runtime files.
pub fn is_runtime_file(path: &Path) -> bool {
    path.parent() == Some(Path::new(RUNTIME_DIR))
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("00-env-qemu-") && n.ends_with(".network"))
}

/// What networkd's state files say of one link (`/run/systemd/netif/links/INDEX`,
/// `/run/systemd/netif/leases/INDEX`), and env-qemu's runtime files present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkdLink {
    /// `ADMIN_STATE`: `configuring`, `configured`, `unmanaged`, `failed`, `linger`…
    pub state: Option<String>,
    /// `NETWORK_FILE`: the `.network` file networkd applies to the link.
    pub network_file: Option<PathBuf>,
    /// That file's text, when it could be read.
    pub network: Option<String>,
    /// The IAID of the DHCPv4 client identifier networkd sent on the link (`CLIENTID=ff…`
    /// of its lease: type 255, IAID, DUID, RFC 4361).
    pub iaid: Option<u32>,
    /// The address of its DHCPv4 lease.
    pub lease: Option<IpAddr>,
    /// env-qemu's runtime files present in [`RUNTIME_DIR`], with their text.
    pub runtime: BTreeMap<PathBuf, String>,
}

impl NetworkdLink {
    /// Whether networkd configures the link with a `.network` file of its own.
    pub fn manages(&self) -> bool {
        self.network_file.is_some()
            && matches!(
                self.state.as_deref(),
                Some("configuring" | "configured" | "pending" | "initialized")
            )
    }

    /// Whether networkd applies `file` to the link, and got past dropping the link's
    /// foreign configuration (`configuring` or `configured`).
    pub fn runs(&self, file: &Path) -> bool {
        self.network_file.as_deref() == Some(file)
            && matches!(self.state.as_deref(), Some("configuring" | "configured"))
    }
}

/// What networkd says of `dev` in `s`, if it manages it.
pub fn link<'a>(s: &'a Snapshot, dev: &'a IfName) -> Option<&'a NetworkdLink> {
    s.managers.of(dev).find_map(|c| match c {
        crate::host::Client::Networkd(l) => Some(l.as_ref()),
        _ => None,
    })
}

/// Whether networkd runs on the host of `s` (it reported one of the devices read), and
/// env-qemu's runtime files it has.
pub fn host(s: &Snapshot) -> Option<&BTreeMap<PathBuf, String>> {
    s.managers.managed.iter().find_map(|m| match &m.client {
        crate::host::Client::Networkd(l) => Some(&l.runtime),
        _ => None,
    })
}

/// A runtime file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFile {
    /// The device it matches.
    pub dev: IfName,
    /// Where it goes: [`runtime_file`] of `dev`.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// The runtime files of a handover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The bridge's: the NIC's network with its IAID.
    pub bridge: RuntimeFile,
    /// The NIC's: a port of the bridge, kept there.
    pub port: RuntimeFile,
    /// The NIC's own `.network` file (what networkd runs on it again after stop).
    pub original: PathBuf,
    /// The lease the NIC had.
    pub lease: Option<IpAddr>,
}

/// The handover of `nic` onto `br`, from the pre-start snapshot: `None` unless networkd
/// manages the NIC with a `.network` file whose text detection could read.
pub fn handover(pre: &Snapshot, nic: &IfName, br: &IfName) -> Option<Handover> {
    let l = link(pre, nic).filter(|l| l.manages())?;
    let original = l.network_file.clone()?;
    let text = l.network.as_deref()?;
    let lease = l.lease.or_else(|| {
        pre.net
            .addresses_of(nic)
            .find(|a| a.family() == Family::Inet && a.valid_lft.is_some())
            .map(|a| a.ip)
    });
    Some(Handover {
        bridge: RuntimeFile {
            dev: br.clone(),
            path: runtime_file(br),
            text: bridge_network(text, &original, nic, br, l.iaid),
        },
        port: RuntimeFile {
            dev: nic.clone(),
            path: runtime_file(nic),
            text: port_network(nic, br),
        },
        original,
        lease,
    })
}

/// Sections of the NIC's file that belong to the NIC alone.
const NOT_CARRIED: [&str; 3] = ["Match", "Link", "SR-IOV"];
/// Keys of `[Network]` that belong to the NIC alone (it is the port, not the bridge).
const NOT_CARRIED_KEYS: [&str; 8] = [
    "Bridge",
    "Bond",
    "VRF",
    "KeepMaster",
    "BatmanAdvanced",
    "IgnoreCarrierLoss",
    "VLAN",
    "MACVLAN",
];

/// The bridge's runtime file: the NIC's network (every section but those of the NIC
/// alone), matched on the bridge, with `IgnoreCarrierLoss=yes` (the bridge loses carrier
/// for an instant when its last port goes: networkd must not drop its configuration) and
/// the NIC's IAID in `[DHCPv4]`.
pub fn bridge_network(
    original: &str,
    from: &Path,
    nic: &IfName,
    br: &IfName,
    iaid: Option<u32>,
) -> String {
    let mut out = format!(
        "# env-qemu: {br} runs {nic}'s network ({}) while {nic} is its port.\n\
         # A runtime file: `env-qemu stop` removes it.\n\n[Match]\nName={br}\n",
        from.display()
    );
    let sections = parse(original);
    let mut network_done = false;
    let mut dhcp_done = false;
    for (name, lines) in &sections {
        if NOT_CARRIED.contains(&name.as_str()) {
            continue;
        }
        out.push_str(&format!("\n[{name}]\n"));
        for (k, v) in lines {
            let skip = (name == "Network" && NOT_CARRIED_KEYS.contains(&k.as_str()))
                || (name == "DHCPv4" && k == "IAID");
            if !skip {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        if name == "Network" && !network_done {
            out.push_str("IgnoreCarrierLoss=yes\n");
            network_done = true;
        }
        if name == "DHCPv4" && !dhcp_done {
            if let Some(i) = iaid {
                out.push_str(&format!("IAID={i}\n"));
            }
            dhcp_done = true;
        }
    }
    if !network_done {
        out.push_str("\n[Network]\nIgnoreCarrierLoss=yes\n");
    }
    if let (false, Some(i)) = (dhcp_done, iaid) {
        out.push_str(&format!("\n[DHCPv4]\nIAID={i}\n"));
    }
    out
}

/// The NIC's runtime file while it is a port: `Bridge=` with `KeepMaster=yes`, so that a
/// reload never detaches it. No link-local address (networkd's default for a port, and
/// what env-qemu leaves on one: nothing).
pub fn port_network(nic: &IfName, br: &IfName) -> String {
    format!(
        "# env-qemu: {nic} is a port of {br}; {br} runs {nic}'s network.\n\
         # A runtime file: `env-qemu stop` removes it.\n\n[Match]\nName={nic}\n\n\
         [Network]\nBridge={br}\nKeepMaster=yes\nLinkLocalAddressing=no\n\
         IPv6AcceptRA=no\nDHCP=no\n"
    )
}

/// The sections of a systemd unit-style file, in order (a section named twice appears
/// twice), each with its `Key=Value` lines; comments and blank lines dropped,
/// continuation lines joined.
pub fn parse(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending) + line;
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            out.push((name.trim().to_string(), Vec::new()));
        } else if let (Some((k, v)), Some(last)) = (full.split_once('='), out.last_mut()) {
            last.1.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The IAID in a DHCPv4 client identifier as networkd's lease file writes it
/// (`CLIENTID=ff5075b0dd0002…`: type 255, then the IAID, big-endian).
pub fn iaid_of_client_id(hex: &str) -> Option<u32> {
    let hex = hex.trim();
    if !hex.starts_with("ff") || hex.len() < 10 {
        return None;
    }
    u32::from_str_radix(hex.get(2..10)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    const ETH0: &str = "# the host's\n[Match]\nName=eth0\n\n[Link]\nMTUBytes=1500\n\n\
        [Network]\nDHCP=ipv4\nIPv6AcceptRA=yes\nVLAN=v5\n\n[DHCPv4]\nUseDNS=no\nIAID=7\n";

    #[test]
    fn the_bridge_carries_the_nics_network_and_iaid() {
        let text = bridge_network(
            ETH0,
            Path::new("/etc/systemd/network/50-eth0.network"),
            &n("eth0"),
            &n("lepont"),
            Some(1_349_890_269),
        );
        let s = parse(&text);
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Match", "Network", "DHCPv4"], "{text}");
        let kv =
            |i: usize| -> Vec<String> { s[i].1.iter().map(|(k, v)| format!("{k}={v}")).collect() };
        assert_eq!(kv(0), ["Name=lepont"]);
        assert_eq!(
            kv(1),
            ["DHCP=ipv4", "IPv6AcceptRA=yes", "IgnoreCarrierLoss=yes"]
        );
        assert_eq!(kv(2), ["UseDNS=no", "IAID=1349890269"]);
    }

    #[test]
    fn missing_sections_are_added() {
        let text = bridge_network(
            "[Match]\nName=eth0\n",
            Path::new("/x"),
            &n("eth0"),
            &n("br0"),
            Some(5),
        );
        let s = parse(&text);
        assert_eq!(
            s[1],
            (
                "Network".into(),
                vec![("IgnoreCarrierLoss".into(), "yes".into())]
            )
        );
        assert_eq!(s[2], ("DHCPv4".into(), vec![("IAID".into(), "5".into())]));
    }

    #[test]
    fn the_port_is_kept_on_the_bridge() {
        let s = parse(&port_network(&n("eth0"), &n("lepont")));
        assert_eq!(s[0].1, vec![("Name".to_string(), "eth0".to_string())]);
        assert!(s[1].1.contains(&("Bridge".into(), "lepont".into())));
        assert!(s[1].1.contains(&("KeepMaster".into(), "yes".into())));
    }

    #[test]
    fn iaids_come_from_the_client_id() {
        assert_eq!(
            iaid_of_client_id("ff5075b0dd00020000ab110033bdebf95e192c"),
            Some(0x5075_b0dd)
        );
        assert_eq!(iaid_of_client_id("01020000000001"), None);
        assert_eq!(iaid_of_client_id("ff12"), None);
    }

    #[test]
    fn a_state_saved_before_the_handover_still_reads() {
        // What detection wrote of a networkd link before it carried anything.
        let c: crate::host::Client = serde_json::from_str(r#"{"kind":"networkd"}"#).unwrap();
        assert_eq!(c, crate::host::Client::Networkd(Box::default()));
        let back: crate::host::Client =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn runtime_files_are_recognised() {
        let p = runtime_file(&n("lepont"));
        assert_eq!(
            p,
            Path::new("/run/systemd/network/00-env-qemu-lepont.network")
        );
        assert!(is_runtime_file(&p));
        assert!(!is_runtime_file(Path::new(
            "/etc/systemd/network/00-env-qemu-x.network"
        )));
        assert!(!is_runtime_file(Path::new(
            "/run/systemd/network/50-eth0.network"
        )));
    }
}
