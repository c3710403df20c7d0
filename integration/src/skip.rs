//! The skip policy of real-kernel tests.
//!
//! Without root, `ip`, network namespaces or /dev/net/tun, a real-kernel test prints
//! `SKIPPED: <test>: <reason>` and returns, so `cargo test` stays green on a developer
//! laptop. With `ENV_QEMU_REQUIRE_NETNS=1` (CI as root) a skip is a failure instead.

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Set to `1` to turn every skip into a panic.
pub const REQUIRE_ENV: &str = "ENV_QEMU_REQUIRE_NETNS";

/// Why throwaway network namespaces cannot be used here, if they cannot.
pub fn netns_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) for network namespaces".into());
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Some("the kernel has no network namespaces (/proc/self/ns/net)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(_) | Err(_) => Some("iproute2's `ip` is not installed".into()),
    }
}

/// Like [`netns_unavailable`], and also needs the tun driver.
pub fn tun_unavailable() -> Option<String> {
    netns_unavailable().or_else(|| {
        (!Path::new("/dev/net/tun").exists())
            .then(|| "/dev/net/tun is missing (modprobe tun)".to_string())
    })
}

/// Reports a skip for the running test — or fails it under `ENV_QEMU_REQUIRE_NETNS=1`.
pub fn skip(reason: &str) {
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1");
    skip_as(test, reason, required);
}

/// [`skip`] with the test name and the policy given explicitly.
pub fn skip_as(test: &str, reason: &str, required: bool) {
    if required {
        panic!("{test}: cannot run ({reason}) and {REQUIRE_ENV}=1 forbids skipping");
    }
    // Straight to fd 2: libtest captures print!/eprint! of passing tests, and a skip
    // must stay visible in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}

/// Returns from the calling test (after printing `SKIPPED: …`) unless throwaway network
/// namespaces are usable.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(reason) = $crate::skip::netns_unavailable() {
            $crate::skip::skip(&reason);
            return;
        }
    };
}

/// Like [`require_netns!`], and also needs /dev/net/tun.
#[macro_export]
macro_rules! require_tun {
    () => {
        if let Some(reason) = $crate::skip::tun_unavailable() {
            $crate::skip::skip(&reason);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "t: cannot run (no root) and ENV_QEMU_REQUIRE_NETNS=1 forbids skipping"
    )]
    fn a_required_skip_fails() {
        skip_as("t", "no root", true);
    }
}
