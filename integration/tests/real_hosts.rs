//! The harness for hosts whose NIC is owned by real daemons (`env_qemu_integration::hosts`),
//! proved against the real kernel and the real daemons: for each manager (dhcpcd as a
//! manager and per interface, dhclient as ifupdown starts it, NetworkManager on a private
//! bus, kernel SLAAC) the host gets its lease and addresses from the LAN's dnsmasq within
//! a bound, every process of the host is confined (in the test's network namespace, in the
//! holder's mount and UTS namespaces, not the machine's), the host answers probes from the
//! LAN and the far host, and dropping everything leaves no process, namespace, mount or
//! file behind (the machine's /etc, /run, /var/lib and hostname compared before/after).
//!
//! Each test prints `TIMING …` (startup of its daemon) on stderr.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use env_qemu_integration::cmd::run;
use env_qemu_integration::guard::Stopwatch;
use env_qemu_integration::hosts::probe::stream_specs;
use env_qemu_integration::hosts::process::{ns_id, test_of, NsProcess};
use env_qemu_integration::hosts::{
    streams_during, ClientHost, Footprint, HostSpec, Lan, LanSpec, Manager, Pinger, HOST_MAC,
};
use env_qemu_integration::require_netns;
use env_qemu_integration::stream::table;

/// Every manager must configure the host within this (measured: see the TIMING lines).
const UP_BOUND: Duration = Duration::from_secs(30);

fn listed(name: &str) -> bool {
    run("ip", &["netns", "list"])
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn in_lan_prefix(ip: Ipv6Addr) -> bool {
    ip.segments()[..4] == [0x2001, 0xdb8, 0x42, 0]
}

/// Brings a host of `manager` up, checks lease, addresses, confinement and reachability,
/// lets `more` check what is particular to the manager, drops everything and checks that
/// nothing is left.
fn comes_up_confined_and_leaves_nothing(
    test: &str,
    manager: Manager,
    more: impl FnOnce(&Lan, &ClientHost),
) {
    let before = Footprint::take();
    let mut sw = Stopwatch::new(test);
    let (held, names) = {
        let lan = Lan::start(LanSpec::default());
        sw.step("lan and dnsmasq");
        let mark = lan.mark();
        let mut host = ClientHost::start(&lan, HostSpec::new(manager));
        sw.step("host namespace and holder");
        let up = host.wait_up(UP_BOUND);
        sw.step(&format!("{manager:?} up"));
        eprintln!(
            "{test}: {manager:?} configured eth0 {:.2} s after it started: {up:?}",
            up.took.as_secs_f64()
        );

        if manager.leases_v4() {
            let v4 = up.v4.expect("an IPv4 lease");
            let lease = lan
                .lease_of(HOST_MAC)
                .expect("dnsmasq's lease for eth0's MAC");
            assert_eq!(v4.ip, lease.ip, "eth0's address is dnsmasq's lease");
            assert_eq!(v4.prefix_len, 24);
            assert!(
                (100..=120).contains(&v4.valid_lft),
                "the 2-minute lease's lifetime on eth0: {v4:?}"
            );
            assert!(
                lan.acks_since(mark, HOST_MAC) >= 1,
                "no DHCPACK logged: {}",
                lan.log().since(mark)
            );
        } else {
            assert!(up.v4.is_none() && lan.lease_of(HOST_MAC).is_none());
        }
        let public = up.v6_public().expect("a global IPv6 address");
        assert!(in_lan_prefix(public), "{public} is not in 2001:db8:42::/64");

        // Confinement: every process of the host namespace, the daemon among them, is
        // in the test's network namespace and in the holder's mount and UTS namespaces,
        // which are not the machine's.
        let procs = host.processes();
        let me = std::process::id();
        let (my_mnt, my_uts) = (ns_id(me, "mnt").unwrap(), ns_id(me, "uts").unwrap());
        assert_ne!(host.holder().mount_ns(), my_mnt);
        for p in &procs {
            assert_eq!(p.netns, vec![host.ns().name().to_string()], "{p:?}");
            assert_eq!(p.mnt, host.holder().mount_ns(), "{p:?}");
            assert_eq!(p.uts, host.holder().uts_ns(), "{p:?}");
            assert_ne!(p.uts, my_uts, "{p:?}");
        }
        // The holder's mounts are named after the test: ci/check-leftovers finds a daemon
        // that outlived its test by its mount namespace.
        assert_eq!(
            test_of(host.holder().pid()).as_deref(),
            Some(host.ns().name())
        );
        assert_eq!(
            test_of(lan.dnsmasq_pid()).as_deref(),
            Some(lan.router().name())
        );
        assert_eq!(test_of(me), None, "the machine's /run is not the harness's");
        if manager != Manager::KernelSlaac {
            let daemon = host.daemon_pid().expect("the daemon's pid");
            assert!(
                procs.iter().any(|p| p.pid == daemon),
                "daemon {daemon} not among the host's processes {procs:#?}"
            );
        }
        if let Some(pid_file) = host.pid_file() {
            assert!(
                host.holder().exists(&pid_file),
                "{pid_file} inside the host"
            );
            assert!(!Path::new(&pid_file).exists(), "{pid_file} on the machine");
        }
        assert_eq!(
            host.holder().run("hostname", &[]).unwrap().trim(),
            host.ns().name(),
            "the host's own hostname, in its UTS namespace"
        );

        more(&lan, &host);

        // Reachable from the LAN and from behind the router, both families.
        host.serve_echo();
        let pinger = Pinger::from_lan(&lan, &up.targets(), Duration::from_millis(250));
        std::thread::sleep(Duration::from_secs(2));
        let report = pinger.stop();
        eprintln!("{test}: {}", report.table());
        assert_eq!(report.lost(), 0, "{}", report.table());
        assert_eq!(report.targets.len(), 2 * up.targets().len());
        sw.step("checks");

        let held: Vec<NsProcess> = procs
            .iter()
            .filter_map(|p| NsProcess::open(p.pid))
            .collect();
        assert!(!held.is_empty());
        let names: Vec<String> = [host.ns(), lan.router(), lan.far()]
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        (held, names)
    };
    sw.step("drop");
    for p in &held {
        assert!(
            p.wait_exit(Duration::from_secs(1)),
            "pid {} survived the drop",
            p.pid()
        );
    }
    for n in &names {
        assert!(!listed(n), "namespace {n} left");
    }
    before.assert_unchanged();
    sw.summary();
}

#[test]
fn dhcpcd_manager_host() {
    require_netns!();
    comes_up_confined_and_leaves_nothing(
        "dhcpcd_manager_host",
        Manager::DhcpcdManager,
        |_, host| {
            assert!(
                host.holder().exists("/run/dhcpcd/sock"),
                "the manager's control socket"
            );
            let log = host.daemon_log().unwrap().text();
            assert!(log.contains("network namespace: "), "{log}");
        },
    );
}

#[test]
fn dhcpcd_per_interface_host() {
    require_netns!();
    comes_up_confined_and_leaves_nothing(
        "dhcpcd_per_interface_host",
        Manager::DhcpcdPerInterface,
        |lan, host| {
            assert!(host.holder().exists("/run/dhcpcd/eth0.sock"));
            assert!(!host.holder().exists("/run/dhcpcd/sock"), "no manager");
            // A rebind through the daemon's own socket: dnsmasq logs a new DHCPACK after
            // the mark, and none before it is counted.
            let mark = lan.mark();
            assert_eq!(lan.acks_since(mark, HOST_MAC), 0);
            host.holder()
                .run("dhcpcd", &["-n", "eth0"])
                .expect("dhcpcd -n eth0");
            assert!(
                lan.wait_ack(mark, HOST_MAC, Duration::from_secs(10)),
                "no DHCPACK after `dhcpcd -n eth0`: {}",
                lan.log().since(mark)
            );
            let ip = lan.lease_of(HOST_MAC).unwrap().ip.to_string();
            assert_eq!(lan.acks_since(mark, &ip), lan.acks_since(mark, HOST_MAC));
        },
    );
}

#[test]
fn dhclient_host() {
    require_netns!();
    comes_up_confined_and_leaves_nothing("dhclient_host", Manager::Dhclient, |_, host| {
        let leases = host
            .holder()
            .read("/var/lib/dhcp/dhclient.eth0.leases")
            .expect("dhclient's lease file inside the host");
        assert!(leases.contains("option dhcp-lease-time 120;"), "{leases}");
        assert!(!Path::new("/var/lib/dhcp/dhclient.eth0.leases").exists());
        // ifupdown's command line, intact in /proc (env-qemu reads it back to restart it).
        let pid = host.daemon_pid().unwrap();
        let cmdline = env_qemu_integration::hosts::process::cmdline(pid);
        assert_eq!(
            cmdline,
            "dhclient -4 -v -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases \
             -I -df /var/lib/dhcp/dhclient6.eth0.leases eth0"
        );
        // IPv6 by the kernel: privacy addresses too.
        assert_eq!(host.ns().sysctl("net.ipv6.conf.eth0.use_tempaddr"), "2");
        assert!(host.v6_globals("eth0").iter().any(|a| a.temporary));
    });
}

#[test]
fn networkmanager_host() {
    require_netns!();
    comes_up_confined_and_leaves_nothing(
        "networkmanager_host",
        Manager::NetworkManager,
        |_, host| {
            // nmcli inside the host reaches NM on the private bus, by default path.
            let devices = host
                .holder()
                .run("nmcli", &["-t", "-f", "DEVICE,STATE,CONNECTION", "device"])
                .expect("nmcli inside the host");
            assert!(devices.contains("eth0:connected:eqt-eth0"), "{devices}");
            // From outside, only through the socket in the test's own directory.
            let address = host.bus_address().unwrap();
            assert!(address.contains(&host.dir().display().to_string()));
            let out = std::process::Command::new("nmcli")
                .args(["-t", "-f", "DEVICE,STATE", "device"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .output()
                .unwrap();
            let outside = String::from_utf8_lossy(&out.stdout);
            assert!(outside.contains("eth0:connected"), "{outside}");
            // NM does its own SLAAC (kernel's off) and manages the veth without udev.
            assert_eq!(host.ns().sysctl("net.ipv6.conf.eth0.accept_ra"), "0");
            let log = host.daemon_log().unwrap().text();
            assert!(
                log.contains("platform-linux: create (") && log.contains(", no udev,"),
                "NetworkManager runs with udev (a writable /sys?):\n{log}"
            );
        },
    );
}

#[test]
fn kernel_slaac_host() {
    require_netns!();
    comes_up_confined_and_leaves_nothing("kernel_slaac_host", Manager::KernelSlaac, |_, host| {
        // The RA default route carries the advertised preference and an expiry.
        let routes = host.ns().ip_json("-6 -d route show default dev eth0");
        let r = &routes[0];
        assert_eq!(r["protocol"], "ra", "{routes}");
        assert_eq!(r["pref"], "high", "{routes}");
        assert!(r["expires"].as_u64().is_some_and(|e| e > 500), "{routes}");
        let v6 = host.v6_globals("eth0");
        assert!(v6.iter().any(|a| a.mngtmpaddr && !a.temporary), "{v6:?}");
        assert!(v6.iter().any(|a| a.temporary), "{v6:?}");
        assert!(host
            .processes()
            .iter()
            .all(|p| p.pid == host.holder().pid()));
    });
}

/// The probes count what they should: a prober that never loses anything proves nothing.
/// While the host's LAN port is out of the bridge for 0.3 s every 1,000/s stream loses
/// datagrams; once eth0's IPv4 address is deleted, the IPv4 probes go unanswered while the
/// IPv6 ones still get through.
#[test]
fn probes_count_losses() {
    require_netns!();
    let lan = Lan::start(LanSpec::default());
    let mut host = ClientHost::start(&lan, HostSpec::new(Manager::Dhclient));
    let up = host.wait_up(UP_BOUND);
    host.serve_echo();
    let v4 = IpAddr::V4(up.v4.unwrap().ip);
    let v6 = IpAddr::V6(up.v6_public().unwrap());

    let specs = stream_specs(&lan, &host, [v4, v6]);
    let port = host.lan_port().to_string();
    let ((), outcomes, took) = streams_during(&specs, 1000, Duration::from_secs(2), || {
        lan.router().ip(&format!("link set {port} nomaster"));
        std::thread::sleep(Duration::from_millis(300));
        lan.router().ip(&format!("link set {port} master lan0"));
    });
    let table = table(&[("cut", &outcomes)]);
    eprintln!("probes_count_losses: port out for {took:.2?}:\n{table}");
    assert_eq!(outcomes.len(), 4);
    for o in &outcomes {
        assert!((250..=2000).contains(&o.lost), "{table}");
    }

    let pinger = Pinger::from_lan(&lan, &[v4, v6], Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(1000));
    host.ns().ip(&format!("addr del {v4}/24 dev eth0"));
    std::thread::sleep(Duration::from_millis(1500));
    let report = pinger.stop();
    eprintln!(
        "probes_count_losses: IPv4 address deleted at 1.0 s: {}",
        report.table()
    );
    for t in &report.targets {
        if t.target == v4 {
            assert!(
                t.lost >= 5 && t.lost_at.iter().all(|at| at.as_secs_f64() > 0.8),
                "{}",
                report.table()
            );
        } else {
            assert_eq!(t.lost, 0, "{}", report.table());
        }
    }
}

/// A test that panics still ends every process it started and removes its namespaces.
#[test]
fn a_panicking_test_leaves_nothing() {
    require_netns!();
    let before = Footprint::take();
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let lan = Lan::start(LanSpec::default());
        let host = ClientHost::start(&lan, HostSpec::new(Manager::DhcpcdPerInterface));
        host.wait_up(UP_BOUND);
        let mut pids: Vec<u32> = host.processes().iter().map(|p| p.pid).collect();
        pids.push(lan.dnsmasq_pid());
        let held: Vec<NsProcess> = pids.iter().filter_map(|p| NsProcess::open(*p)).collect();
        let names: Vec<String> = [host.ns(), lan.router(), lan.far()]
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        tx.send((held, names)).unwrap();
        panic!("deliberate");
    })
    .join();
    assert!(joined.is_err());
    let (held, names) = rx.recv().unwrap();
    assert!(
        held.len() >= 3,
        "holder, dhcpcd and dnsmasq at least: {held:?}"
    );
    for p in &held {
        assert!(
            p.wait_exit(Duration::from_secs(1)),
            "pid {} survived",
            p.pid()
        );
    }
    for n in &names {
        assert!(!listed(n), "namespace {n} left");
    }
    before.assert_unchanged();
}
