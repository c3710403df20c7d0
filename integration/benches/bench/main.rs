//! `sudo bash ci/bench`: env-qemu against shell baselines, in throwaway namespaces.
//!
//! Measures, never asserts:
//! - the wall time of start/add/del/stop for the env-qemu binary (state on disk and on a
//!   tmpfs), env-qemu's core in-process, ci/baseline/bridge.sh (one `ip` process per
//!   change) and `ip -batch` of env-qemu's own plan (the floor), interleaved, every
//!   baseline measured in the same run; where the in-process time goes, the verification
//!   by dump included ([`timing`]);
//! - the netlink messages, processes and fsyncs of each method, counted by strace
//!   ([`requests`]);
//! - the datagrams lost during start and stop, 1,000/s from the LAN and a far host
//!   ([`blackout`]);
//! - add/del with 500 taps on the bridge, start/stop with 60,000 foreign routes
//!   ([`scale`]);
//! - start/stop on hosts whose NIC a DHCP client owns (dhcpcd, dhclient) beside one that
//!   has none, with the datagrams lost ([`hosts`]).
//!
//! Prints its figures (ci/bench keeps them in target/bench/bench.txt). Environment:
//! `ENV_QEMU_BIN` (default target/release/env-qemu), `BENCH_RUNS` (cycles per method,
//! 15), `BENCH_SCALE_RUNS` (8), `BENCH_BLACKOUT_ROUNDS` (4), `BENCH_HOST_RUNS` (3).
//!
//! Nothing here touches the machine's own namespace or /dev/shm: every command runs in
//! `eqt-*` namespaces removed on drop (also when a step panics), with `--shm-size off`,
//! state in private temporary directories and tmpfs mounts that are removed too.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

static T0: OnceLock<Instant> = OnceLock::new();

/// Seconds since the bench started.
pub fn elapsed() -> f64 {
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A progress line on stderr, with the time since the start.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:>6.1}s] {}", $crate::elapsed(), format_args!($($arg)*))
    };
}

mod blackout;
mod drivers;
mod hosts;
mod lab;
mod requests;
mod scale;
mod stats;
mod timing;

pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub bin: PathBuf,
    pub script: PathBuf,
    pub runs: usize,
    pub scale_runs: usize,
    pub blackout_rounds: usize,
    pub host_runs: usize,
}

impl Ctx {
    /// Prints a section heading with the load average (other work on the machine skews
    /// every figure, which is why methods are interleaved).
    pub fn section(&self, title: &str) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        println!("\n-- {title} (load average {load})");
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; anything else (a `cargo test --benches`) is not a
    // request to run namespaces for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("bench: run it with `sudo bash ci/bench` (cargo bench); nothing done");
        return;
    }
    if let Some(reason) = env_qemu_integration::skip::tun_unavailable() {
        eprintln!("bench: cannot run: {reason}");
        std::process::exit(1);
    }
    elapsed();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let path_var =
        |name: &str, default: PathBuf| std::env::var_os(name).map(PathBuf::from).unwrap_or(default);
    let ctx = Ctx {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        bin: path_var("ENV_QEMU_BIN", root.join("target/release/env-qemu")),
        script: root.join("ci/baseline/bridge.sh"),
        runs: env_usize("BENCH_RUNS", 15),
        scale_runs: env_usize("BENCH_SCALE_RUNS", 8),
        blackout_rounds: env_usize("BENCH_BLACKOUT_ROUNDS", 4),
        host_runs: env_usize("BENCH_HOST_RUNS", 3),
    };
    assert!(
        ctx.bin.exists(),
        "{} is missing: cargo build --release -p env-qemu-cli",
        ctx.bin.display()
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "== env-qemu benchmark: kernel {}, {cpus} CPU(s); ms, median (p10–p90)",
        kernel.trim()
    );

    timing::run(&ctx);
    requests::run(&ctx);
    blackout::run(&ctx);
    scale::ports(&ctx);
    scale::routes(&ctx);
    hosts::run(&ctx);

    progress!("done");
}
