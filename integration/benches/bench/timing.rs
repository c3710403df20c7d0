//! Wall time of start, add, del and stop for every method, each on a host of its own,
//! interleaved; what the process costs; where the in-process time goes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::session::{settled_state, TestDir};
use env_qemu_integration::{TestNs, TestTmpfs};
use nix::mount::MsFlags;

use crate::drivers::{driver, Cmd, Driver, How, Phases};
use crate::lab::{Lab, TAP};
use crate::stats::Summary;
use crate::Ctx;

pub const CMDS: [Cmd<'static>; 4] = [Cmd::Start, Cmd::Add(TAP), Cmd::Del(TAP), Cmd::Stop];

/// Every run of one method.
pub struct Series {
    pub label: String,
    /// Per command (start, add, del, stop), one duration per run.
    pub samples: [Vec<Duration>; 4],
    /// In-process methods: where each run's time went.
    pub phases: [Vec<Phases>; 4],
    /// What the unmeasured first cycle left different from the state before it.
    pub drift: String,
}

impl Series {
    pub fn summary(&self, cmd: Cmd<'_>) -> Summary {
        Summary::of(&self.samples[cmd.index()])
    }

    pub fn median(&self, cmd: Cmd<'_>) -> f64 {
        self.summary(cmd).median
    }

    /// What the first cycle did not restore, if anything, in a line: the count and the
    /// first difference.
    pub fn print_drift(&self) {
        if let Some(first) = self.drift.lines().next().map(str::trim) {
            let n = self.drift.lines().count();
            println!(
                "  restore not exact for {} ({n} lines), e.g. {first}",
                self.label
            );
        }
    }
}

/// One method on its host.
pub struct Method<'a> {
    pub driver: Box<dyn Driver + 'a>,
    pub host: &'a TestNs,
    pub series: Series,
}

impl<'a> Method<'a> {
    pub fn new(label: &str, driver: Box<dyn Driver + 'a>, host: &'a TestNs) -> Method<'a> {
        Method {
            driver,
            host,
            series: Series {
                label: label.to_string(),
                samples: Default::default(),
                phases: Default::default(),
                drift: String::new(),
            },
        }
    }
}

/// One unmeasured cycle of `cmds` per method, which must restore its host (read before
/// and after), then `runs` rounds in which every method does `cmds` once, the first
/// method rotating: methods interleaved in time share whatever else the machine does.
pub fn interleaved(methods: &mut [Method<'_>], runs: usize, cmds: &[Cmd<'_>], what: &str) {
    for m in methods.iter_mut() {
        let before = settled_state(m.host);
        for c in cmds {
            m.driver.run(*c);
        }
        let after = settled_state(m.host);
        if !same_state(&before, &after) {
            m.series.drift = difference(&before, &after);
        }
    }
    let n = methods.len();
    for run in 0..runs {
        for k in 0..n {
            let m = &mut methods[(run + k) % n];
            for c in cmds {
                m.series.samples[c.index()].push(m.driver.run(*c));
                if let Some(p) = m.driver.phases() {
                    m.series.phases[c.index()].push(p);
                }
            }
        }
        if (run + 1) % 5 == 0 || run + 1 == runs {
            progress!("  {what}: {}/{runs} rounds", run + 1);
        }
    }
}

/// Prints one row per series (median (p10–p90) per command of `cmds`) and records them;
/// a series whose first cycle did not restore its host says so.
pub fn print_table(series: &[&Series], cmds: &[Cmd<'_>]) {
    let mut head = format!("{:<44}", "method");
    for c in cmds {
        let _ = write!(head, " {:>22}", c.name());
    }
    println!("{head}");
    for s in series {
        let mut row = format!("{:<44}", s.label);
        for c in cmds {
            let sum = s.summary(*c);
            let _ = write!(row, " {:>22}", sum.cell());
        }
        println!("{row}");
        s.print_drift();
    }
}

/// `a / b` of the medians of every command of `cmds`, as one row.
pub fn print_ratio(label: &str, a: &Series, b: &Series, cmds: &[Cmd<'_>]) {
    let mut row = format!("{label:<44}");
    for c in cmds {
        let _ = write!(row, " {:>21.2}×", a.median(*c) / b.median(*c));
    }
    println!("{row}");
}

/// The medians of an in-process series' phases, per command, and what the verification
/// by dump adds to the command without it.
pub fn print_phases(label: &str, s: &Series, cmds: &[Cmd<'_>]) {
    for c in cmds {
        let p = &s.phases[c.index()];
        let median =
            |f: fn(&Phases) -> Duration| Summary::of(&p.iter().map(f).collect::<Vec<_>>()).median;
        let (before, steps) = (median(|p| p.before), median(|p| p.steps));
        let (verify, after) = (median(|p| p.verify), median(|p| p.after));
        let total = s.median(*c);
        let share = 100.0 * verify / (total - verify).max(f64::EPSILON);
        println!(
            "{:<28} {total:>6.2} ms: to the first step {before:.2}, steps {steps:.2}, \
             verification {verify:.2} (+{share:.0} % on the rest), after {after:.2}",
            format!("{label} {}", c.name())
        );
    }
}

fn time_runs(runs: usize, mut f: impl FnMut() -> Duration) -> Summary {
    Summary::of(&(0..runs).map(|_| f()).collect::<Vec<_>>())
}

fn time_process(program: &str, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(out.status.success(), "{program} {args:?}");
    t.elapsed()
}

/// Costs no method can go below: starting a process, deleting a device.
fn floors(ctx: &Ctx, ns: &TestNs) {
    let bin = ctx.bin.to_str().expect("UTF-8 path");
    let floors = [
        (
            "exec of `env-qemu --version`",
            time_runs(ctx.runs, || time_process(bin, &["--version"])),
        ),
        (
            "exec of `ip -V`",
            time_runs(ctx.runs, || time_process("ip", &["-V"])),
        ),
        (
            "exec of `bash -c true`",
            time_runs(ctx.runs, || time_process("bash", &["-c", "true"])),
        ),
        (
            "`ip link del` of a bare bridge",
            time_runs(10, || {
                ns.ip("link add bx0 type bridge");
                let t = Instant::now();
                ns.ip("link del bx0");
                t.elapsed()
            }),
        ),
    ];
    for (what, s) in floors {
        println!("floor: {what:<40} {}", s.cell());
    }
}

pub fn run(ctx: &Ctx) {
    ctx.section("wall time per command");
    let tmpfs = TestTmpfs::mount_with("size=16M,mode=0700", MsFlags::empty());
    let disk = TestDir::new();
    let specs: [(&str, How, &Path); 5] = [
        ("env-qemu binary, state on disk", How::Binary, disk.path()),
        ("env-qemu binary, state on tmpfs", How::Binary, tmpfs.path()),
        (
            "env-qemu in-process, state on tmpfs",
            How::InProc,
            tmpfs.path(),
        ),
        (
            "iproute2 script (ci/baseline/bridge.sh)",
            How::Script,
            disk.path(),
        ),
        ("ip -batch of env-qemu's plan", How::Batch, disk.path()),
    ];
    progress!(
        "timing: {} hosts, {} interleaved rounds of start, add, del, stop",
        specs.len(),
        ctx.runs
    );
    let labs: Vec<Lab> = specs.iter().map(|_| Lab::new(false)).collect();
    let mut methods: Vec<Method<'_>> = specs
        .iter()
        .zip(&labs)
        .enumerate()
        .map(|(i, ((label, how, dir), lab))| {
            let state = dir.join(format!("m{i}"));
            Method::new(label, driver(ctx, *how, lab.host(), &state), lab.host())
        })
        .collect();
    interleaved(&mut methods, ctx.runs, &CMDS, "timing");
    let s: Vec<&Series> = methods.iter().map(|m| &m.series).collect();
    print_table(&s, &CMDS);
    println!("ratios of medians:");
    print_ratio("script / env-qemu binary (disk)", s[3], s[0], &CMDS);
    print_ratio("script / env-qemu binary (tmpfs)", s[3], s[1], &CMDS);
    print_ratio("env-qemu binary (disk) / ip -batch", s[0], s[4], &CMDS);
    print_ratio("env-qemu binary (tmpfs) / ip -batch", s[1], s[4], &CMDS);
    print_ratio("env-qemu in-process (tmpfs) / ip -batch", s[2], s[4], &CMDS);
    let startup: Vec<String> = CMDS
        .iter()
        .map(|c| format!("{:.2} ms", s[1].median(*c) - s[2].median(*c)))
        .collect();
    println!(
        "process start-up (binary − in-process, tmpfs): {}",
        startup.join(", ")
    );
    println!("ip -batch runs the plan's `ip` lines only (sysctls left out; IPv6 additions under accept_dad=0 get `nodad`)");
    println!("where the in-process time goes (medians):");
    print_phases("in-process", s[2], &CMDS);
    floors(ctx, labs[0].host());
}
