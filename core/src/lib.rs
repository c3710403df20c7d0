//! env-qemu's kernel-agnostic core: the state model, the operations, the [`Kernel`] trait
//! and the [`host::Host`] beside it, the planner, the convergence loop with its journal,
//! the verification by dump, and the state store.
//!
//! Data flows one way: a backend dumps a [`model::Snapshot`]; the planner turns (snapshot,
//! goal) into a [`plan::Plan`] of operations; [`converge`] applies it step by step,
//! journalling each step before it runs, dumps what the command touches, compares it with
//! the goal ([`verify`]) and plans again from that dump until the goal holds or a bounded
//! number of rounds has run. The way back (a `start` that cannot finish, `stop`) is the
//! same loop toward the state the command found, computed from the live state.
//!
//! Enums that report something to the caller (the errors, [`ErrorKind`], [`exec::Event`],
//! [`pending::Happened`], [`pending::Verdict`], [`pending::RevertCause`]) are
//! `#[non_exhaustive]`: a match on them needs a wildcard arm, and a later version may add
//! a variant without breaking it. The data enums a backend or a planner must handle case
//! by case ([`Op`], [`model::Family`], [`LinkChange`], [`host::HostOp`], the model's kinds and
//! flags) are not: there an exhaustive match is the point, so that a new variant fails to
//! compile wherever it is not handled yet.

#![warn(missing_docs)]

pub mod commands;
pub mod converge;
pub mod exec;
pub mod host;
pub mod kernel;
pub mod model;
pub mod networkd;
pub mod nm;
pub mod observe;
pub mod op;
pub mod pending;
pub mod plan;
pub mod state;
pub mod store;
pub mod verify;

pub use kernel::{ErrorKind, Kernel, KernelError};
pub use op::{LinkChange, LinkSpec, Op};
