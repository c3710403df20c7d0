//! Who manages the uplink and what start will do with it, for `doctor` and `status`:
//! the host's programs as [`SystemHost`] detects them, plus the kernel's own SLAAC when
//! `accept_ra` and `autoconf` are on.
//!
//! [`SystemHost`]: env_qemu_backend_netlink::SystemHost

use serde::Serialize;

use env_qemu_backend_netlink::ProblemKind;
use env_qemu_core::host::Client;
use env_qemu_core::model::{IfName, Knob, SysctlKey};
use env_qemu_core::Kernel;

use crate::context::Ctx;
use crate::exit::Failure;

/// One program managing one device, and what start does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerLine {
    /// `dhcpcd (manager, pid 812) manages eth0`.
    pub manages: String,
    /// `handed over to the bridge`, `refuses unless --force (…)`…
    pub start: String,
    /// Whether start can go ahead with it.
    pub handover: bool,
}

/// Something that keeps a manager from being handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemLine {
    pub dev: IfName,
    /// A dhcpcd control channel that does not answer: start cannot work until it is
    /// restarted. Otherwise the program is out of sight (another mount namespace).
    pub stuck: bool,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub managers: Vec<ManagerLine>,
    pub problems: Vec<ProblemLine>,
    /// Processes whose namespace could not be read: other users' when not root (a
    /// dhcpcd manager runs as user dhcpcd), so something may be missing above.
    #[serde(skip)]
    pub unreadable: usize,
}

const HANDED_OVER: &str = "handed over to the bridge";
const REFUSED: &str = "refuses unless --force (env-qemu cannot hand this manager over)";

/// What start does with `client`.
fn start_line(client: &Client) -> (String, bool) {
    match client {
        Client::Dhcpcd { .. } | Client::Dhclient { .. } => (HANDED_OVER.into(), true),
        Client::NetworkManager(d) => match &d.active {
            Some(a) if d.manages() => (
                format!(
                    "{HANDED_OVER}: NetworkManager runs in-memory copies of profile {} on the bridge and its port, inside a checkpoint; stop activates {} again",
                    a.id, a.id
                ),
                true,
            ),
            _ => ("moves its addresses and routes as they are (NetworkManager runs no profile of its own there)".into(), true),
        },
        Client::Networkd(l) => match (&l.network_file, client.handed_over()) {
            (Some(f), _) if env_qemu_core::networkd::is_runtime_file(f) => (
                format!(
                    "handed over already: {} is env-qemu's runtime file, which stop removes",
                    f.display()
                ),
                true,
            ),
            (Some(f), true) => (
                format!(
                    "{HANDED_OVER}: systemd-networkd runs {}'s settings on the bridge from a runtime file under {}, and the NIC as its port; stop removes them and networkd runs {} again",
                    f.display(),
                    env_qemu_core::networkd::RUNTIME_DIR,
                    f.display()
                ),
                true,
            ),
            (Some(f), false) => (
                format!("{REFUSED}: {} could not be read", f.display()),
                false,
            ),
            (None, _) => (REFUSED.into(), false),
        },
        Client::Unknown { .. } => (REFUSED.into(), false),
    }
}

/// The managers of `devs` on the namespace `ctx` acts on.
pub async fn report(ctx: &Ctx, devs: &[IfName]) -> Result<Report, Failure> {
    let found = ctx.host.detect(devs).await?;
    let mut managers = Vec::new();
    for dev in devs {
        for client in found.managers.of(dev) {
            if !client.manages() {
                continue;
            }
            let (start, handover) = start_line(client);
            managers.push(ManagerLine {
                manages: format!("{} manages {dev}", client.describe()),
                start,
                handover,
            });
        }
        if slaac(ctx, dev).await {
            managers.push(ManagerLine {
                manages: format!("the kernel (SLAAC) manages {dev}'s IPv6 addresses"),
                start: "taken over by the bridge (accept_ra and autoconf copied to it)".into(),
                handover: true,
            });
        }
    }
    let problems = found
        .problems
        .iter()
        .map(|p| ProblemLine {
            dev: p.dev.clone(),
            stuck: matches!(p.kind, ProblemKind::NoAnswer { .. }),
            message: p.to_string(),
        })
        .collect();
    Ok(Report {
        managers,
        problems,
        unreadable: found.unreadable,
    })
}

/// Whether the kernel configures `dev` from router advertisements itself. A device that
/// does not exist, or has no IPv6, does not.
async fn slaac(ctx: &Ctx, dev: &IfName) -> bool {
    let on = |v: Result<String, _>| v.is_ok_and(|v: String| v.trim() != "0");
    on(ctx
        .kernel
        .read_sysctl(&SysctlKey::new(dev, Knob::Ipv6AcceptRa))
        .await)
        && on(ctx
            .kernel
            .read_sysctl(&SysctlKey::new(dev, Knob::Ipv6Autoconf))
            .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_start_does() {
        let dhcpcd = Client::Dhcpcd {
            mode: env_qemu_core::host::DhcpcdMode::Manager,
            socket: "/run/dhcpcd/sock".into(),
            pid: 812,
            lease: None,
        };
        assert_eq!(start_line(&dhcpcd), (HANDED_OVER.to_string(), true));
        let unread = Client::Networkd(Default::default());
        assert_eq!(start_line(&unread), (REFUSED.to_string(), false));
        let networkd = Client::Networkd(Box::new(env_qemu_core::networkd::NetworkdLink {
            state: Some("configured".into()),
            network_file: Some("/etc/systemd/network/50-eth0.network".into()),
            network: Some("[Match]\nName=eth0\n[Network]\nDHCP=yes\n".into()),
            ..Default::default()
        }));
        let (line, handed) = start_line(&networkd);
        assert!(handed, "{line}");
        assert!(
            line.contains("/etc/systemd/network/50-eth0.network"),
            "{line}"
        );
        let unknown = Client::Unknown {
            name: "udhcpc".into(),
            pid: Some(7),
        };
        assert_eq!(start_line(&unknown), (REFUSED.to_string(), false));
    }
}
