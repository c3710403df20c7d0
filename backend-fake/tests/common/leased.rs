//! Hosts whose NIC a simulated manager of [`SimHost`] owns, with leases that run out:
//! the world, the commands run the way the CLI runs them, the connectivity check made
//! after every step, and the steps played while bridged. Shared by `managed.rs` (DHCP
//! clients), `nm.rs` (NetworkManager) and `networkd.rs` (systemd-networkd).

use std::net::IpAddr;
use std::time::Duration;

use env_qemu_backend_fake::host::{SimHost, SimLease};
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::{self, CommandError, Env};
use env_qemu_core::exec::Event;
use env_qemu_core::model::{Address, Family, IfName, MacAddr, NetState};
use env_qemu_core::plan::{StartRequest, VmTaps};
use env_qemu_core::store::{MemoryStore, StateStore};
use env_qemu_core::{LinkChange, LinkSpec, Op};
use proptest::prelude::*;

use super::{n, DyingStore};

/// The lease time the simulated server gives, in seconds.
pub const LEASE: u32 = 120;

/// 192.0.2.10/24 through 192.0.2.1 for [`LEASE`] seconds.
pub fn lease() -> SimLease {
    SimLease {
        address: "192.0.2.10".parse().unwrap(),
        prefix_len: 24,
        router: "192.0.2.1".parse().unwrap(),
        seconds: LEASE,
    }
}

/// eth0 up, two taps for VMs (tap0, tap1), DAD over; `manager` then starts whatever owns
/// eth0 on the host.
pub fn world(manager: impl FnOnce(&SimHost, &IfName)) -> (SimKernel, SimHost) {
    let sim = SimKernel::new();
    let eth0 = n("eth0");
    sim.add_nic(&eth0, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]), 1500);
    sim.apply_now(&Op::LinkSet {
        name: eth0.clone(),
        change: LinkChange::Up,
    })
    .unwrap();
    for t in ["tap0", "tap1"] {
        sim.apply_now(&Op::LinkAdd {
            spec: LinkSpec::Tap {
                name: n(t),
                owner: None,
                group: None,
            },
        })
        .unwrap();
    }
    sim.advance_time();
    let host = SimHost::new(sim.clone());
    manager(&host, &eth0);
    (sim, host)
}

/// What happens while bridged.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// The clock runs this many seconds.
    Wait(u64),
    /// `env-qemu add tapN`.
    Add(usize),
    /// `env-qemu del tapN`.
    Del(usize),
}

/// Mostly waiting, sometimes a tap attached or detached.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..200).prop_map(Step::Wait),
        1 => (0usize..2).prop_map(Step::Add),
        1 => (0usize..2).prop_map(Step::Del),
    ]
}

/// A command future, as [`run`] takes it.
pub type Command<'e> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CommandError>> + 'e>>;

/// Runs one command as the CLI does: a fresh `Env` on the shared kernel, host and store.
pub async fn run(
    sim: &SimKernel,
    host: &SimHost,
    store: &dyn StateStore,
    cmd: impl for<'e> FnOnce(&'e mut Env<'e>) -> Command<'e>,
) -> Result<(), CommandError> {
    let mut noop = |_: Event<'_>| {};
    let mut env = Env {
        kernel: sim,
        host,
        store,
        netns: "sim".into(),
        observer: &mut noop,
    };
    cmd(&mut env).await
}

/// `start eth0` with bridge lepont.
pub fn request() -> StartRequest {
    env_qemu_backend_fake::testkit::start_request("eth0", None)
}

/// `env-qemu start eth0`.
pub async fn start(
    sim: &SimKernel,
    host: &SimHost,
    store: &dyn StateStore,
) -> Result<(), CommandError> {
    run(sim, host, store, |env| {
        Box::pin(async move { commands::start(env, &request()).await.map(|_| ()) })
    })
    .await
}

/// `env-qemu stop`, VMs' taps refused or detached.
pub async fn stop(
    sim: &SimKernel,
    host: &SimHost,
    store: &dyn StateStore,
    taps: VmTaps,
) -> Result<(), CommandError> {
    run(sim, host, store, |env| {
        Box::pin(async move { commands::stop(env, taps).await.map(|_| ()) })
    })
    .await
}

/// The leased address is on an up device that is not a port, with a default route there.
pub fn connected(net: &NetState) -> Result<(), String> {
    let ip: IpAddr = lease().address;
    let on: Vec<&Address> = net.addresses.iter().filter(|a| a.ip == ip).collect();
    let usable = on
        .iter()
        .find(|a| net.link(&a.dev).is_some_and(|l| l.up && l.master.is_none()));
    let Some(a) = usable else {
        return Err(format!("{ip} is on no usable device: {on:?}"));
    };
    let default = net
        .routes_via(&a.dev)
        .any(|r| r.family() == Family::Inet && r.dst.is_default());
    if !default {
        return Err(format!(
            "no IPv4 default route through {}: {:#?}",
            a.dev, net.routes
        ));
    }
    Ok(())
}

/// `net` with lifetimes and expiries set aside, ifindexes and order normalised.
pub fn timeless(net: &NetState) -> NetState {
    let mut s = net.normalized();
    for a in &mut s.addresses {
        a.valid_lft = a.valid_lft.map(|_| 0);
        a.preferred_lft = a.preferred_lft.map(|_| 0);
    }
    for r in &mut s.routes {
        *r = r.expiry_normalized();
    }
    s
}

/// Plays `steps` on a started host, checking [`connected`] after every second of the
/// clock and every add/del (a del of a tap not attached must be refused by the plan).
/// Returns the seconds waited.
pub async fn play(sim: &SimKernel, host: &SimHost, store: &dyn StateStore, steps: &[Step]) -> u64 {
    let mut attached = [false; 2];
    let mut waited = 0;
    for &s in steps {
        match s {
            Step::Wait(secs) => {
                for _ in 0..secs {
                    host.advance(Duration::from_secs(1));
                    waited += 1;
                    connected(&sim.net()).unwrap_or_else(|e| {
                        panic!("{waited} s after start: {e}\n{:?}", host.applied())
                    });
                }
            }
            Step::Add(t) | Step::Del(t) => {
                let add = matches!(s, Step::Add(_));
                let tap = n(&format!("tap{t}"));
                let r = run(sim, host, store, |env| {
                    Box::pin(async move {
                        if add {
                            commands::add(env, &tap).await.map(|_| ())
                        } else {
                            commands::del(env, &tap).await.map(|_| ())
                        }
                    })
                })
                .await;
                match (add, attached[t], r) {
                    (true, _, Ok(())) => attached[t] = true,
                    (false, true, Ok(())) => attached[t] = false,
                    (false, false, Err(CommandError::Plan(_))) => {}
                    (a, was, r) => panic!("add={a} attached={was}: {r:?}"),
                }
                connected(&sim.net()).unwrap_or_else(|e| panic!("after {s:?}: {e}"));
            }
        }
    }
    waited
}

/// Start on a connected host: it must reach its goal (else the residual is shown) and
/// leave the host connected.
pub async fn start_connected(sim: &SimKernel, host: &SimHost, store: &dyn StateStore) {
    connected(&sim.net()).unwrap();
    let r = start(sim, host, store).await;
    if let Err(CommandError::Unreached(u)) = &r {
        let d: Vec<String> = u.forward.residual.iter().map(|d| d.to_string()).collect();
        panic!("start did not reach its goal: {}\n{d:#?}", u);
    }
    assert!(r.is_ok(), "start: {}", r.unwrap_err());
    connected(&sim.net()).unwrap_or_else(|e| panic!("after start: {e}"));
}

/// Start killed after `after` kernel operations (its store dies with it).
pub async fn start_killed(
    sim: &SimKernel,
    host: &SimHost,
    store: &MemoryStore,
    after: usize,
) -> Result<(), CommandError> {
    sim.crash_after(after);
    let dying = DyingStore { inner: store, sim };
    start(sim, host, &dying).await
}

/// Stop after a start killed after `after`, if that start left a state to stop.
pub async fn stop_if_stored(sim: &SimKernel, host: &SimHost, store: &MemoryStore, after: usize) {
    if store.load().unwrap().is_some() {
        let r = stop(sim, host, store, VmTaps::Detach).await;
        assert!(
            r.is_ok(),
            "stop after a start killed after {after}: {}",
            r.unwrap_err()
        );
    }
}
