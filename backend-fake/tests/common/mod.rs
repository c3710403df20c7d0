//! The one helper module of this crate's tests: fixtures for the simulator's own tests
//! ([`fixtures`]), hosts with leases ([`leased`]), generated command sequences
//! ([`script`]) and a driver that runs them through the real core commands on the
//! simulated kernel. Worlds, the state reading and the traffic check are the public
//! [`env_qemu_backend_fake::testkit`].

#![allow(dead_code)]

pub mod fixtures;
pub mod leased;
pub mod script;

// Not every test crate uses every one of them.
#[allow(unused_imports)]
pub use env_qemu_backend_fake::testkit::{full_state, ifname as n, traffic, world, SHM};

use env_qemu_backend_fake::SimKernel;
use env_qemu_core::commands::{self, CommandError, Env, Joined, Left, Report, RunRequest};
use env_qemu_core::exec::Event;
use env_qemu_core::pending::PendingEvent;
use env_qemu_core::plan::VmTaps;
use env_qemu_core::state::{JournalEntry, State};
use env_qemu_core::store::{MemoryStore, StateStore, StoreError};
use env_qemu_core::Kernel;

use script::{holder_pid, made_name, name, request, Cmd, Target};

/// Runs one command the way the CLI does: a fresh `Env` (a new process) on the shared
/// kernel and store.
pub async fn run(
    sim: &SimKernel,
    store: &dyn StateStore,
    cmd: Cmd,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> Option<Result<(), CommandError>> {
    run_on(sim, sim, store, cmd, observer)
        .await
        .map(|r| r.map(|_| ()))
}

/// [`run`] through `kernel` (a [`SimKernel`] or a wrapper around `sim`), returning the
/// command's report: the last convergence it ran, if it ran one (a `run` joining a
/// started bridge, or leaving one that stays up without a tap to delete, runs none).
pub async fn run_on(
    kernel: &dyn Kernel,
    sim: &SimKernel,
    store: &dyn StateStore,
    cmd: Cmd,
    observer: &mut (dyn FnMut(Event<'_>) + Send),
) -> Option<Result<Option<Report>, CommandError>> {
    let mut env = Env {
        kernel,
        host: &env_qemu_core::host::NoHost,
        store,
        netns: "sim".into(),
        observer,
    };
    let some = |r: Result<Report, CommandError>| r.map(Some);
    Some(match cmd {
        Cmd::Start {
            uplink: Target::Default,
            shm_mb,
        } => {
            // As the CLI: refused if started, then the uplink chosen, then start.
            let started = commands::ensure_not_started(env.store, &env.netns);
            match started {
                Ok(()) => match commands::choose_uplink(&env).await {
                    Ok(u) => {
                        let mut req = request(Target::Nic(0), shm_mb);
                        req.uplink = u;
                        some(commands::start(&mut env, &req).await)
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Cmd::Start { uplink, shm_mb } => {
            some(commands::start(&mut env, &request(uplink, shm_mb)).await)
        }
        Cmd::Add(t) => some(commands::add(&mut env, &name(t)).await),
        Cmd::Del(t) => some(commands::del(&mut env, &name(t)).await),
        Cmd::Stop { force } => {
            let vms = if force {
                VmTaps::Detach
            } else {
                VmTaps::Refuse
            };
            some(commands::stop(&mut env, vms).await)
        }
        Cmd::MakeTap { owned, holder } => {
            let req = commands::TapRequest {
                name: None,
                owner: owned.then_some(1000),
                group: None,
                holder: holder.map(holder_pid),
            };
            commands::make_tap(&mut env, &req)
                .await
                .map(|m| Some(m.report))
        }
        Cmd::DeleteTap(i) => some(commands::delete_tap(&mut env, &made_name(i)).await),
        Cmd::Join { holder, uplink } => {
            let base = request(Target::Nic(0), None);
            let req = RunRequest {
                uplink: match uplink {
                    Target::Default => None,
                    t => Some(name(t)),
                },
                bridge: base.bridge,
                shm: None,
                foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
            };
            commands::join(&mut env, &req, holder_pid(holder))
                .await
                .map(|j| match j {
                    Joined::Started { report, .. } => Some(report),
                    Joined::Held { .. } | Joined::ByHand { .. } => None,
                })
        }
        Cmd::Leave {
            holder,
            others_gone,
        } => {
            let alive = move |_: u32| !others_gone;
            commands::leave(&mut env, holder_pid(holder), &alive)
                .await
                .map(|l| match l {
                    Left::Stopped { report, .. } => Some(report),
                    Left::Stays { .. } | Left::Gone => None,
                })
        }
        Cmd::QemuOpen(t) => {
            let _ = sim.open_tap(&name(script::Target::Tap(t)));
            return None;
        }
        Cmd::QemuClose(t) => {
            let _ = sim.close_tap(&name(script::Target::Tap(t)));
            return None;
        }
    })
}

/// The store of a process that dies with the kernel connection: once `sim` has crashed,
/// nothing more is written (saves, journal entries and removals fail), as after a SIGKILL.
pub struct DyingStore<'a> {
    pub inner: &'a MemoryStore,
    pub sim: &'a SimKernel,
}

impl DyingStore<'_> {
    fn alive(&self) -> Result<(), StoreError> {
        if self.sim.is_crashed() {
            return Err(StoreError::Encode(
                "store".into(),
                "the process died".into(),
            ));
        }
        Ok(())
    }
}

impl StateStore for DyingStore<'_> {
    fn load(&self) -> Result<Option<State>, StoreError> {
        self.inner.load()
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.save(state)
    }

    fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.append(entry)
    }

    fn clear_journal(&self) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.clear_journal()
    }

    fn remove(&self) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.remove()
    }

    fn log(&self, event: &PendingEvent) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.log(event)
    }

    fn logged(&self) -> Result<Vec<PendingEvent>, StoreError> {
        self.inner.logged()
    }
}

/// QEMU is gone at the end of a scenario: no tap has a reader.
pub fn close_all_taps(sim: &SimKernel) {
    for l in sim.net().links {
        if l.kind.is_tap() {
            let _ = sim.close_tap(&l.name);
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// At least 1,000 cases, more when PROPTEST_CASES asks for more.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .max(1000)
}
