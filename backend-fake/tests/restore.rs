//! The restore guarantees, proved over generated worlds and command sequences on the
//! simulated kernel, with failures and crashes injected anywhere.

mod common;

use std::sync::{Arc, Mutex};

use common::script::{cmd, name, Cmd, Expect, Model, Target};
use common::traffic;
use common::world::{build, world_spec, WorldSpec};
use common::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::CommandError;
use env_qemu_core::exec::Event;
use env_qemu_core::model::NetState;
use env_qemu_core::store::{MemoryStore, StateStore};
use env_qemu_core::{LinkChange, Op};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn sequence() -> impl Strategy<Value = (WorldSpec, Vec<Cmd>)> {
    (world_spec(), proptest::collection::vec(cmd(), 1..10))
}

fn noop() -> impl FnMut(Event<'_>) + Send {
    |_| {}
}

/// Runs `cmds` checking each outcome against the model (property 4 along the way: refused
/// commands change neither the kernel nor the store), then a final `stop --force`.
async fn run_checked(w: &WorldSpec, sim: &SimKernel, store: &MemoryStore, cmds: &[Cmd]) -> Model {
    let mut model = Model::default();
    for &c in cmds {
        let expect = model.expect(w, c);
        let before = full_state(sim).await;
        let saved = store.load().unwrap();
        let Some(got) = run(sim, store, c, &mut noop()).await else {
            continue;
        };
        let expect = expect.expect("commands have expectations");
        assert!(
            expect.matches(&got),
            "{c:?}: expected {expect:?}, got {got:?}"
        );
        if expect == Expect::Ok {
            // A finished command leaves no journal: `status` would report it interrupted.
            if let Some(s) = store.load().unwrap() {
                assert!(
                    s.journal.is_empty(),
                    "{c:?} left a journal: {:?}",
                    s.journal
                );
            }
            model.apply(c);
            if let (Cmd::Start { .. }, Some(i)) = (c, model.uplink) {
                // Bridged means bridged: a route left on the port would win over the
                // bridge's copy and send its traffic where nothing answers.
                let nic = common::world::n(&format!("eth{i}"));
                let left: Vec<String> = sim.net().routes_via(&nic).map(|r| r.to_string()).collect();
                assert!(
                    left.is_empty(),
                    "after start, routes still via {nic}: {left:?}"
                );
            }
        } else {
            assert_eq!(
                full_state(sim).await,
                before,
                "refused {c:?} changed the kernel"
            );
            assert_eq!(
                store.load().unwrap(),
                saved,
                "refused {c:?} changed the state file"
            );
        }
    }
    model
}

async fn finish(sim: &SimKernel, store: &MemoryStore, model: &Model) {
    if model.started() {
        let r = run(sim, store, Cmd::Stop { force: true }, &mut noop()).await;
        assert!(matches!(r, Some(Ok(()))), "final stop: {r:?}");
    }
    close_all_taps(sim);
    assert!(
        store.load().unwrap().is_none(),
        "stop leaves no state behind"
    );
}

proptest! {
    #![proptest_config(config())]

    /// 1 and 4: any sequence ending in stop restores the initial state; invalid commands
    /// are refused with the expected typed error and change nothing.
    #[test]
    fn sequences_restore_the_initial_state((w, cmds) in sequence()) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let model = run_checked(&w, &sim, &store, &cmds).await;
            finish(&sim, &store, &model).await;
            assert_eq!(full_state(&sim).await, initial);
        });
    }

    /// 2: a failure injected at any operation of a command leaves the state that command
    /// found, and the error names the operation; the sequence then goes on and still
    /// restores everything.
    #[test]
    fn failures_roll_back_exactly((w, cmds) in sequence(), at in any::<prop::sample::Index>(), nth in 1usize..24) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let k = at.index(cmds.len());
            let model = run_checked(&w, &sim, &store, &cmds[..k]).await;
            let c = cmds[k];
            let before = full_state(&sim).await;
            let saved = store.load().unwrap();
            sim.fail_nth(nth, libc::EBUSY);
            let got = run(&sim, &store, c, &mut noop()).await;
            sim.clear_faults();
            let mut model = model;
            match got {
                Some(Err(CommandError::Exec(e))) => {
                    assert!(e.rolled_back(), "{e}");
                    let msg = e.to_string();
                    assert!(msg.contains(&e.op.to_string()) && msg.contains(&e.op.object()), "{msg}");
                    assert_eq!(e.kernel_error().map(|k| k.errno), Some(Some(libc::EBUSY)));
                    assert_eq!(full_state(&sim).await, before, "{c:?} failed at step {} of {}", e.step, e.of);
                    let after = store.load().unwrap();
                    assert_eq!(after.as_ref().map(|s| (&s.phase, &s.taps)), saved.as_ref().map(|s| (&s.phase, &s.taps)));
                }
                Some(Ok(())) => model.apply(c),
                Some(Err(_)) | None => {}
            }
            let model = {
                let mut m = model;
                for &c in &cmds[k + 1..] {
                    if let (Some(Expect::Ok), Some(Ok(()))) = (m.expect(&w, c), run(&sim, &store, c, &mut noop()).await) {
                        m.apply(c);
                    }
                }
                m
            };
            finish(&sim, &store, &model).await;
            assert_eq!(full_state(&sim).await, initial);
        });
    }

    /// 3: a crash at any operation (every later kernel call refused, the process gone), then
    /// a fresh `stop --force` in a new process reading the saved state, restores everything.
    #[test]
    fn crashes_are_recovered_by_stop((w, cmds) in sequence(), at in any::<prop::sample::Index>(), after in 0usize..24) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let k = at.index(cmds.len());
            run_checked(&w, &sim, &store, &cmds[..k]).await;
            sim.crash_after(after);
            let applied = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
            let mut count = {
                let applied = applied.clone();
                move |e: Event<'_>| {
                    if let Event::Applied { step, of, .. } = e {
                        applied.lock().unwrap().push((step, of));
                    }
                }
            };
            let dying = DyingStore { inner: &store, sim: &sim };
            let _ = run(&sim, &dying, cmds[k], &mut count).await;
            let crashed = sim.is_crashed();
            sim.revive();
            // What `status` reads: the journal names the step the crash cut (written
            // before it ran), or the last one applied when the process died in between.
            let journal = store.load().unwrap().map(|s| s.journal).unwrap_or_default();
            let applied = applied.lock().unwrap().clone();
            if crashed && !applied.is_empty() {
                let last = journal.last().expect("a crash inside a plan leaves its journal");
                let (done, of) = *applied.last().unwrap();
                assert_eq!(last.of, of, "{journal:?}");
                // done + 1: cut while that step ran; done: died before journalling the next.
                assert!(last.step == done + 1 || last.step == done,
                    "crash after step {done}/{of}, journal ends at {}/{}", last.step, last.of);
            } else if let Some(last) = journal.last() {
                assert_eq!(last.step, 1, "crash before any step applied: {journal:?}");
            }
            // A new process: only the store survives.
            let recovery = run(&sim, &store, Cmd::Stop { force: true }, &mut noop()).await;
            assert!(
                matches!(recovery, Some(Ok(())) | Some(Err(CommandError::NotStarted))),
                "recovery: {recovery:?}"
            );
            close_all_taps(&sim);
            assert!(store.load().unwrap().is_none());
            assert_eq!(full_state(&sim).await, initial);
        });
    }

    /// 5: at every step of start and of stop, each original address of an up device is on
    /// some up device, each original route's destination still has a route, in its table,
    /// through an up device, and the route the kernel picks delivers at once: not to a
    /// bridge without a working port, not out of a bridge port that cannot resolve its next
    /// hop. The NIC's release is checked at its worst instant too: released, with
    /// everything of the bridge's still in place.
    #[test]
    fn no_blackout_at_any_step(w in world_spec(), shm in proptest::option::of(Just(512u64))) {
        runtime().block_on(async {
            let sim = build(&w);
            let (nic, br) = (name(Target::Nic(0)), name(Target::Bridge));
            // A host that has been on its LAN for a while knows its routers.
            traffic::learn_gateways(&sim, &sim.net(), &nic, &nic);
            let initial = sim.net();
            let store = MemoryStore::new();
            let violations = Arc::new(Mutex::new(Vec::<String>::new()));
            let mut check = {
                let (sim, v, nic, br) = (sim.clone(), violations.clone(), nic.clone(), br.clone());
                let initial = initial.clone();
                let mut prev = initial.clone();
                move |e: Event<'_>| {
                    let Event::Applied { step, of, op } = e else { return };
                    let now = sim.net();
                    let mut found = blackouts(&initial, &now);
                    found.extend(traffic::stalls(&initial, &nic, &now, &sim));
                    let releases = match op {
                        Op::LinkDel { name } => *name == br,
                        Op::LinkSet { name, change: LinkChange::NoMaster } => *name == nic,
                        _ => false,
                    };
                    if releases && prev.link(&nic).is_some_and(|l| l.master.as_ref() == Some(&br)) {
                        let mid = traffic::mid_release(&prev, &nic);
                        found.extend(
                            traffic::stalls(&initial, &nic, &mid, &sim)
                                .into_iter()
                                .map(|m| format!("while {nic} is released: {m}")),
                        );
                    }
                    for miss in found {
                        v.lock().unwrap().push(format!("after {step}/{of} `{op}`: {miss}"));
                    }
                    prev = now;
                }
            };
            let start = Cmd::Start { uplink: Target::Nic(0), shm_mb: shm };
            let r = run(&sim, &store, start, &mut check).await;
            assert!(matches!(r, Some(Ok(()))), "{r:?}");
            traffic::learn_gateways(&sim, &initial, &nic, &br);
            let r = run(&sim, &store, Cmd::Stop { force: false }, &mut check).await;
            assert!(matches!(r, Some(Ok(()))), "{r:?}");
            let v = violations.lock().unwrap();
            assert!(v.is_empty(), "{}", v.join("\n"));
        });
    }
}

/// What in `initial` (on up devices) is no longer reachable in `now`.
fn blackouts(initial: &NetState, now: &NetState) -> Vec<String> {
    let up = |s: &NetState, dev: &env_qemu_core::model::IfName| s.link(dev).is_some_and(|l| l.up);
    let mut out = Vec::new();
    for a in initial.addresses.iter().filter(|a| up(initial, &a.dev)) {
        if !now
            .addresses
            .iter()
            .any(|b| b.ip == a.ip && up(now, &b.dev))
        {
            out.push(format!("address {} is on no up device", a.ip));
        }
    }
    for r in initial
        .routes
        .iter()
        .filter(|r| r.dev.as_ref().is_none_or(|d| up(initial, d)))
    {
        let routable = now.routes.iter().any(|q| {
            q.table == r.table && q.dst == r.dst && q.dev.as_ref().is_none_or(|d| up(now, d))
        });
        if !routable {
            out.push(format!("{r} has no route left"));
        }
    }
    out
}
