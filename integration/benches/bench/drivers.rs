//! The four ways of doing env-qemu's job that the bench compares, behind one trait: the
//! `env-qemu` binary, env-qemu's core in-process, the iproute2 script, and `ip -batch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::commands::{self, Env};
use env_qemu_core::exec::Event;
use env_qemu_core::model::IfName;
use env_qemu_core::plan::{Plan, StartRequest, VmTaps};
use env_qemu_core::store::FileStore;
use env_qemu_integration::TestNs;

use crate::Ctx;

pub const BRIDGE: &str = "lepont";
pub const UPLINK: &str = "eth0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd<'a> {
    Start,
    Add(&'a str),
    Del(&'a str),
    Stop,
}

impl<'a> Cmd<'a> {
    pub fn name(&self) -> &'static str {
        ["start", "add", "del", "stop"][self.index()]
    }

    /// `start eth0`, `add TAP`, `del TAP`, `stop`: the words both the binary and the
    /// script take.
    pub fn words(self) -> Vec<&'a str> {
        match self {
            Cmd::Start => vec!["start", UPLINK],
            Cmd::Add(t) | Cmd::Del(t) => vec![self.name(), t],
            Cmd::Stop => vec!["stop"],
        }
    }

    /// The command's place in `[start, add, del, stop]`.
    pub fn index(&self) -> usize {
        match self {
            Cmd::Start => 0,
            Cmd::Add(_) => 1,
            Cmd::Del(_) => 2,
            Cmd::Stop => 3,
        }
    }
}

/// One way of running start/add/del/stop on one namespace; panics when a command fails
/// (the namespaces are removed as the panic unwinds).
pub trait Driver {
    /// Runs `cmd` and returns its wall time, from before the process is spawned (or the
    /// namespace opened) to after it exited (or everything was released).
    fn run(&mut self, cmd: Cmd<'_>) -> Duration;

    /// Where the last command's time went, when the driver can tell.
    fn phases(&self) -> Option<Phases> {
        None
    }
}

/// The methods, for building drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Binary,
    InProc,
    Script,
    Batch,
}

/// A driver of `how` on `host`, env-qemu's state (or the script's) in `state`. A batch is
/// made from env-qemu's plans on `host` first ([`prepare_batch`]).
pub fn driver<'a>(ctx: &'a Ctx, how: How, host: &TestNs, state: &Path) -> Box<dyn Driver + 'a> {
    std::fs::create_dir_all(state).expect("create the state directory");
    match how {
        How::Binary => Box::new(Binary::new(&ctx.bin, host, state)),
        How::InProc => Box::new(InProc::new(ctx, host, state)),
        How::Script => Box::new(Script::new(ctx, host, state)),
        How::Batch => Box::new(prepare_batch(ctx, host, state)),
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

/// Runs `c` with its stdout discarded; panics naming `what` if it fails.
pub fn timed(mut c: Command, what: &str) -> Duration {
    let t = Instant::now();
    let out = c.stdout(Stdio::null()).output().expect("spawn");
    let took = t.elapsed();
    check(what, &out);
    took
}

/// The real `env-qemu` binary, `--netns NS --state-dir DIR`, no config file.
#[derive(Debug, Clone)]
pub struct Binary {
    pub bin: PathBuf,
    pub netns: String,
    pub state_dir: PathBuf,
}

impl Binary {
    pub fn new(bin: &Path, ns: &TestNs, state_dir: &Path) -> Binary {
        Binary {
            bin: bin.to_path_buf(),
            netns: ns.name().to_string(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// `env-qemu --netns … ARGS` (each operation on stderr as it is done).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--netns", &self.netns, "--config", "/dev/null"])
            .args(["--bridge", BRIDGE, "--state-dir"])
            .arg(&self.state_dir)
            .args(args);
        c
    }

    /// The command's words; start with `--shm-size off` (the machine's /dev/shm stays).
    pub fn args(cmd: Cmd<'_>) -> Vec<&'_ str> {
        let mut args = cmd.words();
        if cmd == Cmd::Start {
            args.extend(["--shm-size", "off"]);
        }
        args
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
        let mut args = Binary::args(cmd);
        args.push("--quiet");
        timed(self.command(&args), &format!("env-qemu {}", args.join(" ")))
    }
}

/// Where an in-process command's time went, read from the executor's events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Opening the namespace, locking and loading the state, observing, planning, the
    /// save before the first change: up to the first round.
    pub before: Duration,
    /// From the first round to the last step applied (journalled), every round.
    pub steps: Duration,
    /// The verification by dump: from the last step applied to the last comparison of
    /// what the command touched with its goal.
    pub verify: Duration,
    /// The final save and releasing the namespace.
    pub after: Duration,
}

/// env-qemu's `core::commands` with a fresh `NetlinkKernel` per command, as the CLI does,
/// without the process around them; its state in the CLI's file, locked as the CLI does.
pub struct InProc<'c> {
    ctx: &'c Ctx,
    ns_path: PathBuf,
    netns_id: String,
    state_file: PathBuf,
    pub last_plan: Plan,
    last_phases: Phases,
}

impl<'c> InProc<'c> {
    pub fn new(ctx: &'c Ctx, ns: &TestNs, state_dir: &Path) -> InProc<'c> {
        let id = env_qemu_backend_netlink::identity_at(&ns.path()).expect("netns identity");
        let bridge = IfName::new(BRIDGE).expect("bridge name");
        InProc {
            ctx,
            ns_path: ns.path(),
            netns_id: id.to_string(),
            state_file: state_dir.join(env_qemu_core::store::key::state_file_name(&id, &bridge)),
            last_plan: Plan::default(),
            last_phases: Phases::default(),
        }
    }
}

impl Driver for InProc<'_> {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        let t0 = Instant::now();
        let kernel = NetlinkKernel::in_netns_path(&self.ns_path).expect("open namespace");
        let store = FileStore::new(self.state_file.clone());
        let lock = store.lock().expect("lock state");
        let (mut round, mut applied, mut verified) = (None, None, None);
        let mut observer = |e: Event<'_>| match e {
            Event::Round { .. } => round = round.or(Some(Instant::now())),
            Event::Applied { .. } => applied = Some(Instant::now()),
            Event::Verified { .. } => verified = Some(Instant::now()),
            _ => {}
        };
        let mut env = Env {
            kernel: &kernel,
            host: &env_qemu_core::host::NoHost,
            store: &store,
            netns: self.netns_id.clone(),
            observer: &mut observer,
        };
        let name = |n: &str| IfName::new(n).expect("interface name");
        let req = StartRequest {
            uplink: name(UPLINK),
            bridge: name(BRIDGE),
            shm: None,
            foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
        };
        let result = self.ctx.rt.block_on(async {
            match cmd {
                Cmd::Start => commands::start(&mut env, &req).await,
                Cmd::Add(t) => commands::add(&mut env, &name(t)).await,
                Cmd::Del(t) => commands::del(&mut env, &name(t)).await,
                Cmd::Stop => commands::stop(&mut env, VmTaps::Refuse).await,
            }
        });
        drop(env);
        drop(lock);
        drop(kernel);
        let end = Instant::now();
        self.last_plan = result
            .unwrap_or_else(|e| panic!("in-process {}: {e}", cmd.name()))
            .plan;
        let first = round.unwrap_or(end);
        let applied = applied.unwrap_or(first).max(first);
        let verified = verified.unwrap_or(applied).max(applied);
        self.last_phases = Phases {
            before: first - t0,
            steps: applied - first,
            verify: verified - applied,
            after: end - verified,
        };
        end - t0
    }

    fn phases(&self) -> Option<Phases> {
        Some(self.last_phases)
    }
}

/// ci/baseline/bridge.sh: one `ip` process per change.
pub struct Script {
    pub path: PathBuf,
    pub netns: String,
    pub state_file: PathBuf,
}

impl Script {
    pub fn new(ctx: &Ctx, ns: &TestNs, state_dir: &Path) -> Script {
        Script {
            path: ctx.script.clone(),
            netns: ns.name().to_string(),
            state_file: state_dir.join("bridge.state"),
        }
    }

    /// `bash [BASH_ARGS] bridge.sh … CMD` (`-x`: each command on stderr before it runs).
    pub fn command(&self, cmd: Cmd<'_>, bash_args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.args(bash_args)
            .arg(&self.path)
            .args(["-n", &self.netns, "-b", BRIDGE, "-s"])
            .arg(&self.state_file)
            .args(cmd.words());
        c
    }
}

impl Driver for Script {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        timed(self.command(cmd, &[]), &format!("bridge.sh {}", cmd.name()))
    }
}

/// `ip -n NS -batch FILE`: the same operations from one process, no observation at all;
/// add and del of [`crate::lab::TAP`] only.
#[derive(Debug, Clone)]
pub struct Batch {
    pub netns: String,
    /// The start, add, del and stop batch files (beside env-qemu's state).
    pub files: [PathBuf; 4],
}

impl Batch {
    pub fn command(&self, cmd: Cmd<'_>) -> Command {
        let mut c = Command::new("ip");
        c.args(["-n", &self.netns, "-batch"])
            .arg(&self.files[cmd.index()]);
        c
    }
}

impl Driver for Batch {
    fn run(&mut self, cmd: Cmd<'_>) -> Duration {
        timed(self.command(cmd), &format!("ip -batch ({})", cmd.name()))
    }
}

/// A plan's `ip` lines as `ip -batch` lines; sysctls are left out.
///
/// `ip -batch` takes no options per line, so `-6` goes: the family follows from the
/// addresses, and an IPv6 `default` becomes `::/0`. The sysctl whose effect the timing
/// depends on, `accept_dad=0` around IPv6 address additions, is kept as `nodad` on the
/// additions it covers (as the script does), so neither the floor nor the script runs DAD
/// where env-qemu does not.
pub fn to_batch(plan: &str) -> String {
    let mut batch = String::new();
    let mut dad_off: Vec<String> = Vec::new();
    for line in plan.lines() {
        let Some(rest) = line.strip_prefix("ip ") else {
            let knob = line.strip_prefix("sysctl -w net.ipv6.conf.");
            if let Some((dev, value)) = knob.and_then(|k| k.split_once(".accept_dad=")) {
                dad_off.retain(|d| d != dev);
                if value == "0" {
                    dad_off.push(dev.to_string());
                }
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
        if ipv6_add && dev.is_some_and(|d| dad_off.contains(&d.to_string())) {
            words.push("nodad");
        }
        batch.push_str(&words.join(" "));
        batch.push('\n');
    }
    batch
}

/// Makes the batches (for [`crate::lab::TAP`]) from env-qemu's own plans: `start
/// --dry-run`, a real start, the in-process add and del (add has no dry run), `stop
/// --dry-run`, a real stop. Leaves the namespace as it found it; the files go beside the
/// binary's state.
pub fn prepare_batch(ctx: &Ctx, ns: &TestNs, state_dir: &Path) -> Batch {
    let mut bin = Binary::new(&ctx.bin, ns, state_dir);
    let mut inproc = InProc::new(ctx, ns, state_dir);
    let tap = crate::lab::TAP;
    let mut plans = vec![bin.dry_run(Cmd::Start)];
    bin.run(Cmd::Start);
    inproc.run(Cmd::Add(tap));
    plans.push(inproc.last_plan.to_string());
    inproc.run(Cmd::Del(tap));
    plans.push(inproc.last_plan.to_string());
    plans.push(bin.dry_run(Cmd::Stop));
    bin.run(Cmd::Stop);
    let files =
        ["start", "add", "del", "stop"].map(|name| bin.state_dir.join(format!("{name}.batch")));
    for (file, plan) in files.iter().zip(&plans) {
        std::fs::write(file, to_batch(plan)).expect("write batch");
    }
    Batch {
        netns: ns.name().to_string(),
        files,
    }
}
