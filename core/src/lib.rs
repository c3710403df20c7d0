//! env-qemu's kernel-agnostic core: the state model, the operations, the [`Kernel`] trait,
//! the planner, the executor with its write-ahead journal, and the state store.
//!
//! Data flows one way: a backend dumps a [`model::Snapshot`], the planner turns
//! (snapshot, request) into a [`plan::Plan`] of operations each paired with its undo, the
//! executor applies it step by step through the [`Kernel`] trait, journalling each step
//! before it runs. `stop` is the same flow fed with the saved pre-start snapshot and the
//! live state.

pub mod commands;
pub mod converge;
pub mod exec;
pub mod host;
pub mod kernel;
pub mod model;
pub mod observe;
pub mod op;
pub mod pending;
pub mod plan;
pub mod state;
pub mod store;
pub mod verify;

pub use kernel::{ErrorKind, Kernel, KernelError};
pub use op::{LinkChange, LinkSpec, Op};
