//! `env-qemu run` for the desktop: COMMAND runs as the user who ran sudo (`nobody` here,
//! sudo simulated by SUDO_UID/SUDO_GID), with that user's groups, no new privileges, its
//! own process group and a clean environment; it gets a tap made for it (its name in
//! ENV_QEMU_TAP and `{tap}`, a descriptor opened by env-qemu as `{tapfd}`), deleted at
//! exit. Two runs get two taps; a run killed right after making its tap leaves a tap that
//! `stop` knows and deletes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{assert_restored, master_of, nobody, settled, EnvQemu, TempDir};
use env_qemu_core::model::NetState;
use env_qemu_integration::guard::wait_until;
use env_qemu_integration::qemu::find_program;
use env_qemu_integration::topology::{HostConfig, Topology, TopologySpec};
use env_qemu_integration::{require_netns, require_tun};

fn lab() -> (Topology, NetState, TempDir, EnvQemu) {
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: false,
    });
    let before = settled(&topo.host);
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    (topo, before, dir, eq)
}

fn exists(topo: &Topology, dev: &str) -> bool {
    topo.host.try_ip(&format!("link show dev {dev}")).is_ok()
}

/// Run by COMMAND (perl, always on Debian): reports `key=value` lines: its ids and
/// groups, NoNewPrivs, process group, open descriptors, environment, arguments; the tap
/// behind fd 3 (TUNGETIFF); then, fd 3 closed, the tap opened again by the name in
/// ENV_QEMU_TAP (TUNSETIFF, as QEMU's `ifname=` does).
const PROBE: &str = r#"
use strict;
my %r;
$r{uid} = $<; $r{euid} = $>;
my @g = split ' ', $(; $r{gid} = $g[0];
my @eg = split ' ', $); $r{egid} = $eg[0];
my %seen; $r{groups} = join(',', sort { $a <=> $b } grep { !$seen{$_}++ } @eg);
open(my $st, '<', '/proc/self/status') or die "status: $!";
while (<$st>) { $r{nnp} = $1 if /^NoNewPrivs:\s+(\d+)/; }
close $st;
$r{pid} = $$; $r{pgrp} = getpgrp(0);
opendir(my $d, '/proc/self/fd') or die "fd dir: $!";
my @fds = grep { /^\d+$/ } readdir($d);
closedir($d);
$r{fds} = join(' ', map { my $t = readlink("/proc/self/fd/$_"); defined $t ? "$_:$t" : () } sort { $a <=> $b } @fds);
$r{env} = join(',', sort keys %ENV);
$r{path} = $ENV{PATH}; $r{home} = $ENV{HOME};
$r{tap_env} = $ENV{ENV_QEMU_TAP} // ''; $r{tapfd_env} = $ENV{ENV_QEMU_TAP_FD} // '';
$r{args} = join(' ', @ARGV);
my ($TUNGETIFF, $TUNSETIFF) = (0x800454d2, 0x400454ca);
open(my $t3, '+<&=', 3) or die "fd 3: $!";
my $ifr = "\0" x 40;
ioctl($t3, $TUNGETIFF, $ifr) or die "TUNGETIFF: $!";
($r{fd3}) = unpack('Z16', $ifr);
close($t3);
open(my $tun, '+<', '/dev/net/tun') or die "open /dev/net/tun: $!";
my $req = pack('a16 s x22', $ENV{ENV_QEMU_TAP}, 0x0002 | 0x1000);
ioctl($tun, $TUNSETIFF, $req) or die "TUNSETIFF $ENV{ENV_QEMU_TAP}: $!";
($r{by_name}) = unpack('Z16', $req);
print "$_=$r{$_}\n" for sort keys %r;
"#;

fn report(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn command_runs_as_the_sudo_caller_and_opens_its_tap_by_name_and_by_fd() {
    require_tun!();
    let (topo, before, _dir, eq) = lab();
    let caller = nobody();
    let out: common::Outcome = eq
        .sudo_command(
            &caller,
            &[
                "run",
                "--shm-size",
                "off",
                "--",
                "perl",
                "-e",
                PROBE,
                "{tap}",
                "{tapfd}",
            ],
        )
        .env("DISPLAY", ":42")
        .env("EVIL", "1")
        .env("LD_LIBRARY_PATH", "/nonexistent")
        .current_dir("/")
        .output()
        .expect("env-qemu runs")
        .into();
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let r = report(&out.stdout);
    eprintln!("COMMAND reported: {r:#?}");
    let n = |k: &str| -> u32 { r[k].parse().unwrap_or_else(|_| panic!("{k}: {r:?}")) };
    assert_eq!((n("uid"), n("euid")), (caller.uid, caller.uid), "not root");
    assert_eq!((n("gid"), n("egid")), (caller.gid, caller.gid));
    let mut want: BTreeSet<u32> = caller.groups.iter().copied().collect();
    want.insert(caller.gid);
    let got: BTreeSet<u32> = r["groups"].split(',').map(|g| g.parse().unwrap()).collect();
    assert_eq!(got, want, "initgroups: the caller's groups and no other");
    assert_eq!(r["nnp"], "1", "PR_SET_NO_NEW_PRIVS");
    assert_eq!(r["pgrp"], r["pid"], "its own process group");
    // Only stdio and the tap: no descriptor of env-qemu's (its netlink socket above all).
    let fds: Vec<&str> = r["fds"].split(' ').collect();
    assert_eq!(fds.len(), 4, "{fds:?}");
    assert_eq!(fds[3], "3:/dev/net/tun", "{fds:?}");
    // The environment is reset like sudo's env_reset.
    let env: BTreeSet<&str> = r["env"].split(',').collect();
    for gone in [
        "EVIL",
        "LD_LIBRARY_PATH",
        "SUDO_UID",
        "SUDO_GID",
        "SUDO_USER",
    ] {
        assert!(!env.contains(gone), "{gone} reached COMMAND: {env:?}");
    }
    for kept in ["DISPLAY", "HOME", "USER", "LOGNAME", "PATH", "ENV_QEMU_TAP"] {
        assert!(env.contains(kept), "{kept} missing: {env:?}");
    }
    assert_eq!(
        r["path"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(caller.uid))
        .unwrap()
        .unwrap()
        .dir;
    assert_eq!(r["home"], home.display().to_string());
    // The tap: its name in the environment and in place of {tap}; fd 3 is that tap; the
    // caller may open it by name.
    let tap = r["tap_env"].clone();
    assert!(tap.starts_with("eqtap"), "{tap}");
    assert_eq!(r["args"], format!("{tap} 3"), "{{tap}} and {{tapfd}}");
    assert_eq!(r["tapfd_env"], "3");
    assert_eq!(r["fd3"], tap, "fd 3 is the tap");
    assert_eq!(r["by_name"], tap, "opened by ENV_QEMU_TAP as the caller");
    assert!(
        out.stderr.contains(&format!(
            "{tap} made for {} (uid {})",
            caller.name, caller.uid
        )),
        "{}",
        out.stderr
    );
    assert!(!exists(&topo, &tap), "{tap} outlived the run");
    assert!(!exists(&topo, "lepont"), "the bridge outlived the only run");
    assert!(eq.state_files().is_empty());
    assert_restored(&topo.host, &before, "after run");
}

#[test]
fn root_needs_as_root_and_user_names_the_account() {
    require_tun!();
    let (topo, before, _dir, eq) = lab();
    // Neither sudo nor --user: refused before anything changes.
    let out = eq.run(&["run", "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--user NAME") && out.stderr.contains("--as-root"),
        "{}",
        out.stderr
    );
    assert!(eq.state_files().is_empty() && !exists(&topo, "lepont"));
    assert_restored(&topo.host, &before, "after the refusal");

    let id = "echo $(id -u) $(grep NoNewPrivs /proc/self/status | cut -f2)";
    let out = eq.run(&[
        "run",
        "--shm-size",
        "off",
        "--as-root",
        "--",
        "sh",
        "-c",
        id,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "0 0",
        "--as-root: root, privileges as they are"
    );

    let caller = nobody();
    let out = eq.run(&[
        "run",
        "--shm-size",
        "off",
        "--user",
        &caller.name,
        "--",
        "sh",
        "-c",
        id,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), format!("{} 1", caller.uid), "--user");
    assert_restored(&topo.host, &before, "after the runs");
}

/// A run waiting for `gate` to appear (at most 60 s), printing its tap's name first.
fn waiting_run(eq: &EnvQemu, gate: &std::path::Path) -> Child {
    let script = format!(
        "echo $ENV_QEMU_TAP; for i in $(seq 600); do [ -e {} ] && exit 0; sleep 0.1; done; exit 9",
        gate.display()
    );
    eq.sudo_command(
        &nobody(),
        &["run", "--shm-size", "off", "--", "sh", "-c", &script],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("env-qemu runs")
}

fn finish(child: Child) -> (String, String) {
    let out = child.wait_with_output().expect("run exits");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (stdout, stderr)
}

#[test]
fn two_concurrent_runs_get_two_taps_and_the_bridge_waits_for_the_last() {
    require_tun!();
    let (topo, before, dir, eq) = lab();
    let (gate1, gate2) = (dir.path().join("gate1"), dir.path().join("gate2"));
    let first = waiting_run(&eq, &gate1);
    let up = wait_until(Duration::from_secs(20), || {
        (master_of_tap(&topo, "eqtap0") == Some("lepont".into())).then_some(())
    });
    assert!(up.is_some(), "the first run's tap never got on the bridge");
    let second = waiting_run(&eq, &gate2);
    let up = wait_until(Duration::from_secs(20), || {
        (master_of_tap(&topo, "eqtap1") == Some("lepont".into())).then_some(())
    });
    assert!(up.is_some(), "the second run's tap never got on the bridge");

    std::fs::write(&gate1, b"").unwrap();
    let (tap1, err1) = finish(first);
    assert_eq!(tap1, "eqtap0");
    assert!(err1.contains("lepont stays up"), "{err1}");
    assert!(
        exists(&topo, "lepont"),
        "the first run out stopped the bridge"
    );
    assert!(!exists(&topo, "eqtap0"), "the first run's tap outlived it");
    assert_eq!(master_of(&topo.host, "eqtap1").as_deref(), Some("lepont"));

    std::fs::write(&gate2, b"").unwrap();
    let (tap2, err2) = finish(second);
    assert_eq!(tap2, "eqtap1");
    assert!(err2.contains("lepont removed, network restored"), "{err2}");
    assert!(!exists(&topo, "lepont") && !exists(&topo, "eqtap1"));
    assert!(eq.state_files().is_empty());
    assert_restored(&topo.host, &before, "after both runs");
}

fn master_of_tap(topo: &Topology, tap: &str) -> Option<String> {
    exists(topo, tap)
        .then(|| master_of(&topo.host, tap))
        .flatten()
}

/// The crash is injected with strace: SIGKILL as env-qemu enters the first close(2) of a
/// /dev/net/tun descriptor, the one that ends the tap's creation (after TUNSETPERSIST,
/// before the tap is attached or anything else is saved).
#[test]
fn stop_deletes_a_tap_whose_run_was_killed_right_after_making_it() {
    require_netns!();
    let Some(strace) = find_program("strace") else {
        env_qemu_integration::skip::skip("strace is not installed (Debian: strace)");
        return;
    };
    let (topo, before, _dir, eq) = lab();
    let mut cmd = std::process::Command::new(strace);
    cmd.args(["-f", "-o", "/dev/null", "-P", "/dev/net/tun"])
        .args(["-e", "trace=close", "-e", "inject=close:signal=KILL:when=1"])
        .arg(common::BIN)
        .args(eq.confinement())
        .args(["run", "--shm-size", "off", "--", "true"])
        .env("SUDO_UID", nobody().uid.to_string())
        .env("SUDO_GID", nobody().gid.to_string());
    let out = cmd.output().expect("strace runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "env-qemu was not killed: {stderr}");
    assert!(
        exists(&topo, "eqtap0"),
        "the tap was made before the kill: {stderr}"
    );
    assert_eq!(
        master_of(&topo.host, "eqtap0"),
        None,
        "killed before the attach"
    );
    // What status reads: the saved state, and the journal's last step (the creation).
    let s = eq.status();
    assert_eq!(s["started"], true, "{s}");
    let at = s["interrupted_at"].as_str().unwrap_or_default();
    assert!(
        at.starts_with("tap create eqtap0 step 1/") && at.contains("ip tuntap add dev eqtap0"),
        "{s}"
    );
    // A plain stop: the tap is on no bridge, and the state says env-qemu made it.
    let out = eq.ok(&["stop"]);
    assert!(
        out.stderr.contains("ip link del dev eqtap0"),
        "{}",
        out.stderr
    );
    assert!(!exists(&topo, "eqtap0"), "stop left the tap");
    assert!(eq.state_files().is_empty());
    assert_restored(&topo.host, &before, "after stop");
}

/// The caller's supplementary groups reach COMMAND (initgroups), so /dev/kvm through group
/// `kvm` works. `nobody` is in no group, so the test lists it in `kvm` in a copy of
/// /etc/group bind-mounted inside a private mount namespace (this machine's /etc is not
/// changed) and runs env-qemu there.
#[test]
fn the_callers_supplementary_groups_reach_command() {
    require_tun!();
    let kvm = nix::unistd::Group::from_name("kvm").ok().flatten();
    let group = match kvm {
        Some(g) => g,
        None => nix::unistd::Group::from_name("users")
            .ok()
            .flatten()
            .expect("a kvm or users group"),
    };
    let device = std::path::Path::new("/dev/kvm").exists() && group.name == "kvm";
    let (topo, before, dir, eq) = lab();
    let caller = nobody();
    let groups: String = std::fs::read_to_string("/etc/group")
        .expect("read /etc/group")
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            if fields.len() == 4 && fields[0] == group.name {
                let sep = if fields[3].is_empty() { "" } else { "," };
                format!("{l}{sep}{}\n", caller.name)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let copy = dir.path().join("group");
    std::fs::write(&copy, groups).expect("write the group copy");
    let probe = "id -G; test -r /dev/kvm && test -w /dev/kvm && echo kvm-usable; true";
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -n --bind "$0" /etc/group && exec "$@""#)
        .arg(&copy)
        .arg(common::BIN)
        .args(eq.confinement())
        .args(["run", "--shm-size", "off", "--", "sh", "-c", probe])
        .env("SUDO_UID", caller.uid.to_string())
        .env("SUDO_GID", caller.gid.to_string())
        .output()
        .expect("unshare runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let ids: BTreeSet<u32> = stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|g| g.parse().expect("a gid"))
        .collect();
    let want: BTreeSet<u32> = [caller.gid, group.gid.as_raw()].into_iter().collect();
    assert_eq!(ids, want, "{stdout}");
    if device {
        assert!(
            stdout.contains("kvm-usable"),
            "group kvm opens /dev/kvm: {stdout}"
        );
    }
    assert_restored(&topo.host, &before, "after run");
}
