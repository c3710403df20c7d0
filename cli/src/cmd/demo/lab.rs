//! The demo's throwaway lab: a `host` namespace whose uplink eth0 is a veth to a `lan`
//! namespace acting as its router, and a private tmpfs standing in for /dev/shm. Dropping
//! the lab removes all of it, on success, error or Ctrl-C alike.

use std::path::PathBuf;
use std::process::Command;

use crate::exit::{Code, Failure};

pub struct Lab {
    pub host: String,
    pub lan: String,
    pub shm: PathBuf,
    mounted: bool,
}

pub const HOST_V4: &str = "192.0.2.10";
pub const HOST_V6: &str = "2001:db8::10";
pub const LAN_V4: &str = "192.0.2.1";

/// Runs `ip ARGS…`, failing with the command line and iproute2's message.
pub fn ip(args: &[&str]) -> Result<String, Failure> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        Failure::new(
            Code::NotFound,
            format!("running `ip`: {e}; install iproute2"),
        )
    })?;
    if !out.status.success() {
        return Err(Failure::new(
            Code::Kernel,
            format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    pub fn build() -> Result<Lab, Failure> {
        let pid = std::process::id();
        let mut lab = Lab {
            host: format!("eqdemo-{pid}-host"),
            lan: format!("eqdemo-{pid}-lan"),
            shm: std::env::temp_dir().join(format!("env-qemu-demo-{pid}-shm")),
            mounted: false,
        };
        let (h, l) = (lab.host.clone(), lab.lan.clone());
        ip(&["netns", "add", &h])?;
        ip(&["netns", "add", &l])?;
        // DAD off in the lab, so "before" is a settled state to compare "after" with.
        for ns in [&h, &l] {
            for dev in ["all", "default"] {
                let key = format!("/proc/sys/net/ipv6/conf/{dev}/accept_dad");
                ip(&["netns", "exec", ns, "sh", "-c", &format!("echo 0 > {key}")])?;
            }
        }
        ip(&[
            "-n", &h, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", &l,
        ])?;
        for (ns, dev) in [(&h, "lo"), (&h, "eth0"), (&l, "lo"), (&l, "lan0")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &l, "addr", "add", "192.0.2.1/24", "dev", "lan0"])?;
        ip(&["-n", &l, "addr", "add", "2001:db8::1/64", "dev", "lan0"])?;
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{HOST_V4}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{HOST_V6}/64"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n", &h, "route", "add", "default", "via", LAN_V4, "dev", "eth0", "metric", "100",
        ])?;
        ip(&[
            "-n",
            &h,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            LAN_V4,
            "table",
            "100",
        ])?;
        std::fs::create_dir_all(&lab.shm)
            .map_err(|e| Failure::new(Code::Permission, format!("{}: {e}", lab.shm.display())))?;
        nix::mount::mount(
            Some("env-qemu-test"),
            &lab.shm,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("size=64m"),
        )
        .map_err(|e| Failure::new(Code::Permission, format!("mounting the lab's tmpfs: {e}")))?;
        lab.mounted = true;
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.shm, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.shm);
        for ns in [&self.host, &self.lan] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
