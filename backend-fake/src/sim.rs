//! `SimKernel`: the shared handle, the `Kernel` implementation and the fault controls.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use env_qemu_core::kernel::errno_name;
use env_qemu_core::model::{DumpFilter, IfName, Neighbour, NetState, SysctlKey, Tmpfs};
use env_qemu_core::{Kernel, KernelError, Op};

use crate::faults::Faults;
use crate::state::Ns;
use crate::{dump, neigh, sysctls, tmpfs};

/// A simulated Linux network namespace (plus its tmpfs mounts), modelling the side
/// effects the real kernel has. `Clone` gives another handle on the same kernel, as a
/// second process would have; [`SimKernel::fork`] gives an independent copy.
///
/// Build a world with the inherent methods ([`SimKernel::add_nic`],
/// [`SimKernel::apply_now`] …), then hand the kernel to core's commands as a
/// [`env_qemu_core::Kernel`]. Each operation has the side effects it has on Linux:
///
/// ```
/// use env_qemu_backend_fake::SimKernel;
/// use env_qemu_core::model::{Address, IfName, MacAddr};
/// use env_qemu_core::{LinkChange, Op};
///
/// let sim = SimKernel::new();
/// let eth0 = IfName::new("eth0").unwrap();
/// sim.add_nic(&eth0, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]), 1500);
/// let address = Address::new(eth0.clone(), "192.0.2.10".parse().unwrap(), 24);
/// for op in [
///     Op::LinkSet { name: eth0.clone(), change: LinkChange::Up },
///     Op::AddrAdd { address: address.clone() },
/// ] {
///     sim.apply_now(&op).unwrap();
/// }
/// // The kernel made the address's prefix route…
/// let prefix_routes = |sim: &SimKernel| {
///     sim.net().routes.iter().filter(|r| r.dst.to_string() == "192.0.2.0/24").count()
/// };
/// assert_eq!(prefix_routes(&sim), 1);
/// // …and deleting the address takes it away.
/// sim.apply_now(&Op::AddrDel { address }).unwrap();
/// assert_eq!(prefix_routes(&sim), 0);
/// // An operation the kernel refuses changes nothing and says why, with Linux's errno.
/// let gone = Op::LinkDel { name: IfName::new("eth1").unwrap() };
/// assert_eq!(sim.apply_now(&gone).unwrap_err().errno, Some(libc::ENODEV));
/// ```
#[derive(Clone)]
pub struct SimKernel {
    inner: Arc<Mutex<World>>,
}

pub(crate) struct World {
    pub ns: Ns,
    pub faults: Faults,
}

impl Default for SimKernel {
    fn default() -> Self {
        SimKernel::new()
    }
}

impl std::fmt::Debug for SimKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKernel")
            .field("net", &self.net())
            .finish_non_exhaustive()
    }
}

pub(crate) fn tmpfs_object(path: &Path) -> String {
    format!("tmpfs {}", path.display())
}

impl SimKernel {
    /// A fresh namespace: only `lo`, up, with 127.0.0.1/8 and ::1/128.
    pub fn new() -> SimKernel {
        SimKernel {
            inner: Arc::new(Mutex::new(World {
                ns: Ns::new(),
                faults: Faults::default(),
            })),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panicking test thread must not take every other handle down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An independent deep copy of the kernel state and settings (promote_secondaries,
    /// mounts, sysctls), with no faults armed and the mutation count at zero.
    pub fn fork(&self) -> SimKernel {
        let ns = self.lock().ns.clone();
        SimKernel {
            inner: Arc::new(Mutex::new(World {
                ns,
                faults: Faults::default(),
            })),
        }
    }

    /// The `n`th mutating `apply` from now (1 = the next one) fails with `errno`,
    /// changing nothing. Several can be armed at once.
    pub fn fail_nth(&self, n: usize, errno: i32) {
        self.lock().faults.fail_nth(n, errno);
    }

    /// Every `apply` of an operation equal to `op` fails with `errno`, changing nothing,
    /// until [`SimKernel::clear_faults`]: a refusal that a new attempt does not get past.
    pub fn refuse(&self, op: &Op, errno: i32) {
        self.lock().faults.refuse(op.clone(), errno);
    }

    /// After `n` more successful mutating calls (0: at once), every call (`apply`,
    /// `dump`, reads) fails with [`env_qemu_core::ErrorKind::Unavailable`] until
    /// [`SimKernel::revive`]. The state stays as the last success left it.
    pub fn crash_after(&self, n: usize) {
        self.lock().faults.crash_after(n);
    }

    /// Disarms every fault still pending (scheduled failures, refused operations, a crash
    /// yet to happen). A
    /// crash that already happened lasts until [`SimKernel::revive`].
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Ends a crash (and disarms a pending one): the next process can talk to the kernel.
    pub fn revive(&self) {
        self.lock().faults.revive();
    }

    /// Whether the kernel connection is down (see [`SimKernel::crash_after`]).
    pub fn is_crashed(&self) -> bool {
        self.lock().faults.crashed()
    }

    /// Successful mutating `apply` calls so far (world-building calls not included).
    pub fn mutations(&self) -> usize {
        self.lock().faults.mutations()
    }

    /// `apply` without faults, crash or counting: the test's own hand on the kernel,
    /// to build a world or to play another program changing things.
    pub fn apply_now(&self, op: &Op) -> Result<(), KernelError> {
        self.lock().ns.apply(op)
    }

    /// `dump` without faults.
    pub fn net(&self) -> NetState {
        dump::net_state(&self.lock().ns)
    }

    /// `read_sysctl` without faults.
    pub fn sysctl_now(&self, key: &SysctlKey) -> Result<String, KernelError> {
        sysctls::read(&self.lock().ns, key).map_err(|f| f.into_error(key.to_string()))
    }

    /// `neighbours` without faults.
    pub fn neighbours_now(&self) -> Vec<Neighbour> {
        neigh::dump(&self.lock().ns)
    }

    /// `read_tmpfs` without faults.
    pub fn tmpfs_now(&self, path: &Path) -> Result<Tmpfs, KernelError> {
        tmpfs::read(&self.lock().ns, path).map_err(|f| f.into_error(tmpfs_object(path)))
    }
}

#[async_trait]
impl Kernel for SimKernel {
    async fn dump(&self) -> Result<NetState, KernelError> {
        let w = self.lock();
        w.faults.refuse_if_crashed("network namespace")?;
        Ok(dump::net_state(&w.ns))
    }

    async fn apply(&self, op: &Op) -> Result<(), KernelError> {
        let mut w = self.lock();
        w.faults.refuse_if_crashed(op.object())?;
        if let Some(errno) = w.faults.next_call(op) {
            let detail = format!("injected fault ({})", errno_name(errno));
            return Err(KernelError::from_errno(errno, op.object(), Some(detail)));
        }
        w.ns.apply(op)?;
        w.faults.succeeded();
        Ok(())
    }

    async fn read_sysctl(&self, key: &SysctlKey) -> Result<String, KernelError> {
        let w = self.lock();
        w.faults.refuse_if_crashed(key.to_string())?;
        sysctls::read(&w.ns, key).map_err(|f| f.into_error(key.to_string()))
    }

    async fn read_tmpfs(&self, path: &Path) -> Result<Tmpfs, KernelError> {
        let w = self.lock();
        w.faults.refuse_if_crashed(tmpfs_object(path))?;
        tmpfs::read(&w.ns, path).map_err(|f| f.into_error(tmpfs_object(path)))
    }

    async fn neighbours(&self, dev: Option<&IfName>) -> Result<Vec<Neighbour>, KernelError> {
        let w = self.lock();
        w.faults.refuse_if_crashed("neighbour tables")?;
        let mut all = neigh::dump(&w.ns);
        all.retain(|n| dev.is_none_or(|d| &n.dev == d));
        Ok(all)
    }

    async fn dump_filtered(&self, filter: &DumpFilter) -> Result<NetState, KernelError> {
        let w = self.lock();
        w.faults.refuse_if_crashed("network namespace")?;
        Ok(dump::filtered(&w.ns, filter))
    }
}
