//! `start --confirm` on the simulated kernel: for every interleaving of the plan's steps,
//! the agent's death, confirms (with good and bad proofs), extensions, reverts, other
//! commands and the clock (CLOCK_BOOTTIME stepped by the test; the wall clock jumping
//! back and forth), the end state is the bridged state only if a confirm won, and
//! otherwise exactly the saved snapshot. Exactly one of confirm and revert wins, a
//! deadline revert never comes before the deadline on CLOCK_BOOTTIME, and a confirm never
//! after it.
//!
//! The processes are played by the test: `start` (which may crash at any operation, or
//! whose agent may never answer), the agent (waking on its timer, spuriously, on SIGTERM,
//! or dead), and later commands, each of which first settles a due change as the CLI does.
//! Each runs the core's transactions on a shared store, one at a time as the state lock
//! makes them.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::script::{name, request, Target};
use common::world::{build, world_spec, WorldSpec};
use common::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::{self, AgentStep, Arming, CommandError, Env, Guard, Now, Wake};
use env_qemu_core::exec::Event;
use env_qemu_core::model::IfName;
use env_qemu_core::pending::{
    AgentId, AgentPath, BootTime, Clock, Connection, Happened, Origin, Pending, Proof, RevertCause,
};
use env_qemu_core::plan::VmTaps;
use env_qemu_core::state::State;
use env_qemu_core::store::{MemoryStore, StateStore};
use proptest::prelude::*;

const BOOT: &str = "8c0ffee0-boot";
const TOKEN: &str = "t0k3n";
const WINDOW: Duration = Duration::from_secs(10);
const START: u64 = 1_000_000;

/// A clock the test steps: CLOCK_BOOTTIME, and a wall clock that may jump anywhere.
#[derive(Clone)]
struct Stepped {
    boot: Arc<AtomicU64>,
    wall: Arc<Mutex<SystemTime>>,
}

impl Stepped {
    fn new() -> Stepped {
        Stepped {
            boot: Arc::new(AtomicU64::new(START)),
            wall: Arc::new(Mutex::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            )),
        }
    }

    /// Boot time passes by `ms`; the wall clock is stepped by `jump_s` on top.
    fn tick(&self, ms: u64, jump_s: i64) {
        self.boot.fetch_add(ms, Ordering::SeqCst);
        let mut w = self.wall.lock().unwrap();
        *w += Duration::from_millis(ms);
        let j = Duration::from_secs(jump_s.unsigned_abs());
        *w = if jump_s >= 0 {
            *w + j
        } else {
            w.checked_sub(j).unwrap_or(*w)
        };
    }
}

impl Clock for Stepped {
    fn boottime(&self) -> BootTime {
        BootTime(self.boot.load(Ordering::SeqCst))
    }

    fn wall(&self) -> SystemTime {
        *self.wall.lock().unwrap()
    }
}

/// The agent as a process: alive or dead, and once its change is settled, done.
#[derive(Default)]
struct Agent {
    dead: Arc<AtomicBool>,
    done: bool,
    /// Set once `start` has it answer.
    answered: Arc<AtomicBool>,
}

/// Starts the agent (`fails`: it never answers).
struct TestGuard {
    fails: bool,
    answered: Arc<AtomicBool>,
}

impl Guard for TestGuard {
    fn arm(&mut self, state: &State) -> Result<AgentId, String> {
        assert!(
            state.pending.is_some(),
            "the change is saved before the agent starts"
        );
        if self.fails {
            return Err("no answer within 10 s".into());
        }
        self.answered.store(true, Ordering::SeqCst);
        Ok(AgentId {
            pid: 4242,
            started: 1,
            path: AgentPath::Detached,
        })
    }
}

/// What happens while the plan runs (the lock held by `start`): only what needs no lock.
#[derive(Debug, Clone, Copy)]
enum During {
    Tick(u64, i64),
    AgentDies,
}

/// What happens after `start` returned (or died), one transaction at a time.
#[derive(Debug, Clone, Copy)]
enum Ev {
    Tick {
        ms: u64,
        wall_jump_s: i64,
    },
    /// Its timer, or a SIGUSR1 (at any time: a spurious wake-up must be harmless).
    AgentWakes,
    AgentDies,
    AgentTerm,
    Confirm(Kind),
    Extend(u64),
    Revert,
    /// Any later command (`status`): it settles a due change first.
    Status,
    AddTap(usize),
}

/// The proof a confirm offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Console,
    NewConnection,
    OldConnection,
    OldThisSession,
    AroundTheBridge,
}

impl Kind {
    fn holds(self) -> bool {
        !matches!(self, Kind::OldConnection | Kind::AroundTheBridge)
    }

    fn proof(self, p: &Pending) -> Proof {
        let ended = p.plan_ended.unwrap_or(p.armed_at);
        let conn = |opened: BootTime, dev: &str, this_session| Proof {
            origin: Origin::Remote(Connection {
                client: "198.51.100.2".parse().unwrap(),
                client_port: 40000,
                server: "192.0.2.10".parse().unwrap(),
                server_port: 22,
                found_by: "$SSH_CONNECTION".into(),
                opened: Some(opened),
                route_dev: Ok(IfName::new(dev).unwrap()),
            }),
            this_session,
        };
        match self {
            Kind::Console => Proof {
                origin: Origin::Console("a test's console".into()),
                this_session: false,
            },
            Kind::NewConnection => conn(ended.after(Duration::from_millis(1)), "lepont", false),
            Kind::OldConnection => conn(BootTime(ended.0 - 5000), "lepont", false),
            Kind::OldThisSession => conn(BootTime(ended.0 - 5000), "lepont", true),
            Kind::AroundTheBridge => conn(ended.after(Duration::from_millis(1)), "eth1", true),
        }
    }
}

fn during() -> impl Strategy<Value = During> {
    prop_oneof![
        (0u64..30_000, -400_000_000i64..400_000_000).prop_map(|(ms, j)| During::Tick(ms, j)),
        Just(During::AgentDies),
    ]
}

fn event() -> impl Strategy<Value = Ev> {
    let kind = prop_oneof![
        Just(Kind::Console),
        Just(Kind::NewConnection),
        Just(Kind::OldConnection),
        Just(Kind::OldThisSession),
        Just(Kind::AroundTheBridge),
    ];
    prop_oneof![
        4 => (0u64..8_000, prop_oneof![3 => Just(0i64), 1 => -400_000_000i64..400_000_000])
            .prop_map(|(ms, wall_jump_s)| Ev::Tick { ms, wall_jump_s }),
        3 => Just(Ev::AgentWakes),
        1 => Just(Ev::AgentDies),
        1 => Just(Ev::AgentTerm),
        3 => kind.prop_map(Ev::Confirm),
        1 => (1u64..20_000).prop_map(Ev::Extend),
        1 => Just(Ev::Revert),
        2 => Just(Ev::Status),
        1 => (0usize..3).prop_map(Ev::AddTap),
    ]
}

/// One scenario: a world, how `start` goes (its agent never answers; a crash after N
/// operations; events at plan steps), and what follows.
#[derive(Debug, Clone)]
struct Scenario {
    world: WorldSpec,
    unanswered: bool,
    crash_after: Option<usize>,
    during: Vec<(usize, During)>,
    events: Vec<Ev>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        world_spec(),
        prop_oneof![9 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(None), 1 => (0usize..24).prop_map(Some)],
        proptest::collection::vec((1usize..24, during()), 0..3),
        proptest::collection::vec(event(), 0..12),
    )
        .prop_map(
            |(world, unanswered, crash_after, during, events)| Scenario {
                world,
                unanswered,
                crash_after,
                during,
                events,
            },
        )
}

fn env<'a>(
    sim: &'a SimKernel,
    store: &'a dyn StateStore,
    observer: &'a mut (dyn FnMut(Event<'_>) + Send),
) -> Env<'a> {
    Env {
        kernel: sim,
        host: &env_qemu_core::host::NoHost,
        store,
        netns: "sim".into(),
        observer,
    }
}

/// The world after `start --confirm` and the events; what the test saw.
struct Played {
    confirmed: bool,
    log: Vec<env_qemu_core::pending::PendingEvent>,
}

async fn play(sim: &SimKernel, store: &MemoryStore, clock: &Stepped, s: &Scenario) -> Played {
    let agent = Agent::default();
    let req = request(Target::Nic(0), None);
    // `start --confirm`, perhaps crashing, with things happening at its steps.
    if let Some(n) = s.crash_after {
        sim.crash_after(n);
    }
    let mut observer = {
        let (clock, dead, during) = (clock.clone(), agent.dead.clone(), s.during.clone());
        move |e: Event<'_>| {
            let Event::Applied { step, .. } = e else {
                return;
            };
            for (at, d) in &during {
                if *at == step {
                    match d {
                        During::Tick(ms, jump) => clock.tick(*ms, *jump),
                        During::AgentDies => dead.store(true, Ordering::SeqCst),
                    }
                }
            }
        }
    };
    let dying = DyingStore { inner: store, sim };
    let mut guard = TestGuard {
        fails: s.unanswered,
        answered: agent.answered.clone(),
    };
    let arming = Arming {
        token: TOKEN.into(),
        boot_id: BOOT.into(),
        window: WINDOW,
        clock,
        guard: &mut guard,
    };
    let started =
        commands::start_confirmed(&mut env(sim, &dying, &mut observer), &req, arming).await;
    sim.revive();
    sim.clear_faults();
    if s.unanswered && !sim.is_crashed() {
        if let Err(e) = &started {
            assert!(
                !matches!(e, CommandError::Unreached(_)),
                "an unanswered agent stops start before its first change: {e}"
            );
        }
    }
    if let Ok((_, p)) = &started {
        assert_eq!(
            p.deadline,
            p.plan_ended.map(|e| e.after(WINDOW)),
            "the window starts at the end of the plan"
        );
    }

    let mut agent = agent;
    let up = {
        let (dead, answered) = (agent.dead.clone(), agent.answered.clone());
        move || answered.load(Ordering::SeqCst) && !dead.load(Ordering::SeqCst)
    };
    let alive = {
        let up = up.clone();
        move |_: &Pending| up()
    };
    let now = Now {
        clock,
        boot_id: BOOT,
    };
    let mut confirmed = false;
    let mut noop = |_: Event<'_>| {};
    for ev in &s.events {
        let agent_alive = up();
        match *ev {
            Ev::Tick { ms, wall_jump_s } => clock.tick(ms, wall_jump_s),
            Ev::AgentDies => agent.dead.store(true, Ordering::SeqCst),
            Ev::AgentWakes | Ev::AgentTerm if agent_alive && !agent.done => {
                let wake = if matches!(ev, Ev::AgentTerm) {
                    Wake::Terminate
                } else {
                    Wake::Timer
                };
                let step =
                    commands::agent_wake(&mut env(sim, store, &mut noop), now, TOKEN, wake).await;
                match step {
                    Ok(AgentStep::Sleep { until }) => {
                        assert_eq!(wake, Wake::Timer, "SIGTERM reverts");
                        assert!(until > clock.boottime(), "it sleeps until a later deadline");
                    }
                    Ok(AgentStep::Reverted(_) | AgentStep::Gone(_)) => agent.done = true,
                    Err(e) => panic!("agent: {e}"),
                }
            }
            Ev::AgentWakes | Ev::AgentTerm => {}
            Ev::Confirm(kind) => {
                settle(sim, store, now, &alive).await;
                let Some(p) = pending_of(store) else {
                    let r = commands::confirm(
                        &mut env(sim, store, &mut noop),
                        now,
                        &alive,
                        &Kind::Console.proof(&Pending::new(
                            String::new(),
                            String::new(),
                            WINDOW,
                            BootTime(0),
                        )),
                    )
                    .await;
                    assert!(
                        matches!(
                            r,
                            Err(CommandError::NoPending { .. }
                                | CommandError::AlreadyReverted { .. }
                                | CommandError::NotStarted)
                        ),
                        "nothing pending: {r:?}"
                    );
                    continue;
                };
                let r = commands::confirm(
                    &mut env(sim, store, &mut noop),
                    now,
                    &alive,
                    &kind.proof(&p),
                )
                .await;
                match r {
                    Ok(_) => {
                        assert!(kind.holds(), "{kind:?} must not confirm");
                        assert!(!confirmed, "confirmed twice");
                        confirmed = true;
                    }
                    Err(CommandError::ProofFailed { .. }) => {
                        assert!(
                            !kind.holds() || !drift_free(sim, store).await,
                            "{kind:?} refused"
                        );
                    }
                    Err(e) => panic!("confirm: {e}"),
                }
            }
            Ev::Extend(ms) => {
                settle(sim, store, now, &alive).await;
                let r = commands::extend(
                    &mut env(sim, store, &mut noop),
                    now,
                    &alive,
                    Duration::from_millis(ms),
                )
                .await;
                if let Ok(d) = r {
                    assert!(d >= clock.boottime().after(Duration::from_millis(ms)));
                }
            }
            Ev::Revert => {
                settle(sim, store, now, &alive).await;
                let r = commands::revert(&mut env(sim, store, &mut noop), now, &alive).await;
                assert!(
                    matches!(
                        r,
                        Ok(_)
                            | Err(CommandError::NoPending { .. }
                                | CommandError::AlreadyReverted { .. }
                                | CommandError::NotStarted)
                    ),
                    "revert: {r:?}"
                );
            }
            Ev::Status => settle(sim, store, now, &alive).await,
            Ev::AddTap(i) => {
                settle(sim, store, now, &alive).await;
                if i < s.world.taps {
                    let _ =
                        commands::add(&mut env(sim, store, &mut noop), &name(Target::Tap(i))).await;
                }
            }
        }
    }
    // Long after: the agent (if alive) wakes, then any later command settles.
    clock.tick(10 * WINDOW.as_millis() as u64 + 100_000, 0);
    if up() && !agent.done {
        let step =
            commands::agent_wake(&mut env(sim, store, &mut noop), now, TOKEN, Wake::Timer).await;
        assert!(
            matches!(step, Ok(AgentStep::Reverted(_) | AgentStep::Gone(_))),
            "the agent past every deadline: {step:?}"
        );
    }
    settle(sim, store, now, &alive).await;
    Played {
        confirmed,
        log: store.logged().unwrap(),
    }
}

/// What the CLI does before every command.
async fn settle(
    sim: &SimKernel,
    store: &MemoryStore,
    now: Now<'_>,
    alive: &dyn Fn(&Pending) -> bool,
) {
    let mut noop = |_: Event<'_>| {};
    let r = commands::settle(
        &mut env(sim, store, &mut noop),
        now,
        alive,
        "env-qemu status",
    )
    .await;
    assert!(r.is_ok(), "settle: {r:?}");
}

fn pending_of(store: &MemoryStore) -> Option<Pending> {
    store.load().unwrap().and_then(|s| s.pending)
}

async fn drift_free(sim: &SimKernel, store: &MemoryStore) -> bool {
    let Some(state) = store.load().unwrap() else {
        return true;
    };
    let mut noop = |_: Event<'_>| {};
    commands::drift(&env(sim, store, &mut noop), &state)
        .await
        .unwrap()
        .is_empty()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// For every interleaving: bridged at the end only if a confirm won, else exactly the
    /// saved snapshot; one winner; deadlines on CLOCK_BOOTTIME whatever the wall clock.
    #[test]
    fn the_end_state_is_bridged_only_if_confirmed(s in scenario()) {
        runtime().block_on(async {
            let sim = build(&s.world);
            let initial = full_state(&sim).await;
            let store = MemoryStore::new();
            let clock = Stepped::new();
            let played = play(&sim, &store, &clock, &s).await;

            let mine = |k: &str| played.log.iter().filter(|e| e.token == TOKEN && kind(&e.event) == k).count();
            let reverted = played.log.iter().filter(|e| matches!(e.event, Happened::Reverted { reached: true, .. })).count();
            assert!(mine("confirmed") <= 1 && reverted <= 1, "{:#?}", played.log);
            assert!(!(played.confirmed && reverted > 0), "confirmed and reverted: {:#?}", played.log);
            check_times(&played.log);

            if played.confirmed {
                let state = store.load().unwrap().expect("a confirmed change keeps its state");
                assert!(state.pending.is_none(), "confirmed: nothing pending");
                assert!(drift_free(&sim, &store).await, "confirmed: the live state is the bridged one");
                let mut noop = |_: Event<'_>| {};
                let stop = commands::stop(&mut env(&sim, &store, &mut noop), VmTaps::Detach).await;
                assert!(stop.is_ok(), "stop after confirm: {stop:?}");
            } else {
                assert!(store.load().unwrap().is_none(), "not confirmed: the state is gone");
            }
            close_all_taps(&sim);
            assert_eq!(full_state(&sim).await, initial);
        });
    }
}

fn kind(h: &Happened) -> &'static str {
    match h {
        Happened::Armed { .. } => "armed",
        Happened::Extended { .. } => "extended",
        Happened::Confirmed { .. } => "confirmed",
        Happened::Refused { .. } => "refused",
        Happened::Reverted { .. } => "reverted",
        // An event this test does not know: it matches none of the expected sequences.
        _ => "unknown",
    }
}

/// A deadline revert comes at or after the deadline in force, a confirm before it.
fn check_times(log: &[env_qemu_core::pending::PendingEvent]) {
    let mut deadline = None;
    for e in log {
        match &e.event {
            Happened::Armed { deadline: d, .. } | Happened::Extended { deadline: d } => {
                deadline = Some(*d);
            }
            Happened::Reverted {
                cause: RevertCause::Deadline,
                ..
            } => {
                let d = deadline.expect("a deadline revert of an armed change");
                assert!(
                    e.at >= d,
                    "reverted at {} before the deadline {}: {log:#?}",
                    e.at,
                    d
                );
            }
            Happened::Confirmed { .. } => {
                let d = deadline.expect("a confirm of an armed change");
                assert!(
                    e.at < d,
                    "confirmed at {} after the deadline {}: {log:#?}",
                    e.at,
                    d
                );
            }
            _ => {}
        }
    }
}

/// A step of the wall clock by a year, forward or back, reverts nothing: only
/// CLOCK_BOOTTIME reaching the deadline does (issue 14, done-when 6, at the core).
#[test]
fn a_stepped_wall_clock_reverts_nothing() {
    runtime().block_on(async {
        let w = world_spec_fixed();
        let sim = build(&w);
        let initial = full_state(&sim).await;
        let store = MemoryStore::new();
        let clock = Stepped::new();
        let mut noop = |_: Event<'_>| {};
        let (_, p) = start_on_eth0(&sim, &store, &clock, false)
            .await
            .expect("start --confirm");
        let deadline = p.deadline.expect("armed");
        let now = Now {
            clock: &clock,
            boot_id: BOOT,
        };
        let alive = |_: &Pending| true;
        let year = 365 * 24 * 3600;
        for jump in [year, -2 * year, year, 40 * year, -40 * year] {
            clock.tick(1000, jump);
            let step =
                commands::agent_wake(&mut env(&sim, &store, &mut noop), now, TOKEN, Wake::Timer)
                    .await;
            assert!(
                matches!(step, Ok(AgentStep::Sleep { until }) if until == deadline),
                "{step:?}"
            );
            settle(&sim, &store, now, &alive).await;
            assert!(
                pending_of(&store).is_some(),
                "a wall clock step of {jump} s reverted"
            );
        }
        clock.tick(deadline.0 - clock.boottime().0 - 1, 0);
        let step =
            commands::agent_wake(&mut env(&sim, &store, &mut noop), now, TOKEN, Wake::Timer).await;
        assert!(
            matches!(step, Ok(AgentStep::Sleep { .. })),
            "1 ms early: {step:?}"
        );
        clock.tick(1, 0);
        let step =
            commands::agent_wake(&mut env(&sim, &store, &mut noop), now, TOKEN, Wake::Timer).await;
        assert!(
            matches!(step, Ok(AgentStep::Reverted(ref r)) if r.cause == RevertCause::Deadline),
            "{step:?}"
        );
        assert_eq!(full_state(&sim).await, initial);
    });
}

/// After a reboot (another boot id) nothing is pending and nothing is done: the agent
/// leaves, confirm and revert find nothing, no command reverts.
#[test]
fn after_a_reboot_nothing_is_pending() {
    runtime().block_on(async {
        let sim = build(&world_spec_fixed());
        let store = MemoryStore::new();
        let clock = Stepped::new();
        let mut noop = |_: Event<'_>| {};
        start_on_eth0(&sim, &store, &clock, false)
            .await
            .expect("start --confirm");
        let bridged = full_state(&sim).await;
        // Another boot; the clock restarted (a persistent state directory kept the file).
        clock.boot.store(5, Ordering::SeqCst);
        let now = Now {
            clock: &clock,
            boot_id: "another-boot",
        };
        let dead = |_: &Pending| false;
        settle(&sim, &store, now, &dead).await;
        let step =
            commands::agent_wake(&mut env(&sim, &store, &mut noop), now, TOKEN, Wake::Timer).await;
        assert!(matches!(step, Ok(AgentStep::Gone(_))), "{step:?}");
        let p = pending_of(&store).expect("the record stays");
        let c = commands::confirm(
            &mut env(&sim, &store, &mut noop),
            now,
            &dead,
            &Kind::Console.proof(&p),
        )
        .await;
        assert!(matches!(c, Err(CommandError::NoPending { .. })), "{c:?}");
        let r = commands::revert(&mut env(&sim, &store, &mut noop), now, &dead).await;
        assert!(matches!(r, Err(CommandError::NoPending { .. })), "{r:?}");
        assert_eq!(full_state(&sim).await, bridged, "nothing was done");
    });
}

/// An agent that never answers: no change at all.
#[test]
fn no_answer_no_change() {
    runtime().block_on(async {
        let sim = build(&world_spec_fixed());
        let initial = full_state(&sim).await;
        let store = MemoryStore::new();
        let clock = Stepped::new();
        let r = start_on_eth0(&sim, &store, &clock, true).await;
        assert!(matches!(r, Err(CommandError::Unarmed { .. })), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("nothing was changed"));
        assert_eq!(sim.mutations(), 0, "no operation ran");
        assert!(store.load().unwrap().is_none());
        assert_eq!(full_state(&sim).await, initial);
    });
}

/// `start --confirm` on eth0 of a fixed world, with a guard whose agent answers, or
/// never does (`unanswered`).
async fn start_on_eth0(
    sim: &SimKernel,
    store: &MemoryStore,
    clock: &Stepped,
    unanswered: bool,
) -> Result<(commands::Report, Pending), CommandError> {
    let mut guard = TestGuard {
        fails: unanswered,
        answered: Arc::new(AtomicBool::new(false)),
    };
    let mut noop = |_: Event<'_>| {};
    let arming = Arming {
        token: TOKEN.into(),
        boot_id: BOOT.into(),
        window: WINDOW,
        clock,
        guard: &mut guard,
    };
    commands::start_confirmed(
        &mut env(sim, store, &mut noop),
        &request(Target::Nic(0), None),
        arming,
    )
    .await
}

/// A world start bridges: eth0 up with an address, a default route, a tap.
fn world_spec_fixed() -> WorldSpec {
    use common::world::NicSpec;
    WorldSpec {
        nics: vec![NicSpec {
            up: true,
            mtu: 1500,
            v4: vec![(0, true)],
            v6: Some(None),
            default_metric: Some(100),
            static_route: true,
            device_route: false,
            src_route: false,
            table_route: None,
            v6_default: true,
            static_neigh: false,
        }],
        taps: 1,
        shm_mb: 64,
        promote_secondaries: true,
    }
}
