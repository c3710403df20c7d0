//! One `Op`, applied all-or-nothing to the namespace.

use env_qemu_core::{KernelError, Op};

use crate::error::Res;
use crate::state::Ns;
use crate::{addresses, bridge, links, neigh, routes, sysctls, tmpfs};

impl Ns {
    /// Applies `op` to a copy and keeps the copy only on success, so a refusal changes
    /// nothing — except where the real kernel itself leaves a partial change behind.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<(), KernelError> {
        let mut work = self.clone();
        let r = work.dispatch(op);
        bridge::settle(&mut work);
        neigh::reconcile(self, &mut work);
        match r {
            Ok(()) => {
                *self = work;
                Ok(())
            }
            Err(f) => {
                if f.partial {
                    *self = work;
                }
                Err(f.into_error(op.object()))
            }
        }
    }

    fn dispatch(&mut self, op: &Op) -> Res {
        match op {
            Op::LinkAdd { spec } => links::add(self, spec),
            Op::LinkDel { name } => links::del(self, name),
            Op::LinkSet { name, change } => links::set(self, name, change),
            Op::AddrAdd { address } => addresses::add(self, address),
            Op::AddrDel { address } => addresses::del(self, address),
            Op::RouteAdd { route } => routes::add(self, route, false),
            Op::RouteReplace { route } => routes::add(self, route, true),
            Op::RouteAppend { route } => routes::append(self, route),
            Op::RouteDel { route } => routes::del(self, route),
            Op::NeighReplace {
                dev,
                ip,
                lladdr,
                state,
                router,
            } => neigh::replace(self, dev, *ip, *lladdr, *state, *router),
            Op::NeighDel { dev, ip } => neigh::del(self, dev, *ip),
            Op::TmpfsResize { path, size_bytes } => tmpfs::resize(self, path, *size_bytes),
            Op::SysctlSet { key, value } => sysctls::set(self, key, value),
            Op::AwaitDad { dev, addresses } => crate::ipv6::await_dad(self, dev, addresses),
            // Programs of the host are not the kernel's: the simulated host applies them.
            Op::Host { .. } => Err(crate::error::Fail::new(
                libc::EOPNOTSUPP,
                "not a kernel operation",
            )),
        }
    }
}
