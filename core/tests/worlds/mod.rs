//! Hand-written host states for golden plan tests.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;

use env_qemu_core::model::*;
use env_qemu_core::plan::{ShmRequest, StartRequest};

pub fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn nic(index: u32, name: &str, mac: &str) -> Link {
    Link {
        index,
        name: n(name),
        kind: LinkKind::Ethernet,
        mac: mac.parse().unwrap(),
        mtu: 1500,
        up: true,
        carrier: true,
        master: None,
    }
}

/// An IPv4 address as a DHCP client adds it (with broadcast), or an IPv6 one.
pub fn addr(dev: &str, cidr: &str) -> Address {
    let (a, l) = cidr.split_once('/').unwrap();
    let mut out = Address::new(n(dev), ip(a), l.parse().unwrap());
    if let Some(p) = Prefix::new(out.ip, out.prefix_len).filter(|p| p.family() == Family::Inet) {
        let IpAddr::V4(net) = p.addr() else {
            unreachable!()
        };
        let host = u32::MAX >> out.prefix_len;
        out.broadcast = Some(IpAddr::V4((u32::from(net) | host).into()));
    }
    out
}

/// The kernel's own prefix route for an address.
pub fn prefix_route(a: &Address) -> Route {
    let r = Route::new(a.prefix(), None, Some(a.dev.clone())).proto(RouteProtocol::Kernel);
    match a.family() {
        Family::Inet => r.src(a.ip),
        Family::Inet6 => r.metric(256),
    }
}

pub fn sysctls(dev: &str) -> Vec<SysctlValue> {
    [Knob::Ipv6AcceptRa, Knob::Ipv6Autoconf, Knob::Ipv6AcceptDad]
        .into_iter()
        .map(|knob| SysctlValue {
            key: SysctlKey::new(&n(dev), knob),
            value: "1".into(),
        })
        .collect()
}

pub fn shm(size: &str) -> Tmpfs {
    Tmpfs {
        path: PathBuf::from("/dev/shm"),
        size_bytes: parse_size(size).unwrap(),
    }
}

pub fn request(uplink: &str) -> StartRequest {
    StartRequest {
        uplink: n(uplink),
        bridge: n("lepont"),
        shm: Some(ShmRequest {
            path: PathBuf::from("/dev/shm"),
            size_bytes: parse_size("512M").unwrap(),
        }),
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    }
}

/// The seed recipe's host: eth0 192.168.1.31/24, default via 192.168.1.1.
pub fn seed() -> Snapshot {
    let a = addr("eth0", "192.168.1.31/24");
    Snapshot {
        net: NetState {
            links: vec![nic(2, "eth0", "52:54:00:12:34:56")],
            routes: vec![
                Route::new(
                    Prefix::default_for(Family::Inet),
                    Some(ip("192.168.1.1")),
                    Some(n("eth0")),
                ),
                prefix_route(&a),
            ],
            addresses: vec![a],
        },
        sysctls: sysctls("eth0"),
        tmpfs: Some(shm("64M")),
        neighbours: vec![],
        managers: Default::default(),
    }
}

/// IPv6 (global + link-local), a secondary, a static route, table 100, two defaults with
/// metrics on two NICs, a DHCP-learned default.
pub fn rich() -> Snapshot {
    let a1 = addr("eth0", "192.0.2.10/24");
    let mut a2 = addr("eth0", "192.0.2.11/24");
    a2.secondary = true;
    let mut a6 = addr("eth0", "2001:db8::10/64");
    a6.valid_lft = Some(86000);
    a6.preferred_lft = Some(14000);
    a6.flags.insert(AddrFlag::Mngtmpaddr);
    let ll = addr("eth0", "fe80::5054:ff:fe12:3456/64");
    let b1 = addr("eth1", "198.51.100.10/24");
    let dflt = Prefix::default_for(Family::Inet);
    Snapshot {
        net: NetState {
            links: vec![
                nic(2, "eth0", "52:54:00:12:34:56"),
                nic(3, "eth1", "52:54:00:65:43:21"),
            ],
            routes: vec![
                Route::new(dflt, Some(ip("192.0.2.1")), Some(n("eth0")))
                    .proto(RouteProtocol::Dhcp)
                    .metric(100)
                    .src(ip("192.0.2.10")),
                Route::new(dflt, Some(ip("198.51.100.1")), Some(n("eth1"))).metric(200),
                Route::new(
                    "203.0.113.0/24".parse().unwrap(),
                    Some(ip("192.0.2.254")),
                    Some(n("eth0")),
                )
                .proto(RouteProtocol::Static),
                Route::new(dflt, Some(ip("192.0.2.1")), Some(n("eth0"))).table(100),
                Route::new(
                    Prefix::default_for(Family::Inet6),
                    Some(ip("fe80::1")),
                    Some(n("eth0")),
                )
                .proto(RouteProtocol::Ra),
                prefix_route(&a1),
                prefix_route(&a6),
                prefix_route(&ll),
                prefix_route(&b1),
            ],
            addresses: vec![a1, a2, a6, ll, b1],
        },
        sysctls: [sysctls("eth0"), sysctls("eth1")].concat(),
        tmpfs: Some(shm("1G")),
        neighbours: vec![],
        managers: Default::default(),
    }
}
