//! The env-qemu binary on hosts whose NIC is owned by a real DHCP client, run inside the
//! host as a real host's env-qemu runs (the host's network namespace, its private /run
//! with the client's control socket), with the harness of `env_qemu_integration::hosts`.
//!
//! Issue 9, done-when (3): on a host whose eth0 is owned by dhcpcd (Debian's dhcpcd-base
//! 9.4.1, 2-minute leases from dnsmasq), `start` no longer fails on route order (the
//! default route used to be replaced before the `noprefixroute` address's subnet route:
//! ENETUNREACH), and `status` and `stop` bring eth0 back; with the handover of issue 10,
//! dhcpcd follows the NIC's configuration onto the bridge and back. Every test prints what dhcpcd did meanwhile (its log, dnsmasq's
//! DHCP messages, `ip monitor` of the host, probes from the LAN and the far host) and
//! asserts only what env-qemu controls.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::scenario::Scenario;
use env_qemu_core::model::NetState;
use env_qemu_integration::compare::{difference, without_lifetimes};
use env_qemu_integration::guard::wait_until;
use env_qemu_integration::hosts::process::NsProcess;
use env_qemu_integration::hosts::{Footprint, Manager, PingReport, Watched, ROUTER_V4};
use env_qemu_integration::require_netns;

impl Scenario {
    fn new(manager: Manager) -> Scenario {
        Scenario(Watched::start(manager, Duration::from_secs(30)))
    }

    fn at(&self) -> String {
        format!("{:.2} s", self.t0.elapsed().as_secs_f64())
    }

    /// `env-qemu start eth0`, checked: the lease and dhcpcd's routes are on the bridge,
    /// nothing of IPv4 is left on the port. Then `status`.
    fn start_and_status(&self) {
        let start = self.env_qemu(&["start", "eth0"]);
        assert!(start.success(), "start failed on a dhcpcd host:\n{start}");
        assert!(start.stderr.contains("verified by a dump"), "{start}");
        let lease = self.up.v4.unwrap();
        let on_bridge = self.host.v4_lease("lepont").expect("the lease on lepont");
        assert_eq!(on_bridge.ip, lease.ip);
        let routes = self.host.ns().ip("-4 route show dev lepont");
        assert!(
            routes.contains(&format!("default via {ROUTER_V4} proto dhcp"))
                && routes.contains("198.51.100.0/24 proto dhcp scope link"),
            "dhcpcd's routes not on lepont:\n{routes}"
        );
        assert!(
            self.host.v4_lease("eth0").is_none(),
            "IPv4 left on the port right after start:\n{}",
            self.host.ns().ip("addr show dev eth0")
        );
        let status = self.env_qemu(&["status"]);
        assert!(status.success(), "{status}");
        for line in ["bridge   lepont", "uplink   eth0", "drift    none"] {
            assert!(
                status.stdout.contains(line),
                "status lacks {line:?}:\n{status}"
            );
        }
    }

    /// When (after `t0`) eth0 reads back as before start, apart from address lifetimes
    /// (dhcpcd re-leases and SLAAC refreshes them), within `timeout`.
    fn wait_restored(&self, timeout: Duration) -> Option<Duration> {
        let want = without_lifetimes(&self.before);
        wait_until(timeout, || {
            (without_lifetimes(&self.host.ns().read_state()) == want).then(|| self.t0.elapsed())
        })
    }

    fn difference_now(&self) -> String {
        difference(&self.before, &self.host.ns().read_state())
    }

    /// Whether env-qemu's bridge is gone and eth0 is nobody's port.
    fn unbridged(&self) -> bool {
        let links = self.host.ns().ip_json("link show");
        let names: Vec<&str> = links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .collect();
        let eth0 = self.host.ns().ip_json("link show dev eth0");
        !names.contains(&"lepont") && eth0[0].get("master").is_none()
    }

    fn state_files(&self) -> usize {
        std::fs::read_dir(self.host.env_qemu_state_dir())
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Stops the probes and prints everything observed since before `start`.
    fn report(&mut self, test: &str) -> PingReport {
        let probes = self.pinger.take().unwrap().stop();
        let dhcp: Vec<String> = self
            .lan
            .dhcp_events_since(self.dnsmasq_mark)
            .into_iter()
            .map(|e| e.line)
            .collect();
        eprintln!(
            "==== {test}: what the host did ({:?}) ====\n{}\n\
             -- dhcpcd's log since before start:\n{}\
             -- dnsmasq's DHCP messages:\n{}\n\
             -- ip monitor of the host:\n{}",
            self.host.spec().manager,
            probes.table(),
            self.host.daemon_log().unwrap().since(self.daemon_mark),
            dhcp.join("\n"),
            std::fs::read_to_string(&self.monitor).unwrap_or_default()
        );
        probes
    }
}

/// dhcpcd reacts to start at once: env-qemu deletes eth0's address, dhcpcd rebinds its
/// lease (REQUEST out of eth0, the ACK received on lepont's socket and "redirected to
/// eth0"), then ARP-probes the address for 3–5 s before putting it back on eth0, the port
/// (that re-add is the next issue's subject). Stopped before then, env-qemu brings eth0
/// back as it was (checked right after stop, apart from lifetimes). At the release dhcpcd
/// sees eth0 "depart": it deletes eth0's IPv6 prefix and default routes and takes eth0 up
/// again (the manager), or exits (the per-interface daemon: the host is then left without
/// a DHCP client, its lease runs out); what dhcpcd did in the following seconds is printed.
fn start_status_stop(test: &str, manager: Manager) {
    let machine = Footprint::take();
    let mut s = Scenario::new(manager);
    s.start_and_status();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(s.t0.elapsed()));
    assert!(
        s.host.v4_lease("eth0").is_none(),
        "dhcpcd re-added its address on the port within {}: the stop below would not be \
         the case this test is about",
        s.at()
    );
    // Held by a pidfd from before stop, so its exit is seen even if the PID is reused.
    let daemon = s.host.daemon_pid().and_then(NsProcess::open);
    let log = s.host.daemon_log().unwrap();
    let released = log.mark();
    let stop = s.env_qemu(&["stop"]);
    let unbridged = s.unbridged();
    let restored = s.wait_restored(Duration::from_secs(5));
    assert!(stop.success(), "{stop}");
    assert!(
        stop.stderr
            .contains("verified by a dump: eth0 as it was before start"),
        "{stop}"
    );
    assert!(unbridged, "lepont still there after stop");
    assert_eq!(s.state_files(), 0);
    match restored {
        Some(at) => eprintln!("[{}] eth0 restored {at:?} after start", s.at()),
        None => {
            // dhcpcd's reaction to the release races with env-qemu's final dump: when it
            // comes after it, the routes dhcpcd deletes at "interface departed" are gone
            // once env-qemu has verified, and the per-interface daemon, which then exits,
            // never puts them back. Everything else must be as before.
            let deleted = routes_deleted_by_dhcpcd(&log.since(released));
            let now = s.host.ns().read_state();
            assert_eq!(
                without_lifetimes(&without_routes(&now, &deleted)),
                without_lifetimes(&without_routes(&s.before, &deleted)),
                "eth0 not as before start, apart from lifetimes and the routes dhcpcd \
                 deleted after stop ({deleted:?}):\n{}",
                s.difference_now()
            );
            eprintln!(
                "FINDING: eth0 restored by stop, then dhcpcd deleted {deleted:?} at the \
                 release and did not put them back within 5 s:\n{}",
                s.difference_now()
            );
        }
    }
    // What dhcpcd makes of the release, observed (not asserted: dhcpcd's doing): a new
    // lease on eth0, or its exit.
    let settled = wait_until(Duration::from_secs(8), || {
        let exited = daemon.as_ref().is_some_and(NsProcess::has_exited);
        (exited || log.since(released).contains("leased")).then_some(())
    });
    let still = daemon.as_ref().is_some_and(|p| !p.has_exited());
    eprintln!(
        "[{}] after stop: dhcpcd {} ({}); eth0 {}",
        s.at(),
        if still {
            "still runs"
        } else {
            "EXITED: eth0 has no DHCP client any more"
        },
        if settled.is_some() {
            "settled"
        } else {
            "still busy after 8 s"
        },
        match s.difference_now() {
            d if d.is_empty() => "as before start (apart from lifetimes)".to_string(),
            d => format!("differs from before start:\n{d}"),
        }
    );
    s.report(test);
    drop(s);
    machine.assert_unchanged();
}

/// The routes dhcpcd's log says it deleted: `deleting route to P` (destination) and
/// `deleting default route via G` (gateway).
fn routes_deleted_by_dhcpcd(log: &str) -> Vec<(String, Option<IpAddr>)> {
    log.lines()
        .filter_map(|l| {
            if let Some(dst) = l.split("deleting route to ").nth(1) {
                Some((dst.trim().to_string(), None))
            } else {
                let gw = l.split("deleting default route via ").nth(1)?;
                Some(("default".to_string(), gw.trim().parse().ok()))
            }
        })
        .collect()
}

/// `state` without the routes in `deleted` (destination, and gateway if given).
fn without_routes(state: &NetState, deleted: &[(String, Option<IpAddr>)]) -> NetState {
    let mut s = state.clone();
    s.routes.retain(|r| {
        !deleted
            .iter()
            .any(|(dst, gw)| r.dst.to_string() == *dst && (gw.is_none() || r.gateway == *gw))
    });
    s
}

#[test]
fn dhcpcd_host_start_status_stop() {
    require_netns!();
    start_status_stop("dhcpcd_host_start_status_stop", Manager::DhcpcdManager);
}

#[test]
fn dhcpcd_per_interface_host_start_status_stop() {
    require_netns!();
    start_status_stop(
        "dhcpcd_per_interface_host_start_status_stop",
        Manager::DhcpcdPerInterface,
    );
}

/// A dhcpcd left on eth0 puts its address back on the port 4–5 s after start (measured
/// before the handover: rebind, ARP probe, `adding IP address` on eth0), and at the
/// release sees eth0 "depart" and deletes what stop has just restored. Handed over to the
/// bridge (issue 10), it stays off the port: 8 s after start eth0 carries no IPv4
/// address, the lease is on lepont, stop finishes at once and the host is as before (apart
/// from lifetimes) with no probe lost beyond the kernel's port window.
#[test]
fn dhcpcd_stays_off_the_port_while_bridged() {
    require_netns!();
    let machine = Footprint::take();
    let mut s = Scenario::new(Manager::DhcpcdManager);
    s.start_and_status();
    std::thread::sleep(Duration::from_secs(8));
    let on_port = s.host.v4_lease("eth0");
    let on_bridge = s.host.v4_lease("lepont");
    let stop = s.env_qemu(&["stop"]);
    let unbridged = s.unbridged();
    let kept = s.state_files();
    let restored = s.wait_restored(Duration::from_secs(20));
    let probes = s.report("dhcpcd_stays_off_the_port_while_bridged");
    assert!(
        on_port.is_none(),
        "dhcpcd put its address back on the port: {on_port:?}"
    );
    assert_eq!(
        on_bridge.map(|l| l.ip),
        s.up.v4.map(|l| l.ip),
        "the lease left the bridge"
    );
    assert!(stop.success(), "stop on a dhcpcd host:\n{stop}");
    assert!(
        unbridged && kept == 0,
        "stop left the bridge or its state:\n{stop}"
    );
    assert!(
        restored.is_some(),
        "eth0 not as before start (apart from lifetimes) 20 s after stop:\n{}",
        s.difference_now()
    );
    for t in &probes.targets {
        assert!(t.lost <= 1, "probes lost around start and stop: {probes:?}");
    }
    drop(s);
    machine.assert_unchanged();
}

/// The lines `routes_deleted_by_dhcpcd` reads, as dhcpcd 9.4.1 logs them.
#[test]
fn dhcpcd_route_deletions_are_read() {
    let log = "\
Dec 04 17:19:49 [17964]: eth0: interface departed
Dec 04 17:19:49 [17964]: eth0: deleting route to 2001:db8:42::/64
Dec 04 17:19:49 [17964]: eth0: deleting default route via fe80::5eff:fe10:2
Dec 04 17:19:49 [17964]: eth0: deleting IP address 198.51.100.122/24
";
    assert_eq!(
        routes_deleted_by_dhcpcd(log),
        vec![
            ("2001:db8:42::/64".to_string(), None),
            (
                "default".to_string(),
                Some("fe80::5eff:fe10:2".parse().unwrap())
            ),
        ]
    );
}
