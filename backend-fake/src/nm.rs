//! A simulated NetworkManager beside the simulated kernel, modelled on what NetworkManager
//! 1.42 was measured to do in a namespace (docs/network-manager.md, docs/kernel-behaviour.md
//! C10 and C12):
//!
//! - a profile of its own active on a device binds its DHCP lease there: the address
//!   (`dynamic noprefixroute`, valid for the lease), its `proto kernel` subnet route and
//!   `proto dhcp` default route at metric 100, replacing copies with the same key;
//! - once routers advertise a prefix, such a profile configures its SLAAC address there
//!   (`noprefixroute`, with the RA's lifetimes) and a `proto ra` prefix route, at each
//!   advertisement (every second), not at its activation;
//! - it renews at T1; on a bridge port the server's reply goes to the bridge, so the
//!   renewal fails and nothing is refreshed (the copy of the address on the bridge
//!   expires with the lease);
//! - a device it runs no profile on but that carries addresses is assumed as it is
//!   (an external activation): NM changes nothing there;
//! - activating a profile deactivates the one on the device (its IP configuration
//!   flushed, a port released) and, for a bridge, flushes the bridge first; a bridge
//!   profile binds once a port is attached, a port profile attaches its device;
//! - deleting an active profile deactivates it;
//! - a profile of its own active on an up device whose link-local address someone else
//!   deleted makes another one (its stable-privacy generation at the next DAD counter:
//!   not the address it had), within a second; only an activation makes the first one
//!   again;
//! - a checkpoint (every device, DELETE_NEW_CONNECTIONS | DISCONNECT_NEW_DEVICES) not
//!   destroyed within its timeout rolls back: new profiles deleted, the devices' profiles
//!   activated again, devices that appeared since flushed and left (NM did not make them).

use std::net::IpAddr;

use env_qemu_core::host::{Client, Managed};
use env_qemu_core::model::{
    AddrFlag, Address, Family, IfName, Prefix, Route, RouteProtocol, RouteScope,
};
use env_qemu_core::nm::{
    stable_uuid, NmActive, NmActiveState, NmCarried, NmCheckpoint, NmDevice, NmHost, NmProfile,
    NmProfileKind, NmProfileRef, NmSection, NmUntil, NmValue,
};
use env_qemu_core::{ErrorKind, KernelError, LinkChange, Op};

use crate::host::SimLease;
use crate::SimKernel;

/// NM's route metric for an ethernet or bridge device.
const METRIC: u32 = 100;
/// The lifetimes of NM's SLAAC address (the advertised ones of the real-daemon tests).
const SLAAC_LIFETIME: u32 = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A profile of the device's own (the NIC's, saved) or a bridge profile: DHCP.
    Leasing,
    /// A port of the bridge profile `master` (a UUID).
    Port { master: String },
}

#[derive(Debug, Clone)]
struct Profile {
    uuid: String,
    id: String,
    dev: IfName,
    kind: Kind,
    unsaved: bool,
}

#[derive(Debug, Clone)]
struct Active {
    dev: IfName,
    uuid: String,
    /// Seconds since its last bind or renewal attempt.
    since: u32,
}

#[derive(Debug, Clone)]
struct Checkpoint {
    path: String,
    created_ms: u64,
    timeout: u32,
    active: Vec<(IfName, String)>,
    profiles: Vec<String>,
    devices: Vec<IfName>,
}

/// NetworkManager's state, driven by [`crate::host::SimHost`].
#[derive(Debug, Clone)]
pub(crate) struct SimNm {
    lease: SimLease,
    /// The /64 routers advertise, once NM hears them ([`SimNm::hear_ra`]).
    ra: Option<Prefix>,
    profiles: Vec<Profile>,
    active: Vec<Active>,
    checkpoints: Vec<Checkpoint>,
    now_ms: u64,
    next_checkpoint: u32,
    pub(crate) rollbacks: u32,
}

fn refused(kind: ErrorKind, object: String, detail: &str) -> KernelError {
    KernelError::new(kind, object, detail)
}

impl SimNm {
    /// NetworkManager running `id` (`uuid`) on `nic`, bound at once.
    pub(crate) fn new(
        sim: &SimKernel,
        nic: &IfName,
        lease: SimLease,
        uuid: &str,
        id: &str,
    ) -> SimNm {
        let mut nm = SimNm {
            lease,
            ra: None,
            profiles: vec![Profile {
                uuid: uuid.into(),
                id: id.into(),
                dev: nic.clone(),
                kind: Kind::Leasing,
                unsaved: false,
            }],
            active: Vec::new(),
            checkpoints: Vec::new(),
            now_ms: 1_000_000,
            next_checkpoint: 1,
            rollbacks: 0,
        };
        nm.activate(sim, uuid, nic)
            .expect("the NIC's profile activates");
        nm
    }

    fn profile(&self, uuid: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.uuid == uuid)
    }

    /// Whether `uuid` is a profile of a device's own (DHCP, SLAAC), not a port's.
    fn leasing(&self, uuid: &str) -> bool {
        self.profile(uuid).is_some_and(|p| p.kind == Kind::Leasing)
    }

    fn active_on(&self, dev: &IfName) -> Option<&Active> {
        self.active.iter().find(|a| &a.dev == dev)
    }

    /// The address and routes of the lease on `dev`.
    fn leased(&self, dev: &IfName) -> (Address, [Route; 2]) {
        let l = &self.lease;
        let mut a = Address::new(dev.clone(), l.address, l.prefix_len);
        a.valid_lft = Some(l.seconds);
        a.preferred_lft = Some(l.seconds);
        a.flags.insert(AddrFlag::Noprefixroute);
        let subnet = Prefix::new(l.address, l.prefix_len).expect("a valid lease");
        if let (IpAddr::V4(net), true) = (subnet.addr(), a.family() == Family::Inet) {
            let host = u32::MAX >> l.prefix_len;
            a.broadcast = Some(IpAddr::V4((u32::from(net) | host).into()));
        }
        let mut prefix = Route::new(subnet, None, Some(dev.clone()))
            .proto(RouteProtocol::Kernel)
            .metric(METRIC)
            .src(l.address);
        prefix.scope = RouteScope::Link;
        let default = Route::new(
            Prefix::default_for(a.family()),
            Some(l.router),
            Some(dev.clone()),
        )
        .proto(RouteProtocol::Dhcp)
        .metric(METRIC)
        .src(l.address);
        (a, [prefix, default])
    }

    /// A DHCP bind on `dev`, if the device can hear the server: up, not a port, and for
    /// a bridge with a port.
    fn bind(&self, sim: &SimKernel, dev: &IfName) {
        if !Self::hears(sim, dev) {
            return;
        }
        let (a, routes) = self.leased(dev);
        let _ = sim.apply_now(&Op::AddrDel { address: a.clone() });
        let _ = sim.apply_now(&Op::AddrAdd { address: a });
        for r in routes {
            let _ = sim.apply_now(&Op::RouteReplace { route: r });
        }
    }

    /// Whether `dev` hears the LAN's servers and routers: up, not a port, and for a
    /// bridge with a port.
    fn hears(sim: &SimKernel, dev: &IfName) -> bool {
        let net = sim.net();
        net.link(dev).is_some_and(|l| {
            l.up && l.master.is_none()
                && !(l.kind.is_bridge() && net.ports_of(dev).next().is_none())
        })
    }

    /// A router advertisement, heard on every device NM runs a profile of its own on:
    /// its SLAAC address configured or refreshed. An activation flushes the device, and
    /// the address comes back only with the next advertisement (every second here).
    fn advertise(&self, sim: &SimKernel) {
        let Some(ra) = self.ra else { return };
        for act in &self.active {
            let Some(link) = sim.net().link(&act.dev).cloned() else {
                continue;
            };
            if self.leasing(&act.uuid) && Self::hears(sim, &act.dev) {
                let (a, route) = slaac(ra, &act.dev, link.mac);
                let _ = sim.apply_now(&Op::AddrDel { address: a.clone() });
                let _ = sim.apply_now(&Op::AddrAdd { address: a });
                let _ = sim.apply_now(&Op::RouteReplace { route });
            }
        }
    }

    /// Routers advertise `prefix` from now on.
    pub(crate) fn hear_ra(&mut self, sim: &SimKernel, prefix: Prefix) {
        self.ra = Some(prefix);
        self.advertise(sim);
    }

    /// Every address and route of `dev` gone (an activation's, or a deactivation's,
    /// flush of the IP configuration).
    fn flush(sim: &SimKernel, dev: &IfName) {
        let net = sim.net();
        for r in net.routes_via(dev) {
            let _ = sim.apply_now(&Op::RouteDel { route: r.clone() });
        }
        for a in net.addresses_of(dev) {
            let _ = sim.apply_now(&Op::AddrDel { address: a.clone() });
        }
    }

    /// NM's IPv6 link-local address on `dev` (the same one at every activation: here
    /// the kernel's EUI-64 one).
    fn link_local(sim: &SimKernel, dev: &IfName) {
        let Some(link) = sim.net().link(dev).cloned() else {
            return;
        };
        let ll = Address::new(dev.clone(), IpAddr::V6(link.mac.link_local()), 64);
        if !sim.net().addresses_of(dev).any(|a| a.ip == ll.ip) {
            let _ = sim.apply_now(&Op::AddrAdd { address: ll });
        }
    }

    /// The link-local address NM makes on `dev` when its own went away behind its back:
    /// another interface identifier than [`Self::link_local`]'s.
    fn stray_link_local(sim: &SimKernel, dev: &IfName) {
        let Some(link) = sim.net().link(dev).cloned().filter(|l| l.up) else {
            return;
        };
        if sim.net().addresses_of(dev).any(Address::is_link_local) {
            return;
        }
        let mut ip = link.mac.link_local().octets();
        ip[15] ^= 0x01;
        let ll = Address::new(dev.clone(), IpAddr::V6(ip.into()), 64);
        let _ = sim.apply_now(&Op::AddrAdd { address: ll });
    }

    fn deactivate(&mut self, sim: &SimKernel, dev: &IfName) {
        let Some(at) = self.active.iter().position(|a| &a.dev == dev) else {
            return;
        };
        let was = self.active.remove(at);
        let Some(p) = self.profile(&was.uuid) else {
            return;
        };
        match &p.kind {
            Kind::Leasing => Self::flush(sim, dev),
            Kind::Port { .. } => {
                let _ = sim.apply_now(&Op::LinkSet {
                    name: dev.clone(),
                    change: LinkChange::NoMaster,
                });
            }
        }
    }

    fn activate(&mut self, sim: &SimKernel, uuid: &str, dev: &IfName) -> Result<(), String> {
        let p = self.profile(uuid).cloned().ok_or("no such profile")?;
        if &p.dev != dev {
            return Err(format!("the profile is for {}", p.dev));
        }
        if sim.net().link(dev).is_none() {
            return Err(format!("no device {dev}"));
        }
        self.deactivate(sim, dev);
        match &p.kind {
            Kind::Leasing => {
                let link = sim.net().link(dev).cloned();
                if link.as_ref().is_some_and(|l| l.kind.is_bridge()) {
                    Self::flush(sim, dev);
                    sim.set_forward_delay(dev, env_qemu_core::nm::FORWARD_DELAY_CS);
                } else if link.is_some_and(|l| l.master.is_some()) {
                    // A profile without a master takes its device out of a bridge.
                    let _ = sim.apply_now(&Op::LinkSet {
                        name: dev.clone(),
                        change: LinkChange::NoMaster,
                    });
                }
                Self::link_local(sim, dev);
                self.active.push(Active {
                    dev: dev.clone(),
                    uuid: uuid.into(),
                    since: 0,
                });
                self.bind(sim, dev);
            }
            Kind::Port { master } => {
                let bridge = self
                    .active
                    .iter()
                    .find(|a| &a.uuid == master)
                    .map(|a| a.dev.clone())
                    .ok_or("its master profile is not active")?;
                if sim.net().link(dev).and_then(|l| l.master.clone()) != Some(bridge.clone()) {
                    let _ = sim.apply_now(&Op::LinkSet {
                        name: dev.clone(),
                        change: LinkChange::Master(bridge.clone()),
                    });
                }
                self.active.push(Active {
                    dev: dev.clone(),
                    uuid: uuid.into(),
                    since: 0,
                });
                // The bridge's DHCP starts with the port NM attached.
                self.bind(sim, &bridge);
            }
        }
        Ok(())
    }

    fn delete(&mut self, sim: &SimKernel, uuid: &str) {
        if let Some(dev) = self
            .active
            .iter()
            .find(|a| a.uuid == uuid)
            .map(|a| a.dev.clone())
        {
            if sim.net().link(&dev).is_some() {
                self.deactivate(sim, &dev);
            } else {
                self.active.retain(|a| a.uuid != uuid);
            }
        }
        self.profiles.retain(|p| p.uuid != uuid);
    }

    /// One second: renewals at T1 (failing on a port), checkpoints that time out.
    pub(crate) fn tick(&mut self, sim: &SimKernel) {
        self.now_ms += 1000;
        // A device that went away takes its activation along.
        let net = sim.net();
        self.active.retain(|a| net.link(&a.dev).is_some());
        let t1 = self.lease.seconds / 2;
        let mut due = Vec::new();
        for a in &mut self.active {
            a.since += 1;
            if a.since >= t1 {
                a.since = 0;
                due.push((a.dev.clone(), a.uuid.clone()));
            }
        }
        for (dev, uuid) in due {
            if self.leasing(&uuid) {
                self.bind(sim, &dev);
            }
        }
        self.advertise(sim);
        for a in &self.active {
            let nic = sim.net().link(&a.dev).is_some_and(|l| !l.kind.is_bridge());
            if nic && self.leasing(&a.uuid) {
                Self::stray_link_local(sim, &a.dev);
            }
        }
        let expired: Vec<Checkpoint> = self
            .checkpoints
            .iter()
            .filter(|c| self.now_ms >= c.created_ms + u64::from(c.timeout) * 1000)
            .cloned()
            .collect();
        for c in expired {
            self.rollback(sim, &c);
        }
    }

    fn rollback(&mut self, sim: &SimKernel, c: &Checkpoint) {
        self.checkpoints.retain(|x| x.path != c.path);
        self.rollbacks += 1;
        let new: Vec<String> = self
            .profiles
            .iter()
            .filter(|p| !c.profiles.contains(&p.uuid))
            .map(|p| p.uuid.clone())
            .collect();
        for uuid in new {
            self.delete(sim, &uuid);
        }
        // Every device's profile activated again (NM "reactivating connection"), also
        // where it is still the active one: the device may have changed under it.
        for (dev, uuid) in &c.active {
            let _ = self.activate(sim, uuid, dev);
        }
        for l in sim.net().links {
            if !c.devices.contains(&l.name) {
                self.deactivate(sim, &l.name);
                Self::flush(sim, &l.name);
            }
        }
    }

    /// Applies one of NetworkManager's host operations.
    pub(crate) fn apply(
        &mut self,
        sim: &SimKernel,
        op: &env_qemu_core::host::HostOp,
    ) -> Result<(), KernelError> {
        use env_qemu_core::host::HostOp;
        let object = op.object();
        match op {
            HostOp::NmCheckpointCreate { timeout } => {
                if !self.checkpoints.is_empty() {
                    return Err(refused(
                        ErrorKind::Busy,
                        object,
                        "a device is already included in a checkpoint",
                    ));
                }
                let path = format!(
                    "/org/freedesktop/NetworkManager/Checkpoint/{}",
                    self.next_checkpoint
                );
                self.next_checkpoint += 1;
                self.checkpoints.push(Checkpoint {
                    path,
                    created_ms: self.now_ms,
                    timeout: *timeout,
                    active: self
                        .active
                        .iter()
                        .map(|a| (a.dev.clone(), a.uuid.clone()))
                        .collect(),
                    profiles: self.profiles.iter().map(|p| p.uuid.clone()).collect(),
                    devices: sim.net().links.into_iter().map(|l| l.name).collect(),
                });
            }
            HostOp::NmCheckpointDestroy { since_ms, devices } => {
                let host = self.host(sim);
                let refs: Vec<&IfName> = devices.iter().collect();
                let gone: Vec<String> = host
                    .checkpoints_since(*since_ms, &refs)
                    .map(|c| c.path.clone())
                    .collect();
                self.checkpoints.retain(|c| !gone.contains(&c.path));
            }
            HostOp::NmAdd { profile } => {
                if self.profile(&profile.uuid).is_some() {
                    return Err(refused(
                        ErrorKind::AlreadyExists,
                        object,
                        "a profile with this UUID exists",
                    ));
                }
                self.profiles.push(from_profile(profile));
            }
            HostOp::NmActivate {
                uuid, dev, until, ..
            } => {
                self.activate(sim, uuid, dev)
                    .map_err(|e| refused(ErrorKind::NotFound, object.clone(), &e))?;
                let reached = match until {
                    NmUntil::IpConfig | NmUntil::Activated => true,
                    NmUntil::Lease { dev, address } => sim
                        .net()
                        .addresses_of(dev)
                        .any(|a| a.ip == *address && a.valid_lft == Some(self.lease.seconds)),
                };
                if !reached {
                    return Err(refused(
                        ErrorKind::Other,
                        object,
                        "no lease within the wait",
                    ));
                }
            }
            HostOp::NmDelete { uuid, .. } => self.delete(sim, uuid),
            _ => {
                return Err(refused(
                    ErrorKind::Unsupported,
                    object,
                    "not NetworkManager's",
                ))
            }
        }
        Ok(())
    }

    fn host(&self, sim: &SimKernel) -> NmHost {
        let _ = sim;
        NmHost {
            now_ms: self.now_ms,
            checkpoints: self
                .checkpoints
                .iter()
                .map(|c| NmCheckpoint {
                    path: c.path.clone(),
                    created_ms: c.created_ms,
                    timeout: c.timeout,
                    devices: c.devices.clone(),
                })
                .collect(),
            unsaved: self
                .profiles
                .iter()
                .filter(|p| p.unsaved)
                .map(|p| NmProfileRef {
                    uuid: p.uuid.clone(),
                    id: p.id.clone(),
                })
                .collect(),
        }
    }

    /// NetworkManager's view of each of `devs` that exists.
    pub(crate) fn managers(&self, sim: &SimKernel, devs: &[IfName]) -> Vec<Managed> {
        let net = sim.net();
        let host = self.host(sim);
        let mut out = Vec::new();
        for dev in devs {
            let Some(link) = net.link(dev) else { continue };
            let mut d = NmDevice {
                active: None,
                carried: None,
                host: host.clone(),
            };
            if let Some(a) = self.active_on(dev) {
                let p = self.profile(&a.uuid).expect("an active profile exists");
                d.active = Some(NmActive {
                    uuid: p.uuid.clone(),
                    id: p.id.clone(),
                    state: NmActiveState::Activated,
                    external: false,
                });
                if p.kind == Kind::Leasing {
                    let auto = |_| {
                        let mut s = NmSection::new();
                        s.insert("method".into(), NmValue::Str("auto".into()));
                        s
                    };
                    let mac = link.mac.0;
                    d.carried = Some(NmCarried {
                        ipv4: auto(4),
                        ipv6: auto(6),
                        dhcp_client_id: Some(format!(
                            "01:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
                        )),
                        lease: net
                            .addresses_of(dev)
                            .find(|x| x.ip == self.lease.address)
                            .map(|x| x.ip),
                    });
                }
            } else if net.addresses_of(dev).next().is_some() {
                d.active = Some(NmActive {
                    uuid: stable_uuid(&["external", dev.as_str()]),
                    id: dev.to_string(),
                    state: NmActiveState::Activated,
                    external: true,
                });
            }
            out.push(Managed {
                dev: dev.clone(),
                client: Client::NetworkManager(Box::new(d)),
            });
        }
        out
    }

    /// The UUID of the profile active on `dev`, if any.
    pub(crate) fn profile_on(&self, dev: &IfName) -> Option<String> {
        self.active_on(dev).map(|a| a.uuid.clone())
    }

    /// The in-memory profiles left.
    pub(crate) fn unsaved(&self) -> Vec<String> {
        self.profiles
            .iter()
            .filter(|p| p.unsaved)
            .map(|p| p.id.clone())
            .collect()
    }

    pub(crate) fn checkpoints(&self) -> usize {
        self.checkpoints.len()
    }
}

/// NM's SLAAC address on `dev` in `prefix` (the MAC's interface identifier; NM's own
/// generation hashes more, but is as stable), `noprefixroute`, and its `proto ra` prefix
/// route.
fn slaac(prefix: Prefix, dev: &IfName, mac: env_qemu_core::model::MacAddr) -> (Address, Route) {
    let mut ip = [0u8; 16];
    if let IpAddr::V6(net) = prefix.addr() {
        ip[..8].copy_from_slice(&net.octets()[..8]);
    }
    ip[8..].copy_from_slice(&mac.eui64());
    let mut a = Address::new(dev.clone(), IpAddr::V6(ip.into()), 64);
    a.flags.insert(AddrFlag::Noprefixroute);
    a.valid_lft = Some(SLAAC_LIFETIME);
    a.preferred_lft = Some(SLAAC_LIFETIME);
    let route = Route::new(prefix, None, Some(dev.clone()))
        .proto(RouteProtocol::Ra)
        .metric(METRIC);
    (a, route)
}

fn from_profile(p: &NmProfile) -> Profile {
    Profile {
        uuid: p.uuid.clone(),
        id: p.id.clone(),
        dev: p.dev.clone(),
        kind: match &p.kind {
            NmProfileKind::Bridge { .. } => Kind::Leasing,
            NmProfileKind::Port { master } => Kind::Port {
                master: master.clone(),
            },
        },
        unsaved: true,
    }
}
