//! Child processes a test starts (dnsmasq, QEMU), ended by their PID when the test is done
//! or panics, and a scratch directory removed on drop.
//!
//! A guard signals only the process it spawned, and only while that process is not reaped
//! (so the PID cannot belong to anyone else yet).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long [`ChildGuard`]'s drop waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// A spawned child, terminated (SIGTERM, then SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd`; `name` labels it in messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the process has ended (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
        }
        self.status
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the spawned PID, if it still runs. Returns whether it was sent.
    pub fn signal(&mut self, signal: Signal) -> bool {
        if self.try_wait().is_some() {
            return false;
        }
        // The child is not reaped yet, so this PID is still ours.
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        kill(pid, signal).is_ok()
    }

    /// SIGTERM, up to `grace` to exit (QEMU runs its downscript then), then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return s;
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM for {grace:?}: SIGKILL",
            self.name,
            self.pid()
        );
        self.signal(Signal::SIGKILL);
        self.wait_timeout(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} (pid {}) survived SIGKILL", self.name, self.pid()))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let status = self.terminate(TERM_GRACE);
            eprintln!("{} (pid {}) ended on drop: {status}", self.name, self.pid());
        }
    }
}

/// Polls `cond` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the temp dir (`eqt-scratch-<pid>-<n>`), removed with its
/// content on drop, also when the test panics.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let path = std::env::temp_dir().join(format!(
            "eqt-scratch-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `DIR/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Elapsed times of a test's steps, printed as they happen (`eprintln!`, shown with
/// `--nocapture` or on failure) and summed up in one line that is always shown.
#[derive(Debug)]
pub struct Stopwatch {
    test: String,
    t0: Instant,
    last: Instant,
    steps: Vec<(String, Duration)>,
}

impl Stopwatch {
    pub fn new(test: &str) -> Stopwatch {
        let now = Instant::now();
        Stopwatch {
            test: test.to_string(),
            t0: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Records that `what` just finished; returns how long it took.
    pub fn step(&mut self, what: &str) -> Duration {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        eprintln!(
            "{}: {what}: {:.2} s (at {:.2} s)",
            self.test,
            took.as_secs_f64(),
            (now - self.t0).as_secs_f64()
        );
        self.steps.push((what.to_string(), took));
        took
    }

    /// One line with every step, written straight to fd 2 (past libtest's capture).
    pub fn summary(&self) {
        use std::io::Write;
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(w, d)| format!("{w} {:.1}s", d.as_secs_f64()))
            .collect();
        let _ = writeln!(
            std::io::stderr(),
            "TIMING {}: {:.1} s total: {}",
            self.test,
            self.t0.elapsed().as_secs_f64(),
            steps.join(", ")
        );
    }
}
