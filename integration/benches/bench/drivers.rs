//! The four ways of doing env-qemu's job that the bench compares, behind one trait: the
//! `env-qemu` binary, env-qemu's core in-process, the iproute2 script, and `ip -batch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::commands::{self, Env};
use env_qemu_core::exec::Event;
use env_qemu_core::model::IfName;
use env_qemu_core::plan::VmTaps;
use env_qemu_core::plan::{Plan, StartRequest};
use env_qemu_core::store::{FileStore, MemoryStore, StateStore};
use env_qemu_integration::TestNs;
use tokio::runtime::Runtime;

use crate::meter::{merge, Breakdown, MeteredKernel, MeteredStore};

pub const BRIDGE: &str = "lepont";
pub const UPLINK: &str = "eth0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd<'a> {
    Start,
    Add(&'a str),
    Del(&'a str),
    Stop,
}

impl Cmd<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Start => "start",
            Cmd::Add(_) => "add",
            Cmd::Del(_) => "del",
            Cmd::Stop => "stop",
        }
    }
}

/// One way of running start/add/del/stop on one namespace; panics when a command fails
/// (the namespaces are removed as the panic unwinds).
pub trait Driver {
    /// Runs `cmd` and returns its wall time, from before the process is spawned (or the
    /// namespace opened) to after it exited (or everything was released).
    fn run(&mut self, cmd: Cmd<'_>) -> Duration;

    /// What the last command spent its time on, when the driver can tell.
    fn breakdown(&self) -> Option<&Breakdown> {
        None
    }

    /// The plan of the last command, when the driver knows it.
    fn plan(&self) -> Option<&Plan> {
        None
    }
}

fn check(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real `env-qemu` binary, `--netns NS --state-dir DIR`, no config file.
#[derive(Debug, Clone)]
pub struct Binary {
    pub bin: PathBuf,
    pub netns: String,
    pub state_dir: PathBuf,
}

impl Binary {
    /// Like [`Binary::command`], without `--quiet`: each operation on stderr as it is done.
    pub fn command_loud(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--netns", &self.netns, "--config", "/dev/null"])
            .args(["--bridge", BRIDGE, "--state-dir"])
            .arg(&self.state_dir)
            .args(args);
        c
    }

    pub fn new(bin: &Path, ns: &TestNs, state_dir: &Path) -> Binary {
        Binary {
            bin: bin.to_path_buf(),
            netns: ns.name().to_string(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--netns", &self.netns, "--config", "/dev/null"])
            .args(["--bridge", BRIDGE, "--state-dir"])
            .arg(&self.state_dir)
            .arg("--quiet")
            .args(args);
        c
    }

    pub fn args(cmd: Cmd<'_>) -> Vec<&str> {
        match cmd {
            Cmd::Start => vec!["start", UPLINK, "--shm-size", "off"],
            Cmd::Add(t) => vec!["add", t],
            Cmd::Del(t) => vec!["del", t],
            Cmd::Stop => vec!["stop"],
        }
    }

    /// `--dry-run` of start or stop: the plan as `ip` lines.
    pub fn dry_run(&self, cmd: Cmd<'_>) -> String {
        let mut args = Binary::args(cmd);
        args.push("--dry-run");
        let out = self.command(&args).output().expect("spawn env-qemu");
        check(&format!("env-qemu {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Driver for Binary {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        let args = Binary::args(cmd);
        let t = Instant::now();
        let out = self
            .command(&args)
            .stdout(Stdio::null())
            .output()
            .expect("spawn env-qemu");
        let took = t.elapsed();
        check(&format!("env-qemu {}", args.join(" ")), &out);
        took
    }
}

/// Where an in-process run keeps its state.
pub enum Store {
    /// The CLI's file (`DIR/netns-cookie-COOKIE-BRIDGE.json`), locked like the CLI locks it.
    Dir(PathBuf),
    /// No file at all: what the journal costs without I/O.
    Memory(MemoryStore),
}

/// env-qemu's `core::commands` with a fresh `NetlinkKernel` per command, as the CLI does,
/// without the process around them.
pub struct InProc<'r> {
    rt: &'r Runtime,
    ns_path: PathBuf,
    netns_id: String,
    file_name: String,
    store: Store,
    pub last: Breakdown,
    pub last_plan: Plan,
}

impl<'r> InProc<'r> {
    pub fn new(rt: &'r Runtime, ns: &TestNs, store: Store) -> InProc<'r> {
        let id = env_qemu_backend_netlink::identity_at(&ns.path()).expect("netns identity");
        let bridge = IfName::new(BRIDGE).expect("bridge name");
        InProc {
            rt,
            ns_path: ns.path(),
            netns_id: id.to_string(),
            file_name: env_qemu_core::store::key::state_file_name(&id, &bridge),
            store,
            last: Breakdown::default(),
            last_plan: Plan::default(),
        }
    }
}

impl Driver for InProc<'_> {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        let t = Instant::now();
        let kernel = NetlinkKernel::in_netns_path(&self.ns_path).expect("open namespace");
        let file_store;
        let _lock;
        let store: &dyn StateStore = match &self.store {
            Store::Dir(dir) => {
                file_store = FileStore::new(dir.join(&self.file_name));
                _lock = file_store.lock().expect("lock state");
                &file_store
            }
            Store::Memory(m) => m,
        };
        let metered_kernel = MeteredKernel::new(&kernel);
        let metered_store = MeteredStore::new(store);
        let setup = t.elapsed();
        // When the last step was applied, and when the verification after it ended.
        let (mut last_applied, mut verified) = (None, None);
        let mut observer = |e: Event<'_>| match e {
            Event::Applied { .. } => last_applied = Some(Instant::now()),
            Event::Verified { .. } => verified = Some(Instant::now()),
            _ => {}
        };
        let mut env = Env {
            kernel: &metered_kernel,
            host: &env_qemu_core::host::NoHost,
            store: &metered_store,
            netns: self.netns_id.clone(),
            observer: &mut observer,
        };
        let req = StartRequest {
            uplink: IfName::new(UPLINK).expect("name"),
            bridge: IfName::new(BRIDGE).expect("name"),
            shm: None,
            foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
        };
        let tap = |t: &str| IfName::new(t).expect("tap name");
        let result = self.rt.block_on(async {
            match cmd {
                Cmd::Start => commands::start(&mut env, &req).await,
                Cmd::Add(t) => commands::add(&mut env, &tap(t)).await,
                Cmd::Del(t) => commands::del(&mut env, &tap(t)).await,
                Cmd::Stop => commands::stop(&mut env, VmTaps::Refuse).await,
            }
        });
        drop(env);
        let mut breakdown = merge(&metered_kernel, &metered_store);
        breakdown.verify = match (last_applied, verified) {
            (Some(a), Some(v)) if v > a => v - a,
            _ => Duration::ZERO,
        };
        drop(kernel);
        let took = t.elapsed();
        self.last_plan = result
            .unwrap_or_else(|e| panic!("in-process {}: {e}", cmd.name()))
            .plan;
        breakdown.total = took;
        breakdown.setup = setup;
        self.last = breakdown;
        took
    }

    fn breakdown(&self) -> Option<&Breakdown> {
        Some(&self.last)
    }

    fn plan(&self) -> Option<&Plan> {
        Some(&self.last_plan)
    }
}

/// ci/baseline/bridge.sh: one `ip` process per change.
pub struct Script {
    pub path: PathBuf,
    pub netns: String,
    pub state_file: PathBuf,
}

impl Script {
    pub fn command(&self, cmd: Cmd<'_>) -> Command {
        self.command_with(cmd, &[])
    }

    /// `bash -x`: each command on stderr before it runs.
    pub fn command_traced(&self, cmd: Cmd<'_>) -> Command {
        self.command_with(cmd, &["-x"])
    }

    fn command_with(&self, cmd: Cmd<'_>, bash_args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.args(bash_args)
            .arg(&self.path)
            .args(["-n", &self.netns, "-b", BRIDGE, "-s"])
            .arg(&self.state_file);
        match cmd {
            Cmd::Start => c.args(["start", UPLINK]),
            Cmd::Add(t) => c.args(["add", t]),
            Cmd::Del(t) => c.args(["del", t]),
            Cmd::Stop => c.arg("stop"),
        };
        c
    }
}

impl Driver for Script {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        let t = Instant::now();
        let out = self
            .command(cmd)
            .stdout(Stdio::null())
            .output()
            .expect("spawn bash");
        let took = t.elapsed();
        check(&format!("bridge.sh {}", cmd.name()), &out);
        took
    }
}

/// `ip -n NS -batch FILE`: the same operations from one process, no observation at all.
#[derive(Debug, Clone)]
pub struct Batch {
    pub netns: String,
    pub tap: String,
    /// start, add, del, stop batch files.
    pub files: [PathBuf; 4],
    /// The batches, as run.
    pub lines: [String; 4],
    /// Lines of env-qemu's plans left out of each batch (sysctls).
    pub skipped: [Vec<String>; 4],
}

impl Batch {
    pub fn command(&self, cmd: Cmd<'_>) -> Command {
        let file = &self.files[index(cmd)];
        let mut c = Command::new("ip");
        c.args(["-n", &self.netns, "-batch"]).arg(file);
        c
    }
}

pub fn index(cmd: Cmd<'_>) -> usize {
    match cmd {
        Cmd::Start => 0,
        Cmd::Add(_) => 1,
        Cmd::Del(_) => 2,
        Cmd::Stop => 3,
    }
}

impl Driver for Batch {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        if let Cmd::Add(t) | Cmd::Del(t) = cmd {
            assert_eq!(t, self.tap, "the batch was made for tap {}", self.tap);
        }
        let t = Instant::now();
        let out = self.command(cmd).output().expect("spawn ip");
        let took = t.elapsed();
        check(&format!("ip -batch ({})", cmd.name()), &out);
        took
    }
}

/// A plan's `ip` lines as `ip -batch` lines, and the lines left out (sysctls).
///
/// `ip -batch` takes no options per line, so `-6` goes: the family follows from the
/// addresses, and an IPv6 `default` becomes `::/0`. The sysctls are left out; the one
/// whose effect the timing depends on, `accept_dad=0` around IPv6 address additions, is
/// kept as `nodad` on the additions it covers (as the script does), so neither the floor
/// nor the script runs DAD where env-qemu does not.
pub fn to_batch(plan: &str) -> (String, Vec<String>) {
    let mut batch = String::new();
    let mut skipped = Vec::new();
    let mut dad_off: Vec<String> = Vec::new();
    for line in plan.lines() {
        let Some(rest) = line.strip_prefix("ip ") else {
            if let Some(knob) = line.strip_prefix("sysctl -w net.ipv6.conf.") {
                if let Some((dev, value)) = knob.split_once(".accept_dad=") {
                    dad_off.retain(|d| d != dev);
                    if value == "0" {
                        dad_off.push(dev.to_string());
                    }
                }
            }
            if !line.trim().is_empty() && !line.starts_with('#') {
                skipped.push(line.to_string());
            }
            continue;
        };
        let mut words: Vec<&str> = rest.split_whitespace().collect();
        if words.first() == Some(&"-6") {
            words.remove(0);
            if words.get(2) == Some(&"default") {
                words[2] = "::/0";
            }
        }
        let ipv6_add =
            words.starts_with(&["addr", "add"]) && words.get(2).is_some_and(|a| a.contains(':'));
        let dev = words
            .iter()
            .position(|w| *w == "dev")
            .and_then(|i| words.get(i + 1));
        if ipv6_add
            && dev.is_some_and(|d| dad_off.iter().any(|o| o == d))
            && !words.contains(&"nodad")
        {
            words.push("nodad");
        }
        batch.push_str(&words.join(" "));
        batch.push('\n');
    }
    (batch, skipped)
}

/// Makes the batches from env-qemu's own plans: `start --dry-run`, then a real start,
/// the in-process add and del of `tap` (add has no dry run), `stop --dry-run`, a real
/// stop. Leaves the namespace as it found it.
pub fn prepare_batch(
    bin: &Binary,
    inproc: &mut InProc<'_>,
    ns: &TestNs,
    tap: &str,
    dir: &Path,
) -> Batch {
    let mut plans = vec![bin.dry_run(Cmd::Start)];
    let mut bin = bin.clone();
    bin.run(Cmd::Start);
    inproc.run(Cmd::Add(tap));
    plans.push(inproc.last_plan.to_string());
    inproc.run(Cmd::Del(tap));
    plans.push(inproc.last_plan.to_string());
    plans.push(bin.dry_run(Cmd::Stop));
    bin.run(Cmd::Stop);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut skipped: Vec<Vec<String>> = Vec::new();
    for (name, plan) in ["start", "add", "del", "stop"].iter().zip(&plans) {
        let (batch, left_out) = to_batch(plan);
        let path = dir.join(format!("{name}.batch"));
        std::fs::write(&path, &batch).expect("write batch");
        files.push(path);
        lines.push(batch);
        skipped.push(left_out);
    }
    Batch {
        netns: ns.name().to_string(),
        tap: tap.to_string(),
        files: files.try_into().expect("four files"),
        lines: lines.try_into().expect("four batches"),
        skipped: skipped.try_into().expect("four lists"),
    }
}
