//! Hosts whose NIC a DHCP client owns (a dhcpcd-like or a dhclient-like client of
//! [`SimHost`]), with leases that run out: env-qemu hands the client over to the bridge at
//! start and back at stop, and time passes in between, over several lease lifetimes.
//!
//! Properties:
//! - every command reaches its goal, verified (the client's handover included);
//! - at every instant — after each command and each second of the clock — the leased
//!   address is on an up device that is not a bridge port, with a default route through
//!   that device: the host never loses IPv4;
//! - after stop the client manages the NIC again, and the host is as before apart from
//!   lifetimes.

mod common;

use std::time::Duration;

use common::leased::{connected, lease, play, start, step, stop, timeless, Step, LEASE};
use common::n;
use common::runtime;
use env_qemu_backend_fake::host::{SimClientKind, SimHost};
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{Address, Family};
use env_qemu_core::plan::VmTaps;
use env_qemu_core::store::MemoryStore;
use env_qemu_core::Op;
use proptest::prelude::*;

/// eth0 up with its client bound, and two taps for VMs.
fn world(dhclient: bool) -> (SimKernel, SimHost) {
    common::leased::world(|host, eth0| {
        let kind = if dhclient {
            SimClientKind::Dhclient {
                argv:
                    "dhclient -4 -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases eth0"
                        .split(' ')
                        .map(String::from)
                        .collect(),
            }
        } else {
            SimClientKind::DhcpcdManager {
                socket: "/run/dhcpcd/sock".into(),
            }
        };
        host.start_client(kind, eth0, lease());
    })
}

async fn scenario(dhclient: bool, steps: &[Step]) {
    let (sim, host) = world(dhclient);
    let store = MemoryStore::new();
    let before = timeless(&sim.net());
    connected(&sim.net()).unwrap();
    let r = start(&sim, &host, &store).await;
    assert!(r.is_ok(), "start: {}", r.unwrap_err());
    connected(&sim.net()).unwrap_or_else(|e| panic!("after start: {e}"));
    let waited = play(&sim, &host, &store, steps).await;
    let r = stop(&sim, &host, &store, VmTaps::Detach).await;
    assert!(r.is_ok(), "stop after {waited} s: {}", r.unwrap_err());
    connected(&sim.net()).unwrap_or_else(|e| panic!("after stop: {e}"));
    assert_eq!(
        timeless(&sim.net()),
        before,
        "after stop (apart from lifetimes)"
    );
    // The client manages eth0 again: a lease lifetime later the address is still there.
    host.advance(Duration::from_secs(u64::from(LEASE) + 10));
    connected(&sim.net()).unwrap_or_else(|e| panic!("a lease after stop: {e}"));
    assert_eq!(timeless(&sim.net()), before, "a lease after stop");
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: common::cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// dhcpcd (one daemon for every interface) hands over through its control socket.
    #[test]
    fn a_dhcpcd_host_stays_connected_over_several_leases(steps in proptest::collection::vec(step(), 1..8)) {
        runtime().block_on(scenario(false, &steps));
    }

    /// dhclient is stopped by its PID and started again on the bridge, and back.
    #[test]
    fn a_dhclient_host_stays_connected_over_several_leases(steps in proptest::collection::vec(step(), 1..8)) {
        runtime().block_on(scenario(true, &steps));
    }
}

/// Three lease lifetimes bridged, deterministic: the long case the generated ones may
/// miss.
#[test]
fn three_leases_bridged_and_back() {
    for dhclient in [false, true] {
        runtime().block_on(scenario(
            dhclient,
            &[Step::Add(0), Step::Wait(3 * u64::from(LEASE) + 7)],
        ));
    }
}

/// A dhclient host stopped late in its lease (the copy on the bridge 30 s from its end,
/// as after a renewal the server did not answer): dhclient, started again on the NIC,
/// binds at once but cannot refresh the address stop put back (its hook's `ip addr add`
/// fails on it), so that address must last until the client's first renewal, a whole T1
/// later. Measured with the real dhclient (cli/tests/lease_lifetimes.rs): with the copy's
/// 30 s the NIC lost IPv4 from 31 s after stop on.
#[test]
fn a_dhclient_host_stopped_late_in_its_lease_keeps_it() {
    runtime().block_on(async {
        let (sim, host) = world(true);
        let store = MemoryStore::new();
        let r = start(&sim, &host, &store).await;
        assert!(r.is_ok(), "start: {}", r.unwrap_err());
        // The copy, 30 s from its end; its routes, flushed with it, put back.
        let br = n("lepont");
        let net = sim.net();
        let copy = net
            .addresses_of(&br)
            .find(|a| a.ip == lease().address)
            .cloned()
            .expect("the lease on the bridge");
        let routes: Vec<_> = net
            .routes_via(&br)
            .filter(|r| r.family() == Family::Inet && r.gateway.is_some())
            .cloned()
            .collect();
        sim.apply_now(&Op::AddrDel {
            address: copy.clone(),
        })
        .unwrap();
        sim.apply_now(&Op::AddrAdd {
            address: Address {
                valid_lft: Some(30),
                preferred_lft: Some(30),
                ..copy
            },
        })
        .unwrap();
        for route in routes {
            sim.apply_now(&Op::RouteReplace { route }).unwrap();
        }
        connected(&sim.net()).unwrap();
        let r = stop(&sim, &host, &store, VmTaps::Refuse).await;
        assert!(r.is_ok(), "stop: {}", r.unwrap_err());
        for s in 1..=u64::from(LEASE) {
            host.advance(Duration::from_secs(1));
            connected(&sim.net()).unwrap_or_else(|e| panic!("{s} s after stop: {e}"));
        }
    });
}
