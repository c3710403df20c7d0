//! The executor against the simulated kernel: journal before each step, a refused step
//! ends the round unless a dump shows its purpose holds already.

mod common;

use std::path::PathBuf;

use common::n;
use common::runtime;
use common::world::{build, NicSpec, WorldSpec};
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::exec::{execute, Event, Executed, Journal, Machine, Round, StepFailure};
use env_qemu_core::observe::observe;
use env_qemu_core::plan::{plan_start, Plan, ShmRequest, StartRequest};
use env_qemu_core::state::JournalEntry;
use env_qemu_core::store::StoreError;

fn world() -> SimKernel {
    let nic = NicSpec {
        up: true,
        mtu: 1500,
        v4: vec![(0, true), (1, false)],
        v6: Some(None),
        default_metric: Some(100),
        static_route: true,
        device_route: true,
        src_route: true,
        table_route: Some(100),
        v6_default: true,
        static_neigh: false,
    };
    build(&WorldSpec {
        nics: vec![nic.clone(), nic],
        taps: 1,
        shm_mb: 64,
        promote_secondaries: false,
    })
}

fn request() -> StartRequest {
    StartRequest {
        uplink: n("eth0"),
        bridge: n("lepont"),
        shm: Some(ShmRequest {
            path: PathBuf::from(common::SHM),
            size_bytes: 512 << 20,
        }),
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    }
}

async fn plan(sim: &SimKernel) -> Plan {
    let snap = observe(sim, &[&n("eth0")], Some(std::path::Path::new(common::SHM)))
        .await
        .unwrap();
    plan_start(&snap, &request()).unwrap()
}

/// Records entries, checking each comes before its operation reached the kernel.
struct Checked<'a> {
    sim: &'a SimKernel,
    base: usize,
    entries: Vec<JournalEntry>,
    fail_at: Option<usize>,
}

impl Journal for Checked<'_> {
    fn record(&mut self, e: &JournalEntry) -> Result<(), StoreError> {
        // Steps whose purpose held did not change the kernel: at most one change per
        // step journalled before.
        assert!(
            self.sim.mutations() - self.base < e.step,
            "step {} journalled late",
            e.step
        );
        assert_eq!(self.entries.len(), e.step - 1, "steps journalled in order");
        if self.fail_at == Some(e.step) {
            return Err(StoreError::Encode("journal".into(), "disk full".into()));
        }
        self.entries.push(e.clone());
        Ok(())
    }
}

async fn run(
    sim: &SimKernel,
    plan: &Plan,
    fail_at: Option<usize>,
) -> (Executed, Vec<JournalEntry>, Vec<String>) {
    let mut j = Checked {
        sim,
        base: sim.mutations(),
        entries: vec![],
        fail_at,
    };
    let mut events = vec![];
    let mut obs = |e: Event<'_>| match e {
        Event::AlreadyDone { op, .. } => events.push(format!("already: {op}")),
        Event::Failed { op, .. } => events.push(format!("failed: {op}")),
        _ => {}
    };
    let at = Round {
        command: "start",
        round: 1,
    };
    let machine = Machine {
        kernel: sim,
        host: &env_qemu_core::host::NoHost,
    };
    let r = execute(machine, plan, at, &mut j, &mut obs).await;
    (r, j.entries, events)
}

#[test]
fn every_step_is_journalled_before_it_runs() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let (r, entries, _) = run(&sim, &plan, None).await;
        assert!(r.failed.is_none(), "{:?}", r.failed);
        assert_eq!(r.applied, plan.steps.len());
        assert_eq!(entries.len(), plan.steps.len());
        assert!(entries
            .iter()
            .zip(&plan.steps)
            .all(|(e, op)| e.op == *op && e.of == plan.steps.len() && e.round == 1));
    });
}

#[test]
fn a_refused_step_ends_the_round_and_undoes_nothing() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let k = plan
            .ops()
            .position(|o| o.to_string() == "ip link set dev eth0 master lepont")
            .unwrap()
            + 1;
        sim.fail_nth(k, libc::EBUSY);
        let (r, entries, events) = run(&sim, &plan, None).await;
        let e = r.failed.expect("the round ends at the refused step");
        assert_eq!((e.step, e.of, r.applied), (k, plan.steps.len(), k - 1));
        assert_eq!(entries.len(), k, "nothing journalled past the refused step");
        assert_eq!(events, vec!["failed: ip link set dev eth0 master lepont"]);
        // What ran stays: going back is the convergence loop's decision, from a dump.
        assert!(sim.net().link(&n("lepont")).is_some());
        let msg = e.to_string();
        assert!(
            msg.contains("step")
                && msg.contains("ip link set dev eth0 master lepont")
                && msg.contains("EBUSY"),
            "{msg}"
        );
    });
}

#[test]
fn a_refused_step_whose_purpose_holds_is_done() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let secondary = plan
            .ops()
            .find(|o| o.to_string() == "ip addr del 192.0.2.11/26 dev eth0")
            .cloned()
            .expect("the plan deletes the secondary from the NIC");
        // Another program takes the address away before env-qemu gets there (a DHCP
        // client deconfiguring the NIC): the deletion is refused, and a dump shows it done.
        sim.apply_now(&secondary).unwrap();
        let (r, _, events) = run(&sim, &plan, None).await;
        assert!(r.failed.is_none(), "{:?}", r.failed);
        assert_eq!(r.applied, plan.steps.len() - 1);
        assert_eq!(events, vec![format!("already: {secondary}")]);
    });
}

#[test]
fn a_crash_ends_the_round_at_the_next_step() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let done = 8;
        sim.crash_after(done);
        let (r, _, _) = run(&sim, &plan, None).await;
        let e = r.failed.expect("a crash ends the round");
        assert_eq!((e.step, r.applied), (done + 1, done));
        assert_eq!(
            e.kernel_error().map(|k| k.kind),
            Some(env_qemu_core::ErrorKind::Unavailable)
        );
        sim.revive();
    });
}

#[test]
fn a_journal_failure_stops_before_the_step() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let base = sim.mutations();
        let (r, entries, _) = run(&sim, &plan, Some(3)).await;
        let e = r.failed.expect("a journal failure ends the round");
        assert!(matches!(e.cause, StepFailure::Journal(_)), "{e}");
        assert_eq!((e.step, entries.len()), (3, 2));
        assert_eq!(sim.mutations() - base, 2, "step 3 never reached the kernel");
    });
}
