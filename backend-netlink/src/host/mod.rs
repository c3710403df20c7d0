//! [`SystemHost`]: the [`Host`] of the machine env-qemu runs on — the programs that
//! manage its interfaces (dhcpcd, dhclient, NetworkManager, systemd-networkd…), found and
//! driven as measured (docs/kernel-behaviour.md, section C), one file per program:
//! - `detect`: who manages each device;
//! - `dhcpcd`: its files and control socket (the wire format of 9.4.1);
//! - `dhclient`: its command line and lease file;
//! - `nm`, `networkd`: NetworkManager and systemd-networkd, over D-Bus and their files;
//! - `bus`: the D-Bus connection and failure wording those two share;
//! - `process`: /proc, a checked SIGTERM, a detached start;
//! - `error`: the failure type and its one conversion into [`KernelError`].
//!
//! Only processes of the target network namespace count (their `/proc/PID/ns/net` is
//! compared with the target's). Every operation runs on a short-lived thread that enters
//! that namespace — never on a caller's (tokio) thread, for `setns(2)` is per thread —
//! so that a program started there runs in it, and `/proc/thread-self/net` and interface
//! indexes are the namespace's. The mount namespace stays env-qemu's: the /run it reads
//! is its own, and a program whose files are in another is reported, not guessed at.

mod bus;
mod detect;
mod dhclient;
mod dhcpcd;
mod error;
mod networkd;
mod nm;
mod process;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use env_qemu_core::host::{Host, HostOp, Managers};
use env_qemu_core::model::IfName;
use env_qemu_core::{ErrorKind, KernelError};
use nix::sched::{setns, CloneFlags};

pub use detect::{Detected, Problem, ProblemKind};
use error::HostFailure;

/// How long a terminated program gets to exit.
const TERM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started daemon gets to go to the background (dhcpcd and dhclient do once
/// bound: 0.3 to 1.7 s measured against dnsmasq; without a server they keep trying in the
/// foreground, and are left to it).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The programs of this machine that manage the interfaces of one network namespace.
#[derive(Debug, Clone)]
pub struct SystemHost {
    netns: Arc<OwnedFd>,
    /// The namespace's inode: what `/proc/PID/ns/net` of its processes shows.
    inode: u64,
    namespace: String,
    /// `DBUS_SYSTEM_BUS_ADDRESS` as env-qemu found it: the only bus NetworkManager is
    /// asked on (the default one when unset).
    bus: Option<String>,
}

impl SystemHost {
    /// The programs of env-qemu's own network namespace.
    pub fn current() -> Result<SystemHost, KernelError> {
        Self::open(
            Path::new("/proc/self/ns/net"),
            "the current network namespace".into(),
        )
    }

    /// The programs of the namespace bound at `path` (`/run/netns/NAME`,
    /// `/proc/PID/ns/net`).
    pub fn in_netns_path(path: &Path) -> Result<SystemHost, KernelError> {
        Self::open(path, format!("network namespace {}", path.display()))
    }

    fn open(path: &Path, namespace: String) -> Result<SystemHost, KernelError> {
        let opened = File::open(path).and_then(|f| Ok((f.metadata()?.ino(), f)));
        let (inode, file) = opened.map_err(|e| {
            HostFailure::io(&e, "open", "list the namespaces with `ip netns list`")
                .into_kernel_error(namespace.clone())
        })?;
        Ok(SystemHost {
            netns: Arc::new(OwnedFd::from(file)),
            inode,
            namespace,
            bus: std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty()),
        })
    }

    /// Who manages each of `devs`, and what stands in the way of handing them over.
    pub async fn detect(&self, devs: &[IfName]) -> Result<Detected, KernelError> {
        let devs = devs.to_vec();
        let (inode, bus) = (self.inode, self.bus.clone());
        let found = self
            .run(move || {
                detect::detect(inode, &devs, bus.as_deref())
                    .map_err(|e| HostFailure::io(&e, "read /proc", "run env-qemu as root"))
            })
            .await;
        found
            .and_then(|r| r)
            .map_err(|f| f.into_kernel_error(format!("the programs of {}", self.namespace)))
    }

    /// Runs `job` on a new thread inside the target network namespace.
    async fn run<T, F>(&self, job: F) -> Result<T, HostFailure>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (netns, inode) = (Arc::clone(&self.netns), self.inode);
        std::thread::Builder::new()
            .name("env-qemu-host".into())
            .spawn(move || {
                let entered = enter(&netns, inode);
                drop(netns);
                let _ = tx.send(entered.map(|()| job()));
            })
            .map_err(|e| HostFailure::io(&e, "start a thread", "run the command again"))?;
        rx.await.unwrap_or_else(|_| {
            Err(HostFailure::new(
                ErrorKind::Other,
                "the thread doing it ended without an answer",
                "run the command again",
            ))
        })
    }
}

/// Puts the calling thread into the namespace of `fd` (inode `inode`), unless it is there.
fn enter(fd: &OwnedFd, inode: u64) -> Result<(), HostFailure> {
    let here = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino());
    if here.is_ok_and(|i| i == inode) {
        return Ok(());
    }
    setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| {
        HostFailure::io(
            &std::io::Error::from(e),
            "setns",
            "entering another network namespace takes root (CAP_SYS_ADMIN)",
        )
    })
}

fn perform(op: &HostOp, inode: u64, bus: Option<&str>) -> Result<(), HostFailure> {
    match op {
        HostOp::Dhcpcd { socket, args } => dhcpcd::send(socket, args),
        HostOp::Terminate { pid, argv } => process::terminate(*pid, argv, inode, TERM_TIMEOUT),
        HostOp::Spawn { argv } => process::spawn(argv, SPAWN_TIMEOUT).map(drop),
        HostOp::NmCheckpointCreate { timeout } => {
            network_manager(inode, bus)?.checkpoint_create(*timeout)
        }
        HostOp::NmCheckpointDestroy { since_ms, devices } => {
            network_manager(inode, bus)?.checkpoint_destroy(*since_ms, devices)
        }
        HostOp::NmAdd { profile } => network_manager(inode, bus)?.add(profile),
        HostOp::NmActivate {
            uuid, dev, until, ..
        } => network_manager(inode, bus)?.activate(uuid, dev, until),
        HostOp::NmDelete { uuid, .. } => network_manager(inode, bus)?.delete(uuid),
        HostOp::NetworkdWrite { path, text } => networkd::write(path, text),
        HostOp::NetworkdRemove { path } => networkd::remove(path),
        HostOp::NetworkdReload { wait, link_local } => {
            let scan = process::scan(inode)
                .map_err(|e| HostFailure::io(&e, "read /proc", "run env-qemu as root"))?;
            let pid = scan.named("systemd-network").next().map(|p| p.pid).ok_or_else(|| {
                HostFailure::new(
                    ErrorKind::NotFound,
                    "systemd-networkd does not run in this network namespace",
                    "start it again (`systemctl start systemd-networkd`), then run the command again",
                )
            })?;
            networkd::reload(bus.unwrap_or(nm::DEFAULT_BUS), pid, wait, link_local)
        }
    }
}

/// The NetworkManager of the namespace, on the bus detection would ask.
fn network_manager(inode: u64, bus: Option<&str>) -> Result<nm::Nm, HostFailure> {
    let scan = process::scan(inode)
        .map_err(|e| HostFailure::io(&e, "read /proc", "run env-qemu as root"))?;
    let pid = scan.named("NetworkManager").next().map(|p| p.pid).ok_or_else(|| {
        HostFailure::new(
            ErrorKind::NotFound,
            "NetworkManager does not run in this network namespace",
            "start NetworkManager again (`systemctl start NetworkManager`), then run the command again",
        )
    })?;
    nm::Nm::connect(bus.unwrap_or(nm::DEFAULT_BUS), pid)
}

#[async_trait]
impl Host for SystemHost {
    async fn managers(&self, devs: &[IfName]) -> Result<Managers, KernelError> {
        Ok(self.detect(devs).await?.managers)
    }

    async fn apply(&self, op: &HostOp) -> Result<(), KernelError> {
        let (owned, inode, bus) = (op.clone(), self.inode, self.bus.clone());
        self.run(move || perform(&owned, inode, bus.as_deref()))
            .await
            .and_then(|r| r)
            .map_err(|f| f.into_kernel_error(op.object()))
    }
}
