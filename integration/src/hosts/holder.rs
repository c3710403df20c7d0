//! [`Holder`]: a process owning the private mount and UTS namespaces a host's daemons
//! run in, inside the host's network namespace.
//!
//! The recipe, and why each piece is there, is docs/kernel-behaviour.md, Q1 (measured
//! with dhcpcd 9.4.1, dhclient 4.4.3 and NetworkManager 1.42):
//! - a tmpfs over `/run`, with the network namespace bound at `/run/netns/NAME`: dhcpcd
//!   decides "network namespace, no udev" by finding it there, and without it waits for
//!   udev forever;
//! - an overlay over `/etc` (upper layer in the private `/run`): dhcpcd's and
//!   dhclient-script's hooks rewrite `/etc/resolv.conf` and create files beside it;
//! - tmpfs over `/var/lib/dhcpcd` and `/var/lib/dhcp` (leases, DUID, secret);
//! - for NetworkManager ([`HolderKind::NetworkManager`]): tmpfs over `/etc/NetworkManager`
//!   (none of the machine's profiles) and `/var/lib/NetworkManager`, `/sys` read-only
//!   (NM then logs "no udev" and manages the veth), `/run/dbus` for a private bus;
//! - for systemd-networkd ([`HolderKind::Networkd`]): tmpfs over `/etc/systemd/network`
//!   (none of the machine's `.network` files) and `/var/lib/systemd`, `/sys` read-only
//!   (networkd then waits for no udev), `/run/dbus` for a private bus;
//! - the hostname set in the private UTS namespace (hooks may call `hostname`).
//!
//! Every mount is made with `mount -n` in the private namespace, its source named
//! `env-qemu-test-NETNS-…` (NETNS = `eqt-<test pid>-<n>`); nothing appears in the
//! machine's. Every process of the host shares the holder's mount namespace, whose
//! /proc/PID/mountinfo names the test it belongs to: `ci/check-leftovers` finds a daemon
//! that outlived its test process by it ([`crate::hosts::process::test_of`]).
//!
//! The holder refuses to mount anything if its network, mount or UTS namespace is the
//! caller's or PID 1's; the caller checks again from outside once it is set up.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::guard::{wait_until, ChildGuard};
use crate::hosts::process::{end_pids, netns_of, ns_id};
use crate::TestNs;

/// The system bus address inside the holder: a path in its private `/run`.
pub const PRIVATE_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// The machine directories a holder hides behind a tmpfs: they must exist (the daemons'
/// packages make them), as a holder never creates anything outside its own mounts.
const HIDDEN_DIRS: [&str; 2] = ["/var/lib/dhcpcd", "/var/lib/dhcp"];
const HIDDEN_DIRS_NM: [&str; 2] = ["/etc/NetworkManager", "/var/lib/NetworkManager"];
const HIDDEN_DIRS_NETWORKD: [&str; 2] = ["/etc/systemd/network", "/var/lib/systemd"];

/// What the holder prepares besides the common part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderKind {
    /// DHCP clients, kernel SLAAC.
    Plain,
    /// NetworkManager and its private dbus-daemon.
    NetworkManager,
    /// systemd-networkd and its private dbus-daemon.
    Networkd,
}

/// Runs inside `ip netns exec NS unshare -m -u --propagation private`:
/// `sh -c SCRIPT sh NETNS READY_FILE KIND CALLER_NET CALLER_MNT CALLER_UTS`.
const SCRIPT: &str = r#"set -eu
name=$1 ready=$2 kind=$3
for pair in "net:$4" "mnt:$5" "uts:$6"; do
  ns=${pair%%:*}; caller=${pair#*:}
  mine=$(readlink "/proc/self/ns/$ns")
  if [ "$mine" = "$caller" ] || [ "$mine" = "$(readlink "/proc/1/ns/$ns")" ]; then
    echo "holder: REFUSING: my $ns namespace $mine is the caller's or PID 1's" >&2
    exit 1
  fi
done
hostname "$name"
mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-run" /run
mkdir /run/netns
: > "/run/netns/$name"
mount -n --bind /proc/self/ns/net "/run/netns/$name"
mkdir -p /run/eqt-holder/etc-upper /run/eqt-holder/etc-work
mount -n -t overlay -o lowerdir=/etc,upperdir=/run/eqt-holder/etc-upper,workdir=/run/eqt-holder/etc-work "env-qemu-test-$name-etc" /etc
mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-dhcpcd" /var/lib/dhcpcd
mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-dhcp" /var/lib/dhcp
if [ "$kind" = nm ]; then
  mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-nm-etc" /etc/NetworkManager
  mount -n -t tmpfs -o mode=0700 "env-qemu-test-$name-nm-lib" /var/lib/NetworkManager
  mount -n -o remount,bind,ro /sys
  mkdir -p /run/dbus /run/NetworkManager /etc/NetworkManager/conf.d /etc/NetworkManager/system-connections
fi
if [ "$kind" = networkd ]; then
  mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-networkd-etc" /etc/systemd/network
  mount -n -t tmpfs -o mode=0755 "env-qemu-test-$name-systemd-lib" /var/lib/systemd
  mount -n -o remount,bind,ro /sys
  mkdir -p /run/dbus /run/systemd/network /run/systemd/netif
  chown systemd-network:systemd-network /run/systemd/netif
fi
: > "$ready"
exec sleep infinity
"#;

/// The holder process (`sleep infinity` once set up), ended on drop (by PID, after
/// `ip netns identify`, like the daemons).
#[derive(Debug)]
pub struct Holder {
    process: ChildGuard,
    ended: bool,
    netns: String,
    mnt: String,
    uts: String,
}

impl Holder {
    /// Starts the holder in `ns`; `dir` (the test's directory) gets its stderr and ready
    /// file. Returns once the mounts are in place and checked from outside.
    pub fn start(ns: &TestNs, dir: &Path, kind: HolderKind) -> Holder {
        let mut needed: Vec<&str> = HIDDEN_DIRS.to_vec();
        match kind {
            HolderKind::NetworkManager => needed.extend(HIDDEN_DIRS_NM),
            HolderKind::Networkd => needed.extend(HIDDEN_DIRS_NETWORKD),
            HolderKind::Plain => {}
        }
        for d in needed {
            assert!(
                Path::new(d).is_dir(),
                "{d} is missing: install the daemons with ci/install-deps (a holder hides \
                 these directories behind a tmpfs and never creates them)"
            );
        }
        let me = std::process::id();
        let caller = |kind: &str| ns_id(me, kind).expect("own namespaces");
        let ready = dir.join("holder.ready");
        let stderr = dir.join("holder.stderr");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .args(["unshare", "-m", "-u", "--propagation", "private"])
            .args(["sh", "-c", SCRIPT, "sh", ns.name()])
            .arg(&ready)
            .arg(match kind {
                HolderKind::Plain => "plain",
                HolderKind::NetworkManager => "nm",
                HolderKind::Networkd => "networkd",
            })
            .args([caller("net"), caller("mnt"), caller("uts")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("create holder.stderr"));
        let mut process = ChildGuard::spawn("holder", &mut cmd);
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(status) = process.try_wait() {
                panic!(
                    "holder exited ({status}): {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            ready.exists().then_some(())
        });
        assert!(up.is_some(), "holder not ready within 10 s");
        let pid = process.pid();
        let ns_of = |kind: &str| ns_id(pid, kind).expect("holder runs");
        let holder = Holder {
            ended: false,
            netns: ns.name().to_string(),
            mnt: ns_of("mnt"),
            uts: ns_of("uts"),
            process,
        };
        // Checked from outside too: the holder's network namespace is the test's, its
        // mount and UTS namespaces are not ours, and its /run is not the machine's.
        assert_eq!(netns_of(pid), vec![ns.name().to_string()], "holder's netns");
        assert_ne!(holder.mnt, caller("mnt"), "holder's mount namespace");
        assert_ne!(holder.uts, caller("uts"), "holder's UTS namespace");
        assert!(
            holder.exists("/run/eqt-holder") && !Path::new("/run/eqt-holder").exists(),
            "the holder's /run is not private"
        );
        holder
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The test network namespace's name.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `mnt:[…]` of the holder: every daemon of the host shares it.
    pub fn mount_ns(&self) -> &str {
        &self.mnt
    }

    /// `uts:[…]` of the holder.
    pub fn uts_ns(&self) -> &str {
        &self.uts
    }

    /// Ends the holder by PID (SIGTERM, then SIGKILL), once `ip netns identify` has named
    /// the test's namespace. Its mount namespace, and every mount in it, goes once no
    /// daemon is left in it either. No command can be run inside afterwards.
    pub fn terminate(&mut self) {
        self.ended = true;
        for line in end_pids(&self.netns, &[self.pid()], Duration::from_secs(5)) {
            eprintln!("holder: {line}");
        }
        // Reaps it (our child); SIGKILL only if it is still there, which the above makes
        // unlikely.
        self.process.terminate(Duration::from_secs(1));
    }

    /// Panics unless the holder still runs in the namespaces it was started in: a command
    /// must never enter another process's namespaces through a recycled PID.
    fn check_alive(&self) {
        assert!(!self.ended, "the holder of {} was ended", self.netns);
        let pid = self.pid();
        assert_eq!(
            ns_id(pid, "mnt").as_deref(),
            Some(self.mnt.as_str()),
            "the holder of {} (pid {pid}) is gone",
            self.netns
        );
    }

    /// `nsenter -t HOLDER -n -m -u -- PROGRAM`: a command inside the host's network
    /// namespace and the holder's mount and UTS namespaces, with the system bus set to the
    /// private one (a path in the private /run: nothing reaches the machine's bus).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.check_alive();
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid().to_string(), "-n", "-m", "-u", "--"])
            .arg(program)
            .env("DBUS_SYSTEM_BUS_ADDRESS", PRIVATE_SYSTEM_BUS)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `program args…` inside (see [`Holder::command`]) to completion; `Err` has its
    /// stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| format!("nsenter {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{program} {}` in the holder failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The content of `path` as the host sees it (its private /run, its /etc overlay).
    /// Read through `nsenter`, never through /proc/PID/root, where an absolute symlink
    /// (`/var/run` → `/run`) would resolve in the machine's tree.
    pub fn read(&self, path: &str) -> Option<String> {
        self.run("cat", &["--", path]).ok()
    }

    /// Whether `path` exists for the host.
    pub fn exists(&self, path: &str) -> bool {
        self.run("test", &["-e", path]).is_ok()
    }

    /// Writes `contents` to `path` as the host sees it (in the private /run or /etc
    /// overlay).
    pub fn write(&self, path: &str, contents: &str) {
        use std::io::Write;
        let mut child = self
            .command("sh")
            .args(["-c", "cat > \"$1\"", "sh", path])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsenter sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(contents.as_bytes())
            .expect("write to the holder");
        let status = child.wait().expect("wait nsenter sh");
        assert!(status.success(), "writing {path} in the holder: {status}");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if !self.ended {
            self.terminate();
        }
    }
}
