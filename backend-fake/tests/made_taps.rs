//! Taps env-qemu makes (`tap create`, `run`'s tap) and the runs holding the bridge: a tap
//! is in the saved state before it exists, so a crash right after its creation leaves a
//! tap `stop` knows of and deletes; each run leaving deletes its tap (and those of runs
//! that died), and only the last one out stops the bridge.

mod common;

use common::script::{holder_pid, made_name, Cmd, Target};
use common::world::{build, world_spec, NicSpec, WorldSpec};
use common::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::{self, Env, Left, TapRequest};
use env_qemu_core::exec::Event;
use env_qemu_core::op::{LinkSpec, Op};
use env_qemu_core::store::{MemoryStore, StateStore};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One NIC with an address and a default route, nothing else.
fn plain_world() -> WorldSpec {
    let seed = WorldSpec::seed();
    WorldSpec {
        nics: vec![NicSpec {
            v6: None,
            ..seed.nics[0].clone()
        }],
        promote_secondaries: true,
        ..seed
    }
}

fn tap_exists(sim: &SimKernel, i: usize) -> bool {
    sim.net().link(&made_name(i)).is_some()
}

async fn ok(sim: &SimKernel, store: &dyn StateStore, c: Cmd) {
    let r = run(sim, store, c, &mut |_: Event<'_>| {}).await;
    assert!(matches!(r, Some(Ok(()))), "{c:?}: {r:?}");
}

proptest! {
    #![proptest_config(config())]

    /// The process dies right after the kernel made the tap (before attaching it or
    /// saving anything more): the saved state names the tap and the journal its
    /// creation, and a plain `stop` (no --force: the tap is on no bridge) deletes it and
    /// restores everything.
    #[test]
    fn a_crash_right_after_a_tap_is_made_is_recovered_by_stop(w in world_spec(), owned in any::<bool>()) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            ok(&sim, &store, Cmd::Start { uplink: Target::Nic(0), shm_mb: None }).await;
            sim.crash_after(1);
            let dying = DyingStore { inner: &store, sim: &sim };
            let died = run(&sim, &dying, Cmd::MakeTap { owned, holder: Some(0) }, &mut |_: Event<'_>| {}).await;
            assert!(sim.is_crashed(), "the crash came after the tap was made: {died:?}");
            sim.revive();
            assert!(tap_exists(&sim, 0), "the kernel made the tap before the crash");
            let saved = store.load().unwrap().expect("started");
            assert_eq!(saved.made.iter().map(|m| &m.name).collect::<Vec<_>>(), [&made_name(0)]);
            let last = saved.journal.last().expect("the creation was journalled");
            let spec = LinkSpec::Tap { name: made_name(0), owner: owned.then_some(1000), group: None };
            assert_eq!(last.op, Op::LinkAdd { spec });
            ok(&sim, &store, Cmd::Stop { force: false }).await;
            assert!(!tap_exists(&sim, 0), "stop deleted the tap");
            assert!(store.load().unwrap().is_none());
            assert_eq!(full_state(&sim).await, initial);
        });
    }
}

/// Two runs each with a tap: the first one out deletes only its own tap and leaves the
/// bridge to the second; the second one out stops it.
#[test]
fn the_last_run_out_stops_and_each_deletes_its_tap() {
    runtime().block_on(async {
        let sim = build(&plain_world());
        let initial = full_state(&sim).await;
        let store = MemoryStore::new();
        for h in [0, 1] {
            let join = Cmd::Join {
                holder: h,
                uplink: Target::Default,
            };
            ok(&sim, &store, join).await;
            let tap = Cmd::MakeTap {
                owned: true,
                holder: Some(h),
            };
            ok(&sim, &store, tap).await;
        }
        let bridge = script_bridge();
        assert_eq!(
            sim.net().ports_of(&bridge).count(),
            3,
            "the uplink and two taps"
        );
        let mut obs = |_: Event<'_>| {};
        let mut env = Env {
            kernel: &sim,
            host: &env_qemu_core::host::NoHost,
            store: &store,
            netns: "sim".into(),
            observer: &mut obs,
        };
        let first = commands::leave(&mut env, holder_pid(0), &|_| true)
            .await
            .unwrap();
        match first {
            Left::Stays {
                deleted, holders, ..
            } => {
                assert_eq!(deleted, [made_name(0)]);
                assert_eq!(holders, 1);
            }
            other => panic!("the first run out stopped the bridge: {other:?}"),
        }
        assert!(!tap_exists(&sim, 0) && tap_exists(&sim, 1));
        assert!(sim.net().link(&bridge).is_some());
        let second = commands::leave(&mut env, holder_pid(1), &|_| true)
            .await
            .unwrap();
        assert!(
            matches!(&second, Left::Stopped { deleted, .. } if deleted == &[made_name(1)]),
            "{second:?}"
        );
        assert!(store.load().unwrap().is_none());
        assert_eq!(full_state(&sim).await, initial);
    });
}

/// A run killed without leaving: the next run to leave deletes the dead one's tap too,
/// and, being the last holder alive, stops the bridge.
#[test]
fn a_dead_runs_tap_goes_with_the_next_run_leaving() {
    runtime().block_on(async {
        let sim = build(&plain_world());
        let initial = full_state(&sim).await;
        let store = MemoryStore::new();
        let mut obs = |_: Event<'_>| {};
        let mut env = Env {
            kernel: &sim,
            host: &env_qemu_core::host::NoHost,
            store: &store,
            netns: "sim".into(),
            observer: &mut obs,
        };
        let req = commands::RunRequest {
            uplink: None,
            bridge: script_bridge(),
            shm: None,
            foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
        };
        for pid in [41, 42] {
            commands::join(&mut env, &req, pid).await.unwrap();
            let tap = TapRequest {
                name: None,
                owner: Some(1000),
                group: None,
                holder: Some(pid),
            };
            commands::make_tap(&mut env, &tap).await.unwrap();
        }
        let alive = |pid: u32| pid != 41;
        let left = commands::leave(&mut env, 42, &alive).await.unwrap();
        match left {
            Left::Stopped { mut deleted, .. } => {
                deleted.sort();
                assert_eq!(deleted, [made_name(0), made_name(1)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(full_state(&sim).await, initial);
    });
}

fn script_bridge() -> env_qemu_core::model::IfName {
    common::script::name(Target::Bridge)
}
