//! Scale: add/del with 1 vs 500 taps already on the bridge; start/stop (and add/del) with
//! 60,000 routes through another device (50,000 in 100 other tables, 10,000 in main) vs
//! none. Two hosts each time, measured interleaved; env-qemu's state on a tmpfs. Documentation prefixes only: /32s of 203.0.113.0/24, /128s of 2001:db8:b000::/36
//! and 2001:db8:c000::/48, none of them covering the LAN or the far host.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use env_qemu_core::model::IfName;
use env_qemu_core::observe::observe;
use env_qemu_core::plan::{plan_start, StartRequest};
use env_qemu_integration::session::TestDir;
use env_qemu_integration::{TestNs, TestTmpfs};
use nix::mount::MsFlags;
use serde_json::{json, Value};

use crate::drivers::{prepare_batch, Binary, Cmd, Driver, InProc, Script, Store, BRIDGE, UPLINK};
use crate::lab::{Lab, TAP};
use crate::stats::{ms, Summary};
use crate::timing::{interleaved, Method, Series, CMDS};
use crate::Ctx;

pub const PORTS: usize = 500;
pub const MAIN_ROUTES: usize = 10_000;
pub const TABLES: usize = 100;
pub const ROUTES_PER_TABLE: usize = 500;

/// `ip -n NS -batch FILE` of `lines`, timed.
fn ip_batch(ns: &TestNs, lines: &str, dir: &TestDir, name: &str) -> Duration {
    let path = dir.path().join(name);
    std::fs::write(&path, lines).expect("write batch");
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-batch"])
        .arg(&path)
        .output()
        .expect("spawn ip");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "ip -batch {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

pub struct Ports {
    /// (with 1 tap, with 500 taps) per method.
    pub methods: Vec<(Series, Series)>,
    pub attach_all: Duration,
}

impl Ports {
    pub fn json(&self) -> Value {
        let methods: Vec<Value> = self
            .methods
            .iter()
            .map(|(one, many)| {
                json!({
                    "label": one.label,
                    "ports_1": one.json()["commands"],
                    format!("ports_{PORTS}"): many.json()["commands"],
                })
            })
            .collect();
        json!({
            "taps_already_on_bridge": [1, PORTS],
            "taps_in_namespace": [2, PORTS + 1],
            "attach_499_taps_in_process_ms": ms(self.attach_all),
            "methods": methods,
        })
    }
}

/// The three methods of the scale sections that keep no plan of their own, on `host`
/// with env-qemu's state in `state`.
fn method<'a>(
    ctx: &'a Ctx,
    key: &'static str,
    label: &'static str,
    host: &TestNs,
    state: &std::path::Path,
) -> Method<'a> {
    let driver: Box<dyn Driver + 'a> = match key {
        "binary_tmpfs" => Box::new(Binary::new(&ctx.bin, host, state)),
        "inproc_tmpfs" => Box::new(InProc::new(&ctx.rt, host, Store::Dir(state.to_path_buf()))),
        _ => Box::new(Script {
            path: ctx.script.clone(),
            netns: host.name().to_string(),
            state_file: state.join("bridge.state"),
        }),
    };
    Method {
        driver,
        series: Series::new(key, label),
    }
}

/// Two hosts, measured interleaved: one with the bench tap and `p0` attached (2 taps in
/// the namespace), one with 500 taps attached through env-qemu (so its state records
/// them, as it would for 500 VMs).
pub fn ports(ctx: &Ctx) -> Ports {
    progress!("scale: add/del with 1 tap on the bridge vs {PORTS}");
    let labs = [Lab::new(false), Lab::new(false)];
    let dirs = [TestDir::new(), TestDir::new()];
    // State on a tmpfs: this machine's disk fsyncs vary too much to see scaling through.
    let tmpfs = TestTmpfs::mount_with("size=64M,mode=0700", MsFlags::empty());
    let states: Vec<std::path::PathBuf> = (0..2)
        .map(|i| tmpfs.path().join(format!("state{i}")))
        .collect();
    let mut attach_all = Duration::ZERO;
    for (i, (lab, state)) in labs.iter().zip(&states).enumerate() {
        let host = lab.host();
        let taps = if i == 0 { 1 } else { PORTS };
        let lines: String = (0..taps).fold(String::new(), |mut s, n| {
            let _ = writeln!(s, "tuntap add dev p{n} mode tap");
            s
        });
        ip_batch(host, &lines, &dirs[i], "taps.batch");
        Binary::new(&ctx.bin, host, state).run(Cmd::Start);
        let mut setup = InProc::new(&ctx.rt, host, Store::Dir(state.clone()));
        if taps > 1 {
            progress!("  attaching {taps} taps through env-qemu (in-process)");
        }
        let t = Instant::now();
        for n in 0..taps {
            setup.run(Cmd::Add(&format!("p{n}")));
        }
        attach_all = t.elapsed();
    }
    let labels = [
        ("binary_tmpfs", "env-qemu binary, state on tmpfs"),
        ("inproc_tmpfs", "env-qemu in-process, state on tmpfs"),
        ("script", "iproute2 script"),
    ];
    let mut methods: Vec<Method<'_>> = labs
        .iter()
        .zip(&states)
        .flat_map(|(lab, state)| {
            labels
                .iter()
                .map(move |(k, l)| method(ctx, k, l, lab.host(), state))
        })
        .collect();
    for m in methods.iter_mut() {
        m.driver.run(Cmd::Add(TAP));
        m.driver.run(Cmd::Del(TAP));
    }
    let n = methods.len();
    for run in 0..ctx.scale_runs {
        for k in 0..n {
            let m = &mut methods[(run + k) % n];
            m.series.record(m.driver.as_mut(), Cmd::Add(TAP));
            m.series.record(m.driver.as_mut(), Cmd::Del(TAP));
        }
    }
    let many = methods.split_off(labels.len());
    let methods: Vec<(Series, Series)> = methods
        .into_iter()
        .zip(many)
        .map(|(a, b)| (a.series, b.series))
        .collect();
    for (a, b) in &methods {
        progress!(
            "  {}: add {:.2} → {:.2} ms, del {:.2} → {:.2} ms (1 → {PORTS} taps, medians)",
            a.label,
            a.median(1),
            b.median(1),
            a.median(2),
            b.median(2)
        );
    }
    // The namespaces go with their taps, the state directories with `dirs`.
    Ports {
        methods,
        attach_all,
    }
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
    for t in 0..TABLES {
        let table = 1001 + t;
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

/// How long reading the routes takes by other means, to tell the kernel's share from
/// env-qemu's.
pub struct Probes {
    /// `ip route show table all` (both families), text to /dev/null.
    pub ip_full_dump: Summary,
    /// `ip route show table all dev eth0`: iproute2 asks the kernel to filter by device.
    pub ip_filtered_dump: Summary,
    /// NetlinkKernel::dump() alone, in-process.
    pub netlink_dump: Summary,
    /// observe() + plan_start(), in-process: the planner's share is the difference.
    pub observe_and_plan: Summary,
    pub plan_only: Summary,
}

impl Probes {
    fn json(&self) -> Value {
        json!({
            "ip_route_show_table_all": self.ip_full_dump.json(),
            "ip_route_show_table_all_dev_eth0": self.ip_filtered_dump.json(),
            "netlink_kernel_dump": self.netlink_dump.json(),
            "observe_and_plan_start": self.observe_and_plan.json(),
            "plan_start_only": self.plan_only.json(),
        })
    }
}

fn probes(ctx: &Ctx, ns: &TestNs) -> Probes {
    let time_cmd = |args: &[&str]| {
        let samples: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new("ip")
                    .args(["-n", ns.name()])
                    .args(args)
                    .output()
                    .expect("spawn ip");
                assert!(out.status.success(), "ip {}", args.join(" "));
                t.elapsed()
            })
            .collect();
        Summary::of(&samples)
    };
    let kernel = ns.kernel();
    let req = StartRequest {
        uplink: IfName::new(UPLINK).expect("name"),
        bridge: IfName::new(BRIDGE).expect("name"),
        shm: None,
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    };
    let mut dumps = Vec::new();
    let mut both = Vec::new();
    let mut plans = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        ctx.rt
            .block_on(env_qemu_core::Kernel::dump(&kernel))
            .expect("dump");
        dumps.push(t.elapsed());
        let t = Instant::now();
        let snap = ctx
            .rt
            .block_on(observe(&kernel, &[&req.uplink], None))
            .expect("observe");
        let t_plan = Instant::now();
        plan_start(&snap, &req).expect("plan");
        plans.push(t_plan.elapsed());
        both.push(t.elapsed());
    }
    Probes {
        ip_full_dump: time_cmd(&["route", "show", "table", "all"]),
        ip_filtered_dump: time_cmd(&["route", "show", "table", "all", "dev", UPLINK]),
        netlink_dump: Summary::of(&dumps),
        observe_and_plan: Summary::of(&both),
        plan_only: Summary::of(&plans),
    }
}

pub struct Routes {
    /// (none, 60,000) per method.
    pub methods: Vec<(Series, Series)>,
    pub load: Duration,
    pub loaded: usize,
    pub probes_none: Probes,
    pub probes_loaded: Probes,
}

impl Routes {
    pub fn json(&self) -> Value {
        let methods: Vec<Value> = self
            .methods
            .iter()
            .map(|(none, many)| {
                json!({
                    "label": none.label,
                    "foreign_routes_0": none.json()["commands"],
                    "foreign_routes_60000": many.json()["commands"],
                    "restored_exactly": none.drift.is_empty() && many.drift.is_empty(),
                })
            })
            .collect();
        json!({
            "foreign_routes": {"main": MAIN_ROUTES, "other_tables": TABLES * ROUTES_PER_TABLE, "tables": TABLES},
            "routes_in_namespace_after_load": self.loaded,
            "load_with_ip_batch_ms": ms(self.load),
            "methods": methods,
            "probes_0": self.probes_none.json(),
            "probes_60000": self.probes_loaded.json(),
        })
    }
}

/// Two hosts, measured interleaved: one with no route but its own, one with 60,000
/// routes through another device.
pub fn routes(ctx: &Ctx) -> Routes {
    progress!("scale: start/add/del/stop with no foreign route vs 60,000");
    let labs = [Lab::new(false), Lab::new(false)];
    let dirs = [TestDir::new(), TestDir::new()];
    // State on a tmpfs: this machine's disk fsyncs vary too much to see scaling through.
    let tmpfs = TestTmpfs::mount_with("size=64M,mode=0700", MsFlags::empty());
    let states: Vec<std::path::PathBuf> = (0..2)
        .map(|i| tmpfs.path().join(format!("state{i}")))
        .collect();
    let mut batches = Vec::new();
    for ((lab, dir), state) in labs.iter().zip(&dirs).zip(&states) {
        let host = lab.host();
        host.ip("link add ov0 type veth peer name ov1");
        host.ip("link set ov0 up");
        host.ip("link set ov1 up");
        let bin = Binary::new(&ctx.bin, host, state);
        let mut inproc = InProc::new(&ctx.rt, host, Store::Dir(state.clone()));
        batches.push(prepare_batch(&bin, &mut inproc, host, TAP, dir.path()));
    }
    let routes = MAIN_ROUTES + TABLES * ROUTES_PER_TABLE;
    progress!("  loading {routes} routes with ip -batch");
    let loaded_host = labs[1].host();
    let load = ip_batch(
        loaded_host,
        &foreign_routes("ov0"),
        &dirs[1],
        "routes.batch",
    );
    let loaded = loaded_host.read_state().routes.len();
    progress!(
        "  loaded in {:.0} ms; {loaded} routes in the namespace",
        ms(load)
    );
    let specs = [
        ("binary_tmpfs", "env-qemu binary, state on tmpfs"),
        ("inproc_tmpfs", "env-qemu in-process, state on tmpfs"),
        ("script", "iproute2 script"),
        ("batch", "ip -batch"),
    ];
    let mut methods: Vec<Method<'_>> = Vec::new();
    let mut lab_refs: Vec<&Lab> = Vec::new();
    for ((lab, state), batch) in labs.iter().zip(&states).zip(&batches) {
        for (k, l) in specs {
            methods.push(if k == "batch" {
                Method {
                    driver: Box::new(batch.clone()),
                    series: Series::new(k, l),
                }
            } else {
                method(ctx, k, l, lab.host(), state)
            });
            lab_refs.push(lab);
        }
    }
    interleaved(
        &mut methods,
        &lab_refs,
        ctx.scale_runs,
        &CMDS,
        "0 and 60,000 foreign routes",
    );
    let probes_none = probes(ctx, labs[0].host());
    let probes_loaded = probes(ctx, loaded_host);
    let many = methods.split_off(specs.len());
    let methods: Vec<(Series, Series)> = methods
        .into_iter()
        .zip(many)
        .map(|(a, b)| (a.series, b.series))
        .collect();
    for (a, b) in &methods {
        progress!(
            "  {}: start {:.2} → {:.2} ms, stop {:.2} → {:.2} ms, add {:.2} → {:.2} ms",
            a.label,
            a.median(0),
            b.median(0),
            a.median(3),
            b.median(3),
            a.median(1),
            b.median(1)
        );
    }
    Routes {
        methods,
        load,
        loaded,
        probes_none,
        probes_loaded,
    }
}
