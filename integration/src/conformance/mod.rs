//! Conformance of the simulated kernel to the real one: the same [`Op`] sequence runs
//! on a fresh [`SimKernel`] and, step by step, on a fresh throwaway namespace; after
//! every step both outcomes (error kind and errno) and both dumped states must agree.
//!
//! - [`Twin`] is the pair of kernels. After each step it lets the real kernel's
//!   linkwatch catch up ([`linkwatch`]), so steps meet a kernel at rest, as the
//!   simulator models it; where the real kernel races anyway, the simulator models both
//!   outcomes and the real kernel's picks one.
//! - [`normalize`] says what may legitimately differ (kernel-chosen ifindexes and MACs,
//!   lifetimes counting down) and nothing else.
//! - [`ops`] builds literal operations for fixed regression cases.
//!
//! [`Op`]: env_qemu_core::Op
//! [`SimKernel`]: env_qemu_backend_fake::SimKernel

pub mod linkwatch;
pub mod normalize;
pub mod ops;
mod twin;

pub use twin::{Disagreement, Tally, Twin, World};

/// Runs `steps` (each a group of operations) on a fresh [`Twin`] for `world` and returns
/// what was compared, or the first disagreement. Also cross-checks the netlink
/// backend's final dump against `ip -j`.
pub fn run_sequence(world: World, steps: &[Vec<env_qemu_core::Op>]) -> Result<Tally, Disagreement> {
    let mut twin = Twin::new(world)?;
    for op in steps.iter().flatten() {
        twin.step(op)?;
    }
    twin.check_backend_against_ip()?;
    Ok(twin.tally())
}
