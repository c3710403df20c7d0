//! A simulated systemd-networkd beside the simulated kernel, modelled on what systemd 252
//! was measured to do in a namespace (docs/networkd.md):
//!
//! - it applies to each link the first `.network` file, in file-name order, whose
//!   `Name=` matches it (runtime files under /run/systemd/network beside the host's own
//!   one); a link no file matches is unmanaged;
//! - it reads the files when it starts and at a reload; a link whose file changed is
//!   configured again: networkd drops the link's foreign routes (those it did not make)
//!   and runs the new file;
//! - a DHCP file binds a lease with networkd's client identifier, its IAID (derived from
//!   the interface name unless `IAID=` pins it) and the host's DUID: the server gives the
//!   NIC's lease to the NIC's identifier, another address to another one; it binds where
//!   it can hear the server (up, not a port, a bridge with a port), renews at T1, and a
//!   renewal on a port fails (the server's reply goes to the bridge): nothing refreshed;
//! - a file with `Bridge=` makes its link a port of that bridge, unless `KeepMaster=yes`
//!   and it is one already, and removes its link-local address; any other file puts the
//!   kernel's link-local address back (address generation on);
//! - a restart keeps the kernel's state and the files in /run, reads the files again and
//!   configures every link again.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use env_qemu_core::host::{Client, HostOp, Managed};
use env_qemu_core::model::{
    AddrFlag, Address, Family, IfName, Prefix, Route, RouteProtocol, RouteScope,
};
use env_qemu_core::networkd::{is_runtime_file, parse, NetworkdLink};
use env_qemu_core::{ErrorKind, KernelError, LinkChange, Op};

use crate::host::SimLease;
use crate::SimKernel;

/// networkd's route metric for DHCPv4 routes.
const METRIC: u32 = 1024;

/// What a `.network` file makes networkd do on its link.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// DHCPv4 with this IAID (`None`: derived from the interface name).
    Leasing { iaid: Option<u32> },
    /// A port of `bridge`.
    Port { bridge: IfName, keep_master: bool },
    /// Nothing env-qemu's model needs.
    Other,
}

#[derive(Debug, Clone)]
struct File {
    name: String,
    text: String,
}

impl File {
    fn matches(&self) -> Option<String> {
        parse(&self.text)
            .into_iter()
            .filter(|(s, _)| s == "Match")
            .flat_map(|(_, kv)| kv)
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v)
    }

    fn kind(&self) -> Kind {
        let sections = parse(&self.text);
        let get = |section: &str, key: &str| {
            sections
                .iter()
                .filter(|(s, _)| s == section)
                .flat_map(|(_, kv)| kv)
                .rfind(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if let Some(b) = get("Network", "Bridge").and_then(|b| IfName::new(&b).ok()) {
            return Kind::Port {
                bridge: b,
                keep_master: get("Network", "KeepMaster").as_deref() == Some("yes"),
            };
        }
        match get("Network", "DHCP").as_deref() {
            Some("yes" | "ipv4") => Kind::Leasing {
                iaid: get("DHCPv4", "IAID").and_then(|i| i.parse().ok()),
            },
            _ => Kind::Other,
        }
    }
}

#[derive(Debug, Clone)]
struct Applied {
    path: PathBuf,
    /// The text as loaded.
    text: String,
    /// Seconds since the last bind or renewal attempt.
    since: u32,
    /// The IAID of the lease bound, if any.
    iaid: Option<u32>,
}

/// systemd-networkd's state, driven by [`crate::host::SimHost`].
#[derive(Debug, Clone)]
pub(crate) struct SimNetworkd {
    lease: SimLease,
    /// The NIC's IAID: the server's lease is for it.
    nic_iaid: u32,
    /// The host's own file (under /etc/systemd/network).
    own: (PathBuf, String),
    /// /run/systemd/network: what env-qemu wrote.
    runtime: BTreeMap<PathBuf, String>,
    /// The files as networkd loaded them (at start or the last reload).
    loaded: Vec<(PathBuf, File)>,
    applied: BTreeMap<IfName, Applied>,
    pub(crate) reloads: u32,
}

/// The IAID networkd derives for `dev` (a hash of the name here; the real one hashes
/// udev's name properties or the interface name).
fn default_iaid(dev: &IfName) -> u32 {
    dev.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn refused(kind: ErrorKind, object: String, detail: &str) -> KernelError {
    KernelError::new(kind, object, detail)
}

impl SimNetworkd {
    /// networkd running `own` (path, text: a DHCP file for `nic`), bound at once.
    pub(crate) fn new(
        sim: &SimKernel,
        nic: &IfName,
        lease: SimLease,
        own: (PathBuf, String),
    ) -> Self {
        let mut nd = SimNetworkd {
            lease,
            nic_iaid: default_iaid(nic),
            own,
            runtime: BTreeMap::new(),
            loaded: Vec::new(),
            applied: BTreeMap::new(),
            reloads: 0,
        };
        nd.load();
        nd.configure_all(sim, true);
        nd
    }

    fn load(&mut self) {
        let mut files: Vec<(PathBuf, File)> = std::iter::once(self.own.clone())
            .chain(self.runtime.clone())
            .map(|(p, text)| {
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                (p, File { name, text })
            })
            .collect();
        files.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        self.loaded = files;
    }

    /// The loaded file that applies to `dev`.
    fn file_for(&self, dev: &IfName) -> Option<&(PathBuf, File)> {
        self.loaded
            .iter()
            .find(|(_, f)| f.matches().as_deref() == Some(dev.as_str()))
    }

    /// Every link configured again if its file changed (`all`: every link, as at a start).
    fn configure_all(&mut self, sim: &SimKernel, all: bool) {
        for link in sim.net().links {
            let dev = link.name.clone();
            let Some((path, file)) = self.file_for(&dev).cloned() else {
                self.applied.remove(&dev);
                continue;
            };
            let same = self
                .applied
                .get(&dev)
                .is_some_and(|a| a.path == path && a.text == file.text);
            if same && !all {
                continue;
            }
            self.configure(sim, &dev, path, &file);
        }
    }

    fn configure(&mut self, sim: &SimKernel, dev: &IfName, path: PathBuf, file: &File) {
        // Foreign routes dropped: networkd makes its own.
        let net = sim.net();
        for r in net.routes_via(dev) {
            if r.protocol != RouteProtocol::Kernel {
                let _ = sim.apply_now(&Op::RouteDel { route: r.clone() });
            }
        }
        self.applied.insert(
            dev.clone(),
            Applied {
                path,
                text: file.text.clone(),
                since: 0,
                iaid: None,
            },
        );
        match file.kind() {
            Kind::Port {
                bridge,
                keep_master,
            } => {
                // A port has no link-local address (networkd's default for one).
                for a in sim.net().addresses_of(dev).filter(|a| a.is_link_local()) {
                    let _ = sim.apply_now(&Op::AddrDel { address: a.clone() });
                }
                let master = sim.net().link(dev).and_then(|l| l.master.clone());
                let kept = keep_master && master.is_some();
                if !kept && master.as_ref() != Some(&bridge) && sim.net().link(&bridge).is_some() {
                    let _ = sim.apply_now(&Op::LinkSet {
                        name: dev.clone(),
                        change: LinkChange::Master(bridge),
                    });
                }
            }
            Kind::Leasing { .. } => {
                Self::link_local(sim, dev);
                self.bind(sim, dev);
            }
            Kind::Other => Self::link_local(sim, dev),
        }
    }

    /// The kernel's EUI-64 link-local address on `dev`, which networkd's address
    /// generation makes when it runs a file that does not turn it off.
    fn link_local(sim: &SimKernel, dev: &IfName) {
        let Some(link) = sim.net().link(dev).cloned() else {
            return;
        };
        let ll = Address::new(dev.clone(), IpAddr::V6(link.mac.link_local()), 64);
        if !sim.net().addresses_of(dev).any(|a| a.ip == ll.ip) {
            let _ = sim.apply_now(&Op::AddrAdd { address: ll });
        }
    }

    /// The address and routes of a lease with `iaid` on `dev`.
    fn leased(&self, dev: &IfName, iaid: u32) -> (Address, [Route; 2]) {
        let l = &self.lease;
        let ip = if iaid == self.nic_iaid {
            l.address
        } else {
            // Another client identifier: the server's next free address.
            match l.address {
                IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 1).into()),
                v6 => v6,
            }
        };
        let mut a = Address::new(dev.clone(), ip, l.prefix_len);
        a.valid_lft = Some(l.seconds);
        a.preferred_lft = Some(l.seconds);
        a.flags.insert(AddrFlag::Noprefixroute);
        let subnet = Prefix::new(ip, l.prefix_len).expect("a valid lease");
        if let (IpAddr::V4(net), true) = (subnet.addr(), a.family() == Family::Inet) {
            let host = u32::MAX >> l.prefix_len;
            a.broadcast = Some(IpAddr::V4((u32::from(net) | host).into()));
        }
        let mut prefix = Route::new(subnet, None, Some(dev.clone()))
            .proto(RouteProtocol::Kernel)
            .metric(METRIC)
            .src(ip);
        prefix.scope = RouteScope::Link;
        let default = Route::new(
            Prefix::default_for(a.family()),
            Some(l.router),
            Some(dev.clone()),
        )
        .proto(RouteProtocol::Dhcp)
        .metric(METRIC)
        .src(ip);
        (a, [prefix, default])
    }

    /// A DHCP bind on `dev` with its file's IAID, if the device can hear the server: up,
    /// not a port, and for a bridge with a port.
    fn bind(&mut self, sim: &SimKernel, dev: &IfName) {
        let Some(applied) = self.applied.get(dev) else {
            return;
        };
        let Some((_, file)) = self.loaded.iter().find(|(p, _)| *p == applied.path) else {
            return;
        };
        let Kind::Leasing { iaid } = file.kind() else {
            return;
        };
        let net = sim.net();
        let Some(link) = net.link(dev) else { return };
        if !link.up || link.master.is_some() {
            return;
        }
        if link.kind.is_bridge() && net.ports_of(dev).next().is_none() {
            return;
        }
        let iaid = iaid.unwrap_or_else(|| default_iaid(dev));
        let (a, routes) = self.leased(dev, iaid);
        let _ = sim.apply_now(&Op::AddrDel { address: a.clone() });
        let _ = sim.apply_now(&Op::AddrAdd { address: a });
        for r in routes {
            let _ = sim.apply_now(&Op::RouteReplace { route: r });
        }
        if let Some(x) = self.applied.get_mut(dev) {
            x.iaid = Some(iaid);
            x.since = 0;
        }
    }

    /// One second: renewals at T1 (failing on a port), first binds of links that can
    /// hear the server now (a bridge that got its port).
    pub(crate) fn tick(&mut self, sim: &SimKernel) {
        let net = sim.net();
        self.applied.retain(|d, _| net.link(d).is_some());
        let t1 = self.lease.seconds / 2;
        let mut due = Vec::new();
        for (dev, a) in &mut self.applied {
            a.since += 1;
            if a.since >= t1 || a.iaid.is_none() {
                a.since = 0;
                due.push(dev.clone());
            }
        }
        for dev in due {
            self.bind(sim, &dev);
        }
    }

    /// networkd restarted: the files in /run kept, read again, every link configured.
    pub(crate) fn restart(&mut self, sim: &SimKernel) {
        self.load();
        self.applied.clear();
        self.configure_all(sim, true);
    }

    /// Applies one of networkd's host operations.
    pub(crate) fn apply(&mut self, sim: &SimKernel, op: &HostOp) -> Result<(), KernelError> {
        let object = op.object();
        match op {
            HostOp::NetworkdWrite { path, text } => {
                if !is_runtime_file(path) {
                    return Err(refused(ErrorKind::Invalid, object, "not a runtime file"));
                }
                self.runtime.insert(path.clone(), text.clone());
            }
            HostOp::NetworkdRemove { path } => {
                self.runtime.remove(path);
            }
            HostOp::NetworkdReload { wait, link_local } => {
                self.reloads += 1;
                self.load();
                self.configure_all(sim, false);
                for (dev, file) in wait {
                    if self.applied.get(dev).map(|a| &a.path) != Some(file) {
                        return Err(refused(
                            ErrorKind::Other,
                            object,
                            &format!("networkd does not apply {} to {dev}", file.display()),
                        ));
                    }
                }
                for dev in link_local {
                    if !sim.net().addresses_of(dev).any(|a| a.is_link_local()) {
                        return Err(refused(
                            ErrorKind::Other,
                            object,
                            &format!("{dev} has no link-local address"),
                        ));
                    }
                }
            }
            _ => return Err(refused(ErrorKind::Unsupported, object, "not networkd's")),
        }
        Ok(())
    }

    /// networkd's view of each of `devs` it manages.
    pub(crate) fn managers(&self, sim: &SimKernel, devs: &[IfName]) -> Vec<Managed> {
        let net = sim.net();
        let mut out = Vec::new();
        for dev in devs {
            if net.link(dev).is_none() {
                continue;
            }
            let Some(a) = self.applied.get(dev) else {
                continue;
            };
            let iaid = a.iaid;
            let lease = iaid.and_then(|i| {
                let ip = self.leased(dev, i).0.ip;
                net.addresses_of(dev).find(|x| x.ip == ip).map(|x| x.ip)
            });
            out.push(Managed {
                dev: dev.clone(),
                client: Client::Networkd(Box::new(NetworkdLink {
                    state: Some("configured".into()),
                    network_file: Some(a.path.clone()),
                    network: Some(a.text.clone()),
                    iaid,
                    lease,
                    runtime: self.runtime.clone(),
                })),
            });
        }
        out
    }

    /// The file networkd applies to `dev`.
    pub(crate) fn file_on(&self, dev: &IfName) -> Option<&Path> {
        self.applied.get(dev).map(|a| a.path.as_path())
    }

    /// env-qemu's runtime files present.
    pub(crate) fn runtime_files(&self) -> Vec<PathBuf> {
        self.runtime.keys().cloned().collect()
    }
}
