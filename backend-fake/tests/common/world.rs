//! Generated host worlds: 1–4 Ethernet-like NICs (eth0 the target), up or down, various
//! MTUs, IPv4 primaries and secondaries, IPv6 globals (and the kernel's link-locals),
//! routes in main and other tables, persistent taps, a shm tmpfs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::*;
use env_qemu_core::op::{LinkChange, LinkSpec, Op};
use proptest::prelude::*;

pub const SHM: &str = "/sim/dev/shm";

pub fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

/// One NIC's configuration, as data.
#[derive(Debug, Clone)]
pub struct NicSpec {
    pub up: bool,
    pub mtu: u32,
    /// IPv4 /26 subnets (by number) with host address and optional secondary.
    pub v4: Vec<(u8, bool)>,
    pub v6: Option<Option<(u32, u32)>>,
    pub default_metric: Option<u32>,
    pub static_route: bool,
    pub device_route: bool,
    pub src_route: bool,
    pub table_route: Option<u32>,
    pub v6_default: bool,
    /// Static (`nud permanent`) ARP and NDP entries on the NIC.
    pub static_neigh: bool,
}

#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub nics: Vec<NicSpec>,
    pub taps: usize,
    pub shm_mb: u64,
    pub promote_secondaries: bool,
}

fn nic_spec(i: usize) -> impl Strategy<Value = NicSpec> {
    (
        any::<u8>().prop_map(|b| b % 5 != 0),
        prop_oneof![Just(1500u32), Just(9000), Just(1400)],
        proptest::collection::vec((0u8..2, any::<bool>()), 0..=2),
        proptest::option::of(proptest::option::of((60u32..100_000, 0u32..60))),
        proptest::option::of(prop_oneof![Just(0u32), Just(100), Just(600)]),
        any::<(bool, bool, bool)>(),
        proptest::option::of(prop_oneof![Just(100u32), Just(200), Just(1000)]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(up, mtu, v4, v6, dm, (st, dev, src), table, v6d, sn)| {
                let mut v4 = v4;
                v4.dedup_by_key(|(s, _)| *s);
                NicSpec {
                    up,
                    mtu,
                    v4,
                    v6: v6.map(|o| o.map(|(v, p)| (v, v.min(p * 1000)))),
                    // Defaults of different NICs must not share (table, metric).
                    default_metric: dm.map(|m| m + i as u32),
                    static_route: st,
                    device_route: dev,
                    src_route: src,
                    table_route: table,
                    v6_default: v6d,
                    static_neigh: sn,
                }
            },
        )
}

pub fn world_spec() -> impl Strategy<Value = WorldSpec> {
    (1usize..=4)
        .prop_flat_map(|count| {
            let nics: Vec<_> = (0..count).map(nic_spec).collect();
            (
                nics,
                0usize..=3,
                prop_oneof![Just(64u64), Just(256), Just(2048)],
                any::<bool>(),
            )
        })
        .prop_map(|(nics, taps, shm_mb, promote_secondaries)| WorldSpec {
            nics,
            taps,
            shm_mb,
            promote_secondaries,
        })
}

/// `192.0.2.{64*subnet + host}` for NIC 0–1, 198.51.100 for 2–3: each NIC its own /26s.
fn v4(nic: usize, subnet: u8, host: u8) -> Ipv4Addr {
    let base = if nic < 2 { [192, 0, 2] } else { [198, 51, 100] };
    let sub = ((nic % 2) as u8) * 2 + subnet;
    Ipv4Addr::new(base[0], base[1], base[2], sub * 64 + host)
}

fn v6(nic: usize, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, nic as u16 + 1, 0, 0, 0, 0, host)
}

/// Applies `op`, ignoring a refusal: a generated configuration the kernel rejects (a
/// gateway on a down NIC) is simply not part of that world.
fn try_apply(sim: &SimKernel, op: &Op) {
    let _ = sim.apply_now(op);
}

pub fn build(spec: &WorldSpec) -> SimKernel {
    let sim = SimKernel::new();
    sim.set_promote_secondaries(spec.promote_secondaries);
    sim.mount_tmpfs(PathBuf::from(SHM), spec.shm_mb << 20);
    for (i, nic) in spec.nics.iter().enumerate() {
        let name = n(&format!("eth{i}"));
        sim.add_nic(
            &name,
            MacAddr([0x52, 0x54, 0, 0x10 + i as u8, 0x20, 0x30]),
            nic.mtu,
        );
        if nic.up {
            try_apply(&sim, &set(&name, LinkChange::Up));
        }
        for (sub, secondary) in &nic.v4 {
            let mut a = Address::new(name.clone(), v4(i, *sub, 10).into(), 26);
            a.broadcast = Some(v4(i, *sub, 63).into());
            try_apply(&sim, &Op::AddrAdd { address: a.clone() });
            if *secondary {
                a.ip = v4(i, *sub, 11).into();
                try_apply(&sim, &Op::AddrAdd { address: a });
            }
        }
        if let Some(lft) = nic.v6 {
            let mut a = Address::new(name.clone(), v6(i, 0x10).into(), 64);
            a.flags.insert(AddrFlag::Nodad);
            if let Some((valid, pref)) = lft {
                (a.valid_lft, a.preferred_lft) = (Some(valid), Some(pref));
            }
            try_apply(&sim, &Op::AddrAdd { address: a });
        }
        let gw: Option<IpAddr> = nic.v4.first().map(|(s, _)| v4(i, *s, 1).into());
        let dev = Some(name.clone());
        if let (Some(m), Some(gw)) = (nic.default_metric, gw) {
            let r = Route::new(Prefix::default_for(Family::Inet), Some(gw), dev.clone()).metric(m);
            try_apply(
                &sim,
                &Op::RouteAdd {
                    route: r.proto(RouteProtocol::Dhcp),
                },
            );
        }
        if let (true, Some(gw)) = (nic.static_route, gw) {
            let dst = Prefix::new(Ipv4Addr::new(203, 0, 113, 16 * i as u8).into(), 28).unwrap();
            try_apply(
                &sim,
                &Op::RouteAdd {
                    route: Route::new(dst, Some(gw), dev.clone()).proto(RouteProtocol::Static),
                },
            );
        }
        if nic.device_route {
            let dst = Prefix::new(Ipv4Addr::new(203, 0, 113, 100 + i as u8).into(), 32).unwrap();
            try_apply(
                &sim,
                &Op::RouteAdd {
                    route: Route::new(dst, None, dev.clone()),
                },
            );
        }
        if let (true, Some((s, _))) = (nic.src_route, nic.v4.first()) {
            let dst = Prefix::new(Ipv4Addr::new(203, 0, 113, 200 + i as u8).into(), 32).unwrap();
            let r =
                Route::new(dst, Some(v4(i, *s, 1).into()), dev.clone()).src(v4(i, *s, 10).into());
            try_apply(&sim, &Op::RouteAdd { route: r });
        }
        if let (Some(t), Some(gw)) = (nic.table_route, gw) {
            let r = Route::new(Prefix::default_for(Family::Inet), Some(gw), dev.clone())
                .table(t + i as u32);
            try_apply(&sim, &Op::RouteAdd { route: r });
        }
        if nic.v6_default {
            let gw = if nic.v6.is_some() {
                v6(i, 1)
            } else {
                "fe80::1".parse().unwrap()
            };
            let r = Route::new(
                Prefix::default_for(Family::Inet6),
                Some(gw.into()),
                dev.clone(),
            )
            .metric(1024 + i as u32);
            try_apply(
                &sim,
                &Op::RouteAdd {
                    route: r.proto(RouteProtocol::Ra),
                },
            );
        }
    }
    for (i, nic) in spec.nics.iter().enumerate().filter(|(_, n)| n.static_neigh) {
        for (k, ip) in [IpAddr::from(v4(i, 0, 50)), IpAddr::from(v6(i, 0x50))]
            .into_iter()
            .enumerate()
        {
            try_apply(
                &sim,
                &Op::NeighReplace {
                    dev: n(&format!("eth{i}")),
                    ip,
                    lladdr: MacAddr([0x02, 0x5e, 0, i as u8, 0, k as u8]),
                    state: NudState::Permanent,
                    router: k == 1 && nic.up,
                },
            );
        }
    }
    for t in 0..spec.taps {
        try_apply(
            &sim,
            &Op::LinkAdd {
                spec: LinkSpec::Tap {
                    name: n(&format!("tap{t}")),
                    owner: Some(1000),
                    group: None,
                },
            },
        );
    }
    // The world has settled: DAD finished long ago.
    sim.advance_time();
    sim
}

pub fn set(name: &IfName, change: LinkChange) -> Op {
    Op::LinkSet {
        name: name.clone(),
        change,
    }
}
