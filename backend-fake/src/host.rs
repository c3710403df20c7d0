//! [`SimHost`]: DHCP clients beside the simulated kernel, modelled on what dhcpcd 9.4.1
//! and dhclient 4.4.3 were measured to do (in network namespaces, leasing from dnsmasq):
//!
//! - a client binds its lease on the device it manages: the address with a finite
//!   lifetime (the lease), and for dhcpcd `noprefixroute` plus its own `proto dhcp` subnet
//!   and default routes at metric 1000 + ifindex, which replace copies of them at other
//!   metrics;
//! - it renews at T1 (half the lease): on a device that can hear the server, the lifetime
//!   is refreshed; on a bridge port the server's reply goes to the bridge, so dhcpcd
//!   (BPF on the port) puts the address back on the port without renewing anything, and
//!   dhclient (a packet socket that sees the port's frames) re-applies the address to the
//!   port with a fresh lifetime;
//! - dhcpcd's control socket takes `-p -x DEV` (stop managing DEV, keep its
//!   configuration) and `-n DEV` (manage DEV); SIGTERM ends a dhclient without releasing
//!   anything; a dhclient started with a command line binds at once (INIT-REBOOT of the
//!   same lease: the server knows the MAC), but its address update fails while a copy of
//!   the address is on the device, which then keeps the copy's lifetime until T1.
//!
//! Time passes only through [`SimHost::advance`], which runs the clients' timers and the
//! kernel's clock second by second.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use env_qemu_core::host::{Client, DhcpcdMode, Host, HostOp, Lease, Managed, Managers};
use env_qemu_core::model::{
    AddrFlag, Address, Family, IfName, Prefix, Route, RouteProtocol, RouteScope,
};
use env_qemu_core::{ErrorKind, KernelError, Op};

use crate::SimKernel;

/// The lease a simulated client holds: one IPv4 address on a subnet with a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLease {
    /// The leased address.
    pub address: IpAddr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The default gateway the lease names.
    pub router: IpAddr,
    /// The lease time, in seconds.
    pub seconds: u32,
}

/// Which program a simulated client is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimClientKind {
    /// dhcpcd as one daemon for every interface, reached at this control socket.
    DhcpcdManager {
        /// The control socket's path.
        socket: PathBuf,
    },
    /// dhclient, with the command line it was started with (its interface last).
    Dhclient {
        /// The command line, program name first.
        argv: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct SimClient {
    kind: SimClientKind,
    pid: u32,
    lease: SimLease,
    /// The devices it manages, each with the seconds since its last bind or renewal.
    devices: Vec<(IfName, u32)>,
}

#[derive(Debug, Default)]
struct HostState {
    clients: Vec<SimClient>,
    next_pid: u32,
    /// Host operations applied so far, in order.
    applied: Vec<HostOp>,
    /// The lease of the last client ended: the LAN's server hands it to the next one (it
    /// knows the host by its MAC, which the bridge carries).
    last_lease: Option<SimLease>,
    /// NetworkManager, when one runs ([`SimHost::start_network_manager`]).
    nm: Option<crate::nm::SimNm>,
    networkd: Option<crate::networkd::SimNetworkd>,
}

/// Simulated DHCP clients acting on a [`SimKernel`]. `Clone` gives another handle.
#[derive(Debug, Clone)]
pub struct SimHost {
    sim: SimKernel,
    state: Arc<Mutex<HostState>>,
}

fn dhcp_route(
    dst: Prefix,
    gateway: Option<IpAddr>,
    dev: &IfName,
    src: IpAddr,
    metric: u32,
) -> Route {
    let mut r = Route::new(dst, gateway, Some(dev.clone()))
        .proto(RouteProtocol::Dhcp)
        .metric(metric)
        .src(src);
    if gateway.is_none() {
        r.scope = RouteScope::Link;
    }
    r
}

fn refused(object: String, detail: &str) -> KernelError {
    KernelError::new(ErrorKind::NotFound, object, detail)
}

impl SimHost {
    /// No client yet.
    pub fn new(sim: SimKernel) -> SimHost {
        SimHost {
            sim,
            state: Arc::new(Mutex::new(HostState {
                next_pid: 4000,
                ..HostState::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `kind` managing `dev` with `lease`, bound at once. Returns its PID.
    pub fn start_client(&self, kind: SimClientKind, dev: &IfName, lease: SimLease) -> u32 {
        let pid = {
            let mut s = self.lock();
            s.next_pid += 1;
            let pid = s.next_pid;
            s.clients.push(SimClient {
                kind,
                pid,
                lease,
                devices: vec![(dev.clone(), 0)],
            });
            pid
        };
        self.bind(pid, dev, false);
        pid
    }

    /// NetworkManager running profile `id` (`uuid`) on `dev`, bound at once with `lease`.
    pub fn start_network_manager(&self, dev: &IfName, lease: SimLease, uuid: &str, id: &str) {
        let nm = crate::nm::SimNm::new(&self.sim, dev, lease, uuid, id);
        self.lock().nm = Some(nm);
    }

    /// The LAN's routers advertise `prefix` from now on: NetworkManager's SLAAC
    /// configures it where it binds a lease.
    pub fn nm_hears_ra(&self, prefix: Prefix) {
        let nm = self.lock().nm.take();
        if let Some(mut nm) = nm {
            nm.hear_ra(&self.sim, prefix);
            self.lock().nm = Some(nm);
        }
    }

    /// systemd-networkd running the host's own file `path` (`text`: DHCP for `dev`), bound
    /// at once with `lease`.
    pub fn start_networkd(&self, dev: &IfName, lease: SimLease, path: &str, text: &str) {
        let nd =
            crate::networkd::SimNetworkd::new(&self.sim, dev, lease, (path.into(), text.into()));
        self.lock().networkd = Some(nd);
    }

    /// systemd-networkd restarted: it reads its files again and configures every link.
    pub fn restart_networkd(&self) {
        let nd = self.lock().networkd.take();
        if let Some(mut nd) = nd {
            nd.restart(&self.sim);
            self.lock().networkd = Some(nd);
        }
    }

    /// The `.network` file systemd-networkd applies to `dev`.
    pub fn networkd_file_on(&self, dev: &IfName) -> Option<PathBuf> {
        self.lock()
            .networkd
            .as_ref()
            .and_then(|n| n.file_on(dev).map(PathBuf::from))
    }

    /// env-qemu's runtime files left in systemd-networkd's directory, and its reloads.
    pub fn networkd_leftovers(&self) -> (Vec<PathBuf>, u32) {
        self.lock()
            .networkd
            .as_ref()
            .map_or((Vec::new(), 0), |n| (n.runtime_files(), n.reloads))
    }

    /// The UUID of the profile NetworkManager runs on `dev`.
    pub fn nm_profile_on(&self, dev: &IfName) -> Option<String> {
        self.lock().nm.as_ref().and_then(|n| n.profile_on(dev))
    }

    /// NetworkManager's in-memory profiles (names), checkpoints alive, rollbacks done.
    pub fn nm_leftovers(&self) -> (Vec<String>, usize, u32) {
        self.lock().nm.as_ref().map_or((Vec::new(), 0, 0), |n| {
            (n.unsaved(), n.checkpoints(), n.rollbacks)
        })
    }

    /// The host operations applied so far.
    pub fn applied(&self) -> Vec<HostOp> {
        self.lock().applied.clone()
    }

    /// Lets `by` pass: each second, the clients whose T1 has come renew, then the kernel's
    /// clock ages lifetimes (deleting what runs out).
    pub fn advance(&self, by: Duration) {
        for _ in 0..by.as_secs() {
            let due: Vec<(u32, IfName)> = {
                let mut s = self.lock();
                let mut due = Vec::new();
                for c in &mut s.clients {
                    let t1 = c.lease.seconds / 2;
                    for (dev, since) in &mut c.devices {
                        *since += 1;
                        if *since >= t1 {
                            *since = 0;
                            due.push((c.pid, dev.clone()));
                        }
                    }
                }
                due
            };
            for (pid, dev) in due {
                self.bind(pid, &dev, true);
            }
            let nm = self.lock().nm.take();
            if let Some(mut nm) = nm {
                nm.tick(&self.sim);
                self.lock().nm = Some(nm);
            }
            let nd = self.lock().networkd.take();
            if let Some(mut nd) = nd {
                nd.tick(&self.sim);
                self.lock().networkd = Some(nd);
            }
            self.sim.advance_clock(Duration::from_secs(1));
        }
    }

    /// The address a client binds: dynamic, valid for the lease, preferred until T2.
    fn leased(c: &SimClient, dev: &IfName) -> Address {
        let mut a = Address::new(dev.clone(), c.lease.address, c.lease.prefix_len);
        a.valid_lft = Some(c.lease.seconds);
        a.preferred_lft = Some(match c.kind {
            SimClientKind::DhcpcdManager { .. } => c.lease.seconds * 7 / 8,
            SimClientKind::Dhclient { .. } => c.lease.seconds,
        });
        if let Some(IpAddr::V4(net)) = Prefix::new(a.ip, a.prefix_len).map(|p| p.addr()) {
            let host = u32::MAX >> a.prefix_len;
            a.broadcast = Some(IpAddr::V4((u32::from(net) | host).into()));
        }
        if matches!(c.kind, SimClientKind::DhcpcdManager { .. }) {
            a.flags.insert(AddrFlag::Noprefixroute);
        }
        a
    }

    /// A bind (`renew`: a renewal at T1) of client `pid` on `dev`, as measured.
    fn bind(&self, pid: u32, dev: &IfName, renew: bool) {
        let Some(c) = self.lock().clients.iter().find(|c| c.pid == pid).cloned() else {
            return;
        };
        let net = self.sim.net();
        let Some(link) = net.link(dev) else { return };
        let port = link.master.is_some();
        let a = Self::leased(&c, dev);
        let present = net.addresses_of(dev).any(|x| x.ip == a.ip);
        match &c.kind {
            SimClientKind::DhcpcdManager { .. } => {
                if port && !renew {
                    return;
                }
                // On a port, the renewal's reply goes to the bridge: dhcpcd times out,
                // rebinds, and after its ARP check puts the address back on the port.
                let _ = self.sim.apply_now(&Op::AddrDel { address: a.clone() });
                let _ = self.sim.apply_now(&Op::AddrAdd { address: a });
                if !port {
                    self.dhcpcd_routes(&c, dev, link.index);
                }
            }
            SimClientKind::Dhclient { .. } => {
                if present && !renew {
                    // `ip addr add` of its BOUND/REBOOT hook: EEXIST on the copy.
                    return;
                }
                // `ip addr change` at renewal (also on a port: its packet socket sees the
                // port's frames), `ip addr add` at a first bind.
                let _ = self.sim.apply_now(&Op::AddrDel { address: a.clone() });
                let _ = self.sim.apply_now(&Op::AddrAdd { address: a });
                if !port {
                    let gw = Route::new(
                        Prefix::default_for(Family::Inet),
                        Some(c.lease.router),
                        Some(dev.clone()),
                    );
                    let _ = self.sim.apply_now(&Op::RouteReplace { route: gw });
                }
            }
        }
    }

    /// dhcpcd's own routes on `dev` (metric 1000 + ifindex), replacing copies of them at
    /// other metrics.
    fn dhcpcd_routes(&self, c: &SimClient, dev: &IfName, ifindex: u32) {
        let metric = 1000 + ifindex;
        let Some(subnet) = Prefix::new(c.lease.address, c.lease.prefix_len) else {
            return;
        };
        let src = c.lease.address;
        let own = [
            dhcp_route(subnet, None, dev, src, metric),
            dhcp_route(
                Prefix::default_for(Family::Inet),
                Some(c.lease.router),
                dev,
                src,
                metric,
            ),
        ];
        for r in &own {
            let _ = self.sim.apply_now(&Op::RouteReplace { route: r.clone() });
        }
        for old in self.sim.net().routes_via(dev) {
            let copy = old.protocol == RouteProtocol::Dhcp
                && old.metric != metric
                && own.iter().any(|r| r.dst == old.dst);
            if copy {
                let _ = self.sim.apply_now(&Op::RouteDel { route: old.clone() });
            }
        }
    }

    fn client_view(c: &SimClient, lease_on: Option<&Address>) -> Client {
        let lease = lease_on.map(|a| Lease {
            address: a.ip,
            seconds: c.lease.seconds,
        });
        match &c.kind {
            SimClientKind::DhcpcdManager { socket } => Client::Dhcpcd {
                mode: DhcpcdMode::Manager,
                socket: socket.clone(),
                pid: c.pid,
                lease,
            },
            SimClientKind::Dhclient { argv } => Client::Dhclient {
                pid: c.pid,
                argv: argv.clone(),
                lease,
            },
        }
    }
}

#[async_trait]
impl Host for SimHost {
    async fn managers(&self, devs: &[IfName]) -> Result<Managers, KernelError> {
        let net = self.sim.net();
        let s = self.lock();
        let mut managed = Vec::new();
        for c in &s.clients {
            for (dev, _) in c.devices.iter().filter(|(d, _)| devs.contains(d)) {
                let a = net.addresses_of(dev).find(|a| a.ip == c.lease.address);
                managed.push(Managed {
                    dev: dev.clone(),
                    client: Self::client_view(c, a),
                });
            }
        }
        if let Some(nm) = &s.nm {
            managed.extend(nm.managers(&self.sim, devs));
        }
        if let Some(nd) = &s.networkd {
            managed.extend(nd.managers(&self.sim, devs));
        }
        Ok(Managers { managed })
    }

    async fn apply(&self, op: &HostOp) -> Result<(), KernelError> {
        if self.sim.is_crashed() {
            // env-qemu died: it asks no program anything any more.
            return Err(KernelError::new(
                ErrorKind::Other,
                op.object(),
                "the process died",
            ));
        }
        if matches!(
            op,
            HostOp::NmCheckpointCreate { .. }
                | HostOp::NmCheckpointDestroy { .. }
                | HostOp::NmAdd { .. }
                | HostOp::NmActivate { .. }
                | HostOp::NmDelete { .. }
        ) {
            let taken = self.lock().nm.take();
            let Some(mut nm) = taken else {
                return Err(KernelError::new(
                    ErrorKind::NotFound,
                    op.object(),
                    "no NetworkManager runs here",
                ));
            };
            let r = nm.apply(&self.sim, op);
            let mut s = self.lock();
            s.nm = Some(nm);
            s.applied.push(op.clone());
            return r;
        }
        if matches!(
            op,
            HostOp::NetworkdWrite { .. }
                | HostOp::NetworkdRemove { .. }
                | HostOp::NetworkdReload { .. }
        ) {
            let taken = self.lock().networkd.take();
            let Some(mut nd) = taken else {
                return Err(KernelError::new(
                    ErrorKind::NotFound,
                    op.object(),
                    "no systemd-networkd runs here",
                ));
            };
            let r = nd.apply(&self.sim, op);
            let mut s = self.lock();
            s.networkd = Some(nd);
            s.applied.push(op.clone());
            return r;
        }
        let mut bind = None;
        {
            let mut s = self.lock();
            match op {
                HostOp::Dhcpcd { socket, args } => {
                    let c = s
                        .clients
                        .iter_mut()
                        .find(|c| matches!(&c.kind, SimClientKind::DhcpcdManager { socket: k } if k == socket))
                        .ok_or_else(|| refused(op.object(), "no dhcpcd listens there"))?;
                    let words: Vec<&str> = args.iter().map(String::as_str).collect();
                    match words.as_slice() {
                        ["-p", "-x", dev] => c.devices.retain(|(d, _)| d.as_str() != *dev),
                        ["-n", dev] => {
                            let dev = IfName::new(*dev)
                                .map_err(|e| refused(op.object(), &e.to_string()))?;
                            if !c.devices.iter().any(|(d, _)| *d == dev) {
                                c.devices.push((dev.clone(), 0));
                            }
                            bind = Some((c.pid, dev));
                        }
                        _ => {
                            return Err(KernelError::new(
                                ErrorKind::Unsupported,
                                op.object(),
                                "the simulated dhcpcd knows -p -x DEV and -n DEV",
                            ))
                        }
                    }
                }
                HostOp::Terminate { pid, argv } => {
                    let at = s
                        .clients
                        .iter()
                        .position(|c| c.pid == *pid && matches!(&c.kind, SimClientKind::Dhclient { argv: a } if a == argv))
                        .ok_or_else(|| refused(op.object(), "no such process with that command line"))?;
                    let gone = s.clients.remove(at);
                    s.last_lease = Some(gone.lease);
                }
                HostOp::NmCheckpointCreate { .. }
                | HostOp::NmCheckpointDestroy { .. }
                | HostOp::NmAdd { .. }
                | HostOp::NmActivate { .. }
                | HostOp::NmDelete { .. }
                | HostOp::NetworkdWrite { .. }
                | HostOp::NetworkdRemove { .. }
                | HostOp::NetworkdReload { .. } => unreachable!("handled above"),
                HostOp::Spawn { argv } => {
                    let dev = argv
                        .last()
                        .and_then(|d| IfName::new(d).ok())
                        .ok_or_else(|| refused(op.object(), "no interface on the command line"))?;
                    // The lease of the dhclient it replaces (the server knows the MAC).
                    let lease = s
                        .last_lease
                        .clone()
                        .ok_or_else(|| refused(op.object(), "no lease for it on the LAN"))?;
                    s.next_pid += 1;
                    let pid = s.next_pid;
                    s.clients.push(SimClient {
                        kind: SimClientKind::Dhclient { argv: argv.clone() },
                        pid,
                        lease,
                        devices: vec![(dev.clone(), 0)],
                    });
                    bind = Some((pid, dev));
                }
            }
            s.applied.push(op.clone());
        }
        if let Some((pid, dev)) = bind {
            self.bind(pid, &dev, false);
        }
        Ok(())
    }
}
