//! Golden `stop` plans: start on the simulated kernel, attach a tap, then the diff back.

mod common;

use common::script::{name, Cmd, Target};
use common::traffic;
use common::world::{build, NicSpec, WorldSpec};
use common::{run, runtime};
use env_qemu_core::commands::{self, Env};
use env_qemu_core::plan::VmTaps;
use env_qemu_core::store::MemoryStore;

fn nic(rich: bool) -> NicSpec {
    NicSpec {
        up: true,
        mtu: 1500,
        v4: if rich {
            vec![(0, true)]
        } else {
            vec![(0, false)]
        },
        v6: rich.then_some(Some((86000, 14000))),
        default_metric: Some(100),
        static_route: rich,
        device_route: rich,
        src_route: rich,
        table_route: rich.then_some(100),
        v6_default: rich,
        static_neigh: rich,
    }
}

fn stop_plan(rich: bool) -> String {
    runtime().block_on(async {
        let nics = if rich {
            vec![nic(true), nic(false)]
        } else {
            vec![nic(false)]
        };
        let sim = build(&WorldSpec {
            nics,
            taps: 1,
            shm_mb: 64,
            promote_secondaries: false,
        });
        let initial = sim.net();
        let store = MemoryStore::new();
        let mut noop = |_: env_qemu_core::exec::Event<'_>| {};
        let start = Cmd::Start {
            uplink: Target::Nic(0),
            shm_mb: Some(512),
        };
        assert!(matches!(
            run(&sim, &store, start, &mut noop).await,
            Some(Ok(()))
        ));
        assert!(matches!(
            run(&sim, &store, Cmd::Add(Target::Tap(0)), &mut noop).await,
            Some(Ok(()))
        ));
        // The LAN's routers answered the bridge meanwhile: stop copies them to the NIC.
        traffic::learn_gateways(&sim, &initial, &name(Target::Nic(0)), &name(Target::Bridge));
        let env = Env {
            kernel: &sim,
            host: &env_qemu_core::host::NoHost,
            store: &store,
            netns: "sim".into(),
            observer: &mut noop,
        };
        let refused = commands::plan_stop(&env, VmTaps::Refuse).await.unwrap_err();
        assert!(refused.to_string().contains("tap0"), "{refused}");
        let (plan, _) = commands::plan_stop(&env, VmTaps::Detach).await.unwrap();
        plan.to_string()
    })
}

#[test]
fn seed_like_stop_plan() {
    insta::assert_snapshot!("seed_stop_force", stop_plan(false));
}

#[test]
fn rich_stop_plan() {
    insta::assert_snapshot!("rich_stop_force", stop_plan(true));
}
