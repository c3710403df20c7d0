//! [`NetlinkKernel`]: the [`Kernel`] of one real network namespace.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::Path;

use async_trait::async_trait;
use env_qemu_core::model::{DumpFilter, IfName, Neighbour, NetState, SysctlKey, Tmpfs};
use env_qemu_core::state::NetnsId;
use env_qemu_core::{Kernel, KernelError, LinkSpec, Op};

use crate::errors::Failure;
use crate::netns::{NsWorker, Target};
use crate::{addresses, dump, links, neighbours, routes, sysctl, tap, tmpfs};

/// The real kernel, seen from one network namespace.
///
/// A dedicated thread lives in that namespace (see the `netns` module): it owns the
/// rtnetlink socket and runs the tun ioctls, sysctl accesses and tmpfs remounts, so the
/// caller's threads never change namespace. Usable from any tokio runtime, or several.
/// Dropping it stops the thread and closes the socket.
pub struct NetlinkKernel {
    worker: NsWorker,
    namespace: String,
}

impl NetlinkKernel {
    /// The network namespace of the calling thread (normally the machine's own).
    pub fn current() -> Result<NetlinkKernel, KernelError> {
        Self::start(Target::Inherit, "the current network namespace".to_string())
    }

    /// The namespace bound at `path`: `/run/netns/NAME` (what `ip -n NAME` uses) or
    /// `/proc/PID/ns/net`.
    pub fn in_netns_path(path: &Path) -> Result<NetlinkKernel, KernelError> {
        let namespace = format!("network namespace {}", path.display());
        let target =
            NsWorker::open_target(path).map_err(|f| f.into_kernel_error(namespace.clone()))?;
        Self::start(target, namespace)
    }

    /// The namespace an already-open fd refers to (`/proc/PID/ns/net`, a pidfd's
    /// namespace, an fd passed by another process). The fd is consumed.
    pub fn from_netns_fd(fd: OwnedFd) -> Result<NetlinkKernel, KernelError> {
        Self::start(Target::Fd(fd), "network namespace (by fd)".to_string())
    }

    fn start(target: Target, namespace: String) -> Result<NetlinkKernel, KernelError> {
        let worker = NsWorker::start(target).map_err(|f| f.into_kernel_error(namespace.clone()))?;
        Ok(NetlinkKernel { worker, namespace })
    }

    /// The identity of the namespace this kernel acts on (inode and cookie), read on its
    /// worker thread: the very namespace its socket is in, whatever happened to the path it
    /// was opened by since.
    pub async fn identity(&self) -> Result<NetnsId, KernelError> {
        let read = self.worker.run(|_| crate::identity::current_thread()).await;
        read.and_then(|r| r.map_err(Failure::from))
            .map_err(|f| f.into_kernel_error(format!("the identity of {}", self.namespace)))
    }

    /// Opens the existing tap `name` of this namespace for a process to inherit (QEMU's
    /// `-netdev tap,fd=N`); close-on-exec until the caller passes it on.
    pub async fn open_tap(&self, name: &IfName) -> Result<OwnedFd, KernelError> {
        let n = name.clone();
        let opened = self.worker.run(move |_| tap::open(&n)).await;
        opened
            .and_then(|r| r)
            .map_err(|f| f.into_kernel_error(format!("interface {name}")))
    }

    /// Which namespace this kernel acts on, as error messages name it.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The thread living in the namespace.
    pub(crate) fn worker(&self) -> &NsWorker {
        &self.worker
    }

    async fn perform(&self, op: &Op) -> Result<(), Failure> {
        let h = self.worker.netlink();
        match op {
            Op::LinkAdd { spec } => match spec {
                LinkSpec::Bridge {
                    name,
                    mac,
                    mtu,
                    stp,
                    forward_delay,
                } => links::add_bridge(h, name, *mac, *mtu, *stp, *forward_delay).await,
                LinkSpec::Veth { name, peer } => links::add_veth(h, name, peer).await,
                LinkSpec::Tap { name, owner, group } => {
                    let (name, owner, group) = (name.clone(), *owner, *group);
                    self.worker
                        .run(move |_| tap::create(&name, owner, group))
                        .await?
                }
            },
            Op::LinkDel { name } => links::delete(h, name).await,
            Op::LinkSet { name, change } => links::set(h, name, change).await,
            Op::AddrAdd { address } => addresses::add(h, address).await,
            Op::AddrDel { address } => addresses::delete(h, address).await,
            Op::RouteAdd { route } => routes::add(h, route).await,
            Op::RouteReplace { route } => routes::replace(h, route).await,
            Op::RouteAppend { route } => routes::append(h, route).await,
            Op::RouteDel { route } => routes::delete(h, route).await,
            Op::NeighReplace {
                dev,
                ip,
                lladdr,
                state,
                router,
            } => neighbours::replace(h, dev, *ip, *lladdr, *state, *router).await,
            Op::NeighDel { dev, ip } => neighbours::delete(h, dev, *ip).await,
            Op::TmpfsResize { path, size_bytes } => {
                let (path, size) = (path.clone(), *size_bytes);
                self.worker.run(move |_| tmpfs::resize(&path, size)).await?
            }
            Op::SysctlSet { key, value } => {
                let (key, value) = (key.clone(), value.clone());
                self.worker
                    .run(move |_| sysctl::write(&key, &value))
                    .await?
            }
            Op::Host { .. } => Err(Failure::kind(
                env_qemu_core::ErrorKind::Unsupported,
                "a program of the host, not the kernel, applies this",
            )),
            Op::AwaitDad { dev, addresses } => {
                addresses::await_dad(&self.worker, dev, addresses).await
            }
        }
    }
}

impl fmt::Debug for NetlinkKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetlinkKernel")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Kernel for NetlinkKernel {
    async fn dump(&self) -> Result<NetState, KernelError> {
        dump::net_state(&self.worker)
            .await
            .map_err(|f| f.into_kernel_error(format!("the state of {}", self.namespace)))
    }

    async fn apply(&self, op: &Op) -> Result<(), KernelError> {
        self.perform(op)
            .await
            .map_err(|f| f.into_kernel_error(op.object()))
    }

    async fn read_sysctl(&self, key: &SysctlKey) -> Result<String, KernelError> {
        let k = key.clone();
        let read = self.worker.run(move |_| sysctl::read(&k)).await;
        read.and_then(|r| r)
            .map_err(|f| f.into_kernel_error(key.to_string()))
    }

    async fn read_tmpfs(&self, path: &Path) -> Result<Tmpfs, KernelError> {
        let p = path.to_path_buf();
        let read = self.worker.run(move |_| tmpfs::read(&p)).await;
        read.and_then(|r| r)
            .map_err(|f| f.into_kernel_error(format!("tmpfs {}", path.display())))
    }

    async fn neighbours(&self, dev: Option<&IfName>) -> Result<Vec<Neighbour>, KernelError> {
        neighbours::show(self.worker.netlink(), dev)
            .await
            .map_err(|f| f.into_kernel_error(format!("the neighbour tables of {}", self.namespace)))
    }

    async fn dump_filtered(&self, filter: &DumpFilter) -> Result<NetState, KernelError> {
        dump::filtered_net_state(&self.worker, filter)
            .await
            .map_err(|f| f.into_kernel_error(format!("the state of {}", self.namespace)))
    }
}
