//! The tables, the targets (met or missed, with the figure) and the JSON file.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::blackout::{Losses, RATE};
use crate::meter::Breakdown;
use crate::requests::Row;
use crate::scale::{Ports, Routes, PORTS};
use crate::stats::{ms, round};
use crate::timing::{Floors, Series, CMDS};
use crate::Ctx;

pub struct Report<'a> {
    pub ctx: &'a Ctx,
    pub timing: &'a [Series],
    pub floors: &'a Floors,
    pub requests: &'a [Row],
    pub blackout: &'a [Losses],
    pub ports: &'a Ports,
    pub routes: &'a Routes,
    pub hosts: &'a [crate::hosts::HostTimes],
}

pub struct Target {
    pub name: String,
    pub figure: String,
    pub value: f64,
    pub goal: String,
    pub met: bool,
}

impl Target {
    fn json(&self) -> Value {
        json!({
            "target": self.name,
            "goal": self.goal,
            "value": round(self.value),
            "figure": self.figure,
            "met": self.met,
        })
    }
}

fn cmd_index(name: &str) -> usize {
    CMDS.iter()
        .position(|c| c.name() == name)
        .expect("a command name")
}

impl Report<'_> {
    fn series(&self, key: &str) -> &Series {
        self.timing
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no series {key}"))
    }

    fn median(&self, key: &str, cmd: &str) -> f64 {
        self.series(key).median(cmd_index(cmd))
    }

    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        for (key, what) in [
            ("binary_disk", "env-qemu (state on disk)"),
            ("binary_tmpfs", "env-qemu (state on tmpfs)"),
        ] {
            for cmd in ["start", "stop"] {
                let (e, s, b) = (
                    self.median(key, cmd),
                    self.median("script", cmd),
                    self.median("batch", cmd),
                );
                t.push(Target {
                    name: format!("{cmd}: {what} vs the iproute2 script"),
                    figure: format!(
                        "script {s:.2} ms / env-qemu {e:.2} ms = {:.2}× faster",
                        s / e
                    ),
                    value: s / e,
                    goal: "≥ 6× faster".into(),
                    met: s / e >= 6.0,
                });
                t.push(Target {
                    name: format!("{cmd}: {what} vs ip -batch"),
                    figure: format!("env-qemu {e:.2} ms / ip -batch {b:.2} ms = {:.2}×", e / b),
                    value: e / b,
                    goal: "≤ 1.5×".into(),
                    met: e / b <= 1.5,
                });
            }
        }
        if let Some(b) = self.series("inproc_tmpfs").mean_breakdown(0) {
            let without = ms(b.total.saturating_sub(b.verify));
            let share = ms(b.verify) / without.max(f64::EPSILON);
            t.push(Target {
                name: "start: what the verification by dump adds (in-process, tmpfs)".into(),
                figure: format!(
                    "{:.2} ms on {without:.2} ms = {:.1} %",
                    ms(b.verify),
                    100.0 * share
                ),
                value: share,
                goal: "≤ 20 %".into(),
                met: share <= 0.2,
            });
        }
        if let Some(l) = self.blackout.iter().find(|l| l.key == "env_qemu") {
            for (phase, name) in [(0, "start"), (1, "stop")] {
                let lost = l.lost(phase);
                t.push(Target {
                    name: format!("datagrams lost during {name} (env-qemu)"),
                    figure: format!(
                        "{lost} of {} lost; {} of {} rounds lossy",
                        l.sent(phase),
                        l.lossy_rounds(phase),
                        l.rounds.len()
                    ),
                    value: f64::from(lost),
                    goal: "0".into(),
                    met: lost == 0,
                });
            }
        }
        for (one, many) in &self.ports.methods {
            if one.key == "script" {
                continue;
            }
            let (a, b) = (one.median(1), many.median(1));
            t.push(Target {
                name: format!("add latency 1 → {PORTS} taps ({})", one.label),
                figure: format!("{a:.2} ms → {b:.2} ms = {:.2}×", b / a),
                value: b / a,
                goal: "≤ 1.5×".into(),
                met: b / a <= 1.5,
            });
        }
        for (none, many) in &self.routes.methods {
            if !none.key.starts_with("binary") && !none.key.starts_with("inproc") {
                continue;
            }
            let (a, b) = (none.median(0), many.median(0));
            t.push(Target {
                name: format!("start with 60,000 foreign routes vs none ({})", none.label),
                figure: format!("{a:.2} ms → {b:.2} ms = {:.2}×", b / a),
                value: b / a,
                goal: "≤ 3×".into(),
                met: b / a <= 3.0,
            });
        }
        t
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let runs = self.ctx.runs;
        let _ = writeln!(
            o,
            "\n== env-qemu benchmark: kernel {}, {} CPU(s), {runs} measured cycles per method \
             (after one unmeasured); ms, median (p10–p90)\n",
            kernel(),
            cpus()
        );
        let _ = writeln!(o, "-- wall time per command");
        let _ = writeln!(
            o,
            "{:<42} {:>22} {:>22} {:>22} {:>22}",
            "method", "start", "add", "del", "stop"
        );
        for s in self.timing {
            let cells: Vec<String> = (0..4).map(|i| s.summary(i).cell()).collect();
            let _ = writeln!(
                o,
                "{:<42} {:>22} {:>22} {:>22} {:>22}",
                s.label, cells[0], cells[1], cells[2], cells[3]
            );
        }
        let _ = writeln!(o, "\n-- ratios of medians");
        let ratio_rows: [(&str, &str, &str); 6] = [
            ("script / env-qemu binary (disk)", "script", "binary_disk"),
            ("script / env-qemu binary (tmpfs)", "script", "binary_tmpfs"),
            ("env-qemu binary (disk) / ip -batch", "binary_disk", "batch"),
            (
                "env-qemu binary (tmpfs) / ip -batch",
                "binary_tmpfs",
                "batch",
            ),
            (
                "env-qemu in-process (tmpfs) / ip -batch",
                "inproc_tmpfs",
                "batch",
            ),
            (
                "env-qemu in-process (memory) / ip -batch",
                "inproc_memory",
                "batch",
            ),
        ];
        for (label, a, b) in ratio_rows {
            let r: Vec<String> = ["start", "add", "del", "stop"]
                .iter()
                .map(|c| format!("{:.2}×", self.median(a, c) / self.median(b, c)))
                .collect();
            let _ = writeln!(
                o,
                "{label:<42} {:>22} {:>22} {:>22} {:>22}",
                r[0], r[1], r[2], r[3]
            );
        }
        let startup: Vec<String> = ["start", "add", "del", "stop"]
            .iter()
            .map(|c| {
                format!(
                    "{:.2} ms",
                    self.median("binary_tmpfs", c) - self.median("inproc_tmpfs", c)
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "{:<42} {:>22} {:>22} {:>22} {:>22}",
            "process start-up (binary − in-process, tmpfs)",
            startup[0],
            startup[1],
            startup[2],
            startup[3]
        );
        let f = self.floors;
        let _ = writeln!(
            o,
            "floors: exec of `env-qemu --version` {}, `ip -V` {}, `bash -c true` {}; \
             `ip link del` of a bare bridge {}",
            f.bin_exec.cell(),
            f.ip_exec.cell(),
            f.bash_exec.cell(),
            f.link_del.cell()
        );
        let batch = self.ctx.batch.borrow();
        let skipped = &batch.1;
        let _ = writeln!(
            o,
            "ip -batch runs the plan's `ip` lines only (IPv6 adds under accept_dad=0 get `nodad`); \
             sysctls left out: start {}, add {}, del {}, stop {}",
            skipped[0].len(),
            skipped[1].len(),
            skipped[2].len(),
            skipped[3].len()
        );
        for s in self.timing.iter().filter(|s| !s.drift.is_empty()) {
            let _ = writeln!(
                o,
                "restore not exact for {}:\n{}",
                s.label,
                s.drift.trim_end()
            );
        }

        let _ = writeln!(
            o,
            "\n-- where env-qemu's in-process time goes (mean per command; count) [ms]"
        );
        let _ = writeln!(
            o,
            "{:<30} {:<6} {:>7} {:>6} {:>11} {:>11} {:>14} {:>13} {:>13} {:>7}",
            "store",
            "cmd",
            "total",
            "setup",
            "dumps",
            "reads",
            "netlink ops",
            "sysctl writes",
            "state saves",
            "rest"
        );
        for key in ["inproc_disk", "inproc_tmpfs", "inproc_memory"] {
            let s = self.series(key);
            for (i, c) in CMDS.iter().enumerate() {
                if let Some(b) = s.mean_breakdown(i) {
                    let _ = writeln!(o, "{}", breakdown_row(key, c.name(), &b));
                }
            }
        }

        let _ = writeln!(
            o,
            "\n-- verification by dump (after the last step: read what the command touched, compare it with its goal), in-process on tmpfs"
        );
        let s = self.series("inproc_tmpfs");
        for (i, c) in CMDS.iter().enumerate() {
            if let Some(b) = s.mean_breakdown(i) {
                let without = b.total.saturating_sub(b.verify);
                let share = 100.0 * ms(b.verify) / ms(without).max(f64::EPSILON);
                let _ = writeln!(
                    o,
                    "{:<6} {:>7.2} ms of {:>7.2} ms: adds {share:>5.1} % to the command without it",
                    c.name(),
                    ms(b.verify),
                    ms(b.total)
                );
            }
        }

        let _ = writeln!(o, "\n-- kernel time per operation kind, in-process on tmpfs (mean per command: count × → ms)");
        let s = self.series("inproc_tmpfs");
        for (i, c) in CMDS.iter().enumerate() {
            if let Some(b) = s.mean_breakdown(i) {
                let _ = writeln!(o, "{}", per_op_line(c.name(), &b));
            }
        }

        let _ = writeln!(
            o,
            "\n-- start and stop on hosts whose NIC a program manages (the binary run inside the host; median (p10-p90) ms)"
        );
        for h in self.hosts {
            let _ = writeln!(
                o,
                "{:<28} start {:<24} stop {}",
                h.label,
                h.start.cell(),
                h.stop.cell()
            );
        }

        let _ = writeln!(o, "\n-- netlink requests per command");
        let _ = writeln!(
            o,
            "{:<6} {:>8} {:>8} {:>14} {:>8} | {:>22} {:>22} {:>14}",
            "cmd",
            "plan ops",
            "sysctls",
            "env-qemu (dumps)",
            "minimum",
            "strace binary: nl/fsync",
            "script: procs/nl",
            "batch: nl"
        );
        for r in self.requests {
            let (b, s, ba) = match r.traced {
                Some(t) => (
                    format!("{}/{}", t[0].netlink_sends, t[0].fsyncs),
                    format!("{}/{}", t[1].processes, t[1].netlink_sends),
                    format!("{}", t[2].netlink_sends),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                o,
                "{:<6} {:>8} {:>8} {:>14} {:>8} | {:>22} {:>22} {:>14}",
                r.cmd,
                r.ops,
                r.sysctls,
                format!("{} ({})", r.env_qemu, r.dumps),
                r.minimum,
                b,
                s,
                ba
            );
        }

        let _ = writeln!(
            o,
            "\n-- datagrams lost ({RATE}/s per stream; LAN and far host × IPv4 and IPv6)"
        );
        for l in self.blackout {
            for (phase, name) in [(0, "start"), (1, "stop")] {
                let _ = writeln!(
                    o,
                    "{:<20} {:<6} lost {:>4} of {:>6}; rounds with a loss: {} of {}",
                    l.label,
                    name,
                    l.lost(phase),
                    l.sent(phase),
                    l.lossy_rounds(phase),
                    l.rounds.len()
                );
            }
        }
        for l in self.blackout {
            if l.lost(0) + l.lost(1) > 0 {
                let _ = write!(o, "{}", l.report);
            }
        }

        let _ = writeln!(
            o,
            "\n-- scale: add/del with 1 vs {PORTS} taps on the bridge (attaching 499 in-process took {:.0} ms)",
            ms(self.ports.attach_all)
        );
        for (one, many) in &self.ports.methods {
            let _ = writeln!(
                o,
                "{:<42} add {:>20} → {:>20}   del {:>20} → {:>20}",
                one.label,
                one.summary(1).cell(),
                many.summary(1).cell(),
                one.summary(2).cell(),
                many.summary(2).cell()
            );
        }
        for (one, many) in &self.ports.methods {
            for (i, name) in [(1, "add"), (2, "del")] {
                if let (Some(a), Some(b)) = (one.mean_breakdown(i), many.mean_breakdown(i)) {
                    let _ = writeln!(o, "{}", breakdown_row(&format!("{name}, 1 tap"), name, &a));
                    let _ = writeln!(
                        o,
                        "{}",
                        breakdown_row(&format!("{name}, {PORTS} taps"), name, &b)
                    );
                }
            }
        }
        let r = self.routes;
        let _ = writeln!(
            o,
            "\n-- scale: no foreign route vs 60,000 ({} in main, {} in 100 other tables; \
             {} routes in the namespace; loaded with ip -batch in {:.0} ms)",
            crate::scale::MAIN_ROUTES,
            crate::scale::TABLES * crate::scale::ROUTES_PER_TABLE,
            r.loaded,
            ms(r.load)
        );
        for (none, many) in &r.methods {
            for (i, c) in CMDS.iter().enumerate() {
                let (a, b) = (none.summary(i), many.summary(i));
                let _ = writeln!(
                    o,
                    "{:<42} {:<6} {:>20} → {:>20}  ({:.2}×)",
                    none.label,
                    c.name(),
                    a.cell(),
                    b.cell(),
                    b.median / a.median
                );
            }
        }
        if let Some((b0, b1)) = r
            .methods
            .iter()
            .find(|(a, _)| a.key == "batch")
            .map(|(a, b)| (a.median(0), b.median(0)))
        {
            for (none, many) in r
                .methods
                .iter()
                .filter(|(a, _)| a.key != "script" && a.key != "batch")
            {
                let (e0, e1) = (none.median(0), many.median(0));
                let _ = writeln!(
                    o,
                    "{:<42} start minus ip -batch's (env-qemu's own share): {:.2} → {:.2} ms ({:.2}×)",
                    none.label,
                    e0 - b0,
                    e1 - b1,
                    (e1 - b1) / (e0 - b0)
                );
            }
        }
        for (none, many) in &r.methods {
            if let (Some(a), Some(b)) = (none.mean_breakdown(0), many.mean_breakdown(0)) {
                let _ = writeln!(o, "{}", breakdown_row("start, 0 routes", "start", &a));
                let _ = writeln!(o, "{}", breakdown_row("start, 60,000 routes", "start", &b));
            }
            if let (Some(a), Some(b)) = (none.mean_breakdown(3), many.mean_breakdown(3)) {
                let _ = writeln!(o, "{}", breakdown_row("stop, 0 routes", "stop", &a));
                let _ = writeln!(o, "{}", breakdown_row("stop, 60,000 routes", "stop", &b));
            }
        }
        for (none, many) in &r.methods {
            for i in [0, 3] {
                if let (Some(a), Some(b)) = (none.mean_breakdown(i), many.mean_breakdown(i)) {
                    let name = CMDS[i].name();
                    let _ = writeln!(o, "{}", per_op_line(&format!("{name}, 0 routes"), &a));
                    let _ = writeln!(o, "{}", per_op_line(&format!("{name}, 60,000 routes"), &b));
                }
            }
        }
        for (label, p) in [
            ("0 routes", &r.probes_none),
            ("60,000 routes", &r.probes_loaded),
        ] {
            let _ = writeln!(
                o,
                "reading them, {label}: ip route show table all {}; … dev eth0 (kernel-filtered) {}; \
                 NetlinkKernel::dump {}; observe+plan_start {} (plan_start alone {})",
                p.ip_full_dump.cell(),
                p.ip_filtered_dump.cell(),
                p.netlink_dump.cell(),
                p.observe_and_plan.cell(),
                p.plan_only.cell()
            );
        }

        let load: Vec<String> = self
            .ctx
            .load
            .borrow()
            .iter()
            .map(|(s, l)| format!("{s}: {l}"))
            .collect();
        let _ = writeln!(
            o,
            "\n/proc/loadavg at each section (other work on this machine skews every figure; \
             methods are interleaved so that it skews them alike): {}",
            load.join("; ")
        );

        let _ = writeln!(o, "\n-- targets (reported, not asserted)");
        for t in self.targets() {
            let _ = writeln!(
                o,
                "[{}] {}: {} (goal {})",
                if t.met { "met   " } else { "missed" },
                t.name,
                t.figure,
                t.goal
            );
        }
        o
    }

    pub fn json(&self) -> Value {
        let mut ratios = serde_json::Map::new();
        for (name, a, b) in [
            ("script_over_binary_disk", "script", "binary_disk"),
            ("script_over_binary_tmpfs", "script", "binary_tmpfs"),
            ("binary_disk_over_batch", "binary_disk", "batch"),
            ("binary_tmpfs_over_batch", "binary_tmpfs", "batch"),
            ("inproc_tmpfs_over_batch", "inproc_tmpfs", "batch"),
            ("inproc_memory_over_batch", "inproc_memory", "batch"),
            (
                "binary_tmpfs_minus_inproc_tmpfs_ms",
                "binary_tmpfs",
                "inproc_tmpfs",
            ),
        ] {
            let per_cmd: serde_json::Map<String, Value> = CMDS
                .iter()
                .map(|c| {
                    let (x, y) = (self.median(a, c.name()), self.median(b, c.name()));
                    let v = if name.ends_with("_ms") { x - y } else { x / y };
                    (c.name().to_string(), json!(round(v)))
                })
                .collect();
            ratios.insert(name.to_string(), Value::Object(per_cmd));
        }
        let timing: serde_json::Map<String, Value> = self
            .timing
            .iter()
            .map(|s| (s.key.to_string(), s.json()))
            .collect();
        let requests: serde_json::Map<String, Value> = self
            .requests
            .iter()
            .map(|r| (r.cmd.to_string(), r.json()))
            .collect();
        let blackout: serde_json::Map<String, Value> = self
            .blackout
            .iter()
            .map(|l| (l.key.to_string(), l.json()))
            .collect();
        let batch = self.ctx.batch.borrow();
        let (lines, skipped) = (&batch.0, &batch.1);
        json!({
            "command": "sudo bash ci/bench",
            "kernel": kernel(),
            "cpus": cpus(),
            "runs_per_method": self.ctx.runs,
            "scale_runs": self.ctx.scale_runs,
            "blackout_rounds": self.ctx.blackout_rounds,
            "state_on_disk": "a directory under /tmp, on the same file system as /run on this machine (/run is not a tmpfs here)",
            "batch": {
                "how": "env-qemu's plans (start/stop --dry-run, in-process add/del) filtered to their ip lines; `-6` dropped (IPv6 default written ::/0); IPv6 address additions inside accept_dad=0 brackets get `nodad`",
                "lines": {"start": lines[0], "add": lines[1], "del": lines[2], "stop": lines[3]},
                "left_out_sysctls": {"start": skipped[0], "add": skipped[1], "del": skipped[2], "stop": skipped[3]},
            },
            "load_averages": self.ctx.load.borrow().iter().map(|(s, l)| json!({"section": s, "loadavg": l})).collect::<Vec<_>>(),
            "timing": timing,
            "floors": self.floors.json(),
            "ratios": ratios,
            "requests": requests,
            "blackout": blackout,
            "scale": {
                "ports": self.ports.json(),
                "routes": self.routes.json(),
                "hosts": self.hosts.iter().map(crate::hosts::HostTimes::json).collect::<Vec<_>>(),
            },
            "targets": self.targets().iter().map(Target::json).collect::<Vec<_>>(),
        })
    }
}

fn breakdown_row(store: &str, cmd: &str, b: &Breakdown) -> String {
    let pair = |n: u32, d| format!("{:.2} ({n})", ms(d));
    format!(
        "{:<30} {:<6} {:>7.2} {:>6.2} {:>11} {:>11} {:>14} {:>13} {:>13} {:>7.2}",
        store,
        cmd,
        ms(b.total),
        ms(b.setup),
        pair(b.dumps, b.dump_time),
        pair(b.reads, b.read_time),
        pair(b.netlink_ops, b.netlink_time),
        pair(b.sysctl_writes, b.sysctl_time),
        pair(b.saves, b.save_time),
        ms(b.rest())
    )
}

fn per_op_line(label: &str, b: &Breakdown) -> String {
    let ops: Vec<String> = b
        .per_op
        .iter()
        .map(|(k, (n, d))| format!("{k} {n}× {:.2}", ms(*d)))
        .collect();
    format!("{label:<24} {}", ops.join(", "))
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
