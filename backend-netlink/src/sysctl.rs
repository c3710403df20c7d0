//! `sysctl net.ipv6.conf.DEV.KNOB[=VALUE]` through /proc/sys.
//!
//! /proc/sys/net shows the network namespace of the thread that opens the file, so these
//! run on the namespace worker.

use std::fs;

use env_qemu_core::model::SysctlKey;

use crate::errors::Failure;

fn path(key: &SysctlKey) -> String {
    format!("/proc/sys/{}", key.proc_path())
}

/// The value, without its trailing newline. ENOENT when the device does not exist (or
/// IPv6 is disabled on it).
pub(crate) fn read(key: &SysctlKey) -> Result<String, Failure> {
    let text = fs::read_to_string(path(key)).map_err(|e| Failure::from(e).context("read"))?;
    Ok(text.trim_end_matches('\n').to_string())
}

/// Writes `value` in one write(2), as sysctl(8) does; the kernel parses it and answers
/// EINVAL for a value it does not accept.
pub(crate) fn write(key: &SysctlKey, value: &str) -> Result<(), Failure> {
    fs::write(path(key), value).map_err(|e| Failure::from(e).context("write"))
}
