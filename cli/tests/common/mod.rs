//! What the CLI's real-kernel tests share: the `env-qemu` binary run against one test
//! namespace with a private state directory (never /run/env-qemu), and state comparisons.
//!
//! Every test file includes this module and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use env_qemu_core::model::NetState;
use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::TestNs;
use serde_json::Value;

pub mod scenario;

pub const BIN: &str = env!("CARGO_BIN_EXE_env-qemu");
pub const BRIDGE: &str = "lepont";

#[allow(unused_imports)] // not every test file settles a namespace
pub use env_qemu_integration::session::{settled_state as settled, TestDir as TempDir};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Outcome {
        Outcome {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// `env-qemu --netns NS --state-dir DIR --config DIR/none.toml …`: every run of the binary
/// is confined to one test namespace and a test directory, and ignores the machine's
/// /etc/env-qemu.toml.
#[derive(Debug, Clone)]
pub struct EnvQemu {
    netns: String,
    state_dir: PathBuf,
}

impl EnvQemu {
    pub fn new(ns: &TestNs, state_dir: &TempDir) -> EnvQemu {
        EnvQemu {
            netns: ns.name().to_string(),
            state_dir: state_dir.path().to_path_buf(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The options that confine a run (append them after a verb, as QEMU's scripts get).
    pub fn confinement(&self) -> Vec<String> {
        let dir = self.state_dir.display().to_string();
        vec![
            "--netns".into(),
            self.netns.clone(),
            "--state-dir".into(),
            dir.clone(),
            "--config".into(),
            format!("{dir}/none.toml"),
        ]
    }

    /// The command, not yet run.
    /// The system bus is a path in the test's directory where nothing listens: should
    /// a test namespace run a program named NetworkManager, env-qemu asks nothing of a
    /// machine's bus.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(self.confinement())
            .args(args)
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}/no-system-bus", self.state_dir.display()),
            )
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        c
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        self.command(args).output().expect("env-qemu runs").into()
    }

    /// The command as `sudo` would start it for `caller`: root, with SUDO_UID, SUDO_GID
    /// and SUDO_USER naming the caller.
    pub fn sudo_command(&self, caller: &Caller, args: &[&str]) -> Command {
        let mut c = self.command(args);
        c.env("SUDO_UID", caller.uid.to_string())
            .env("SUDO_GID", caller.gid.to_string())
            .env("SUDO_USER", &caller.name);
        c
    }

    /// Runs [`EnvQemu::sudo_command`].
    pub fn sudo_run(&self, caller: &Caller, args: &[&str]) -> Outcome {
        self.sudo_command(caller, args)
            .output()
            .expect("env-qemu runs")
            .into()
    }

    /// Runs and panics unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.run(args);
        assert!(
            out.success(),
            "env-qemu {} exited {:?}:\n{}{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Value {
        let out = self.ok(&["--json", "status"]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", out.stdout))
    }

    /// The state files (`*.json`) in the state directory.
    pub fn state_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.state_dir)
            .expect("read state dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    }

    /// The one state file (after a start).
    pub fn state_file(&self) -> PathBuf {
        let files = self.state_files();
        assert_eq!(files.len(), 1, "one state file expected: {files:?}");
        files.into_iter().next().expect("one")
    }
}

/// The unprivileged account standing for the user who runs sudo: `nobody` and its group,
/// which every Debian system has (no account is added to this machine).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups, as initgroups(3) sets them.
    pub groups: Vec<u32>,
}

pub fn nobody() -> Caller {
    let user = nix::unistd::User::from_name("nobody")
        .expect("read passwd")
        .expect("the nobody account exists");
    let cname = std::ffi::CString::new(user.name.clone()).expect("a C name");
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .expect("nobody's groups")
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    Caller {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    }
}

/// A directory `caller` may write in (COMMAND runs as them), inside `parent`.
pub fn writable_by(caller: &Caller, parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).expect("create dir");
    nix::unistd::chown(
        &d,
        Some(nix::unistd::Uid::from_raw(caller.uid)),
        Some(nix::unistd::Gid::from_raw(caller.gid)),
    )
    .expect("chown to the caller");
    d
}

/// The names in a JSON array of strings (`taps`, `ports`, `drift`).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Asserts that `ns` reads back (`ip -j`, normalised) as `before`, retrying for a few
/// seconds while DAD settles.
pub fn assert_restored(ns: &TestNs, before: &NetState, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = ns.read_state();
        if same_state(before, &now) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: the network differs (left: before, right: now):\n{}",
                difference(before, &now)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ip -n NS link show DEV`'s master, if any.
pub fn master_of(ns: &TestNs, dev: &str) -> Option<String> {
    let links = ns.ip_json(&format!("link show dev {dev}"));
    links[0]["master"].as_str().map(str::to_string)
}

/// One refused command: its arguments, the documented exit code, and what its single
/// stderr line must contain (the object it names, the fix it suggests).
#[derive(Debug)]
pub struct Refusal<'a> {
    pub args: Vec<&'a str>,
    pub code: i32,
    pub object: &'a str,
    pub fix: &'a str,
}

impl<'a> Refusal<'a> {
    pub fn new(args: &[&'a str], code: i32, object: &'a str, fix: &'a str) -> Refusal<'a> {
        Refusal {
            args: args.to_vec(),
            code,
            object,
            fix,
        }
    }

    /// The same request with `-q`: progress lines off, errors still printed.
    pub fn quiet(mut self) -> Refusal<'a> {
        self.args.insert(0, "-q");
        self
    }
}

/// Runs `r` and asserts: its exit code, nothing on stdout, exactly one line on stderr
/// naming the object and the fix, and every namespace in `watched` unchanged.
pub fn assert_refused(eq: &EnvQemu, watched: &[&TestNs], r: &Refusal<'_>) {
    let before: Vec<NetState> = watched.iter().map(|ns| ns.read_state()).collect();
    let out = eq.run(&r.args);
    let what = format!("env-qemu {:?}", r.args);
    assert_eq!(out.code, Some(r.code), "{what}: {out:?}");
    assert_eq!(out.stdout, "", "{what}: nothing on stdout");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one line on stderr: {:?}",
        out.stderr
    );
    let line = lines[0];
    assert!(line.starts_with("env-qemu: "), "{what}: {line}");
    assert!(
        line.contains(r.object),
        "{what}: names {:?}: {line}",
        r.object
    );
    assert!(line.contains(r.fix), "{what}: says {:?}: {line}", r.fix);
    for (ns, before) in watched.iter().zip(&before) {
        assert_restored(ns, before, &what);
    }
}
