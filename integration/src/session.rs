//! [`Session`]: env-qemu's commands (`commands::start/add/del/stop`) driven through a
//! [`NetlinkKernel`] on one test namespace, with a [`FileStore`] in a private temp dir
//! (never /run/env-qemu).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::commands::{self, CommandError, Env};
use env_qemu_core::exec::Event;
use env_qemu_core::model::{AddrFlag, IfName, NetState};
use env_qemu_core::plan::VmTaps;
use env_qemu_core::plan::{Plan, StartRequest};
use env_qemu_core::state::State;
use env_qemu_core::store::{FileStore, StateStore};

use crate::TestNs;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the temp dir, removed (with its content) on drop.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new() -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "eqt-state-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create test state dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn str(&self) -> &str {
        self.path.to_str().expect("temp dir path is UTF-8")
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs one command with an [`Env`] on the session, logging what it applied.
macro_rules! with_env {
    ($session:ident, |$env:ident| $call:expr) => {{
        let mut log = Vec::new();
        let mut observer = |e: Event<'_>| log.push((Instant::now(), describe(e)));
        let mut $env = Env {
            kernel: &$session.kernel,
            host: &env_qemu_core::host::NoHost,
            store: &$session.store,
            netns: $session.netns.clone(),
            observer: &mut observer,
        };
        let result = $call.await;
        drop($env);
        $session.applied.extend(log);
        result
    }};
}

/// One env-qemu "installation" acting on one test namespace.
pub struct Session {
    kernel: NetlinkKernel,
    store: FileStore,
    netns: String,
    /// Every operation the commands applied, as `ip` lines, with the instant it was done.
    pub applied: Vec<(Instant, String)>,
    _dir: TestDir,
}

impl Session {
    pub fn new(ns: &TestNs) -> Session {
        let dir = TestDir::new();
        // The namespace's identity as the CLI would record it: its nsfs inode.
        let ino = std::fs::metadata(ns.path()).expect("stat netns").ino();
        Session {
            kernel: ns.kernel(),
            store: FileStore::new(dir.path().join("state.json")),
            netns: format!("net:[{ino}]"),
            applied: Vec::new(),
            _dir: dir,
        }
    }

    pub fn kernel(&self) -> &NetlinkKernel {
        &self.kernel
    }

    /// The operations applied so far, one `ip` line each (for failure messages).
    pub fn log(&self) -> String {
        let lines: Vec<&str> = self.applied.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// The operations applied since `since`, each with its time in milliseconds after
    /// `t0` (to lay them beside a stream's sequence numbers).
    pub fn timeline(&self, since: Instant, t0: Instant) -> String {
        self.applied
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(at, line)| {
                let ms = at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
                format!("{ms:9.2} ms  {line}\n")
            })
            .collect()
    }

    /// The saved state, if env-qemu is started.
    pub fn saved(&self) -> Option<State> {
        self.store.load().expect("load state")
    }

    pub async fn start(&mut self, req: &StartRequest) -> Result<Plan, CommandError> {
        with_env!(self, |env| commands::start(&mut env, req)).map(|r| r.plan)
    }

    pub async fn add(&mut self, tap: &str) -> Result<Plan, CommandError> {
        let tap = IfName::new(tap).expect("tap name");
        with_env!(self, |env| commands::add(&mut env, &tap)).map(|r| r.plan)
    }

    pub async fn del(&mut self, tap: &str) -> Result<Plan, CommandError> {
        let tap = IfName::new(tap).expect("tap name");
        with_env!(self, |env| commands::del(&mut env, &tap)).map(|r| r.plan)
    }

    pub async fn stop(&mut self, force: bool) -> Result<Plan, CommandError> {
        let vms = if force {
            VmTaps::Detach
        } else {
            VmTaps::Refuse
        };
        with_env!(self, |env| commands::stop(&mut env, vms)).map(|r| r.plan)
    }
}

fn describe(e: Event<'_>) -> String {
    match e {
        Event::Applied { op, .. } => op.to_string(),
        Event::Round { round, goal, steps } => {
            format!("(round {round}: {steps} steps toward {goal})")
        }
        Event::AlreadyDone { op, error, .. } => format!("(already so) {op}: {error}"),
        Event::Failed { op, error, .. } => format!("(refused) {op}: {error}"),
        Event::Verified { goal, differences } => {
            format!("(verified {goal}: {differences} differences)")
        }
        // An event a later core adds: shown as it is rather than dropped.
        other => format!("({other:?})"),
    }
}

/// Reads `ns` with `ip -j` once no address is `tentative` any more (IPv6 DAD finishes
/// about a second after carrier), so a "before" state does not depend on timing.
pub fn settled_state(ns: &TestNs) -> NetState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = ns.read_state();
        let tentative = state.addresses.iter().any(|a| a.has(AddrFlag::Tentative));
        if !tentative || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
