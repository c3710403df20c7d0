//! The simulated kernel held to the real one: generated sequences of primitive
//! operations run on a fresh `SimKernel` and, step by step, on a fresh throwaway
//! namespace; after every step both outcomes (same error kind and errno) and both
//! normalised dumps must agree. See `env_qemu_integration::conformance`.
//!
//! `ENV_QEMU_CONFORMANCE_CASES` raises the number of sequences (default 300).
//! A disagreement is shrunk to a minimal sequence and printed as `ip` commands and as
//! `Op` values: decide which side is right on the real kernel, fix the simulator, and
//! add the sequence to `conformance_regressions.rs`.

#[path = "conformance/gen.rs"]
mod gen;
#[path = "conformance/live.rs"]
mod live;
#[path = "conformance/values.rs"]
mod values;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use env_qemu_core::model::{rtax, AddrFlag, NetState, RouteMetrics, RoutePref};
use env_qemu_integration::conformance::ops::*;
use env_qemu_integration::conformance::{run_sequence, Twin, World};
use env_qemu_integration::require_tun;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

const CASES_ENV: &str = "ENV_QEMU_CONFORMANCE_CASES";
const DEFAULT_CASES: u32 = 300;
/// Cases run on this many threads, each with its own runner and namespaces.
const THREADS: u32 = 2;

fn cases() -> u32 {
    match std::env::var(CASES_ENV) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{CASES_ENV}={v:?} is not a number")),
        Err(_) => DEFAULT_CASES,
    }
}

#[test]
fn generated_sequences_agree() {
    require_tun!();
    let total = cases();
    let (sequences, steps, refused) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let share = total / THREADS + u32::from(t < total % THREADS);
                let counts = [&sequences, &steps, &refused];
                s.spawn(move || run_share(share, counts))
            })
            .collect();
        let failures: Vec<String> = workers
            .into_iter()
            .filter_map(|w| w.join().expect("conformance worker").err())
            .collect();
        if !failures.is_empty() {
            panic!("{}", failures.join("\n\n"));
        }
    });
    // Straight to the stderr handle (not captured by libtest), so CI's log shows the count.
    let _ = writeln!(
        std::io::stderr().lock(),
        "conformance: {} sequences, {} steps compared (simulated vs real kernel; {} refused \
         by both) in {:.1?}",
        sequences.into_inner(),
        steps.into_inner(),
        refused.into_inner(),
        started.elapsed()
    );
}

/// Runs `cases` sequences; counts sequences, steps and refused steps into `counts`.
fn run_share(cases: u32, counts: [&AtomicUsize; 3]) -> Result<(), String> {
    if cases == 0 {
        return Ok(());
    }
    let config = Config {
        cases,
        // No regression files in the source tree: fixed cases live in
        // conformance_regressions.rs, as plain tests.
        failure_persistence: None,
        // A disagreeing candidate costs a real-kernel settle timeout: bound shrinking,
        // `minimize` finishes the job.
        max_shrink_iters: 150,
        max_shrink_time: 90_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&gen::case(), |case| {
        let tally = run_sequence(case.world, &case.steps).map_err(|d| TestCaseError::fail(d.0))?;
        counts[0].fetch_add(1, Ordering::Relaxed);
        counts[1].fetch_add(tally.compared(), Ordering::Relaxed);
        counts[2].fetch_add(tally.refused, Ordering::Relaxed);
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, case)) => {
            let (steps, why) = minimize(case.world, case.steps, why.message().to_string());
            Err(format!(
                "minimal disagreeing case ({:?}):\n{}\n{why}\nas ops: {:?}",
                case.world,
                gen::show(&steps),
                steps
            ))
        }
        Err(TestError::Abort(why)) => Err(format!("conformance run aborted: {why}")),
    }
}

/// Removes whole steps while the case still disagrees (proptest keeps the minimum
/// lengths of its collections). A creation step keeps its explicit MACs.
fn minimize(world: World, mut steps: Vec<gen::Step>, mut why: String) -> (Vec<gen::Step>, String) {
    let mut changed = true;
    while changed {
        changed = false;
        for i in (0..steps.len()).rev() {
            let mut fewer = steps.clone();
            fewer.remove(i);
            if let Err(d) = run_sequence(world, &fewer) {
                (steps, why, changed) = (fewer, d.0, true);
            }
        }
    }
    (steps, why)
}

/// IPv6 duplicate address detection with accept_dad on (the generated cases turn it
/// off): addresses start tentative, stay so without carrier, and complete once the
/// device has carrier — about a second later on the real kernel, at `advance_time` on
/// the simulated one.
#[test]
fn dad_completes_only_with_carrier() {
    require_tun!();
    let mut t = Twin::new(World {
        promote_secondaries: false,
        dad: true,
    })
    .unwrap();
    let steps = [
        veth("v0", "v1"),
        set_mac("v0", "02:00:00:00:00:10"),
        set_mac("v1", "02:00:00:00:00:20"),
        veth("v2", "v3"),
        set_mac("v2", "02:00:00:00:00:30"),
        set_mac("v3", "02:00:00:00:00:40"),
        // Added down: tentative, no prefix route yet.
        addr_add(addr("v0", "2001:db8::1/64")),
        addr_add(addr("v0", "2001:db8::3/64").flag(AddrFlag::Nodad)),
        up("v0"),
        // No carrier on v2 (peer down): tentative for good, no link-local either.
        addr_add(addr("v2", "2001:db8:1::1/64")),
        up("v2"),
        // Carrier on v0/v1: DAD runs on both, link-locals included.
        up("v1"),
        addr_add(addr("v1", "2001:db8::2/64")),
    ];
    for op in &steps {
        t.step(op).unwrap();
    }
    let tentative = |s: &NetState| {
        s.addresses
            .iter()
            .filter(|a| a.has(AddrFlag::Tentative))
            .count()
    };
    assert!(tentative(&t.sim().net()) >= 4, "{:#?}", t.sim().net());
    // Done when only v2's address is still tentative.
    t.pass_time(|s| tentative(s) == 1, Duration::from_secs(8))
        .unwrap();
    // Carrier comes to v2 later: its DAD runs then.
    t.step(&up("v3")).unwrap();
    t.pass_time(|s| tentative(s) == 0, Duration::from_secs(8))
        .unwrap();
    t.check_backend_against_ip().unwrap();
}

/// Lifetimes and expiries running out, on the real kernel's clock and on the simulated
/// one (`advance_clock`): preferred lifetimes end in `deprecated`; a valid lifetime ends
/// in the address's deletion with all its side effects (an IPv4 primary takes its
/// permanent secondary along, promote_secondaries being 0, and the main-table routes
/// using them as source; the last IPv4 address of a device takes every IPv4 route
/// through it); an IPv6 route's expiry ends in its deletion (the real kernel's garbage
/// collection, every second here); the prefix route of a dynamic IPv6 address expires
/// with it unless a permanent address of the prefix keeps it.
#[test]
fn lifetimes_and_expiries_run_out_alike() {
    require_tun!();
    let mut t = Twin::new(World::default()).unwrap();
    t.ns().set_sysctl("net.ipv6.route.gc_interval", "1");
    let mut m = RouteMetrics::default();
    m.set(rtax::HOPLIMIT, 64);
    let steps = [
        veth("v0", "v1"),
        set_mac("v0", "02:00:00:00:00:10"),
        set_mac("v1", "02:00:00:00:00:20"),
        up("v0"),
        up("v1"),
        addr_add(addr("v0", "192.0.2.1/24").lifetimes(4, 2)),
        addr_add(addr("v0", "192.0.2.2/24")),
        addr_add(addr("v0", "203.0.113.1/24")),
        route_add(route("default").via("192.0.2.254").dev("v0")),
        route_add(route("198.51.100.0/24").dev("v0").with_src("192.0.2.2")),
        addr_add(addr("v1", "198.51.100.1/24").lifetimes(4, 4)),
        route_add(route("203.0.113.128/25").via("198.51.100.254").dev("v1")),
        addr_add(
            addr("v0", "2001:db8::1/64")
                .flag(AddrFlag::Nodad)
                .lifetimes(4, 2),
        ),
        addr_add(
            addr("v0", "2001:db8:1::1/64")
                .flag(AddrFlag::Nodad)
                .lifetimes(4, 2),
        ),
        addr_add(addr("v0", "2001:db8:1::2/64").flag(AddrFlag::Nodad)),
        route_add(
            route("2001:db8:f::/64")
                .via("2001:db8::fe")
                .dev("v0")
                .pref(RoutePref::High)
                .expires(3)
                .metrics(m),
        ),
    ];
    for op in &steps {
        t.step(op).unwrap();
    }
    // Deprecated, nothing gone yet.
    t.pass_clock(Duration::from_millis(2500)).unwrap();
    assert!(t
        .sim()
        .net()
        .addresses
        .iter()
        .any(|a| a.has(AddrFlag::Deprecated)));
    // Everything finite has run out.
    t.pass_clock(Duration::from_millis(3000)).unwrap();
    let net = t.sim().net();
    assert!(
        net.addresses.iter().all(|a| a.valid_lft.is_none()),
        "{net:#?}"
    );
    assert!(!net.routes.iter().any(|r| r.expires.is_some()), "{net:#?}");
    t.check_backend_against_ip().unwrap();
}
