//! The simulated network namespace as plain data: devices with their addresses, the
//! routing tables, the IPv6 sysctls and the tmpfs mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use env_qemu_core::model::{
    AddrScope, Address, IfName, Knob, MacAddr, Route, TapInfo, TABLE_LOCAL, TABLE_MAIN,
};

use crate::error::{exists, no_device, Res};

/// Below this MTU the kernel tears IPv6 off a device entirely (addresses, routes and
/// the `net.ipv6.conf.DEV` directory), and rebuilds it from `default` when it is raised.
pub(crate) const IPV6_MIN_MTU: u32 = 1280;
/// Below this MTU (only lo can go there) the kernel destroys the device's in_device:
/// every IPv4 address goes, and IPv4 addresses and routes on it are refused until the
/// MTU is raised again (inetdev_valid_mtu).
pub(crate) const IPV4_MIN_MTU: u32 = 68;

/// The spanning-tree state of a bridge port, reduced to what changes carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortState {
    /// Port or bridge down, or no carrier on the port.
    Disabled,
    /// STP on: listening/learning, ~2 × forward_delay before it forwards.
    Listening,
    /// Forwarding frames: the port has carrier.
    Forwarding,
}

#[derive(Debug, Clone)]
pub(crate) struct Ns {
    /// ifindexes are allocated cyclically upwards and never handed out twice.
    pub next_index: u32,
    pub devs: BTreeMap<u32, Dev>,
    /// Every table but `local`, both families, in insertion order; `dump` sorts them the
    /// way the kernel walks its tables. Position only matters among routes with the same
    /// key: `replace` keeps it, kernel-added routes append.
    pub routes: Vec<Route>,
    pub conf_all: Knobs,
    pub conf_default: Knobs,
    pub tmpfs: BTreeMap<PathBuf, Mount>,
    pub promote_secondaries: bool,
    pub mac_seed: u64,
    /// IPv6 routing tables that exist: main and local from the start, any other from
    /// the first route request for it that reaches the kernel (fib6_new_table runs before
    /// the nexthop checks, so a refused route creates its table too); never removed.
    pub v6_tables: BTreeSet<u32>,
    /// How the race in `bridge::carrierless_port_up` ends: the bridge flashes ready.
    pub port_up_flash: bool,
    /// ARP and NDP entries of every device.
    pub neigh: Vec<crate::neigh::Entry>,
    /// Time passed on the clock (`SimKernel::advance_clock`) that is still less than the
    /// whole second lifetimes and expiries count in.
    pub clock_residue: std::time::Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Dev {
    pub index: u32,
    pub name: IfName,
    pub kind: Kind,
    pub mac: MacAddr,
    pub mtu: u32,
    /// IFF_UP.
    pub up: bool,
    pub master: Option<u32>,
    pub port: PortState,
    /// In `ip addr` order: primaries (by scope), then secondaries.
    pub v4: Vec<Address>,
    /// `None` while the MTU is below 1280: the kernel has no inet6_dev for it then.
    pub v6: Option<Inet6>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Loopback,
    /// A physical NIC; `plugged` is its cable.
    Ethernet {
        plugged: bool,
    },
    Wireless {
        plugged: bool,
    },
    Veth {
        peer: u32,
    },
    /// `reader`: some process (QEMU) holds the tap open; only then it has carrier.
    Tap {
        info: TapInfo,
        reader: bool,
    },
    Bridge(Bridge),
}

#[derive(Debug, Clone)]
pub(crate) struct Bridge {
    pub stp: bool,
    pub forward_delay: u32,
    /// addr_assign_type NET_ADDR_SET: the MAC no longer follows the ports.
    pub mac_fixed: bool,
    /// BROPT_MTU_SET_BY_USER: only `ip link set mtu` pins it, not the creation MTU.
    pub mtu_user_set: bool,
    /// bridge_id.addr: starts zeroed (not the random device MAC), so the first port
    /// always changes it.
    pub id: MacAddr,
    /// The carrier the bridge driver last computed. A new bridge starts with carrier
    /// on and keeps it until the first port-state selection.
    pub lower: bool,
    /// A port-state selection is due (bridge id changed, port removed).
    pub recalc: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Inet6 {
    pub conf: Knobs,
    /// IF_READY: up with carrier seen since the last admin up. DAD only progresses on a
    /// ready device; losing carrier afterwards does not clear it.
    pub ready: bool,
    /// lo only: an MTU below 1280 emptied it (addrconf_ifdown without unregistering)
    /// and cleared IF_READY; raising the MTU does not set it again, only the next admin
    /// up does. Addresses can still be added meanwhile.
    pub await_up: bool,
    /// cnf.mtu6: the device MTU IPv6 last took, which NETDEV_CHANGEMTU compares route
    /// MTUs against before updating it.
    pub mtu6: u32,
    /// Kernel order: by scope (global first), newest first within a scope.
    pub addrs: Vec<Address>,
    /// Each temporary address's `mngtmpaddr` parent (ifpub).
    pub temp_parent: BTreeMap<IpAddr, IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Knobs {
    pub autoconf: i32,
    pub accept_ra: i32,
    pub accept_dad: i32,
    pub use_tempaddr: i32,
    /// An unsigned int in the kernel (1..=u32::MAX).
    pub ra_defrtr_metric: u32,
}

impl Knobs {
    pub fn get(&self, k: Knob) -> i64 {
        match k {
            Knob::Ipv6Autoconf => self.autoconf.into(),
            Knob::Ipv6AcceptRa => self.accept_ra.into(),
            Knob::Ipv6AcceptDad => self.accept_dad.into(),
            Knob::Ipv6UseTempaddr => self.use_tempaddr.into(),
            Knob::Ipv6RaDefrtrMetric => self.ra_defrtr_metric.into(),
        }
    }

    /// proc_dointvec for the int knobs; proc_douintvec_minmax (1..=u32::MAX) for
    /// ra_defrtr_metric. `None`: the value is refused (EINVAL).
    pub fn set(&mut self, k: Knob, v: i64) -> Option<()> {
        let int = || i32::try_from(v).ok();
        match k {
            Knob::Ipv6Autoconf => self.autoconf = int()?,
            Knob::Ipv6AcceptRa => self.accept_ra = int()?,
            Knob::Ipv6AcceptDad => self.accept_dad = int()?,
            Knob::Ipv6UseTempaddr => self.use_tempaddr = int()?,
            Knob::Ipv6RaDefrtrMetric => {
                self.ra_defrtr_metric = u32::try_from(v).ok().filter(|m| *m >= 1)?;
            }
        }
        Some(())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Mount {
    pub size: u64,
    pub used: u64,
}

/// What a fresh namespace's `net.ipv6.conf.all` holds: all.accept_dad is 0, so a
/// device's own accept_dad alone decides DAD.
const CONF_ALL: Knobs = Knobs {
    autoconf: 1,
    accept_ra: 1,
    accept_dad: 0,
    use_tempaddr: 0,
    ra_defrtr_metric: 1024,
};
const CONF_DEFAULT: Knobs = Knobs {
    autoconf: 1,
    accept_ra: 1,
    accept_dad: 1,
    use_tempaddr: 0,
    ra_defrtr_metric: 1024,
};

impl Ns {
    /// A fresh namespace as `ip netns add` + `ip link set lo up` leaves it: lo at index 1
    /// with 127.0.0.1/8 and ::1/128, and no route outside the local table.
    pub fn new() -> Ns {
        let mut ns = Ns {
            next_index: 1,
            devs: BTreeMap::new(),
            routes: Vec::new(),
            conf_all: CONF_ALL,
            conf_default: CONF_DEFAULT,
            tmpfs: BTreeMap::new(),
            promote_secondaries: false,
            mac_seed: 0x656e_762d_7165_6d75,
            v6_tables: BTreeSet::from([TABLE_MAIN, TABLE_LOCAL]),
            port_up_flash: false,
            neigh: Vec::new(),
            clock_residue: std::time::Duration::ZERO,
        };
        let lo = IfName::new("lo").expect("valid name");
        let i = ns.insert_dev(lo, Kind::Loopback, MacAddr::ZERO, 65536);
        crate::links::bring_up(&mut ns, i);
        crate::bridge::settle(&mut ns);
        ns
    }

    pub fn idx(&self, name: &IfName) -> Option<u32> {
        self.devs
            .values()
            .find(|d| &d.name == name)
            .map(|d| d.index)
    }

    pub fn require(&self, name: &IfName) -> Res<u32> {
        self.idx(name).ok_or_else(no_device)
    }

    pub fn ensure_free(&self, name: &IfName) -> Res {
        match self.idx(name) {
            Some(_) => Err(exists()),
            None => Ok(()),
        }
    }

    pub fn dev(&self, i: u32) -> &Dev {
        &self.devs[&i]
    }

    pub fn dev_mut(&mut self, i: u32) -> &mut Dev {
        self.devs.get_mut(&i).expect("device index is live")
    }

    pub fn name(&self, i: u32) -> IfName {
        self.dev(i).name.clone()
    }

    pub fn bridge_mut(&mut self, i: u32) -> Option<&mut Bridge> {
        match &mut self.dev_mut(i).kind {
            Kind::Bridge(b) => Some(b),
            _ => None,
        }
    }

    pub fn is_bridge(&self, i: u32) -> bool {
        matches!(self.dev(i).kind, Kind::Bridge(_))
    }

    /// Whether the device has an in_device (IPv4 enabled): MTU at least 68.
    pub fn has_inet4(&self, i: u32) -> bool {
        self.dev(i).mtu >= IPV4_MIN_MTU
    }

    pub fn loopback(&self) -> IfName {
        self.devs
            .values()
            .find(|d| matches!(d.kind, Kind::Loopback))
            .map(|d| d.name.clone())
            .expect("lo cannot be deleted")
    }

    /// The driver's view of the link below (netif_carrier_ok), whatever IFF_UP says.
    pub fn lower(&self, i: u32) -> bool {
        let d = self.dev(i);
        match &d.kind {
            Kind::Loopback => true,
            Kind::Ethernet { plugged } | Kind::Wireless { plugged } => *plugged,
            // veth_open turns carrier on at both ends only once both are up.
            Kind::Veth { peer } => d.up && self.dev(*peer).up,
            Kind::Tap { reader, .. } => *reader,
            Kind::Bridge(b) => b.lower,
        }
    }

    /// IFF_LOWER_UP: what `ip link` and the dump report as carrier.
    pub fn carrier(&self, i: u32) -> bool {
        self.dev(i).up && self.lower(i)
    }

    pub fn ports(&self, br: u32) -> Vec<u32> {
        self.devs
            .values()
            .filter(|d| d.master == Some(br))
            .map(|d| d.index)
            .collect()
    }

    pub fn insert_dev(&mut self, name: IfName, kind: Kind, mac: MacAddr, mtu: u32) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        let v6 = (mtu >= IPV6_MIN_MTU).then(|| Inet6 {
            conf: self.conf_default,
            ready: false,
            await_up: false,
            mtu6: mtu,
            addrs: Vec::new(),
            temp_parent: BTreeMap::new(),
        });
        self.devs.insert(
            index,
            Dev {
                index,
                name,
                kind,
                mac,
                mtu,
                up: false,
                master: None,
                port: PortState::Disabled,
                v4: Vec::new(),
                v6,
            },
        );
        index
    }

    /// eth_hw_addr_random: a locally administered unicast MAC. Deterministic (splitmix64
    /// over a per-namespace counter) so tests reproduce.
    pub fn random_mac(&mut self) -> MacAddr {
        self.mac_seed = self.mac_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.mac_seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let b = z.to_be_bytes();
        MacAddr([(b[0] & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }

    /// Whether `ip` is still one of this namespace's IPv4 addresses (the local table
    /// keeps entries of down devices too).
    pub fn is_local_v4(&self, ip: Ipv4Addr) -> bool {
        self.devs
            .values()
            .flat_map(|d| d.v4.iter())
            .any(|a| a.ip == IpAddr::V4(ip))
    }

    /// ipv6_chk_addr: `ip` is on `dev`, or is a global address anywhere. With
    /// `usable_only`, tentative addresses do not count.
    pub fn has_v6(&self, ip: Ipv6Addr, dev: u32, usable_only: bool) -> bool {
        self.devs.values().any(|d| {
            d.v6.iter().flat_map(|v| v.addrs.iter()).any(|a| {
                a.ip == IpAddr::V6(ip)
                    && (d.index == dev || !matches!(a.scope, AddrScope::Link | AddrScope::Host))
                    && !(usable_only && a.has(env_qemu_core::model::AddrFlag::Tentative))
            })
        })
    }
}

pub(crate) fn valid_ether(m: &MacAddr) -> bool {
    !m.is_zero() && m.0[0] & 1 == 0
}

/// The numeric scope the kernel compares (`RT_SCOPE_*`, larger = narrower).
pub(crate) fn scope_num(s: AddrScope) -> u8 {
    match s {
        AddrScope::Global => 0,
        AddrScope::Site => 200,
        AddrScope::Link => 253,
        AddrScope::Host => 254,
        AddrScope::Other(n) => n,
    }
}
