//! Host worlds as data ([`WorldSpec`]), built on a fresh [`SimKernel`] by [`build`]: 1–4
//! Ethernet-like NICs (eth0 the one env-qemu bridges), up or down, various MTUs, IPv4
//! primaries and secondaries, IPv6 globals (and the kernel's link-locals), routes in main
//! and other tables, static neighbour entries, persistent taps, a shm tmpfs.
//!
//! [`world_spec`] generates them for property tests; [`WorldSpec::generate`] picks one
//! from a seed; [`WorldSpec::seed`] is the plain host of env-qemu's seed recipe.
//!
//! Addresses are from the documentation ranges: NICs 0–1 in 192.0.2.0/24, NICs 2–3 in
//! 198.51.100.0/24 (each NIC its own /26s, host `.10`, secondary `.11`, gateway `.1`),
//! IPv6 `2001:db8:N+1::10/64`, other routes in 203.0.113.0/24.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use env_qemu_core::model::*;
use env_qemu_core::op::{LinkChange, LinkSpec, Op};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::{ifname as n, SHM};
use crate::SimKernel;

/// One NIC's configuration, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// Administratively up (a down NIC keeps its addresses but none of its routes).
    pub up: bool,
    /// The NIC's MTU.
    pub mtu: u32,
    /// IPv4 /26 subnets (by number, 0 or 1) with host address `.10`, and whether it has
    /// the secondary `.11` too.
    pub v4: Vec<(u8, bool)>,
    /// An IPv6 global `2001:db8:N+1::10/64` (`nodad`): `Some(None)` permanent,
    /// `Some(Some((valid, preferred)))` with lifetimes in seconds.
    pub v6: Option<Option<(u32, u32)>>,
    /// An IPv4 default route via `.1` of the first subnet, `proto dhcp`, at this metric.
    pub default_metric: Option<u32>,
    /// `203.0.113.16N/28 via .1 proto static`.
    pub static_route: bool,
    /// `203.0.113.(100+N)/32 dev ethN` (no gateway).
    pub device_route: bool,
    /// `203.0.113.(200+N)/32 via .1 src .10`.
    pub src_route: bool,
    /// An IPv4 default route in table `T + N`.
    pub table_route: Option<u32>,
    /// An IPv6 default route (`proto ra`, metric 1024 + N), via the NIC's subnet router or
    /// `fe80::1`.
    pub v6_default: bool,
    /// Static (`nud permanent`) ARP and NDP entries on the NIC.
    pub static_neigh: bool,
}

/// A host world: NICs `eth0`…, persistent taps `tap0`… (owned by uid 1000), the shm
/// tmpfs at [`SHM`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    /// The NICs, `eth0` first.
    pub nics: Vec<NicSpec>,
    /// How many taps (`tap0`…) exist, down and without a reader.
    pub taps: usize,
    /// The size of the tmpfs at [`SHM`], in MiB.
    pub shm_mb: u64,
    /// `net.ipv4.conf.all.promote_secondaries`.
    pub promote_secondaries: bool,
}

impl WorldSpec {
    /// The host of env-qemu's seed recipe: `eth0` up with 192.0.2.10/26 (broadcast
    /// 192.0.2.63) and 2001:db8:1::10/64, a DHCP default route via 192.0.2.1 at metric
    /// 100; no tap; a 64 MiB tmpfs.
    pub fn seed() -> WorldSpec {
        WorldSpec {
            nics: vec![NicSpec {
                up: true,
                mtu: 1500,
                v4: vec![(0, false)],
                v6: Some(None),
                default_metric: Some(100),
                static_route: false,
                device_route: false,
                src_route: false,
                table_route: None,
                v6_default: false,
                static_neigh: false,
            }],
            taps: 0,
            shm_mb: 64,
            promote_secondaries: false,
        }
    }

    /// The world [`world_spec`] generates from `seed`: the same seed, the same world.
    pub fn generate(seed: u64) -> WorldSpec {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let mut runner = TestRunner::new_with_rng(Config::default(), rng);
        world_spec()
            .new_tree(&mut runner)
            .expect("the world strategy rejects nothing")
            .current()
    }
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

/// Generated worlds: 1–4 NICs, each NIC's features drawn independently (most NICs up),
/// 0–3 taps, a 64 MiB, 256 MiB or 2 GiB tmpfs.
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

/// A fresh simulated kernel set up as `spec` says, with duplicate address detection over.
/// A configuration the kernel refuses (a gateway on a down NIC) is left out of the world.
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

fn set(name: &IfName, change: LinkChange) -> Op {
    Op::LinkSet {
        name: name.clone(),
        change,
    }
}
