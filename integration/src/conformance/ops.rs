//! Literal operations for fixed cases: `veth("v0", "v1")`, `up("v0")`,
//! `addr_add(addr("v0", "192.0.2.1/24"))`, `route_add(route("default").via("192.0.2.254"))`.

use std::net::IpAddr;

use env_qemu_core::model::{
    AddrFlag, Address, IfName, MacAddr, NudState, Prefix, Route, RouteProtocol, RouteScope,
    RouteType,
};
use env_qemu_core::{LinkChange, LinkSpec, Op};

pub fn n(s: &str) -> IfName {
    IfName::new(s).expect("valid interface name")
}

pub fn mac(s: &str) -> MacAddr {
    s.parse().expect("valid MAC")
}

pub fn veth(name: &str, peer: &str) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Veth {
            name: n(name),
            peer: n(peer),
        },
    }
}

pub fn bridge(name: &str, mac_: Option<&str>, mtu: Option<u32>, stp: bool, delay: u32) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n(name),
            mac: mac_.map(mac),
            mtu,
            stp,
            forward_delay: delay,
        },
    }
}

pub fn tap(name: &str, owner: Option<u32>, group: Option<u32>) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Tap {
            name: n(name),
            owner,
            group,
        },
    }
}

pub fn link_del(name: &str) -> Op {
    Op::LinkDel { name: n(name) }
}

pub fn set(name: &str, change: LinkChange) -> Op {
    Op::LinkSet {
        name: n(name),
        change,
    }
}

pub fn up(name: &str) -> Op {
    set(name, LinkChange::Up)
}

pub fn down(name: &str) -> Op {
    set(name, LinkChange::Down)
}

pub fn master(name: &str, bridge: &str) -> Op {
    set(name, LinkChange::Master(n(bridge)))
}

pub fn nomaster(name: &str) -> Op {
    set(name, LinkChange::NoMaster)
}

pub fn mtu(name: &str, mtu: u32) -> Op {
    set(name, LinkChange::Mtu(mtu))
}

pub fn set_mac(name: &str, m: &str) -> Op {
    set(name, LinkChange::Mac(mac(m)))
}

/// A permanent address with the default scope, no broadcast, no flags.
pub fn addr(dev: &str, cidr: &str) -> Address {
    let (ip, len) = cidr.split_once('/').expect("ADDR/LEN");
    Address::new(
        n(dev),
        ip.parse().expect("IP address"),
        len.parse().expect("prefix length"),
    )
}

/// Adds flags, lifetimes or a broadcast to an [`Address`].
pub trait AddressExt {
    fn flag(self, f: AddrFlag) -> Address;
    fn lifetimes(self, valid: u32, preferred: u32) -> Address;
    fn brd(self, b: &str) -> Address;
}

impl AddressExt for Address {
    fn flag(mut self, f: AddrFlag) -> Address {
        self.flags.insert(f);
        self
    }

    fn lifetimes(mut self, valid: u32, preferred: u32) -> Address {
        self.valid_lft = Some(valid);
        self.preferred_lft = Some(preferred);
        self
    }

    fn brd(mut self, b: &str) -> Address {
        self.broadcast = Some(b.parse().expect("broadcast address"));
        self
    }
}

pub fn addr_add(a: Address) -> Op {
    Op::AddrAdd { address: a }
}

pub fn addr_del(dev: &str, cidr: &str) -> Op {
    Op::AddrDel {
        address: addr(dev, cidr),
    }
}

/// `ip route add DST` as [`Route::new`] makes it (table main, proto boot), no device.
pub fn route(dst: &str) -> Route {
    let dst: Prefix = dst.parse().expect("destination prefix");
    Route::new(dst, None, None)
}

/// Sets route attributes in the `ip route` words.
pub trait RouteExt {
    /// `via GW`: a gateway route has scope universe.
    fn via(self, gw: &str) -> Route;
    fn dev(self, dev: &str) -> Route;
    fn in_table(self, table: u32) -> Route;
    fn with_metric(self, metric: u32) -> Route;
    fn with_proto(self, p: RouteProtocol) -> Route;
    fn with_scope(self, s: RouteScope) -> Route;
    fn with_src(self, src: &str) -> Route;
    fn with_type(self, t: RouteType) -> Route;
    fn onlink(self) -> Route;
}

impl RouteExt for Route {
    fn via(mut self, gw: &str) -> Route {
        self.gateway = Some(gw.parse::<IpAddr>().expect("gateway"));
        self.scope = RouteScope::Universe;
        self
    }

    fn dev(mut self, dev: &str) -> Route {
        self.dev = Some(n(dev));
        self
    }

    fn in_table(self, table: u32) -> Route {
        self.table(table)
    }

    fn with_metric(self, metric: u32) -> Route {
        self.metric(metric)
    }

    fn with_proto(self, p: RouteProtocol) -> Route {
        self.proto(p)
    }

    fn with_scope(mut self, s: RouteScope) -> Route {
        self.scope = s;
        self
    }

    fn with_src(self, src: &str) -> Route {
        self.src(src.parse().expect("source address"))
    }

    fn with_type(mut self, t: RouteType) -> Route {
        self.kind = t;
        self
    }

    fn onlink(mut self) -> Route {
        self.onlink = true;
        self
    }
}

pub fn route_add(r: Route) -> Op {
    Op::RouteAdd { route: r }
}

pub fn route_replace(r: Route) -> Op {
    Op::RouteReplace { route: r }
}

pub fn route_append(r: Route) -> Op {
    Op::RouteAppend { route: r }
}

pub fn route_del(r: Route) -> Op {
    Op::RouteDel { route: r }
}

/// `ip neigh replace IP lladdr MAC dev DEV nud stale|permanent [router]`.
pub fn neigh(dev: &str, ip: IpAddr, lladdr: &str, permanent: bool, router: bool) -> Op {
    Op::NeighReplace {
        dev: n(dev),
        ip,
        lladdr: mac(lladdr),
        state: if permanent {
            NudState::Permanent
        } else {
            NudState::Stale
        },
        router,
    }
}
