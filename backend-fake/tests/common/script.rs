//! Generated command sequences and the model of which of them must succeed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use env_qemu_core::commands::CommandError;
use env_qemu_core::model::{Family, IfName, NetState, Prefix, TABLE_MAIN};
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
    /// No name: the interface carrying the default route (start and run only).
    Default,
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
    /// `tap create` (no holder) or a run's tap (for holder H), owned by a user or not.
    MakeTap {
        owned: bool,
        holder: Option<u8>,
    },
    /// `tap delete eqtapN`.
    DeleteTap(usize),
    /// A `run` (holder H) joins: starts on `uplink` if nothing is started, registers.
    Join {
        holder: u8,
        uplink: Target,
    },
    /// A `run` (holder H) leaves; the other holders alive, or all gone (crashed).
    Leave {
        holder: u8,
        others_gone: bool,
    },
}

/// The PID standing for holder `h`.
pub fn holder_pid(h: u8) -> u32 {
    1000 + u32::from(h)
}

/// The name `make_tap` gives the N-th free tap.
pub fn made_name(i: usize) -> IfName {
    n(&format!("eqtap{i}"))
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => (0usize..5).prop_map(Target::Tap),
        2 => (0usize..5).prop_map(Target::Nic),
        1 => Just(Target::Loopback),
        1 => Just(Target::Bridge),
    ]
}

fn uplink() -> impl Strategy<Value = Target> {
    prop_oneof![8 => Just(Target::Nic(0)), 2 => target(), 2 => Just(Target::Default)]
}

pub fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => (
            uplink(),
            proptest::option::of(prop_oneof![Just(128u64), Just(512), Just(4096)])
        )
            .prop_map(|(uplink, shm_mb)| Cmd::Start { uplink, shm_mb }),
        2 => (any::<bool>(), proptest::option::of(0u8..3))
            .prop_map(|(owned, holder)| Cmd::MakeTap { owned, holder }),
        2 => (0usize..2).prop_map(Cmd::DeleteTap),
        2 => (0u8..3, uplink()).prop_map(|(holder, uplink)| Cmd::Join { holder, uplink }),
        2 => (0u8..3, prop_oneof![4 => Just(false), 1 => Just(true)])
            .prop_map(|(holder, others_gone)| Cmd::Leave { holder, others_gone }),
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
        Target::Default => panic!("the default uplink has no name until it is chosen"),
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
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
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
        PlanError::NoDefaultRoute => "no-default",
        PlanError::TiedDefaultRoutes(_) => "tied",
        _ => "other",
    }
}

/// What env-qemu must choose as the uplink in `net` (an independent reading of the
/// default routes: IPv4 first, lowest metric, a tie refused): NIC `ethN`'s N, or why not.
pub fn chosen_uplink(net: &NetState) -> Result<usize, &'static str> {
    for fam in [Family::Inet, Family::Inet6] {
        let defaults: Vec<_> = net
            .routes
            .iter()
            .filter(|r| r.table == TABLE_MAIN && r.dst == Prefix::default_for(fam))
            .filter_map(|r| r.dev.as_ref().map(|d| (r.metric, d.as_str())))
            .collect();
        let Some(best) = defaults.iter().map(|d| d.0).min() else {
            continue;
        };
        let mut devs: Vec<&str> = defaults
            .iter()
            .filter(|d| d.0 == best)
            .map(|d| d.1)
            .collect();
        devs.sort_unstable();
        devs.dedup();
        return match devs.as_slice() {
            [one] => Ok(one
                .strip_prefix("eth")
                .and_then(|i| i.parse().ok())
                .expect("defaults are through ethN")),
            _ => Err("tied"),
        };
    }
    Err("no-default")
}

/// env-qemu's state as the commands' specification has it.
#[derive(Debug, Clone)]
pub struct Model {
    pub uplink: Option<usize>,
    pub attached: BTreeSet<usize>,
    /// Made taps (`eqtapN`), with the holder each was made for.
    pub made: BTreeMap<usize, Option<u8>>,
    /// The runs holding the bridge; empty when it was started by hand.
    pub holders: BTreeSet<u8>,
    /// What choosing the uplink gives on this world (the network is the initial one
    /// whenever nothing is started).
    pub chosen: Result<usize, &'static str>,
}

impl Model {
    /// Nothing started on a world whose network is `initial`.
    pub fn new(initial: &NetState) -> Model {
        Model {
            uplink: None,
            attached: BTreeSet::new(),
            made: BTreeMap::new(),
            holders: BTreeSet::new(),
            chosen: chosen_uplink(initial),
        }
    }

    fn reset(&mut self) {
        *self = Model {
            chosen: self.chosen,
            ..Model::new(&NetState::default())
        };
    }

    pub fn started(&self) -> bool {
        self.uplink.is_some()
    }

    /// Whether taps are on the bridge: attached ones, or made ones (made attached).
    fn vm_taps(&self) -> bool {
        !self.attached.is_empty() || !self.made.is_empty()
    }

    /// `target`, with the default uplink resolved.
    fn resolve(&self, t: Target) -> Result<Target, &'static str> {
        match t {
            Target::Default => self.chosen.map(Target::Nic),
            t => Ok(t),
        }
    }

    /// The expected outcome of `cmd` (None for QEMU events).
    pub fn expect(&self, w: &WorldSpec, cmd: Cmd) -> Option<Expect> {
        let nics = w.nics.len();
        let exists = |t: Target| match t {
            Target::Nic(i) => i < nics,
            Target::Tap(i) => i < w.taps,
            Target::Loopback => true,
            Target::Bridge => self.started(),
            Target::Default => false,
        };
        let start = |uplink: Target| match self.resolve(uplink) {
            Err(why) => Expect::Refused(why),
            Ok(t) if !exists(t) => Expect::Refused("missing"),
            Ok(Target::Nic(_)) => Expect::Ok,
            Ok(Target::Loopback) => Expect::Refused("loopback"),
            Ok(_) => Expect::Refused("unsupported"),
        };
        Some(match cmd {
            Cmd::Start { .. } if self.started() => Expect::AlreadyStarted,
            Cmd::Start { uplink, .. } => start(uplink),
            Cmd::Join { .. } if self.started() => Expect::Ok,
            Cmd::Join { uplink, .. } => start(uplink),
            Cmd::Leave { .. } => Expect::Ok,
            Cmd::MakeTap { .. } if !self.started() => Expect::NotStarted,
            Cmd::MakeTap { .. } => Expect::Ok,
            Cmd::DeleteTap(i) if self.made.contains_key(&i) => Expect::Ok,
            Cmd::DeleteTap(_) => Expect::Refused("missing"),
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
                Target::Default => unreachable!("not generated for add/del"),
            },
            Cmd::Stop { force: false } if self.vm_taps() => Expect::Refused("taps-attached"),
            Cmd::Stop { .. } => Expect::Ok,
            Cmd::QemuOpen(_) | Cmd::QemuClose(_) => return None,
        })
    }

    /// The model after `cmd` succeeded.
    pub fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start { uplink, .. } => {
                if let Ok(Target::Nic(i)) = self.resolve(uplink) {
                    self.uplink = Some(i);
                }
            }
            Cmd::Join { holder, uplink } => {
                if !self.started() {
                    self.apply(Cmd::Start {
                        uplink,
                        shm_mb: None,
                    });
                    self.holders.insert(holder);
                } else if !self.holders.is_empty() {
                    self.holders.insert(holder);
                }
            }
            Cmd::Leave {
                holder,
                others_gone,
            } => {
                if !self.started() {
                    return;
                }
                let held = !self.holders.is_empty();
                self.holders.remove(&holder);
                if others_gone {
                    self.holders.clear();
                }
                self.made
                    .retain(|_, h| !h.is_some_and(|h| h == holder || others_gone));
                if held
                    && self.holders.is_empty()
                    && self.attached.is_empty()
                    && self.made.is_empty()
                {
                    self.reset();
                }
            }
            Cmd::MakeTap { holder, .. } => {
                let free = (0..)
                    .find(|i| !self.made.contains_key(i))
                    .expect("a free name");
                self.made.insert(free, holder);
            }
            Cmd::DeleteTap(i) => {
                self.made.remove(&i);
            }
            Cmd::Add(Target::Tap(i)) => {
                self.attached.insert(i);
            }
            Cmd::Del(Target::Tap(i)) => {
                self.attached.remove(&i);
            }
            Cmd::Stop { .. } => self.reset(),
            _ => {}
        }
    }
}
