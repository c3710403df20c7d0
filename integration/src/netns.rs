//! [`TestNs`]: one throwaway, uniquely named network namespace per test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::model::NetState;

use crate::cmd::{must, run, words};
use crate::ipjson;

/// Every namespace of this harness is named `eqt-<pid>-<counter>`.
pub const PREFIX: &str = "eqt-";
const NETNS_DIR: &str = "/run/netns";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEANUP: Once = Once::new();
/// `ip netns add` makes /run/netns a shared mount point the first time; serialising
/// creations keeps parallel tests from racing on that.
static CREATE: Mutex<()> = Mutex::new(());

/// A named network namespace (`ip netns add eqt-<pid>-<n>`), deleted on drop — also
/// when the test panics. Tests run in parallel: names never repeat within a process and
/// embed the pid across processes.
#[derive(Debug)]
pub struct TestNs {
    name: String,
}

impl TestNs {
    /// Creates the namespace. Call [`crate::require_netns!`] first: this panics when
    /// namespaces cannot be created.
    pub fn new() -> TestNs {
        CLEANUP.call_once(remove_stale);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        {
            let _serial = CREATE.lock().unwrap_or_else(|p| p.into_inner());
            must("ip", &["netns", "add", &name]);
        }
        TestNs { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, what `ip -n NAME` and [`NetlinkKernel::in_netns_path`] open.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// A netlink backend acting on this namespace.
    pub fn kernel(&self) -> NetlinkKernel {
        NetlinkKernel::in_netns_path(&self.path())
            .unwrap_or_else(|e| panic!("NetlinkKernel for {}: {e}", self.name))
    }

    /// `ip -n NAME ARGS…`, e.g. `ns.ip("link add br0 type bridge")`; panics on failure.
    pub fn ip(&self, args: &str) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip -n NAME ARGS…`, returning the failure.
    pub fn try_ip(&self, args: &str) -> Result<String, String> {
        let mut argv = vec!["-n", &self.name];
        argv.extend(words(args));
        run("ip", &argv)
    }

    /// `ip -n NAME -j ARGS…`, parsed.
    pub fn ip_json(&self, args: &str) -> serde_json::Value {
        let out = self.ip(&format!("-j {args}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {out}"))
    }

    /// `ip netns exec NAME PROGRAM ARGS…` (a process inside the namespace, with its own
    /// /sys); panics on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut argv = vec!["netns", "exec", &self.name, program];
        argv.extend_from_slice(args);
        must("ip", &argv)
    }

    /// `sysctl -n KEY` inside the namespace (`net.ipv6.conf.eth0.autoconf`).
    pub fn sysctl(&self, key: &str) -> String {
        self.exec("sysctl", &["-n", key]).trim().to_string()
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn set_sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// The namespace's state as `ip -j` reports it, independently of the netlink backend.
    pub fn read_state(&self) -> NetState {
        ipjson::read_state(self)
    }
}

impl Default for TestNs {
    fn default() -> Self {
        TestNs::new()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not remove test namespace {}: {e}",
                self.name
            );
        }
    }
}

/// True for `PREFIX<pid>-…` names whose process is gone (not this one): leftovers of a
/// test process that was killed before its Drop ran.
pub(crate) fn owner_is_dead(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists()
        })
}

/// Deletes `eqt-<pid>-*` namespaces left by test processes that died without dropping
/// them (killed, aborted). Runs once before the first [`TestNs`] of a process.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner_is_dead(&name, PREFIX) {
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}
