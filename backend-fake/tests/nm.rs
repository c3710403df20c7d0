//! Hosts whose NIC NetworkManager owns (the simulated NetworkManager of [`SimHost`],
//! modelled on NM 1.42: it assumes devices it runs no profile on, its renewals fail on a
//! bridge port, its checkpoints roll back), with leases that run out.
//!
//! Properties:
//! - start hands the NIC over to NM (bridge and port profiles), stop gives it back to
//!   its own profile, both verified; at every instant — after each command and each
//!   second of the clock — the leased address is on an up device that is not a port,
//!   with a default route through it; after stop the host is as before apart from
//!   lifetimes, no in-memory profile or checkpoint is left, and a lease later still so;
//! - env-qemu killed at any step of start: NM's checkpoint rolls the host back within
//!   its timeout (the NIC on its profile, connected), and stop then restores the rest;
//! - env-qemu killed at any step of start and stop run a second later: the leftover
//!   checkpoint is destroyed, no rollback comes later to undo the restore, and a NIC
//!   that lost its link-local address while NM's own profile still ran on it gets its
//!   own back (not the one NM made meanwhile).

mod common;

use std::time::Duration;

use common::leased::{
    connected, lease, play, start_connected, start_killed, step, stop_if_stored, timeless, Step,
    LEASE,
};
use common::n;
use common::runtime;
use env_qemu_backend_fake::host::SimHost;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::CommandError;
use env_qemu_core::model::{Family, NetState};
use env_qemu_core::plan::VmTaps;
use env_qemu_core::store::{MemoryStore, StateStore};
use env_qemu_core::{LinkChange, Op};
use proptest::prelude::*;

const PROFILE: &str = "5f0d8d5e-6d7e-4a39-9b6e-0000000e0001";

/// eth0 up with NetworkManager's profile bound (a DHCP lease and SLAAC), and two taps
/// for VMs.
fn world() -> (SimKernel, SimHost) {
    let (sim, host) = common::leased::world(|host, eth0| {
        host.start_network_manager(eth0, lease(), PROFILE, "Wired connection 1");
    });
    host.nm_hears_ra("2001:db8:42::/64".parse().unwrap());
    sim.advance_time();
    (sim, host)
}

async fn stop(sim: &SimKernel, host: &SimHost, store: &dyn StateStore) -> Result<(), CommandError> {
    common::leased::stop(sim, host, store, VmTaps::Detach).await
}

/// The host as before start, eth0 on its profile, nothing of env-qemu's left in NM.
fn given_back(sim: &SimKernel, host: &SimHost, before: &NetState, when: &str) {
    // NM's link-local through DAD.
    sim.advance_time();
    connected(&sim.net()).unwrap_or_else(|e| panic!("{when}: {e}"));
    assert_eq!(timeless(&sim.net()), *before, "{when}");
    assert_eq!(
        host.nm_profile_on(&n("eth0")).as_deref(),
        Some(PROFILE),
        "{when}"
    );
    let (profiles, checkpoints, _) = host.nm_leftovers();
    assert!(profiles.is_empty(), "{when}: profiles left {profiles:?}");
    assert_eq!(checkpoints, 0, "{when}: checkpoints left");
}

async fn scenario(steps: &[Step]) {
    let (sim, host) = world();
    let store = MemoryStore::new();
    let before = timeless(&sim.net());
    start_connected(&sim, &host, &store).await;
    assert!(
        host.nm_profile_on(&n("lepont")).is_some(),
        "NM runs no profile on lepont"
    );
    assert_eq!(host.nm_leftovers().1, 0, "the checkpoint outlived start");
    let waited = play(&sim, &host, &store, steps).await;
    let r = stop(&sim, &host, &store).await;
    assert!(r.is_ok(), "stop after {waited} s: {}", r.unwrap_err());
    given_back(&sim, &host, &before, "after stop");
    host.advance(Duration::from_secs(u64::from(LEASE) + 10));
    given_back(&sim, &host, &before, "a lease after stop");
}

/// Start killed after `after` kernel operations; then, with `stop_at_once`, stop a
/// second later (NM has reacted, its checkpoint is pending), else once NM's checkpoint
/// has rolled back.
async fn killed(after: usize, stop_at_once: bool) {
    let (sim, host) = world();
    let store = MemoryStore::new();
    let before = timeless(&sim.net());
    let r = start_killed(&sim, &host, &store, after).await;
    if !sim.is_crashed() {
        // Start finished before the crash point: nothing to roll back.
        assert!(r.is_ok(), "start: {}", r.unwrap_err());
        sim.clear_faults();
        let r = stop(&sim, &host, &store).await;
        assert!(r.is_ok(), "{}", r.unwrap_err());
        given_back(&sim, &host, &before, "after a whole start and stop");
        return;
    }
    sim.revive();
    let timeout = u64::from(env_qemu_core::nm::CHECKPOINT_TIMEOUT);
    if stop_at_once {
        // NM's reactions to what the killed start did (a second, not a timeout).
        host.advance(Duration::from_secs(1));
    } else {
        host.advance(Duration::from_secs(timeout + 1));
        let (profiles, checkpoints, rollbacks) = host.nm_leftovers();
        let checkpointed = host
            .applied()
            .iter()
            .any(|o| matches!(o, env_qemu_core::host::HostOp::NmCheckpointCreate { .. }));
        if checkpointed {
            assert_eq!(rollbacks, 1, "killed after {after}: no rollback");
            assert!(profiles.is_empty() && checkpoints == 0, "{profiles:?}");
            assert_eq!(host.nm_profile_on(&n("eth0")).as_deref(), Some(PROFILE));
            connected(&sim.net())
                .unwrap_or_else(|e| panic!("killed after {after}, rolled back: {e}"));
        }
    }
    stop_if_stored(&sim, &host, &store, after).await;
    given_back(&sim, &host, &before, "after stop");
    host.advance(Duration::from_secs(timeout + 5));
    given_back(&sim, &host, &before, "a checkpoint timeout after stop");
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: common::cases().min(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_nm_host_stays_connected_over_several_leases(steps in proptest::collection::vec(step(), 1..8)) {
        runtime().block_on(scenario(&steps));
    }
}

/// Three lease lifetimes bridged, deterministic.
#[test]
fn three_leases_bridged_and_back() {
    runtime().block_on(scenario(&[
        Step::Add(0),
        Step::Wait(3 * u64::from(LEASE) + 7),
    ]));
}

/// Every crash point of start (each of its kernel operations), both recoveries.
#[test]
fn a_killed_start_is_rolled_back_or_cleaned() {
    for after in 1..30 {
        for at_once in [false, true] {
            runtime().block_on(killed(after, at_once));
        }
    }
}

/// The model's premise: NetworkManager left on a NIC that became a bridge port (start
/// with the kernel's steps only, as before issue 11) renews nothing, and the copy of its
/// address on the bridge runs out with the lease.
#[test]
fn a_port_renews_nothing() {
    let (sim, host) = world();
    let eth0 = n("eth0");
    let br = n("br0");
    sim.apply_now(&Op::LinkAdd {
        spec: env_qemu_core::LinkSpec::Bridge {
            name: br.clone(),
            mac: None,
            mtu: None,
            stp: false,
            forward_delay: 0,
        },
    })
    .unwrap();
    sim.apply_now(&Op::LinkSet {
        name: br.clone(),
        change: LinkChange::Up,
    })
    .unwrap();
    let net = sim.net();
    for a in net
        .addresses_of(&eth0)
        .filter(|a| a.family() == Family::Inet)
    {
        sim.apply_now(&Op::AddrAdd { address: a.on(&br) }).unwrap();
    }
    sim.apply_now(&Op::LinkSet {
        name: eth0.clone(),
        change: LinkChange::Master(br.clone()),
    })
    .unwrap();
    let mut routes: Vec<_> = net
        .routes_via(&eth0)
        .filter(|r| r.family() == Family::Inet)
        .collect();
    routes.sort_by_key(|r| r.gateway.is_some());
    for r in routes {
        sim.apply_now(&Op::RouteReplace { route: r.on(&br) })
            .unwrap();
    }
    for a in net
        .addresses_of(&eth0)
        .filter(|a| a.family() == Family::Inet)
    {
        sim.apply_now(&Op::AddrDel { address: a.clone() }).unwrap();
    }
    connected(&sim.net()).expect("connected through the bridge at first");
    host.advance(Duration::from_secs(u64::from(LEASE) + 1));
    assert!(
        connected(&sim.net()).is_err(),
        "the lease outlived its time on a port"
    );
}
