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
    let mut model = Model::new(&sim.net());
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
                let nic = common::n(&format!("eth{i}"));
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

    /// 2: a refusal the kernel does not repeat, at any operation of a command: a fresh dump
    /// and a new plan get past it, the command reaches its goal, and the sequence still
    /// restores everything.
    #[test]
    fn one_time_refusals_are_overcome((w, cmds) in sequence(), at in any::<prop::sample::Index>(), nth in 1usize..24) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let k = at.index(cmds.len());
            let mut model = run_checked(&w, &sim, &store, &cmds[..k]).await;
            let c = cmds[k];
            let expect = model.expect(&w, c);
            sim.fail_nth(nth, libc::EBUSY);
            let got = run(&sim, &store, c, &mut noop()).await;
            sim.clear_faults();
            if let (Some(expect), Some(got)) = (expect, got) {
                assert!(expect.matches(&got), "{c:?}: expected {expect:?}, got {got:?}");
                if expect == Expect::Ok {
                    model.apply(c);
                }
            }
            for &c in &cmds[k + 1..] {
                if let (Some(Expect::Ok), Some(Ok(()))) = (model.expect(&w, c), run(&sim, &store, c, &mut noop()).await) {
                    model.apply(c);
                }
            }
            finish(&sim, &store, &model).await;
            assert_eq!(full_state(&sim).await, initial);
        });
    }

    /// 2b: an operation the kernel refuses every time, anywhere in a command's plan: `start`
    /// and `add` go back, and what they say ("nothing was changed") is what a full dump
    /// shows; `stop` and `del` never go back, report what still differs, and leave the
    /// NIC carrying its addresses; once the refusal ends, `stop` restores everything.
    #[test]
    fn lasting_refusals_end_where_the_report_says((w, cmds) in sequence(), at in any::<prop::sample::Index>(), pick in any::<prop::sample::Index>()) {
        runtime().block_on(async {
            let sim = build(&w);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let k = at.index(cmds.len());
            let model = run_checked(&w, &sim, &store, &cmds[..k]).await;
            let c = cmds[k];
            let Some(op) = planned_op(&sim, &store, c, pick).await else {
                return;
            };
            let before = full_state(&sim).await;
            let saved = store.load().unwrap();
            sim.refuse(&op, libc::EBUSY);
            let got = run(&sim, &store, c, &mut noop()).await;
            let mut model = model;
            match got {
                Some(Ok(())) => model.apply(c),
                Some(Err(CommandError::Unreached(u))) => {
                    let msg = u.to_string();
                    assert!(msg.contains(&op.to_string()), "the report names the refused step: {msg}");
                    let now = full_state(&sim).await;
                    if u.nothing_changed() {
                        assert!(msg.contains("nothing was changed"), "{msg}");
                        assert_eq!(now, before, "{c:?} said nothing was changed:\n{msg}");
                        let after = store.load().unwrap();
                        assert_eq!(after.as_ref().map(|s| (&s.phase, &s.taps)), saved.as_ref().map(|s| (&s.phase, &s.taps)));
                    } else {
                        assert!(!msg.contains("nothing was changed"), "{msg}");
                        assert!(!u.residual().is_empty(), "{msg}");
                        assert!(store.load().unwrap().is_some(), "an unfinished command keeps the state");
                    }
                    if let Cmd::Stop { .. } = c {
                        // Never back to the bridged state, and no address of the host lost:
                        // each one is where it was, or already back on the NIC.
                        assert!(!u.nothing_changed());
                        let net = sim.net();
                        for a in before.net.addresses.iter().filter(|a| a.scope != env_qemu_core::model::AddrScope::Link) {
                            assert!(net.addresses.iter().any(|b| b.ip == a.ip), "stop lost {a}:\n{msg}");
                        }
                    }
                }
                other => panic!("{c:?}: {other:?}"),
            }
            sim.clear_faults();
            // `stop` after the refusal ends finishes whatever is left.
            if store.load().unwrap().is_some() {
                let r = run(&sim, &store, Cmd::Stop { force: true }, &mut noop()).await;
                assert!(matches!(r, Some(Ok(()))), "stop after the refusal ended: {r:?}");
            }
            close_all_taps(&sim);
            assert!(store.load().unwrap().is_none());
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
                    let Event::Applied { step, of, op, .. } = e else { return };
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

/// The operation at `pick` among those `c` applies when nothing goes wrong (run on a copy
/// of the kernel and the store), or `None` if it applies none.
async fn planned_op(
    sim: &SimKernel,
    store: &MemoryStore,
    c: Cmd,
    pick: prop::sample::Index,
) -> Option<Op> {
    let copy = sim.fork();
    let saved = MemoryStore::new();
    if let Some(s) = store.load().unwrap() {
        saved.save(&s).unwrap();
    }
    let ops = Arc::new(Mutex::new(Vec::<Op>::new()));
    let mut record = {
        let ops = ops.clone();
        move |e: Event<'_>| {
            if let Event::Applied { op, .. } = e {
                ops.lock().unwrap().push(op.clone());
            }
        }
    };
    let _ = run(&copy, &saved, c, &mut record).await;
    let ops = ops.lock().unwrap().clone();
    (!ops.is_empty()).then(|| ops[pick.index(ops.len())].clone())
}
