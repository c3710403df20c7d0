//! A real QEMU guest on the bridge, end to end, in throwaway namespaces.
//!
//! `lan` runs dnsmasq as the LAN's only DHCP server (bound to its interface, DNS off);
//! `host` is bridged by the real `env-qemu start`; QEMU (TCG, no disk) runs inside `host`
//! with an e1000 on a tap. A lease for the VM's MAC in dnsmasq's lease file proves that the
//! guest's DHCP request went tap → bridge → uplink → LAN and that the answer came back
//! (QEMU's built-in DHCP is not involved: the netdev is a tap). After QEMU ends, the tap is
//! detached (qemu-ifdown ran), `env-qemu stop` runs, and the host namespace reads back
//! (`ip -j`, normalised) exactly as before `start`.
//!
//! Guests: the e1000's iPXE boot ROM (`-boot n`, DHCPs by itself) through QEMU's
//! `script=`/`downscript=` and through a tap from `env-qemu tap create`; and a Linux
//! guest (Debian's kernel, an initramfs of busybox) that takes a lease with udhcpc and
//! pings the router, started by QEMU's scripts, and by `env-qemu run` as an unprivileged
//! user on the tap `run` made for it (`-netdev tap,fd={tapfd}`).
//!
//! Needs root, qemu-system-x86_64, ipxe-qemu, dnsmasq and, for the Linux guest, the kernel
//! package unpacked by `ci/install-deps`; otherwise `SKIPPED` (a failure under
//! `ENV_QEMU_REQUIRE_NETNS=1`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use env_qemu_core::model::NetState;
use env_qemu_integration::compare::{difference, same_state};
use env_qemu_integration::dnsmasq::{Dnsmasq, Lease};
use env_qemu_integration::guard::ChildGuard;
use env_qemu_integration::guard::{wait_until, ScratchDir, Stopwatch};
use env_qemu_integration::guest::{self, FAIL_MARK, LEASE_MARK, PING_OK_MARK};
use env_qemu_integration::qemu::{command_line, netdev_existing_tap, Boot, IfScripts, Qemu};
use env_qemu_integration::session::settled_state as settled;
use env_qemu_integration::topology::{LAN_ROUTER_V4, UPLINK};
use env_qemu_integration::{
    require_linux_guest, require_qemu, HostConfig, TestNs, Topology, TopologySpec,
};

const BIN: &str = env!("CARGO_BIN_EXE_env-qemu");
const BRIDGE: &str = "lepont";
/// The LAN side of the uplink's veth, where dnsmasq listens.
const LAN_IFACE: &str = "lan0";
const DHCP_FIRST: &str = "192.0.2.100";
const DHCP_LAST: &str = "192.0.2.149";
/// How long iPXE may take to get its lease (about 5 s under TCG here).
const IPXE_LEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the Linux guest may run, boot to power-off (about 12 s under TCG here).
const LINUX_TIMEOUT: Duration = Duration::from_secs(120);
/// How long QEMU may take to run its downscript and exit after SIGTERM.
const QEMU_GRACE: Duration = Duration::from_secs(10);

/// The namespaces, dnsmasq on the LAN, the host bridged by `env-qemu start`, and the
/// host's state before start. Fields drop in order: dnsmasq, then the namespaces, then the
/// scratch directory.
struct Lab {
    dnsmasq: Dnsmasq,
    topo: Topology,
    before: NetState,
    dir: ScratchDir,
    clock: Stopwatch,
}

impl Lab {
    /// The lab, bridged by `env-qemu start`.
    fn new(test: &str) -> Lab {
        let mut lab = Lab::unbridged(test);
        lab.ok(&["start", UPLINK, "--shm-size", "off"]);
        lab.clock.step("env-qemu start");
        lab
    }

    /// The namespaces and dnsmasq, nothing started.
    fn unbridged(test: &str) -> Lab {
        let mut clock = Stopwatch::new(test);
        let dir = ScratchDir::new();
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        let topo = Topology::build(&TopologySpec {
            host: HostConfig::dhcp_like(),
            far: false,
        });
        let before = settled(&topo.host);
        clock.step("namespaces");
        let dnsmasq = Dnsmasq::start(&topo.lan, LAN_IFACE, DHCP_FIRST, DHCP_LAST, dir.path());
        clock.step("dnsmasq up");
        Lab {
            dnsmasq,
            topo,
            before,
            dir,
            clock,
        }
    }

    fn host(&self) -> &TestNs {
        &self.topo.host
    }

    /// The options confining env-qemu to this lab: its host namespace, a private state
    /// directory, no config file (never /run/env-qemu, /etc/env-qemu.toml or /dev/shm).
    fn options(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        vec![
            "--netns".into(),
            self.host().name().to_string(),
            "--state-dir".into(),
            format!("{dir}/state"),
            "--config".into(),
            format!("{dir}/none.toml"),
        ]
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(BIN)
            .args(self.options())
            .args(args)
            .output()
            .expect("env-qemu runs")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "env-qemu {} exited {}:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The bridge's ports (`ip -j link show master lepont`).
    fn ports(&self) -> Vec<String> {
        self.host()
            .ip_json(&format!("link show master {BRIDGE}"))
            .as_array()
            .expect("ip -j gives an array")
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    fn link_exists(&self, dev: &str) -> bool {
        self.host().try_ip(&format!("link show dev {dev}")).is_ok()
    }

    /// Waits until `tap` is a port of the bridge while QEMU runs.
    fn wait_attached(&self, vm: &mut Qemu, tap: &str) {
        let attached = wait_until(Duration::from_secs(20), || {
            if let Some(s) = vm.try_wait() {
                panic!(
                    "QEMU exited ({s}) before {tap} was attached:\n{}",
                    vm.report()
                );
            }
            self.ports().iter().any(|p| p == tap).then_some(())
        });
        assert!(
            attached.is_some(),
            "{tap} not on {BRIDGE} after 20 s (ports {:?}):\n{}",
            self.ports(),
            vm.report()
        );
    }

    /// Waits for dnsmasq's lease for `mac` while QEMU runs.
    fn wait_lease(&self, vm: &mut Qemu, mac: &str, timeout: Duration) -> Lease {
        let lease = wait_until(timeout, || {
            if let Some(s) = vm.try_wait() {
                panic!(
                    "QEMU exited ({s}) before a lease for {mac}:\n{}",
                    vm.report()
                );
            }
            self.dnsmasq.lease_of(mac)
        });
        lease.unwrap_or_else(|| {
            panic!(
                "no lease for {mac} within {timeout:?}\n--- dnsmasq log\n{}\n{}",
                self.dnsmasq.log(),
                vm.report()
            )
        })
    }

    /// dnsmasq acknowledged `lease` on the LAN interface (its log: `DHCPACK(lan0) IP MAC`).
    fn assert_acked_on_lan(&self, lease: &Lease) {
        let ack = format!("DHCPACK({LAN_IFACE}) {} {}", lease.ip, lease.mac);
        let log = self.dnsmasq.log();
        assert!(log.contains(&ack), "dnsmasq log lacks {ack:?}:\n{log}");
        let ip: Ipv4Addr = lease.ip.parse().expect("an IPv4 lease");
        let (first, last): (Ipv4Addr, Ipv4Addr) = (
            DHCP_FIRST.parse().expect("v4"),
            DHCP_LAST.parse().expect("v4"),
        );
        assert!(
            (first..=last).contains(&ip),
            "lease {ip} outside {first}-{last}"
        );
    }

    /// The bridge learned `mac` on `tap`: the guest's frames crossed the bridge from it.
    fn assert_learned(&self, mac: &str, tap: &str) {
        let fdb = self
            .host()
            .exec("bridge", &["-j", "fdb", "show", "br", BRIDGE]);
        let fdb: serde_json::Value = serde_json::from_str(&fdb).expect("bridge -j fdb");
        let learned = fdb.as_array().is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e["mac"].as_str() == Some(mac) && e["ifname"].as_str() == Some(tap))
        });
        assert!(learned, "{BRIDGE} has not learned {mac} on {tap}: {fdb}");
    }

    /// The tap is gone (QEMU closed it) and the scripts' log shows qemu-ifup and
    /// qemu-ifdown both ran for it and succeeded.
    fn assert_scripts_ran(&self, scripts: &IfScripts, tap: &str) {
        let gone = wait_until(Duration::from_secs(5), || {
            (!self.link_exists(tap)).then_some(())
        });
        assert!(gone.is_some(), "{tap} still exists after QEMU exited");
        let log = scripts.log();
        for line in [
            format!("qemu-ifup {tap} exit 0"),
            format!("qemu-ifdown {tap} exit 0"),
        ] {
            assert!(
                log.lines().any(|l| l == line),
                "scripts log lacks {line:?}:\n{log}"
            );
        }
        assert_eq!(
            self.ports(),
            vec![UPLINK.to_string()],
            "only the uplink left"
        );
    }

    /// `env-qemu stop` (no --force: no VM may be attached any more), then the host reads
    /// back exactly as before start.
    fn stop_and_check_restored(&mut self) {
        self.ok(&["stop"]);
        self.clock.step("env-qemu stop");
        self.check_restored();
    }

    /// The bridge is gone and the host reads back exactly as before start.
    fn check_restored(&mut self) {
        assert!(
            !self.link_exists(BRIDGE),
            "{BRIDGE} still exists after stop"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.host().read_state();
            if same_state(&self.before, &now) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the host namespace differs after stop (left: before start, right: now):\n{}",
                difference(&self.before, &now)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.clock.step("restore checked");
    }

    /// A subdirectory of the scratch dir for one VM's files.
    fn vm_dir(&self, name: &str) -> std::path::PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).expect("vm dir");
        d
    }
}

fn scripts_for(lab: &Lab) -> IfScripts {
    IfScripts::write(lab.dir.path(), Path::new(BIN), &lab.options())
}

#[test]
fn ipxe_guest_gets_a_lan_lease_through_qemu_ifup() {
    require_qemu!();
    const MAC: &str = "52:54:00:e2:e0:01";
    const TAP: &str = "vm0";
    let mut lab = Lab::new("ipxe_guest_gets_a_lan_lease_through_qemu_ifup");
    let scripts = scripts_for(&lab);
    let mut vm = Qemu::spawn(
        lab.host(),
        &scripts.netdev(TAP),
        MAC,
        &Boot::Pxe,
        &lab.vm_dir("vm"),
    );
    lab.wait_attached(&mut vm, TAP);
    lab.clock.step("QEMU up, qemu-ifup attached the tap");
    let lease = lab.wait_lease(&mut vm, MAC, IPXE_LEASE_TIMEOUT);
    lab.clock.step("iPXE DHCP lease from the LAN's dnsmasq");
    lab.assert_acked_on_lan(&lease);
    lab.assert_learned(MAC, TAP);
    let status = vm.terminate(QEMU_GRACE);
    lab.clock.step("QEMU ended (SIGTERM), qemu-ifdown ran");
    assert!(
        status.code().is_some(),
        "QEMU did not exit by itself on SIGTERM ({status}):\n{}",
        vm.report()
    );
    lab.assert_scripts_ran(&scripts, TAP);
    lab.stop_and_check_restored();
    eprintln!("lease {} for {MAC}", lease.ip);
    lab.clock.summary();
}

#[test]
fn ipxe_guest_gets_a_lan_lease_on_a_tap_from_tap_create() {
    require_qemu!();
    const MAC: &str = "52:54:00:e2:e0:02";
    const TAP: &str = "vm1";
    let mut lab = Lab::new("ipxe_guest_gets_a_lan_lease_on_a_tap_from_tap_create");
    let out = lab.ok(&["tap", "create", TAP]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), TAP, "tap create prints the tap's name");
    assert!(lab.ports().iter().any(|p| p == TAP), "{TAP} is on {BRIDGE}");
    lab.clock.step("env-qemu tap create");
    let mut vm = Qemu::spawn(
        lab.host(),
        &netdev_existing_tap(TAP),
        MAC,
        &Boot::Pxe,
        &lab.vm_dir("vm"),
    );
    let lease = lab.wait_lease(&mut vm, MAC, IPXE_LEASE_TIMEOUT);
    lab.clock.step("iPXE DHCP lease from the LAN's dnsmasq");
    lab.assert_acked_on_lan(&lease);
    lab.assert_learned(MAC, TAP);
    vm.terminate(QEMU_GRACE);
    lab.clock.step("QEMU ended (SIGTERM)");
    // A persistent tap outlives QEMU, still attached; stop refuses while it is.
    assert!(lab.link_exists(TAP), "{TAP} is persistent");
    assert!(
        lab.ports().iter().any(|p| p == TAP),
        "{TAP} still on {BRIDGE}"
    );
    let refused = lab.run(&["stop"]);
    assert_eq!(
        refused.status.code(),
        Some(4),
        "stop with {TAP} attached is a conflict: {refused:?}"
    );
    lab.ok(&["tap", "delete", TAP]);
    assert!(!lab.link_exists(TAP), "tap delete removed {TAP}");
    lab.clock.step("env-qemu tap delete");
    lab.stop_and_check_restored();
    eprintln!("lease {} for {MAC}", lease.ip);
    lab.clock.summary();
}

#[test]
fn linux_guest_leases_from_the_lan_and_pings_the_router() {
    let kit = require_linux_guest!();
    const MAC: &str = "52:54:00:e2:e0:03";
    const TAP: &str = "vm0";
    let mut lab = Lab::new("linux_guest_leases_from_the_lan_and_pings_the_router");
    let dir = lab.vm_dir("vm");
    let initrd = kit.build_initramfs(&dir, LAN_ROUTER_V4);
    let size = std::fs::metadata(&initrd).expect("initramfs").len();
    lab.clock.step(&format!(
        "initramfs built ({} KiB, kernel {})",
        size / 1024,
        kit.version
    ));
    let scripts = scripts_for(&lab);
    let boot = Boot::Linux {
        kernel: kit.vmlinuz,
        initrd,
        append: guest::APPEND.to_string(),
    };
    let mut vm = Qemu::spawn(lab.host(), &scripts.netdev(TAP), MAC, &boot, &dir);
    lab.wait_attached(&mut vm, TAP);
    lab.clock.step("QEMU up, qemu-ifup attached the tap");

    // The guest runs to its own power-off; note when each marker shows up.
    let (mut leased, mut pinged) = (false, false);
    let status = wait_until(LINUX_TIMEOUT, || {
        let serial = vm.serial();
        if !leased && serial.contains(LEASE_MARK) {
            leased = true;
            lab.clock.step("guest: udhcpc lease (E2E-LEASE)");
        }
        if !pinged && serial.contains(PING_OK_MARK) {
            pinged = true;
            lab.clock.step("guest: router answered (E2E-PING-OK)");
        }
        vm.try_wait()
    });
    let Some(status) = status else {
        let report = vm.report();
        vm.terminate(QEMU_GRACE);
        panic!("the Linux guest did not power off within {LINUX_TIMEOUT:?}:\n{report}");
    };
    lab.clock.step("guest powered off, QEMU exited");
    let serial = vm.serial();
    assert!(status.success(), "QEMU exited {status}:\n{}", vm.report());
    assert!(!serial.contains(FAIL_MARK), "the guest failed:\n{serial}");
    let guest_ip = serial
        .lines()
        .find_map(|l| l.trim().strip_prefix(LEASE_MARK))
        .map(|ip| ip.trim().to_string())
        .unwrap_or_else(|| panic!("no {LEASE_MARK} on the console:\n{serial}"));
    assert!(
        serial.contains(PING_OK_MARK),
        "no {PING_OK_MARK}:\n{serial}"
    );
    let lease = lab
        .dnsmasq
        .lease_of(MAC)
        .unwrap_or_else(|| panic!("dnsmasq has no lease for {MAC}:\n{}", lab.dnsmasq.log()));
    assert_eq!(
        lease.ip, guest_ip,
        "the guest configured the address dnsmasq leased"
    );
    lab.assert_acked_on_lan(&lease);
    lab.assert_scripts_ran(&scripts, TAP);
    lab.stop_and_check_restored();
    eprintln!("lease {guest_ip} for {MAC}\n--- serial console\n{serial}");
    lab.clock.summary();
}

/// The desktop way: `sudo env-qemu run -- qemu-system-x86_64 … -netdev tap,id=n0,fd={tapfd}`
/// (sudo simulated: root with SUDO_UID/SUDO_GID of `nobody`). `run` starts the bridge,
/// makes a tap for the user and opens it; QEMU runs as `nobody` with that descriptor (no
/// access to /dev/net/tun of its own), and the guest leases from the LAN. When QEMU
/// exits, `run` deletes the tap and stops: the host reads back exactly as before.
#[test]
fn linux_guest_started_by_run_as_a_user_leases_through_its_fd_tap() {
    let kit = require_linux_guest!();
    const MAC: &str = "52:54:00:e2:e0:04";
    let mut lab = Lab::unbridged("linux_guest_started_by_run_as_a_user_leases_through_its_fd_tap");
    let user = nix::unistd::User::from_name("nobody")
        .expect("read passwd")
        .expect("the nobody account");
    // Everything QEMU opens as the user: readable (the kernel copied out of the build
    // tree, which may be under /root), and a directory it may write its console to.
    let dir = lab.vm_dir("vm-run");
    let kernel = dir.join("vmlinuz");
    std::fs::copy(&kit.vmlinuz, &kernel).expect("copy the guest kernel");
    let initrd = kit.build_initramfs(&dir, LAN_ROUTER_V4);
    for f in [&kernel, &initrd] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).expect("chown the vm dir");
    lab.clock.step("guest kernel and initramfs ready");
    let boot = Boot::Linux {
        kernel,
        initrd,
        append: guest::APPEND.to_string(),
    };
    let serial = dir.join("serial.log");
    let qemu = command_line("tap,id=n0,fd={tapfd}", MAC, &boot, &serial);
    let output = dir.join("run.out");
    let out = std::fs::File::create(&output).expect("create run.out");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(lab.options())
        .args(["run", "--shm-size", "off", "--"])
        .args(&qemu)
        .env("SUDO_UID", user.uid.to_string())
        .env("SUDO_GID", user.gid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    let mut run = ChildGuard::spawn("env-qemu run", &mut cmd);
    let log = || std::fs::read_to_string(&output).unwrap_or_default();
    let console = || std::fs::read_to_string(&serial).unwrap_or_default();
    let status = wait_until(LINUX_TIMEOUT, || run.try_wait());
    let Some(status) = status else {
        panic!(
            "the guest did not power off within {LINUX_TIMEOUT:?}\n--- run\n{}\n--- serial\n{}",
            log(),
            console()
        );
    };
    lab.clock.step("guest powered off, QEMU and run exited");
    let (log, serial_text) = (log(), console());
    assert!(
        status.success(),
        "run exited {status}:\n{log}\n{serial_text}"
    );
    assert!(log.contains("eqtap0 made for nobody"), "{log}");
    // QEMU wrote its console as the user.
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&serial).expect("serial log"));
    assert_eq!(owner, user.uid.as_raw(), "QEMU ran as nobody");
    assert!(
        !serial_text.contains(FAIL_MARK),
        "the guest failed:\n{serial_text}"
    );
    assert!(
        serial_text.contains(PING_OK_MARK),
        "no {PING_OK_MARK}:\n{serial_text}"
    );
    let guest_ip = serial_text
        .lines()
        .find_map(|l| l.trim().strip_prefix(LEASE_MARK))
        .map(|ip| ip.trim().to_string())
        .unwrap_or_else(|| panic!("no {LEASE_MARK} on the console:\n{serial_text}"));
    let lease = lab
        .dnsmasq
        .lease_of(MAC)
        .unwrap_or_else(|| panic!("dnsmasq has no lease for {MAC}:\n{}", lab.dnsmasq.log()));
    assert_eq!(lease.ip, guest_ip);
    lab.assert_acked_on_lan(&lease);
    assert!(!lab.link_exists("eqtap0"), "run left its tap");
    assert!(log.contains("lepont removed, network restored"), "{log}");
    lab.check_restored();
    eprintln!("lease {guest_ip} for {MAC}\n--- run\n{log}");
    lab.clock.summary();
}
