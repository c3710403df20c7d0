//! Generated command sequences and the model of which of them must succeed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use env_qemu_core::commands::CommandError;
use env_qemu_core::model::IfName;
use env_qemu_core::plan::{PlanError, ShmRequest, StartRequest};
use proptest::prelude::*;

use super::world::{n, WorldSpec, SHM};

/// What a command names: the targets include invalid ones on purpose.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Nic(usize),
    Tap(usize),
    Loopback,
    Bridge,
}

#[derive(Debug, Clone, Copy)]
pub enum Cmd {
    Start {
        uplink: Target,
        shm_mb: Option<u64>,
    },
    Add(Target),
    Del(Target),
    Stop {
        force: bool,
    },
    /// QEMU opens or closes a tap (carrier): not an env-qemu command.
    QemuOpen(usize),
    QemuClose(usize),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => (0usize..5).prop_map(Target::Tap),
        2 => (0usize..5).prop_map(Target::Nic),
        1 => Just(Target::Loopback),
        1 => Just(Target::Bridge),
    ]
}

pub fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => (
            prop_oneof![8 => Just(Target::Nic(0)), 2 => target()],
            proptest::option::of(prop_oneof![Just(128u64), Just(512), Just(4096)])
        )
            .prop_map(|(uplink, shm_mb)| Cmd::Start { uplink, shm_mb }),
        4 => target().prop_map(Cmd::Add),
        2 => target().prop_map(Cmd::Del),
        2 => any::<bool>().prop_map(|force| Cmd::Stop { force }),
        1 => (0usize..4).prop_map(Cmd::QemuOpen),
        1 => (0usize..4).prop_map(Cmd::QemuClose),
    ]
}

pub fn name(t: Target) -> IfName {
    match t {
        Target::Nic(i) => n(&format!("eth{i}")),
        Target::Tap(i) => n(&format!("tap{i}")),
        Target::Loopback => n("lo"),
        Target::Bridge => n("lepont"),
    }
}

pub fn request(uplink: Target, shm_mb: Option<u64>) -> StartRequest {
    StartRequest {
        uplink: name(uplink),
        bridge: n("lepont"),
        shm: shm_mb.map(|mb| ShmRequest {
            path: PathBuf::from(SHM),
            size_bytes: mb << 20,
        }),
        force: false,
    }
}

/// The outcome a command must have, from an independent model of env-qemu's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Ok,
    NotStarted,
    AlreadyStarted,
    Refused(&'static str),
}

impl Expect {
    pub fn matches(&self, got: &Result<(), CommandError>) -> bool {
        match (self, got) {
            (Expect::Ok, Ok(())) => true,
            (Expect::NotStarted, Err(CommandError::NotStarted)) => true,
            (Expect::AlreadyStarted, Err(CommandError::AlreadyStarted { .. })) => true,
            (Expect::Refused(kind), Err(CommandError::Plan(p))) => plan_kind(p) == *kind,
            _ => false,
        }
    }
}

fn plan_kind(p: &PlanError) -> &'static str {
    match p {
        PlanError::NoSuchInterface(_) => "missing",
        PlanError::UplinkIsLoopback(_) => "loopback",
        PlanError::UplinkUnsupported { .. } => "unsupported",
        PlanError::NotATap { .. } => "not-a-tap",
        PlanError::TapIsBridge(_) => "is-bridge",
        PlanError::TapIsUplink(_) => "is-uplink",
        PlanError::TapNotAttached { .. } => "not-attached",
        PlanError::TapsAttached { .. } => "taps-attached",
        _ => "other",
    }
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub uplink: Option<usize>,
    pub attached: BTreeSet<usize>,
}

impl Model {
    pub fn started(&self) -> bool {
        self.uplink.is_some()
    }

    /// The expected outcome of `cmd` (None for QEMU events).
    pub fn expect(&self, w: &WorldSpec, cmd: Cmd) -> Option<Expect> {
        let nics = w.nics.len();
        let exists = |t: Target| match t {
            Target::Nic(i) => i < nics,
            Target::Tap(i) => i < w.taps,
            Target::Loopback => true,
            Target::Bridge => self.started(),
        };
        Some(match cmd {
            Cmd::Start { .. } if self.started() => Expect::AlreadyStarted,
            Cmd::Start { uplink, .. } => match uplink {
                t if !exists(t) => Expect::Refused("missing"),
                Target::Nic(_) => Expect::Ok,
                Target::Loopback => Expect::Refused("loopback"),
                _ => Expect::Refused("unsupported"),
            },
            Cmd::Add(_) | Cmd::Del(_) | Cmd::Stop { .. } if !self.started() => Expect::NotStarted,
            Cmd::Add(t) | Cmd::Del(t) => match t {
                t if !exists(t) => Expect::Refused("missing"),
                Target::Bridge => Expect::Refused("is-bridge"),
                Target::Nic(i) if Some(i) == self.uplink => Expect::Refused("is-uplink"),
                Target::Nic(_) | Target::Loopback => Expect::Refused("not-a-tap"),
                Target::Tap(i) if matches!(cmd, Cmd::Del(_)) && !self.attached.contains(&i) => {
                    Expect::Refused("not-attached")
                }
                Target::Tap(_) => Expect::Ok,
            },
            Cmd::Stop { force } if !force && !self.attached.is_empty() => {
                Expect::Refused("taps-attached")
            }
            Cmd::Stop { .. } => Expect::Ok,
            Cmd::QemuOpen(_) | Cmd::QemuClose(_) => return None,
        })
    }

    /// The model after `cmd` succeeded.
    pub fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start {
                uplink: Target::Nic(i),
                ..
            } => self.uplink = Some(i),
            Cmd::Add(Target::Tap(i)) => {
                self.attached.insert(i);
            }
            Cmd::Del(Target::Tap(i)) => {
                self.attached.remove(&i);
            }
            Cmd::Stop { .. } => *self = Model::default(),
            _ => {}
        }
    }
}
