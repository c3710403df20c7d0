//! The executor against the simulated kernel: journal before each step, rollback in
//! reverse, every undo failure collected.

mod common;

use std::path::PathBuf;

use common::runtime;
use common::world::{build, n, NicSpec, WorldSpec};
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::exec::{execute, Event, ExecError, Journal, StepFailure};
use env_qemu_core::observe::observe;
use env_qemu_core::op::Op;
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
            path: PathBuf::from(common::world::SHM),
            size_bytes: 512 << 20,
        }),
    }
}

async fn plan(sim: &SimKernel) -> Plan {
    let snap = observe(
        sim,
        &[&n("eth0")],
        Some(std::path::Path::new(common::world::SHM)),
    )
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
        assert_eq!(
            self.sim.mutations() - self.base,
            e.step - 1,
            "step {} journalled late",
            e.step
        );
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
) -> (Result<(), ExecError>, Vec<JournalEntry>, Vec<Op>) {
    let mut j = Checked {
        sim,
        base: sim.mutations(),
        entries: vec![],
        fail_at,
    };
    let mut undone = vec![];
    let mut obs = |e: Event<'_>| {
        if let Event::Undone { op } = e {
            undone.push(op.clone());
        }
    };
    let r = execute(sim, plan, "start", &mut j, &mut obs).await;
    (r, j.entries, undone)
}

#[test]
fn every_step_is_journalled_before_it_runs() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let (r, entries, _) = run(&sim, &plan, None).await;
        r.unwrap();
        assert_eq!(entries.len(), plan.steps.len());
        assert!(entries
            .iter()
            .zip(&plan.steps)
            .all(|(e, s)| e.op == s.op && e.of == plan.steps.len()));
    });
}

#[test]
fn a_failure_undoes_the_done_steps_in_reverse() {
    runtime().block_on(async {
        let sim = world();
        let before = sim.net().normalized();
        let plan = plan(&sim).await;
        let k = plan
            .ops()
            .position(|o| o.to_string() == "ip link set dev eth0 master lepont")
            .unwrap()
            + 1;
        sim.fail_nth(k, libc::EBUSY);
        let (r, _, undone) = run(&sim, &plan, None).await;
        let e = r.unwrap_err();
        assert_eq!((e.step, e.of), (k, plan.steps.len()));
        assert!(e.rolled_back(), "{e}");
        let expected: Vec<Op> = plan.steps[..k - 1]
            .iter()
            .rev()
            .flat_map(|s| s.undo.clone())
            .collect();
        assert_eq!(undone, expected);
        assert_eq!(sim.net().normalized(), before);
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
fn a_crash_reports_every_failed_undo() {
    runtime().block_on(async {
        let sim = world();
        let plan = plan(&sim).await;
        let done = 8;
        sim.crash_after(done);
        let (r, _, undone) = run(&sim, &plan, None).await;
        let e = r.unwrap_err();
        assert_eq!(e.step, done + 1);
        assert!(undone.is_empty());
        let undoable: usize = plan.steps[..done].iter().map(|s| s.undo.len()).sum();
        assert_eq!(e.undo_errors.len(), undoable, "{e}");
        assert!(e.to_string().contains("env-qemu stop"), "{e}");
        sim.revive();
    });
}

#[test]
fn a_journal_failure_stops_before_the_step() {
    runtime().block_on(async {
        let sim = world();
        let before = sim.net().normalized();
        let plan = plan(&sim).await;
        let base = sim.mutations();
        let (r, entries, _) = run(&sim, &plan, Some(3)).await;
        let e = r.unwrap_err();
        assert!(matches!(e.cause, StepFailure::Journal(_)), "{e}");
        assert_eq!(entries.len(), 2);
        // Two steps applied, then their undos (one of which may be subsumed): never step 3.
        assert!(sim.mutations() - base <= 4);
        assert_eq!(sim.net().normalized(), before);
    });
}
