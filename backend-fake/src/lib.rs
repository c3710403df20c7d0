//! A simulated Linux kernel for env-qemu's tests: links, addresses, routes, IPv6
//! sysctls and tmpfs mounts, with the side effects the real kernel has (measured in
//! network namespaces, pinned by the conformance suite) rather than canned replies, plus
//! fault injection.
//!
//! [`SimKernel`] implements [`env_qemu_core::Kernel`]; its inherent methods build worlds
//! (NICs, cables, QEMU opening taps, time passing, the kernel's SLAAC temporary
//! addresses, how a kernel race ends) and inject faults.
//!
//! The real kernel is the authority: `integration/tests/conformance.rs` runs generated
//! operation sequences on both and compares every step; the minimal sequences of past
//! disagreements are in `integration/tests/conformance_regressions.rs`.
//!
//! [`testkit`] makes it a tool for checking your own network scripts: generated host
//! worlds, a normalised full-state reading and its differences, a parser from `ip`
//! command lines to operations, and the LAN-reachability check. See the crate's
//! `examples/` (`verify_teardown`, `inject_failure`, `side_effects`).

#![warn(missing_docs)]

mod addresses;
mod bridge;
mod clock;
mod dump;
mod error;
mod faults;
mod fib4;
pub mod host;
mod ipv6;
mod links;
mod neigh;
mod networkd;
mod nexthop;
mod nm;
mod ops;
mod routes;
mod sim;
mod state;
pub mod surprise;
mod sysctls;
pub mod testkit;
mod tmpfs;
mod world;

pub use sim::SimKernel;
pub use state::PortState;
