//! The manager of the uplink: the program that configures its addresses (a DHCP client,
//! NetworkManager, the kernel's own SLAAC) and that `start` and `stop` hand the job over
//! to the bridge and back, through the program's own runtime interface, as operations of
//! the plan ([`HostOp`]) beside the kernel's.
//!
//! [`Host`] is to these programs what [`crate::Kernel`] is to the kernel: detection and one
//! `apply` per operation, implemented for real hosts in the backend and simulated in the
//! fake one.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::kernel::{ErrorKind, KernelError};
use crate::model::IfName;

/// A lease a DHCP client holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leased address.
    pub address: IpAddr,
    /// The lease time the server granted, in seconds.
    pub seconds: u32,
}

/// How dhcpcd runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DhcpcdMode {
    /// One daemon for every interface (`dhcpcd -b`, the Debian/Raspberry Pi service).
    Manager,
    /// One daemon for this interface (`dhcpcd eth0`, as ifupdown starts it).
    PerInterface,
}

/// A program that configures the uplink, as detected on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Client {
    /// dhcpcd, reached through its control socket.
    Dhcpcd {
        /// Manager or per-interface daemon.
        mode: DhcpcdMode,
        /// `/run/dhcpcd/sock` (manager) or `/run/dhcpcd/IFACE.sock`.
        socket: PathBuf,
        /// Its process ID.
        pid: u32,
        /// Its lease on the device, if it holds one.
        lease: Option<Lease>,
    },
    /// ISC dhclient: no control interface; stopped by its PID and started again with its
    /// own command line.
    Dhclient {
        /// Its process ID.
        pid: u32,
        /// Its command line (`/proc/PID/cmdline`), replayed to start it on the bridge.
        argv: Vec<String>,
        /// Its lease on the device, if it holds one.
        lease: Option<Lease>,
    },
    /// NetworkManager knows the device (over D-Bus): whether it manages it, and with
    /// which profile, is in its view.
    NetworkManager(Box<crate::nm::NmDevice>),
    /// systemd-networkd owns the device: what its state files say of it.
    Networkd(Box<crate::networkd::NetworkdLink>),
    /// Something env-qemu cannot hand over: named, so start can refuse and say what.
    Unknown {
        /// Its name (`/proc/PID/comm`), or what revealed it.
        name: String,
        /// Its process ID, when known.
        pid: Option<u32>,
    },
}

impl Client {
    /// How messages name it: `dhcpcd (manager, pid 812)`.
    pub fn describe(&self) -> String {
        match self {
            Client::Dhcpcd { mode, pid, .. } => {
                let mode = match mode {
                    DhcpcdMode::Manager => "manager",
                    DhcpcdMode::PerInterface => "one interface",
                };
                format!("dhcpcd ({mode}, pid {pid})")
            }
            Client::Dhclient { pid, .. } => format!("dhclient (pid {pid})"),
            Client::NetworkManager(d) => match &d.active {
                Some(a) if d.manages() => format!("NetworkManager (profile {})", a.id),
                Some(a) if a.external => {
                    format!("NetworkManager (assumed as it is, profile {})", a.id)
                }
                _ => "NetworkManager (no profile active)".into(),
            },
            Client::Networkd(l) => match l.network_file.as_ref().filter(|_| l.manages()) {
                Some(f) => format!("systemd-networkd ({})", f.display()),
                None => "systemd-networkd".into(),
            },
            Client::Unknown { name, pid: Some(p) } => format!("{name} (pid {p})"),
            Client::Unknown { name, pid: None } => name.clone(),
        }
    }

    /// Whether `self` is the same kind of program as `other` (a dhcpcd daemon of the same
    /// mode, a dhclient, …), whatever its PID.
    pub fn same_kind(&self, other: &Client) -> bool {
        match (self, other) {
            (Client::Dhcpcd { mode: a, .. }, Client::Dhcpcd { mode: b, .. }) => a == b,
            (Client::Unknown { name: a, .. }, Client::Unknown { name: b, .. }) => a == b,
            // The same profile running: NM assuming a device, or running another
            // profile there, is not the same manager.
            (Client::NetworkManager(a), Client::NetworkManager(b)) => {
                a.profile().is_some() && a.profile() == b.profile()
            }
            // The same .network file applied.
            (Client::Networkd(a), Client::Networkd(b)) => a.network_file == b.network_file,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    /// Whether env-qemu hands this client over to the bridge and back.
    pub fn handed_over(&self) -> bool {
        match self {
            Client::Dhcpcd { .. } | Client::Dhclient { .. } => true,
            Client::NetworkManager(d) => d.manages(),
            Client::Networkd(l) => l.manages() && l.network.is_some(),
            _ => false,
        }
    }

    /// Whether it configures the device (NetworkManager may know a device without
    /// managing it: no profile active, or one it only assumed).
    pub fn manages(&self) -> bool {
        match self {
            Client::NetworkManager(d) => d.manages(),
            _ => true,
        }
    }

    /// The lease the client holds on the uplink, if it says.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Client::Dhcpcd { lease, .. } | Client::Dhclient { lease, .. } => lease.as_ref(),
            _ => None,
        }
    }
}

/// A program managing one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    /// The device.
    pub dev: IfName,
    /// The program that manages it.
    pub client: Client,
}

/// Who manages the devices a command touches, as detected on the host. The kernel's own
/// SLAAC is not here: it follows from the `accept_ra` and `autoconf` sysctls of the
/// snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managers {
    /// One entry per (device, program); a device may have several (dhcpcd for IPv4, the kernel's
    /// SLAAC for IPv6 is not listed).
    pub managed: Vec<Managed>,
}

impl Managers {
    /// Whether no program manages any of the devices.
    pub fn is_empty(&self) -> bool {
        self.managed.is_empty()
    }

    /// The programs managing `dev`.
    pub fn of<'a>(&'a self, dev: &'a IfName) -> impl Iterator<Item = &'a Client> + 'a {
        self.managed
            .iter()
            .filter(move |m| &m.dev == dev)
            .map(|m| &m.client)
    }

    /// One line per program, for `doctor`, `status` and `--dry-run`.
    pub fn describe(&self) -> Vec<String> {
        self.managed
            .iter()
            .filter(|m| m.client.manages())
            .map(|m| format!("{} manages {}", m.client.describe(), m.dev))
            .collect()
    }
}

/// One change to a managing program, as data (journalled, rendered by `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "host", rename_all = "snake_case")]
pub enum HostOp {
    /// A command written to dhcpcd's control socket, as the words of a `dhcpcd` command
    /// line (`-p -x eth0`): what `dhcpcd ARGS` would send to a running daemon.
    Dhcpcd {
        /// dhcpcd's control socket.
        socket: PathBuf,
        /// The words of the command (`-p -x eth0`, `-n lepont`).
        args: Vec<String>,
    },
    /// SIGTERM to `pid`, if it still runs `argv` (a PID is checked before it is signalled).
    Terminate {
        /// The process.
        pid: u32,
        /// Its command line as detected: signalled only if `/proc/PID/cmdline` still matches.
        argv: Vec<String>,
    },
    /// Starts `argv`, detached from env-qemu (its own session, stdio on /dev/null).
    Spawn {
        /// The command line to start: a detected client's own, naming the device it now manages.
        argv: Vec<String>,
    },
    /// NetworkManager's `CheckpointCreate` of every device, with the rollback timeout
    /// `timeout` and the flags [`crate::nm::CHECKPOINT_FLAGS`]: should env-qemu die
    /// before the checkpoint is destroyed, NM puts the host back by itself.
    NmCheckpointCreate {
        /// The rollback timeout, in seconds.
        timeout: u32,
    },
    /// `CheckpointDestroy` of the checkpoints made since `since_ms` (CLOCK_BOOTTIME, ms)
    /// that hold one of `devices`: env-qemu's (none left is what it is for).
    NmCheckpointDestroy {
        /// CLOCK_BOOTTIME in milliseconds when the command observed the host.
        since_ms: u64,
        /// The interfaces env-qemu's checkpoint holds.
        devices: Vec<IfName>,
    },
    /// `AddConnection2` of an in-memory profile, autoconnect blocked.
    NmAdd {
        /// The profile.
        profile: crate::nm::NmProfile,
    },
    /// `ActivateConnection` of the profile `uuid` on `dev`, then a wait for `until`.
    NmActivate {
        /// The profile's UUID.
        uuid: String,
        /// The profile's name, for messages.
        id: String,
        /// The device to activate it on.
        dev: IfName,
        /// What to wait for before the step counts as done.
        until: crate::nm::NmUntil,
    },
    /// `Delete` of the profile `uuid` (absent already: done).
    NmDelete {
        /// The profile's UUID.
        uuid: String,
        /// The profile's name, for messages.
        id: String,
    },
    /// Writes systemd-networkd's runtime file `path` (under
    /// [`crate::networkd::RUNTIME_DIR`]) with `text`, atomically (a new file renamed over).
    NetworkdWrite {
        /// The file, under /run/systemd/network.
        path: PathBuf,
        /// Its whole contents.
        text: String,
    },
    /// Removes env-qemu's runtime file `path` (absent already: done).
    NetworkdRemove {
        /// The file, under /run/systemd/network.
        path: PathBuf,
    },
    /// `org.freedesktop.network1.Manager.Reload`, then a wait until networkd applies, to
    /// each device of `wait`, its file (the link is configuring or configured with it),
    /// and until each device of `link_local` has an IPv6 link-local address past DAD
    /// (networkd makes it when it runs a NIC's own file again).
    NetworkdReload {
        /// The devices to wait for, each with the file networkd must run on it.
        wait: Vec<(IfName, PathBuf)>,
        /// The devices whose IPv6 link-local address networkd must make again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        link_local: Vec<IfName>,
    },
}

impl HostOp {
    /// How errors name the object.
    pub fn object(&self) -> String {
        match self {
            HostOp::Dhcpcd { socket, .. } => format!("dhcpcd control socket {}", socket.display()),
            HostOp::Terminate { pid, argv } => {
                format!(
                    "process {pid} ({})",
                    argv.first().map_or("?", String::as_str)
                )
            }
            HostOp::Spawn { argv } => format!("program {}", argv.join(" ")),
            HostOp::NmCheckpointCreate { .. } | HostOp::NmCheckpointDestroy { .. } => {
                "NetworkManager's checkpoint".into()
            }
            HostOp::NmAdd { profile } => {
                format!("NetworkManager profile {} ({})", profile.id, profile.uuid)
            }
            HostOp::NmActivate { id, uuid, dev, .. } => {
                format!("NetworkManager profile {id} ({uuid}) on {dev}")
            }
            HostOp::NmDelete { id, uuid } => format!("NetworkManager profile {id} ({uuid})"),
            HostOp::NetworkdWrite { path, .. } | HostOp::NetworkdRemove { path } => {
                format!("systemd-networkd runtime file {}", path.display())
            }
            HostOp::NetworkdReload { .. } => "systemd-networkd (org.freedesktop.network1)".into(),
        }
    }
}

impl fmt::Display for HostOp {
    /// The equivalent shell command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOp::Dhcpcd { args, .. } => write!(f, "dhcpcd {}", args.join(" ")),
            HostOp::Terminate { pid, .. } => write!(f, "kill -TERM {pid}"),
            HostOp::Spawn { argv } => write!(f, "{}", argv.join(" ")),
            HostOp::NmCheckpointCreate { timeout } => write!(
                f,
                "CHECKPOINT=$({NM_BUSCTL} CheckpointCreate aouu 0 {timeout} {} | cut -d'\"' -f2)",
                crate::nm::CHECKPOINT_FLAGS
            ),
            HostOp::NmCheckpointDestroy { .. } => {
                write!(f, "{NM_BUSCTL} CheckpointDestroy o \"$CHECKPOINT\"")
            }
            HostOp::NmAdd { profile } => f.write_str(&profile.nmcli()),
            HostOp::NmActivate { uuid, dev, .. } => {
                write!(f, "nmcli --wait 30 connection up uuid {uuid} ifname {dev}")
            }
            HostOp::NmDelete { uuid, .. } => write!(f, "nmcli connection delete uuid {uuid}"),
            HostOp::NetworkdWrite { path, text } => {
                write!(f, "cat > {} <<'EOF'\n{text}EOF", path.display())
            }
            HostOp::NetworkdRemove { path } => write!(f, "rm -f {}", path.display()),
            HostOp::NetworkdReload { .. } => f.write_str("networkctl reload"),
        }
    }
}

/// How `--dry-run` calls NetworkManager's methods that nmcli has no command for.
const NM_BUSCTL: &str = "busctl call org.freedesktop.NetworkManager /org/freedesktop/NetworkManager org.freedesktop.NetworkManager";

/// The programs of a host that manage interfaces: detection and the handover operations.
#[async_trait]
pub trait Host: Send + Sync {
    /// Who manages each of `devs`.
    async fn managers(&self, devs: &[IfName]) -> Result<Managers, KernelError>;
    /// Performs one operation.
    async fn apply(&self, op: &HostOp) -> Result<(), KernelError>;
}

/// A host whose interfaces nobody manages (static configuration), or whose managers are
/// out of reach: detects nothing, refuses every operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

#[async_trait]
impl Host for NoHost {
    async fn managers(&self, _devs: &[IfName]) -> Result<Managers, KernelError> {
        Ok(Managers::default())
    }

    async fn apply(&self, op: &HostOp) -> Result<(), KernelError> {
        Err(KernelError::new(
            ErrorKind::Unsupported,
            op.object(),
            "no manager of the host is reachable from here",
        )
        .with_fix(
            "stop the program that manages the interface yourself, then run the command again",
        ))
    }
}
