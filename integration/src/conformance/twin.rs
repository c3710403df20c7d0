//! [`Twin`]: one simulated and one real namespace, driven in lockstep.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use env_qemu_backend_fake::SimKernel;
use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::model::{Knob, LinkKind, MacAddr, Neighbour, NetState, SysctlKey};
use env_qemu_core::{Kernel, KernelError, LinkChange, LinkSpec, Op};

use super::linkwatch::Linkwatch;
use super::normalize::{self, agree, lifetime_report, KernelChosen};
use super::ops;
use crate::compare::{difference, same_state};
use crate::TestNs;

/// How long the real namespace may take to reach the simulated state after a step.
/// Some effects are asynchronous on the real kernel: carrier and operstate changes go
/// through linkwatch (a non-urgent event can wait up to a second), and IPv6 readiness
/// (the link-local and fe80::/64) follows operstate.
const SETTLE: Duration = Duration::from_millis(4000);
const POLL: Duration = Duration::from_millis(15);

/// Settings of the namespace a case starts from; the rest is always the same: `lo` up
/// with 127.0.0.1/8 and ::1/128, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct World {
    /// net.ipv4.conf.all.promote_secondaries=1 (a fresh namespace has 0).
    pub promote_secondaries: bool,
    /// Keep IPv6 DAD on (net.ipv6.conf.default.accept_dad=1, the kernel default). Off,
    /// devices created later have accept_dad=0: no address is ever tentative, so states
    /// do not depend on DAD timing (~1-2 s after carrier on the real kernel, whenever
    /// `advance_time` is called on the simulated one).
    pub dad: bool,
}

/// The simulated and the real kernel disagree (or the real one could not be used).
#[derive(Clone)]
pub struct Disagreement(pub String);

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh [`SimKernel`] and a fresh real namespace, aligned to the same start state.
/// Dropping it deletes the namespace.
pub struct Twin {
    rt: tokio::runtime::Runtime,
    sim: SimKernel,
    real: NetlinkKernel,
    linkwatch: Linkwatch,
    ns: TestNs,
    /// MACs some operation set explicitly; any other non-zero MAC was kernel-chosen.
    explicit: BTreeSet<MacAddr>,
    sim_chosen: KernelChosen,
    real_chosen: KernelChosen,
    started: Instant,
    log: Vec<String>,
    tally: Tally,
}

/// Operations compared: how many both kernels accepted, how many both refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub accepted: usize,
    pub refused: usize,
}

impl Tally {
    pub fn compared(&self) -> usize {
        self.accepted + self.refused
    }
}

impl Twin {
    /// Creates both kernels and aligns them: a fresh namespace has `lo` down and no
    /// address, the simulator starts as `ip link set lo up` leaves it. Panics when
    /// namespaces cannot be created (call `require_netns!` first).
    pub fn new(world: World) -> Result<Twin, Disagreement> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Disagreement(format!("tokio runtime: {e}")))?;
        let sim = SimKernel::new();
        let ns = TestNs::new();
        let real = ns.kernel();
        let linkwatch = Linkwatch::open(&ns)
            .map_err(|e| Disagreement(format!("linkwatch socket in {}: {e}", ns.name())))?;
        let mut twin = Twin {
            rt,
            sim,
            real,
            linkwatch,
            ns,
            explicit: BTreeSet::new(),
            sim_chosen: KernelChosen::default(),
            real_chosen: KernelChosen::default(),
            started: Instant::now(),
            log: Vec::new(),
            tally: Tally::default(),
        };
        twin.check_fresh()?;
        let lo_up = ops::up("lo");
        twin.rt
            .block_on(twin.real.apply(&lo_up))
            .map_err(|e| twin.fail(&format!("`{lo_up}` failed on the real kernel: {e}")))?;
        if world.promote_secondaries {
            twin.sim.set_promote_secondaries(true);
            twin.ns
                .set_sysctl("net.ipv4.conf.all.promote_secondaries", "1");
        }
        twin.compare_states()?;
        if !world.dad {
            let key = SysctlKey::new(&ops::n("default"), Knob::Ipv6AcceptDad);
            twin.step(&Op::SysctlSet {
                key,
                value: "0".into(),
            })?;
        }
        Ok(twin)
    }

    /// The documented start: only `lo`, down, without addresses or routes.
    fn check_fresh(&self) -> Result<(), Disagreement> {
        let s = self.dump_real()?;
        let lo_only = s.links.len() == 1
            && s.links[0].kind == LinkKind::Loopback
            && !s.links[0].up
            && s.addresses.is_empty()
            && s.routes.is_empty();
        if lo_only {
            Ok(())
        } else {
            Err(self.fail(&format!("a fresh namespace is not just lo, down: {s:#?}")))
        }
    }

    pub fn sim(&self) -> &SimKernel {
        &self.sim
    }

    pub fn ns(&self) -> &TestNs {
        &self.ns
    }

    pub fn real(&self) -> &NetlinkKernel {
        &self.real
    }

    /// Runs a future of the real backend (its calls are async).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Operations compared so far (outcome and state).
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Applies `op` to both kernels; both must succeed, or fail with the same kind and
    /// errno, and the states must then agree.
    pub fn step(&mut self, op: &Op) -> Result<(), Disagreement> {
        self.note_macs(op);
        // Where the real kernel races, the simulator models both outcomes; the real
        // kernel's picks which one the case goes on with.
        let alt = self.race_outcome(op);
        let sim = self.rt.block_on(self.sim.apply(op));
        let alt = alt.filter(|a| a.net() != self.sim.net());
        let real = self.rt.block_on(self.real.apply(op));
        self.settle_real()?;
        self.log.push(format!(
            "{op}\n       sim: {}\n      real: {}\n      ({op:?})",
            outcome(&sim),
            outcome(&real)
        ));
        let same = match (&sim, &real) {
            (Ok(()), Ok(())) => true,
            (Err(s), Err(r)) => s.kind == r.kind && s.errno == r.errno,
            _ => false,
        };
        if !same {
            return Err(self.fail("the outcomes differ"));
        }
        self.compare_with(alt)?;
        match sim {
            Ok(()) => self.tally.accepted += 1,
            Err(_) => self.tally.refused += 1,
        }
        Ok(())
    }

    /// Time passes: the real namespace is polled until `done` holds (at most `max`),
    /// the simulator's clock is advanced, and the states must agree.
    pub fn pass_time(
        &mut self,
        done: impl Fn(&NetState) -> bool,
        max: Duration,
    ) -> Result<(), Disagreement> {
        let deadline = Instant::now() + max;
        while !done(&self.dump_real()?) {
            if Instant::now() > deadline {
                return Err(self.fail("the real kernel never got there"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.sim.advance_time();
        self.log.push("(time passes)".into());
        self.compare_states()
    }

    /// The clock runs: `by` passes for real, the simulator's clock is advanced by as
    /// much ([`SimKernel::advance_clock`]), and the states must agree (the real side
    /// gets a moment to settle: its IPv6 route garbage collection runs on its own
    /// timer).
    pub fn pass_clock(&mut self, by: Duration) -> Result<(), Disagreement> {
        std::thread::sleep(by);
        self.sim.advance_clock(by);
        self.log.push(format!("({by:?} pass)"));
        self.compare_states()
    }

    /// For `up`, and for a port leaving its bridge (`nomaster`, deletion): the simulator
    /// with the other outcome of the stale-operstate race (see
    /// `SimKernel::set_port_up_flash`), `op` applied. The caller drops it when it ends
    /// the same as the default.
    fn race_outcome(&self, op: &Op) -> Option<SimKernel> {
        let racy = matches!(
            op,
            Op::LinkSet {
                change: LinkChange::Up | LinkChange::NoMaster,
                ..
            } | Op::LinkDel { .. }
        );
        if !racy {
            return None;
        }
        let alt = self.sim.fork();
        alt.set_port_up_flash(true);
        let _ = alt.apply_now(op);
        alt.set_port_up_flash(false);
        Some(alt)
    }

    /// Lets the real kernel's linkwatch catch up now (see [`Linkwatch`]): the next step
    /// and the comparison see the kernel at rest, as the simulator models it.
    fn settle_real(&self) -> Result<(), Disagreement> {
        for _ in 0..3 {
            let state = self.dump_real()?;
            self.linkwatch.settle(&state);
        }
        Ok(())
    }

    fn note_macs(&mut self, op: &Op) {
        match op {
            Op::LinkAdd {
                spec: LinkSpec::Bridge { mac: Some(m), .. },
            }
            | Op::LinkSet {
                change: LinkChange::Mac(m),
                ..
            } => {
                self.explicit.insert(*m);
            }
            _ => {}
        }
    }

    fn dump_real(&self) -> Result<NetState, Disagreement> {
        self.rt
            .block_on(self.real.dump())
            .map_err(|e| self.fail(&format!("the real dump failed: {e}")))
    }

    /// The states agree once normalised; the real side gets `SETTLE` (4 s) to get there.
    pub fn compare_states(&mut self) -> Result<(), Disagreement> {
        self.compare_with(None)
    }

    /// Like [`Twin::compare_states`], also accepting `alt`, the other outcome of a race;
    /// if the real kernel took that one, the case goes on with it.
    fn compare_with(&mut self, alt: Option<SimKernel>) -> Result<(), Disagreement> {
        let sim_raw = self.sim.net();
        self.sim_chosen.learn(&sim_raw, &self.explicit);
        let sim = self.sim_chosen.apply(&sim_raw);
        let mut alt = alt.map(|a| {
            let raw = a.net();
            self.sim_chosen.learn(&raw, &self.explicit);
            let state = self.sim_chosen.apply(&raw);
            (a, state)
        });
        let deadline = Instant::now() + SETTLE;
        loop {
            let raw = self.dump_real()?;
            self.real_chosen.learn(&raw, &self.explicit);
            let real = self.real_chosen.apply(&raw);
            let (sim_neigh, real_neigh) = self.neighbours(&self.sim)?;
            if agree(&sim, &real, self.started.elapsed()) && sim_neigh == real_neigh {
                return Ok(());
            }
            let elapsed = self.started.elapsed();
            if let Some((a, _)) = alt.take_if(|(a, state)| {
                agree(state, &real, elapsed) && self.neighbours(a).is_ok_and(|(s, r)| s == r)
            }) {
                self.sim = a;
                self.log
                    .push("(the real kernel's race went the other way: the bridge flashed)".into());
                return Ok(());
            }
            if Instant::now() > deadline {
                let what = format!(
                    "the states differ (left: simulated, right: real)\n{}{}{}",
                    difference(&sim, &real),
                    lifetime_report(&sim, &real),
                    neighbour_report(&sim_neigh, &real_neigh)
                );
                return Err(self.fail(&what));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Both kernels' neighbour entries, normalised: `sim`'s and the real namespace's.
    fn neighbours(
        &self,
        sim: &SimKernel,
    ) -> Result<(Vec<Neighbour>, Vec<Neighbour>), Disagreement> {
        let real = self
            .rt
            .block_on(self.real.neighbours(None))
            .map_err(|e| self.fail(&format!("the real neighbour dump failed: {e}")))?;
        Ok((
            normalize::neighbours(sim.neighbours_now()),
            normalize::neighbours(real),
        ))
    }

    /// The netlink backend's dump equals what `ip -j` reads: the backend itself is
    /// held to the kernel too, or a conformance pass would prove little.
    pub fn check_backend_against_ip(&self) -> Result<(), Disagreement> {
        let mut last = String::new();
        for _ in 0..20 {
            let before = self.ns.read_state();
            let dumped = self.dump_real()?;
            let after = self.ns.read_state();
            if same_state(&before, &after) && same_state(&dumped, &before) {
                return Ok(());
            }
            last = difference(&dumped, &before);
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(self.fail(&format!(
            "the netlink dump (left) differs from ip -j (right)\n{last}"
        )))
    }

    fn fail(&self, what: &str) -> Disagreement {
        let mut s = format!("simulated and real kernel disagree: {what}\nsteps:\n");
        for (i, l) in self.log.iter().enumerate() {
            s.push_str(&format!("  {:>2}. {l}\n", i + 1));
        }
        Disagreement(s)
    }
}

fn neighbour_report(sim: &[Neighbour], real: &[Neighbour]) -> String {
    if sim == real {
        return String::new();
    }
    let show = |v: &[Neighbour]| {
        v.iter()
            .map(|n| {
                format!(
                    "    {} {:?} {:?}{}\n",
                    n,
                    n.lladdr,
                    n.state,
                    if n.router { " router" } else { "" }
                )
            })
            .collect::<String>()
    };
    format!(
        "neighbours, simulated:\n{}neighbours, real:\n{}",
        show(sim),
        show(real)
    )
}

fn outcome(r: &Result<(), KernelError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!(
            "{:?} {:?} {}",
            e.kind,
            e.errno,
            e.detail.as_deref().unwrap_or("")
        ),
    }
}
