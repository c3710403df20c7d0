//! Wall time of start, add, del and stop, for every method, on a fresh host each.

use std::time::Duration;

use env_qemu_core::plan::Plan;
use env_qemu_integration::session::TestDir;
use env_qemu_integration::TestTmpfs;
use nix::mount::MsFlags;
use serde_json::{json, Value};

use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::session::settled_state;

use crate::drivers::{prepare_batch, Binary, Cmd, Driver, InProc, Script, Store};
use crate::lab::{Lab, TAP};
use crate::meter::Breakdown;
use crate::stats::Summary;
use crate::Ctx;

pub const CMDS: [Cmd<'static>; 4] = [Cmd::Start, Cmd::Add(TAP), Cmd::Del(TAP), Cmd::Stop];

/// Every run of one method.
pub struct Series {
    pub key: &'static str,
    pub label: &'static str,
    /// Per command (start, add, del, stop), one duration per run.
    pub samples: [Vec<Duration>; 4],
    /// In-process methods: what each run spent its time on.
    pub breakdowns: [Vec<Breakdown>; 4],
    /// In-process methods: the plan of each command (last run).
    pub plans: [Plan; 4],
    /// What the first cycle left different from the state before it.
    pub drift: String,
}

impl Series {
    pub fn new(key: &'static str, label: &'static str) -> Series {
        Series {
            key,
            label,
            samples: Default::default(),
            breakdowns: Default::default(),
            plans: Default::default(),
            drift: String::new(),
        }
    }

    pub fn summary(&self, cmd: usize) -> Summary {
        Summary::of(&self.samples[cmd])
    }

    pub fn median(&self, cmd: usize) -> f64 {
        self.summary(cmd).median
    }

    /// The mean breakdown of one command over its runs.
    pub fn mean_breakdown(&self, cmd: usize) -> Option<Breakdown> {
        Breakdown::mean(&self.breakdowns[cmd])
    }

    /// Runs `cmd` once through `driver` and records it.
    pub fn record(&mut self, driver: &mut dyn Driver, cmd: Cmd<'_>) {
        let i = crate::drivers::index(cmd);
        self.samples[i].push(driver.run(cmd));
        if let Some(b) = driver.breakdown() {
            self.breakdowns[i].push(b.clone());
        }
        if let Some(p) = driver.plan() {
            self.plans[i] = p.clone();
        }
    }

    pub fn json(&self) -> Value {
        let mut commands = serde_json::Map::new();
        for (i, c) in CMDS.iter().enumerate() {
            if self.samples[i].is_empty() {
                continue;
            }
            let mut v = self.summary(i).json();
            if let Some(b) = self.mean_breakdown(i) {
                v["mean_breakdown"] = b.json();
            }
            commands.insert(c.name().to_string(), v);
        }
        json!({
            "label": self.label,
            "commands": commands,
            "restored_exactly": self.drift.is_empty(),
            "drift": self.drift,
        })
    }
}

/// One method on its host, for interleaved measurements.
pub struct Method<'a> {
    pub driver: Box<dyn Driver + 'a>,
    pub series: Series,
}

/// One unmeasured start/add/del/stop cycle per method, checking that it restores the
/// host (`settled` reads the host before and after), then `runs` rounds in which every
/// method does `cmds` once, the first method rotating: methods interleaved in time share
/// whatever else the machine is doing.
pub fn interleaved(
    methods: &mut [Method<'_>],
    labs: &[&Lab],
    runs: usize,
    cmds: &[Cmd<'_>],
    what: &str,
) {
    for (m, lab) in methods.iter_mut().zip(labs) {
        let before = settled_state(lab.host());
        for c in CMDS {
            m.driver.run(c);
        }
        let after = settled_state(lab.host());
        if !same_state(&before, &after) {
            m.series.drift = difference(&before, &after);
        }
    }
    let n = methods.len();
    for run in 0..runs {
        for k in 0..n {
            let m = &mut methods[(run + k) % n];
            for c in cmds {
                m.series.record(m.driver.as_mut(), *c);
            }
        }
        if (run + 1) % 5 == 0 || run + 1 == runs {
            progress!("  {what}: {}/{runs} rounds", run + 1);
        }
    }
}

/// Costs no method can go below: starting a process, deleting a device.
pub struct Floors {
    /// `env-qemu --version`: exec, dynamic loading, argument parsing.
    pub bin_exec: Summary,
    /// `ip -V`.
    pub ip_exec: Summary,
    /// `bash -c true`.
    pub bash_exec: Summary,
    /// `ip link del` of a bare bridge (no port, no address): the kernel's unregistration.
    pub link_del: Summary,
}

impl Floors {
    pub fn json(&self) -> Value {
        json!({
            "env_qemu_version": self.bin_exec.json(),
            "ip_V": self.ip_exec.json(),
            "bash_c_true": self.bash_exec.json(),
            "ip_link_del_bare_bridge": self.link_del.json(),
        })
    }
}

fn time_process(program: &std::path::Path, args: &[&str], runs: usize) -> Summary {
    let samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            let out = std::process::Command::new(program)
                .args(args)
                .output()
                .expect("spawn");
            let took = t.elapsed();
            assert!(out.status.success(), "{} {args:?}", program.display());
            took
        })
        .collect();
    Summary::of(&samples)
}

pub fn floors(ctx: &Ctx, ns: &env_qemu_integration::TestNs) -> Floors {
    let dels: Vec<Duration> = (0..10)
        .map(|_| {
            ns.ip("link add bx0 type bridge");
            let t = std::time::Instant::now();
            ns.ip("link del bx0");
            t.elapsed()
        })
        .collect();
    Floors {
        bin_exec: time_process(&ctx.bin, &["--version"], ctx.runs),
        ip_exec: time_process("ip".as_ref(), &["-V"], ctx.runs),
        bash_exec: time_process("bash".as_ref(), &["-c", "true"], ctx.runs),
        link_del: Summary::of(&dels),
    }
}

pub fn run(ctx: &Ctx) -> (Vec<Series>, Floors) {
    let runs = ctx.runs;
    let specs: [(&str, &str); 7] = [
        ("binary_disk", "env-qemu binary, state on disk"),
        ("binary_tmpfs", "env-qemu binary, state on tmpfs"),
        ("inproc_disk", "env-qemu in-process, state on disk"),
        ("inproc_tmpfs", "env-qemu in-process, state on tmpfs"),
        ("inproc_memory", "env-qemu in-process, state in memory"),
        ("script", "iproute2 script (ci/baseline/bridge.sh)"),
        ("batch", "ip -batch (plan's ip lines)"),
    ];
    progress!("timing: one host per method ({} hosts)", specs.len());
    let labs: Vec<Lab> = specs.iter().map(|_| Lab::new(false)).collect();
    let dirs: Vec<TestDir> = specs.iter().map(|_| TestDir::new()).collect();
    let tmpfs = TestTmpfs::mount_with("size=16M,mode=0700", MsFlags::empty());
    let mut methods: Vec<Method<'_>> = Vec::new();
    for (((key, label), lab), dir) in specs.iter().zip(&labs).zip(&dirs) {
        let host = lab.host();
        let state_dir = if key.ends_with("tmpfs") {
            tmpfs.path().join(key)
        } else {
            dir.path().join("state")
        };
        let driver: Box<dyn Driver + '_> = match *key {
            "binary_disk" | "binary_tmpfs" => Box::new(Binary::new(&ctx.bin, host, &state_dir)),
            "inproc_disk" | "inproc_tmpfs" => {
                Box::new(InProc::new(&ctx.rt, host, Store::Dir(state_dir)))
            }
            "inproc_memory" => Box::new(InProc::new(
                &ctx.rt,
                host,
                Store::Memory(Default::default()),
            )),
            "script" => Box::new(Script {
                path: ctx.script.clone(),
                netns: host.name().to_string(),
                state_file: state_dir.join("bridge.state"),
            }),
            _ => {
                let bin = Binary::new(&ctx.bin, host, &state_dir);
                let mut inproc = InProc::new(&ctx.rt, host, Store::Dir(state_dir.clone()));
                let batch = prepare_batch(&bin, &mut inproc, host, TAP, dir.path());
                ctx.note_batch(&batch);
                Box::new(batch)
            }
        };
        methods.push(Method {
            driver,
            series: Series::new(key, label),
        });
    }
    let lab_refs: Vec<&Lab> = labs.iter().collect();
    progress!("timing: {runs} interleaved rounds of start, add, del, stop per method");
    interleaved(&mut methods, &lab_refs, runs, &CMDS, "timing");
    let floors = floors(ctx, labs[0].host());
    let all: Vec<Series> = methods.into_iter().map(|m| m.series).collect();
    for s in &all {
        progress!(
            "  {}: start {:.2} ms, add {:.2} ms, del {:.2} ms, stop {:.2} ms (medians){}",
            s.label,
            s.median(0),
            s.median(1),
            s.median(2),
            s.median(3),
            if s.drift.is_empty() {
                ""
            } else {
                "; restore not exact"
            }
        );
    }
    (all, floors)
}
