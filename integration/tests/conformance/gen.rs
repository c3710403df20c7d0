//! Generated cases: short sequences of primitive operations over a small fixed universe
//! of names and documentation addresses, so that operations meet each other: two veth
//! pairs (`v0`–`v3`), two bridges, a tap, `lo`; 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24 and 2001:db8::/32.
//!
//! Each step is one operation, or a link creation followed by explicit MACs for the new
//! devices (veths and taps cannot be created with a MAC, and which random MAC is lowest
//! would decide a bridge's MAC). Shrinking removes whole steps, never a MAC from its
//! creation. Bridges are created with or without a MAC: a random bridge MAC is
//! normalised, see `env_qemu_integration::conformance::normalize`.
//!
//! Routes and addresses come mostly from a per-case pool, so deletes and replaces hit
//! what was added; the rest are drawn fresh, to fail in all the ways they can.

use std::net::IpAddr;

use env_qemu_core::model::{
    AddrFlag, Address, Family, Route, RouteProtocol, RouteScope, RouteType,
};
use env_qemu_core::Op;
use env_qemu_integration::conformance::ops::*;
use env_qemu_integration::conformance::World;
use proptest::prelude::*;
use proptest::sample::select;

use super::live::{dev_ref, DevRef, Live};
use super::values::*;

pub type Step = Vec<Op>;

#[derive(Debug, Clone)]
pub struct Case {
    pub world: World,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy)]
enum RouteVerb {
    Add,
    Replace,
    Append,
    Del,
}

fn route_op(verb: RouteVerb, r: Route) -> Op {
    match verb {
        RouteVerb::Add => route_add(r),
        RouteVerb::Replace => route_replace(r),
        // IPv6 appends become multipath siblings in the kernel, which the model (one
        // next hop per route) cannot represent; they are tested on IPv4 only.
        RouteVerb::Append if r.family() == Family::Inet => route_append(r),
        RouteVerb::Append => route_add(r),
        RouteVerb::Del => route_del(r),
    }
}

/// A step before the per-case pools and the live devices are known.
#[derive(Debug, Clone)]
enum Spec {
    Fixed(Step),
    Up(DevRef),
    /// `up` for every live device, lo excepted: carriers, forwarding ports, link-locals.
    UpAll,
    Down(DevRef),
    Master(DevRef, usize),
    NoMaster(DevRef),
    Mtu(DevRef, u32),
    Mac(DevRef, &'static str),
    Del(DevRef),
    PoolAddr {
        add: bool,
        at: usize,
    },
    FreshAddr {
        add: bool,
        a: Address,
        dev: DevRef,
    },
    PoolRoute {
        verb: RouteVerb,
        at: usize,
    },
    /// Deletes the kernel's own prefix route of a pool address.
    DelPrefixRoute(usize),
    /// `ip neigh del`.
    NeighDel {
        dev: DevRef,
        ip: IpAddr,
    },
    /// `ip neigh replace`: a stale or permanent entry, IPv6 ones maybe as a router.
    Neigh {
        dev: DevRef,
        ip: IpAddr,
        lladdr: &'static str,
        permanent: bool,
        router: bool,
    },
    FreshRoute {
        verb: RouteVerb,
        r: Route,
        dev: DevRef,
    },
    /// A DHCP client's lease, all three parts in one step (see [`lease`]).
    Lease {
        which: usize,
        dev: DevRef,
    },
    /// One part of a lease added or deleted alone: deletions come in every order.
    LeasePart {
        which: usize,
        part: usize,
        add: bool,
        dev: DevRef,
    },
}

/// What DHCP clients (NetworkManager, dhcpcd, systemd-networkd) install: the leased
/// address `noprefixroute` with the lease as its lifetimes, their own prefix route
/// (proto dhcp, scope link, `src`, metric 100) and a default route through it.
fn lease(which: usize, dev: &str) -> [Op; 3] {
    let (cidr, net, gw) = [
        ("192.0.2.10/24", "192.0.2.0/24", "192.0.2.254"),
        ("198.51.100.10/24", "198.51.100.0/24", "198.51.100.254"),
    ][which % 2];
    let a = addr(dev, cidr)
        .flag(AddrFlag::Noprefixroute)
        .lifetimes(3600, 3600);
    let a = Address {
        broadcast: plus_broadcast(&a),
        ..a
    };
    let src = a.ip.to_string();
    let prefix = route(net)
        .dev(dev)
        .with_proto(RouteProtocol::Dhcp)
        .with_scope(RouteScope::Link)
        .with_src(&src)
        .with_metric(100);
    let default = route("default")
        .via(gw)
        .dev(dev)
        .with_proto(RouteProtocol::Dhcp)
        .with_src(&src)
        .with_metric(100);
    [addr_add(a), route_add(prefix), route_add(default)]
}

fn undo(op: Op) -> Op {
    match op {
        Op::AddrAdd { address } => Op::AddrDel { address },
        Op::RouteAdd { route } => Op::RouteDel { route },
        other => other,
    }
}

const POOL: usize = 4;

fn verb() -> impl Strategy<Value = RouteVerb> {
    prop_oneof![
        8 => Just(RouteVerb::Add),
        4 => Just(RouteVerb::Replace),
        1 => Just(RouteVerb::Append),
        6 => Just(RouteVerb::Del),
    ]
}

/// Something to work on: a bridge (usually) and 0-2 more links, maybe a port enslaved,
/// usually everything up, then 0-3 pool addresses and 0-2 pool routes.
fn setup() -> impl Strategy<Value = Vec<Spec>> {
    let first = prop_oneof![3 => create_bridge(), 2 => create()];
    (
        (first, proptest::collection::vec(create(), 0..=2)).prop_map(|(f, mut more)| {
            more.insert(0, f);
            more
        }),
        proptest::option::weighted(0.5, (0usize..8, 0usize..4)),
        proptest::bool::weighted(0.8),
        0..=3usize,
        0..=2usize,
    )
        .prop_map(|(created, port, up_all, addrs, routes)| {
            let mut specs: Vec<Spec> = created.into_iter().map(Spec::Fixed).collect();
            if let Some((p, b)) = port {
                specs.push(Spec::Master(DevRef::Live(p), b));
            }
            if up_all {
                specs.push(Spec::UpAll);
            }
            // Pool routes lean on the first pool addresses most.
            specs.extend((0..addrs).map(|at| Spec::PoolAddr { add: true, at }));
            specs.extend((0..routes).map(|at| Spec::PoolRoute {
                verb: RouteVerb::Add,
                at,
            }));
            specs
        })
}

fn any_spec() -> impl Strategy<Value = Spec> {
    let add = || proptest::bool::weighted(0.6);
    let mtus = select(vec![1280u32, 1279, 1400, 1500, 9000, 68, 67, 65536]);
    let macs = prop_oneof![4 => mac_s(), 1 => select(BAD_MACS.to_vec())];
    prop_oneof![
        2 => create().prop_map(Spec::Fixed),
        3 => dev_ref().prop_map(Spec::Up),
        1 => Just(Spec::UpAll),
        2 => dev_ref().prop_map(Spec::Down),
        3 => (dev_ref(), 0usize..4).prop_map(|(d, b)| Spec::Master(d, b)),
        1 => dev_ref().prop_map(Spec::NoMaster),
        1 => (dev_ref(), mtus).prop_map(|(d, m)| Spec::Mtu(d, m)),
        1 => (dev_ref(), macs).prop_map(|(d, m)| Spec::Mac(d, m)),
        1 => dev_ref().prop_map(Spec::Del),
        4 => (add(), 0..POOL).prop_map(|(add, at)| Spec::PoolAddr { add, at }),
        1 => (add(), address(), dev_ref()).prop_map(|(add, a, dev)| Spec::FreshAddr { add, a, dev }),
        7 => (verb(), 0..POOL).prop_map(|(verb, at)| Spec::PoolRoute { verb, at }),
        1 => (0..POOL).prop_map(Spec::DelPrefixRoute),
        2 => (verb(), any_route(), dev_ref()).prop_map(|(verb, r, dev)| Spec::FreshRoute { verb, r, dev }),
        2 => (dev_ref(), neighbour_ip(), mac_s(), any::<bool>(), any::<bool>()).prop_map(
            |(dev, ip, lladdr, permanent, router)| Spec::Neigh { dev, ip, lladdr, permanent, router: router && ip.is_ipv6() },
        ),
        1 => (dev_ref(), neighbour_ip()).prop_map(|(dev, ip)| Spec::NeighDel { dev, ip }),
        1 => (0..2usize, dev_ref()).prop_map(|(which, dev)| Spec::Lease { which, dev }),
        2 => (0..2usize, 0..3usize, proptest::bool::weighted(0.3), dev_ref())
            .prop_map(|(which, part, add, dev)| Spec::LeasePart { which, part, add, dev }),
    ]
}

/// A pool address and the device it goes on.
type PoolAddress = (Address, DevRef);
/// A pool route, its device, and the pool address whose subnet it leans on.
type PoolRoute = (Route, DevRef, usize);

/// Turns specs into steps, tracking the live devices.
fn resolve(specs: Vec<Spec>, addrs: &[PoolAddress], routes: &[PoolRoute]) -> Vec<Step> {
    let mut live = Live::default();
    let mut steps = Vec::new();
    for spec in specs {
        let on = |a: &Address, d: DevRef, live: &Live| a.on(&n(live.pick(d)));
        // A route template keeps "no device"; otherwise it goes through the chosen one.
        let via = |r: &Route, d: DevRef, live: &Live| match r.dev {
            Some(_) => r.on(&n(live.pick(d))),
            None => r.clone(),
        };
        let addr_op = |add: bool, a: Address| {
            if add {
                addr_add(a)
            } else {
                Op::AddrDel { address: a }
            }
        };
        let step = match spec {
            Spec::Fixed(s) => s,
            Spec::Up(d) => vec![up(live.pick(d))],
            Spec::UpAll => live.all().iter().map(|d| up(d)).collect(),
            Spec::Down(d) => vec![down(live.pick(d))],
            // Without a live port or bridge, only one in three tries the missing names:
            // ENODEV is common enough already.
            Spec::Master(DevRef::Live(k), b) if live.can_enslave() || k % 3 == 0 => {
                vec![master(live.port(k), live.bridge(b))]
            }
            Spec::Master(DevRef::Live(_), _) => vec![],
            Spec::Master(d, b) => vec![master(live.pick(d), live.bridge(b))],
            Spec::NoMaster(d) => vec![nomaster(live.pick(d))],
            Spec::Mtu(d, m) => vec![mtu(live.pick(d), m)],
            Spec::Mac(d, m) => vec![set_mac(live.pick(d), m)],
            Spec::Del(d) => vec![link_del(live.pick(d))],
            Spec::PoolAddr { add, at } => {
                let (a, dev) = &addrs[at];
                vec![addr_op(add, on(a, *dev, &live))]
            }
            Spec::FreshAddr { add, a, dev } => vec![addr_op(add, on(&a, dev, &live))],
            Spec::PoolRoute { verb, at } => {
                let (r, dev, _) = &routes[at];
                vec![route_op(verb, via(r, *dev, &live))]
            }
            Spec::FreshRoute { verb, r, dev } => vec![route_op(verb, via(&r, dev, &live))],
            Spec::Lease { which, dev } => lease(which, live.pick(dev)).to_vec(),
            Spec::LeasePart {
                which,
                part,
                add,
                dev,
            } => {
                let op = lease(which, live.pick(dev))[part].clone();
                vec![if add { op } else { undo(op) }]
            }
            Spec::DelPrefixRoute(at) => {
                let (a, dev) = &addrs[at];
                vec![route_del(prefix_route(&on(a, *dev, &live)))]
            }
            Spec::Neigh {
                dev,
                ip,
                lladdr,
                permanent,
                router,
            } => vec![neigh(live.pick(dev), ip, lladdr, permanent, router)],
            Spec::NeighDel { dev, ip } => vec![Op::NeighDel {
                dev: n(live.pick(dev)),
                ip,
            }],
        };
        for op in &step {
            live.note(op);
        }
        if !step.is_empty() {
            steps.push(step);
        }
    }
    steps
}

/// The route the kernel adds for an address: proto kernel, IPv4 scope link with the
/// address as source and metric 0, IPv6 metric 256.
fn prefix_route(a: &Address) -> Route {
    let r = route(&a.prefix().to_string())
        .dev(a.dev.as_str())
        .with_proto(RouteProtocol::Kernel);
    match a.ip {
        IpAddr::V4(_) => r.with_scope(RouteScope::Link).with_src(&a.ip.to_string()),
        IpAddr::V6(_) => r.with_metric(256),
    }
}

/// A pool route, usually leaning on a pool address: through its device, its gateway
/// on its subnet (.254, or ::fe), sometimes its address as source.
type RouteDraft = (Route, Route, bool, Option<usize>, bool);

fn pool_route() -> impl Strategy<Value = RouteDraft> {
    (
        route4(),
        route6(),
        proptest::bool::weighted(0.25),
        proptest::option::weighted(0.8, prop_oneof![3 => 0..2usize, 1 => 0..POOL]),
        proptest::bool::weighted(0.2),
    )
}

/// A draft made concrete: with a pool address to lean on, the route of its family;
/// otherwise IPv4 or IPv6 as drawn.
fn lean_on(draft: RouteDraft, addrs: &[PoolAddress]) -> PoolRoute {
    let (r4, r6, v6, link, src) = draft;
    let Some(i) = link else {
        let r = if v6 { r6 } else { r4 };
        return (r, DevRef::Live(0), 0);
    };
    let (a, dev) = &addrs[i];
    let mut r = if a.family() == Family::Inet { r4 } else { r6 };
    if r.gateway.is_some() {
        let net = a.prefix().addr();
        r.gateway = Some(match net {
            IpAddr::V4(v) => IpAddr::V4((u32::from(v) | 254).into()),
            IpAddr::V6(v) => IpAddr::V6((u128::from(v) | 0xfe).into()),
        });
    }
    if src && r.kind == RouteType::Unicast {
        r.prefsrc = Some(a.ip);
    }
    (r, *dev, i)
}

pub fn case() -> impl Strategy<Value = Case> {
    (
        proptest::bool::weighted(0.25),
        proptest::collection::vec((address(), dev_ref()), POOL),
        proptest::collection::vec(pool_route(), POOL),
        setup(),
        proptest::collection::vec(any_spec(), 2..=8),
    )
        .prop_map(|(promote, addrs, routes, setup, rest)| {
            let routes: Vec<PoolRoute> = routes.into_iter().map(|r| lean_on(r, &addrs)).collect();
            (promote, addrs, routes, setup, rest)
        })
        .prop_map(|(promote, addrs, routes, setup, rest)| Case {
            world: World {
                promote_secondaries: promote,
                dad: false,
            },
            steps: resolve(setup.into_iter().chain(rest).collect(), &addrs, &routes),
        })
}

/// The steps as `ip` commands, one a line, for reports.
pub fn show(steps: &[Step]) -> String {
    steps
        .iter()
        .flatten()
        .map(|op| format!("  {op}\n"))
        .collect()
}
