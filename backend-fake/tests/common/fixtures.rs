//! Fixtures for the simulator's own tests: names, addresses, routes, and short views of a
//! dump to assert on.

use std::net::IpAddr;

use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{AddrFlag, Address, Link, MacAddr, NetState, Prefix, Route};
use env_qemu_core::{ErrorKind, KernelError, LinkChange, LinkSpec, Op};

pub use super::n;

pub fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

/// `dev` + `192.0.2.1/24`.
pub fn addr(dev: &str, cidr: &str) -> Address {
    let (a, l) = cidr.split_once('/').unwrap();
    Address::new(n(dev), ip(a), l.parse().unwrap())
}

pub fn nodad(mut a: Address) -> Address {
    a.flags.insert(AddrFlag::Nodad);
    a
}

/// `ip route add DST [via GW] dev DEV` (proto boot).
pub fn route(dst: &str, gw: Option<&str>, dev: Option<&str>) -> Route {
    Route::new(pfx(dst), gw.map(ip), dev.map(n))
}

pub fn set(dev: &str, change: LinkChange) -> Op {
    Op::LinkSet {
        name: n(dev),
        change,
    }
}

pub fn up(dev: &str) -> Op {
    set(dev, LinkChange::Up)
}

pub fn down(dev: &str) -> Op {
    set(dev, LinkChange::Down)
}

pub fn master(dev: &str, br: &str) -> Op {
    set(dev, LinkChange::Master(n(br)))
}

pub fn veth(a: &str, b: &str) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Veth {
            name: n(a),
            peer: n(b),
        },
    }
}

pub fn bridge(name: &str, mac: Option<&str>) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n(name),
            mac: mac.map(self::mac),
            mtu: None,
            stp: false,
            forward_delay: 0,
        },
    }
}

pub fn tap(name: &str) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Tap {
            name: n(name),
            owner: None,
            group: None,
        },
    }
}

pub fn add(a: Address) -> Op {
    Op::AddrAdd { address: a }
}

pub fn del(a: Address) -> Op {
    Op::AddrDel { address: a }
}

pub fn radd(r: Route) -> Op {
    Op::RouteAdd { route: r }
}

pub fn rdel(r: Route) -> Op {
    Op::RouteDel { route: r }
}

/// Applies every op, panicking on the first refusal.
pub fn build(sim: &SimKernel, ops: &[Op]) {
    for op in ops {
        sim.apply_now(op).unwrap_or_else(|e| panic!("`{op}`: {e}"));
    }
}

/// A namespace with NIC `eth0` (up, cable in, 52:54:00:00:00:01).
pub fn with_nic() -> SimKernel {
    let sim = SimKernel::new();
    sim.add_nic(&n("eth0"), mac("52:54:00:00:00:01"), 1500);
    build(&sim, &[up("eth0")]);
    sim
}

pub fn link(net: &NetState, name: &str) -> Link {
    net.link(&n(name))
        .unwrap_or_else(|| panic!("no link {name}"))
        .clone()
}

/// `192.0.2.1/24 secondary tentative…` for each address of `dev`, in dump order.
pub fn addrs(net: &NetState, dev: &str) -> Vec<String> {
    let d = n(dev);
    net.addresses_of(&d)
        .map(|a| {
            let mut s = a.cidr();
            if a.secondary {
                s.push_str(" secondary");
            }
            for f in &a.flags {
                s.push(' ');
                s.push_str(f.ip_word());
            }
            s
        })
        .collect()
}

/// Every route as its `ip route` arguments, in dump order.
pub fn routes(net: &NetState) -> Vec<String> {
    net.routes.iter().map(Route::ip_args).collect()
}

pub fn has_route(net: &NetState, args: &str) -> bool {
    routes(net).iter().any(|r| r == args)
}

/// The refusal of `op`, checking it changed nothing.
pub fn refused(sim: &SimKernel, op: &Op) -> KernelError {
    let before = sim.net();
    let e = sim.apply_now(op).expect_err(&format!("`{op}` should fail"));
    assert_eq!(sim.net(), before, "`{op}` failed but changed the state");
    e
}

pub fn errno(sim: &SimKernel, op: &Op) -> (ErrorKind, i32) {
    let e = refused(sim, op);
    (e.kind, e.errno.unwrap())
}
