//! `sudo bash ci/bench`: env-qemu against shell baselines, in throwaway namespaces.
//!
//! Measures (never asserts) the wall time of start/add/del/stop for the env-qemu binary,
//! env-qemu's core in-process, ci/baseline/bridge.sh (one `ip` process per change) and
//! `ip -batch` of env-qemu's own plan (the floor); the datagrams lost during start and
//! stop; add/del with 500 taps on the bridge; start/stop with 60,000 foreign routes; the
//! netlink requests per command; start/stop on hosts whose NIC dhcpcd or dhclient manages,
//! beside a SLAAC-only one. Prints tables and the targets met or missed, and writes
//! everything to a JSON file.
//!
//! Environment: `ENV_QEMU_BIN` (the binary, default target/release/env-qemu),
//! `BENCH_OUT` (default target/bench/bench.json), `BENCH_RUNS` (cycles per method,
//! default 20), `BENCH_SCALE_RUNS` (default 20), `BENCH_BLACKOUT_ROUNDS` (default 6),
//! `BENCH_HOST_RUNS` (default 5).
//!
//! Nothing here touches the machine's own namespace or /dev/shm: every command runs in
//! `eqt-*` namespaces removed on drop (also when a step panics), with `--shm-size off`,
//! state in private temporary directories and tmpfs mounts that are removed too.

use std::cell::RefCell;
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
mod meter;
mod report;
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
    /// The `ip -batch` files of the timing section and the plan lines they leave out
    /// (sysctls), per command.
    pub batch: RefCell<([String; 4], [Vec<String>; 4])>,
    /// /proc/loadavg at the start of each section: other work on the machine skews
    /// every figure, which is why methods are interleaved.
    pub load: RefCell<Vec<(String, String)>>,
}

impl Ctx {
    pub fn note_load(&self, section: &str) {
        let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        self.load
            .borrow_mut()
            .push((section.to_string(), avg.trim().to_string()));
    }

    pub fn note_batch(&self, b: &drivers::Batch) {
        *self.batch.borrow_mut() = (b.lines.clone(), b.skipped.clone());
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
        runs: env_usize("BENCH_RUNS", 20),
        scale_runs: env_usize("BENCH_SCALE_RUNS", 20),
        blackout_rounds: env_usize("BENCH_BLACKOUT_ROUNDS", 6),
        batch: RefCell::default(),
        load: RefCell::default(),
    };
    let out = path_var("BENCH_OUT", root.join("target/bench/bench.json"));
    assert!(
        ctx.bin.exists(),
        "{} is missing: cargo build --release -p env-qemu-cli",
        ctx.bin.display()
    );

    ctx.note_load("timing");
    let (timing, floors) = timing::run(&ctx);
    let inproc = timing
        .iter()
        .find(|s| s.key == "inproc_disk")
        .expect("in-process series");
    ctx.note_load("requests");
    let requests = requests::run(&ctx, inproc);
    ctx.note_load("blackout");
    let blackout = blackout::run(&ctx);
    ctx.note_load("scale: ports");
    let ports = scale::ports(&ctx);
    ctx.note_load("scale: routes");
    let routes = scale::routes(&ctx);
    ctx.note_load("hosts");
    let managed = hosts::run(&ctx, env_usize("BENCH_HOST_RUNS", 5));
    ctx.note_load("end");

    let report = report::Report {
        ctx: &ctx,
        timing: &timing,
        floors: &floors,
        requests: &requests,
        blackout: &blackout,
        ports: &ports,
        routes: &routes,
        hosts: &managed,
    };
    print!("{}", report.text());
    let json = report.json();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("create the output directory");
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json).expect("serialise") + "\n",
    )
    .expect("write the JSON report");
    progress!("done; figures written to {}", out.display());
}
