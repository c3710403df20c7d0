//! Hosts whose NIC systemd-networkd owns (the simulated networkd of [`SimHost`], modelled
//! on systemd 252: it applies the first matching `.network` file, drops a link's foreign
//! routes when it configures it again, leases with an IAID derived from the interface
//! unless pinned, renews nothing on a port, reads /run again when restarted), with leases
//! that run out.
//!
//! Properties:
//! - start hands the NIC over to networkd (the bridge's and the port's runtime files), stop
//!   gives it back to its own file, both verified; at every instant — after each command
//!   and each second of the clock — the NIC's lease (the same address: the bridge leases
//!   with the NIC's IAID) is on an up device that is not a port, with a default route
//!   through it; networkd restarted while bridged changes nothing; after stop the host is
//!   as before apart from lifetimes, no runtime file is left, and a lease later still so;
//! - env-qemu killed at any step of start (or failing at any kernel operation): stop
//!   restores the host and removes the runtime files.

mod common;

use std::path::Path;
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
use env_qemu_core::model::NetState;
use env_qemu_core::plan::VmTaps;
use env_qemu_core::store::{MemoryStore, StateStore};
use proptest::prelude::*;

const OWN: &str = "/etc/systemd/network/50-eth0.network";
const OWN_TEXT: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n";

/// eth0 up with networkd's own file bound, and two taps for VMs.
fn world() -> (SimKernel, SimHost) {
    common::leased::world(|host, eth0| {
        host.start_networkd(eth0, lease(), OWN, OWN_TEXT);
    })
}

async fn stop(sim: &SimKernel, host: &SimHost, store: &dyn StateStore) -> Result<(), CommandError> {
    common::leased::stop(sim, host, store, VmTaps::Detach).await
}

/// The host as before start, eth0 on its own file, no runtime file of env-qemu's left.
fn given_back(sim: &SimKernel, host: &SimHost, before: &NetState, when: &str) {
    sim.advance_time();
    connected(&sim.net()).unwrap_or_else(|e| panic!("{when}: {e}"));
    assert_eq!(timeless(&sim.net()), *before, "{when}");
    assert_eq!(
        host.networkd_file_on(&n("eth0")).as_deref(),
        Some(Path::new(OWN)),
        "{when}"
    );
    let (files, _) = host.networkd_leftovers();
    assert!(files.is_empty(), "{when}: runtime files left {files:?}");
}

async fn scenario(steps: &[Step], restart: bool) {
    let (sim, host) = world();
    let store = MemoryStore::new();
    let before = timeless(&sim.net());
    start_connected(&sim, &host, &store).await;
    assert_eq!(
        host.networkd_file_on(&n("lepont")).as_deref(),
        Some(Path::new("/run/systemd/network/00-env-qemu-lepont.network")),
        "networkd does not run lepont"
    );
    let mut waited = play(&sim, &host, &store, steps).await;
    if restart {
        // networkd restarted while bridged, then a whole lease.
        host.restart_networkd();
        connected(&sim.net()).unwrap_or_else(|e| panic!("after a restart: {e}"));
        waited += play(&sim, &host, &store, &[Step::Wait(u64::from(LEASE) + 3)]).await;
    }
    let r = stop(&sim, &host, &store).await;
    assert!(r.is_ok(), "stop after {waited} s: {}", r.unwrap_err());
    given_back(&sim, &host, &before, "after stop");
    host.advance(Duration::from_secs(u64::from(LEASE) + 10));
    given_back(&sim, &host, &before, "a lease after stop");
}

/// Start killed after `after` kernel operations, then stop.
async fn killed(after: usize) {
    let (sim, host) = world();
    let store = MemoryStore::new();
    let before = timeless(&sim.net());
    let r = start_killed(&sim, &host, &store, after).await;
    if !sim.is_crashed() {
        assert!(r.is_ok(), "start: {}", r.unwrap_err());
        sim.clear_faults();
    } else {
        sim.revive();
    }
    // Time passes before the admin runs stop: the bridge's lease renews (or not).
    host.advance(Duration::from_secs(5));
    stop_if_stored(&sim, &host, &store, after).await;
    given_back(
        &sim,
        &host,
        &before,
        &format!("killed after {after}, stopped"),
    );
    host.advance(Duration::from_secs(u64::from(LEASE) + 5));
    given_back(&sim, &host, &before, "a lease after stop");
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
    fn a_networkd_host_stays_connected_over_several_leases(
        steps in proptest::collection::vec(step(), 1..8),
        restart in any::<bool>(),
    ) {
        runtime().block_on(scenario(&steps, restart));
    }
}

/// Three lease lifetimes bridged, networkd restarted after two, deterministic.
#[test]
fn three_leases_bridged_and_back() {
    runtime().block_on(scenario(
        &[Step::Add(0), Step::Wait(2 * u64::from(LEASE) + 7)],
        true,
    ));
}

/// Every crash point of start (each of its kernel operations).
#[test]
fn a_killed_start_is_restored_by_stop() {
    for after in 1..30 {
        runtime().block_on(killed(after));
    }
}
