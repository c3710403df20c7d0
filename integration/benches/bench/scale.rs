//! Scale: add/del with 1 vs 500 taps already on the bridge; start/add/del/stop with
//! 60,000 routes through another device (50,000 in 100 other tables, 10,000 in main) vs
//! none. Two hosts each time, measured interleaved, env-qemu's state on a tmpfs (this
//! machine's fsyncs vary too much to see scaling through). Documentation prefixes only:
//! /32s of 203.0.113.0/24, /128s of 2001:db8:b000::/36 and 2001:db8:c000::/48, none of
//! them covering the LAN or the far host.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use env_qemu_integration::{TestNs, TestTmpfs};
use nix::mount::MsFlags;

use crate::drivers::{driver, Cmd, Driver, How, InProc};
use crate::lab::{Lab, TAP};
use crate::stats::ms;
use crate::timing::{interleaved, print_phases, Method, Series, CMDS};
use crate::Ctx;

pub const PORTS: usize = 500;
pub const MAIN_ROUTES: usize = 10_000;
pub const TABLES: usize = 100;
pub const ROUTES_PER_TABLE: usize = 500;

/// `ip -n NS -batch -` of `lines`, timed.
fn ip_batch(ns: &TestNs, lines: &str) -> Duration {
    use std::io::Write as _;
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ip");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(lines.as_bytes()).expect("write the batch");
    drop(stdin);
    assert!(
        child.wait().expect("wait for ip").success(),
        "ip -batch failed"
    );
    t.elapsed()
}

/// Two hosts, each with `methods` (label, how) measured interleaved on `cmds`; `prepare`
/// makes the second one bigger first. Prints every method's median on the small host and
/// on the big one, and the ratio; returns the series (small, big) per method.
fn compare(
    ctx: &Ctx,
    what: &str,
    methods: &[(&str, How)],
    cmds: &[Cmd<'_>],
    prepare: impl Fn(usize, &TestNs, &std::path::Path),
) -> Vec<(Series, Series)> {
    ctx.section(what);
    let labs = [Lab::new(false), Lab::new(false)];
    let tmpfs = TestTmpfs::mount_with("size=64M,mode=0700", MsFlags::empty());
    let mut all: Vec<Method<'_>> = Vec::new();
    for (i, lab) in labs.iter().enumerate() {
        let state = tmpfs.path().join(format!("host{i}"));
        std::fs::create_dir_all(&state).expect("state dir");
        prepare(i, lab.host(), &state);
        for (k, (label, how)) in methods.iter().enumerate() {
            let state = state.join(format!("m{k}"));
            all.push(Method::new(
                label,
                driver(ctx, *how, lab.host(), &state),
                lab.host(),
            ));
        }
    }
    progress!("{what}: {} interleaved rounds", ctx.scale_runs);
    interleaved(&mut all, ctx.scale_runs, cmds, what);
    let big = all.split_off(methods.len());
    let pairs: Vec<(Series, Series)> = all
        .into_iter()
        .zip(big)
        .map(|(a, b)| (a.series, b.series))
        .collect();
    for (a, b) in &pairs {
        for c in cmds {
            let (x, y) = (a.summary(*c), b.summary(*c));
            println!(
                "{:<38} {:<5} {:>20} → {:>20} ({:.2}×)",
                a.label,
                c.name(),
                x.cell(),
                y.cell(),
                y.median / x.median
            );
        }
        a.print_drift();
        b.print_drift();
    }
    pairs
}

/// add/del of the bench tap with 1 tap already on the bridge vs 500 (attached through
/// env-qemu, so its state records them, as it would for 500 VMs).
pub fn ports(ctx: &Ctx) {
    let what = format!("scale: add/del with 1 tap on the bridge vs {PORTS}");
    let methods = [
        ("env-qemu binary", How::Binary),
        ("iproute2 script", How::Script),
    ];
    compare(
        ctx,
        &what,
        &methods,
        &[Cmd::Add(TAP), Cmd::Del(TAP)],
        |i, host, state| {
            let taps = if i == 0 { 1 } else { PORTS };
            let lines = (0..taps).fold(String::new(), |mut s, n| {
                let _ = writeln!(s, "tuntap add dev p{n} mode tap");
                s
            });
            ip_batch(host, &lines);
            // Every method of this host shares the bridge; env-qemu's runs share one state.
            driver(ctx, How::Binary, host, &state.join("m0")).run(Cmd::Start);
            let mut inproc = InProc::new(ctx, host, &state.join("m0"));
            let t = Instant::now();
            for n in 0..taps {
                inproc.run(Cmd::Add(&format!("p{n}")));
            }
            println!(
                "attaching {taps} tap(s) in-process took {:.0} ms",
                ms(t.elapsed())
            );
        },
    );
}

/// 10,000 routes in main and 500 in each of 100 other tables, all through `dev`.
fn foreign_routes(dev: &str) -> String {
    let mut s = String::new();
    let v4 = |n: usize| format!("203.0.113.{}/32", n % 250 + 1);
    for n in 0..250 {
        let _ = writeln!(s, "route add {} dev {dev}", v4(n));
    }
    for n in 250..MAIN_ROUTES {
        let _ = writeln!(s, "route add 2001:db8:c000::{n:x}/128 dev {dev}");
    }
    for table in 1001..1001 + TABLES {
        for n in 0..ROUTES_PER_TABLE / 2 {
            let _ = writeln!(s, "route add {} dev {dev} table {table}", v4(n));
            let _ = writeln!(
                s,
                "route add 2001:db8:b000:{table:x}::{n:x}/128 dev {dev} table {table}"
            );
        }
    }
    s
}

/// start/add/del/stop on a host with no foreign route vs one with 60,000, through a veth
/// of its own; the in-process phases show whether env-qemu's reads or the kernel's
/// operations grow.
pub fn routes(ctx: &Ctx) {
    let routes = MAIN_ROUTES + TABLES * ROUTES_PER_TABLE;
    let what = format!("scale: no foreign route vs {routes}");
    let methods = [
        ("env-qemu binary", How::Binary),
        ("env-qemu in-process", How::InProc),
        ("iproute2 script", How::Script),
        ("ip -batch of env-qemu's plan", How::Batch),
    ];
    let pairs = compare(ctx, &what, &methods, &CMDS, |i, host, _| {
        host.ip("link add ov0 type veth peer name ov1");
        host.ip("link set ov0 up");
        host.ip("link set ov1 up");
        if i == 1 {
            let took = ip_batch(host, &foreign_routes("ov0"));
            let loaded = host.read_state().routes.len();
            println!(
                "loaded {routes} routes with ip -batch in {:.0} ms; {loaded} in the namespace",
                ms(took)
            );
        }
    });
    let (none, many) = &pairs[1];
    println!("where the in-process time goes (medians):");
    print_phases("in-process, no route", none, &[Cmd::Start, Cmd::Stop]);
    let label = format!("in-process, {routes} routes");
    print_phases(&label, many, &[Cmd::Start, Cmd::Stop]);
}
