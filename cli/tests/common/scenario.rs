//! The scenario of the real-host tests (`real_hosts`, `nm_hosts`, `networkd_hosts`): a
//! [`Watched`] host, to which each of those files adds what its manager needs.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use env_qemu_integration::hosts::{EnvQemuRun, PingReport, Pinger, Watched, HOST_MAC};
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

/// What [`Scenario::bridged_three_leases`] measured.
pub struct ThreeLeases<T> {
    /// Probes every 0.5 s from the LAN and the far host to the lease and the IPv6 address.
    pub probes: PingReport,
    /// DHCPACKs for the host in dnsmasq's log while bridged.
    pub acks: usize,
    /// `env-qemu status` at the end.
    pub status: EnvQemuRun,
    /// tap0 (`ip -j link show`) right after `add` and at the end.
    pub tap_before: serde_json::Value,
    /// See [`ThreeLeases::tap_before`].
    pub tap_after: serde_json::Value,
    /// Every 15 s: seconds bridged, lepont's lease, its global IPv6 addresses and what the
    /// manager says of lepont and tap0.
    pub samples: Vec<(u64, Option<Ipv4Addr>, Vec<Ipv6Addr>, T)>,
}

impl Scenario {
    /// With the host bridged: tap0 made and attached, then three lease lifetimes (and 10 s)
    /// of probes, sampling the bridge and `manager` every 15 s; all of it printed.
    pub fn bridged_three_leases<T: std::fmt::Debug>(
        &self,
        manager: impl Fn(&Scenario) -> T,
    ) -> ThreeLeases<T> {
        self.host.ns().ip("tuntap add dev tap0 mode tap");
        let add = self.env_qemu(&["add", "tap0"]);
        assert!(add.success(), "{add}");
        let tap = || self.host.ns().ip_json("link show dev tap0")[0].clone();
        let tap_before = tap();
        let bridged = Instant::now();
        let mark = self.lan.mark();
        let probes = Pinger::from_lan(&self.lan, &self.up.targets(), Duration::from_millis(500));
        let lifetimes = 3 * self.lan.spec().lease + Duration::from_secs(10);
        let mut samples = Vec::new();
        while bridged.elapsed() < lifetimes {
            std::thread::sleep(Duration::from_secs(15));
            let v4 = self.host.v4_lease("lepont").map(|l| l.ip);
            let v6s = self
                .host
                .v6_globals("lepont")
                .iter()
                .map(|a| a.ip)
                .collect();
            samples.push((bridged.elapsed().as_secs(), v4, v6s, manager(self)));
        }
        let probes = probes.stop();
        let acks = self.lan.acks_since(mark, HOST_MAC);
        eprintln!("bridged {:?}: {}", bridged.elapsed(), probes.table());
        eprintln!("DHCPACKs while bridged: {acks}");
        for (at, v4, v6s, said) in &samples {
            eprintln!("  {at:4} s: lepont {v4:?} {v6s:?}; manager on lepont, tap0: {said:?}");
        }
        ThreeLeases {
            probes,
            acks,
            status: self.env_qemu(&["status"]),
            tap_before,
            tap_after: tap(),
            samples,
        }
    }
}
