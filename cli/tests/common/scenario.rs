//! The scenario of the real-host tests (`real_hosts`, `nm_hosts`, `networkd_hosts`): a
//! [`Watched`] host, to which each of those files adds what its manager needs.

use std::path::Path;

use env_qemu_integration::hosts::{EnvQemuRun, Watched};
use env_qemu_integration::stream::Outcome;

use super::BIN;

/// A host with everything recorded from the moment before `start`.
pub struct Scenario(pub Watched);

impl std::ops::Deref for Scenario {
    type Target = Watched;
    fn deref(&self) -> &Watched {
        &self.0
    }
}

impl std::ops::DerefMut for Scenario {
    fn deref_mut(&mut self) -> &mut Watched {
        &mut self.0
    }
}

impl Scenario {
    /// Runs the env-qemu binary with `args` inside the host.
    pub fn env_qemu(&self, args: &[&str]) -> EnvQemuRun {
        self.0.env_qemu(Path::new(BIN), args)
    }

    /// [`Watched::streamed`] of the env-qemu binary: `args` run with 1,000/s streams
    /// to the host's lease and IPv6 address.
    pub fn streamed(&self, args: &[&str]) -> (EnvQemuRun, Vec<Outcome>) {
        self.0.streamed(Path::new(BIN), args)
    }

    /// [`Watched::assert_doctor_and_dry_run`] of the env-qemu binary.
    pub fn assert_doctor_and_dry_run(&self, manages: &str, dry_run: &[&str]) {
        self.0
            .assert_doctor_and_dry_run(Path::new(BIN), manages, dry_run);
    }
}
