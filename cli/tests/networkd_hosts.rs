//! The env-qemu binary on hosts whose NIC a real systemd-networkd owns (Debian's systemd
//! 252, `/lib/systemd/systemd-networkd` without systemd as PID 1, confined by
//! `env_qemu_integration::hosts`: its own network, mount and UTS namespaces, a private
//! dbus-daemon where it owns `org.freedesktop.network1`, DHCPv4 and its own SLAAC against
//! the LAN's dnsmasq with 2-minute leases). env-qemu runs inside the host as a real
//! host's does, its system bus the private one (`DBUS_SYSTEM_BUS_ADDRESS`, set by the
//! holder).
//!
//! Issue 11 (networkd), done when: networkd runs confined and leases; start hands eth0
//! over to networkd on the bridge (runtime `.network` files, a reload over D-Bus), the host
//! stays reachable for three lease lifetimes with the same lease and IPv6 address, stop
//! gives eth0 back to its own `.network` file, which renews; a networkd restart while
//! bridged changes nothing. Each test prints what networkd and dnsmasq did.

mod common;

use std::path::Path;
use std::time::Duration;

use common::scenario::Scenario;
use common::BIN;
use env_qemu_core::model::{NetState, RouteProtocol};
use env_qemu_integration::compare::{difference, without_lifetimes};
use env_qemu_integration::guard::wait_until;
use env_qemu_integration::hosts::{
    assert_tap_unchanged, Footprint, KilledStart, Manager, PingReport, Pinger, Watched, HOST_MAC,
    NETWORKD_PROFILE_PATH,
};
use env_qemu_integration::require_netns;

impl Scenario {
    fn new() -> Scenario {
        Scenario(Watched::start(Manager::Networkd, Duration::from_secs(40)))
    }

    /// `networkctl ARGS` inside the host (over the private bus).
    fn networkctl(&self, args: &[&str]) -> String {
        self.host
            .holder()
            .run("networkctl", args)
            .unwrap_or_else(|e| format!("networkctl failed: {e}"))
    }

    /// `LINK:OPERATIONAL:SETUP` of `dev`, from `networkctl list`.
    fn link(&self, dev: &str) -> String {
        self.networkctl(&["list", "--no-legend", "--no-pager"])
            .lines()
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.get(1) == Some(&dev)).then(|| format!("{}:{}", w[3], w[4]))
            })
            .unwrap_or_default()
    }
}

/// `s` without lifetimes and without RA default routes `before` (lifetimes set aside)
/// lacks.
fn without_ra_copies(s: &NetState, before: &NetState) -> NetState {
    let mut s = without_lifetimes(s);
    s.routes.retain(|r| {
        !(r.protocol == RouteProtocol::Ra && r.dst.is_default() && !before.routes.contains(r))
    });
    s
}

impl Scenario {
    /// env-qemu's runtime files in the host's /run/systemd/network.
    fn runtime_files(&self) -> String {
        self.host
            .holder()
            .run("ls", &["/run/systemd/network"])
            .unwrap_or_else(|e| e)
            .trim()
            .to_string()
    }

    /// After a stop: eth0 as before start (apart from lifetimes) on its own `.network`
    /// file, with networkd's own RA default route back, no runtime file of env-qemu's
    /// left, the same IPv6 address. The copy of the RA default route env-qemu put back at
    /// another metric lingers until it expires (networkd leaves a route it did not make
    /// alone): it is printed, not compared.
    fn assert_given_back(&self) {
        self.given_back(true);
    }

    /// [`Scenario::assert_given_back`]; without `ra_route`, networkd's own RA default
    /// route is not required back, nor networkd done configuring eth0 (both printed).
    fn given_back(&self, ra_route: bool) {
        let mut want = without_lifetimes(&self.before);
        let theirs: Vec<_> = want
            .routes
            .iter()
            .filter(|r| r.protocol == RouteProtocol::Ra && r.dst.is_default())
            .cloned()
            .collect();
        if !ra_route {
            want.routes.retain(|r| !theirs.contains(r));
        }
        let restored = wait_until(Duration::from_secs(30), || {
            (without_ra_copies(&self.host.ns().read_state(), &want) == want).then_some(())
        });
        let now = without_lifetimes(&self.host.ns().read_state());
        if !ra_route {
            let back = theirs.iter().all(|r| now.routes.contains(r));
            eprintln!(
                "FINDING: networkd's own RA default route back on eth0 30 s after stop: {back}"
            );
        }
        for r in now.routes.iter().filter(|r| !want.routes.contains(r)) {
            eprintln!("left after stop (expires by itself): {r:?}");
        }
        assert!(
            restored.is_some(),
            "eth0 not as before start (apart from lifetimes) 30 s after stop:\n{}",
            difference(&self.before, &self.host.ns().read_state())
        );
        if ra_route {
            assert_eq!(self.link("eth0"), "routable:configured");
        } else {
            eprintln!(
                "FINDING: networkd on eth0 after stop: {}",
                self.link("eth0")
            );
        }
        assert_eq!(self.link("lepont"), "", "lepont is gone");
        assert_eq!(self.runtime_files(), "", "runtime files left");
        let state = self
            .host
            .holder()
            .read("/run/systemd/netif/links/2")
            .unwrap_or_default();
        assert!(
            state.contains(&format!("NETWORK_FILE={NETWORKD_PROFILE_PATH}")),
            "eth0 is not on its own file: {state}"
        );
        self.assert_v6_kept();
    }

    fn report(&mut self, test: &str) -> PingReport {
        self.0.report_kept(
            test,
            "networkd (DHCP, states, foreign config, reloads)",
            |l| {
                l.contains("DHCP")
                    || l.contains("State changed")
                    || l.contains("foreign")
                    || l.contains("eload")
                    || l.contains("network file")
                    || l.contains("NDisc")
                    || l.contains("IPv6LL")
                    || l.contains("Reconfiguring")
            },
        )
    }
}

/// networkd runs confined (no systemd as PID 1, nothing of the machine's touched), takes
/// eth0 by the host's `.network` file, leases from dnsmasq and does SLAAC; `networkctl`
/// reaches it over the private bus.
#[test]
fn networkd_runs_confined_and_leases() {
    require_netns!();
    let machine = Footprint::take();
    let mut s = Scenario::new();
    let lease = s.lan.lease_of(HOST_MAC);
    eprintln!(
        "networkd up in {:?}: {:?}, lease {lease:?}",
        s.up.took, s.up
    );
    assert_eq!(s.link("eth0"), "routable:configured");
    assert_eq!(
        lease.as_ref().map(|l| l.ip),
        s.up.v4.map(|l| l.ip),
        "dnsmasq's lease is eth0's"
    );
    // networkd's client identifier is its IAID + DUID (RFC 4361), as dnsmasq recorded.
    let id = lease.expect("a lease").client_id;
    assert!(id.starts_with("ff:"), "client id {id}");
    let pid = s.host.daemon_pid().expect("networkd runs");
    let me = s
        .host
        .processes()
        .into_iter()
        .find(|p| p.pid == pid)
        .expect("networkd is in the host's namespace");
    assert_eq!(
        me.mnt,
        s.host.holder().mount_ns(),
        "networkd's mount namespace"
    );
    let probes = s.pinger.take().unwrap().stop();
    assert_eq!(probes.lost(), 0, "{}", probes.table());
    drop(s);
    machine.assert_unchanged();
}

/// Start with 1,000/s streams, a tap attached, three lease lifetimes bridged with probes
/// every 0.5 s, stop with 1,000/s streams and a DHCPACK for eth0 after it.
#[test]
fn networkd_host_bridged_for_three_leases() {
    require_netns!();
    let machine = Footprint::take();
    let mut s = Scenario::new();
    let lease = s.up.v4.unwrap().ip;
    let v6 = s.up.v6_public().unwrap();
    assert_eq!(s.link("eth0"), "routable:configured");

    let (start, at_start) = s.streamed(&["start", "eth0"]);
    assert!(start.success(), "{start}");
    assert!(start.stderr.contains("verified by a dump"), "{start}");
    let files = s.runtime_files();
    assert_eq!(
        files, "00-env-qemu-eth0.network\n00-env-qemu-lepont.network",
        "runtime files"
    );
    let adopted = wait_until(Duration::from_secs(10), || {
        (s.link("lepont") == "routable:configured" && s.link("eth0") == "enslaved:configured")
            .then_some(())
    });
    assert!(
        adopted.is_some(),
        "networkd runs lepont and its port: {}",
        s.networkctl(&["list", "--no-pager"])
    );
    let b = s.bridged_three_leases(|s| (s.link("lepont"), s.link("tap0")));

    let del = s.env_qemu(&["del", "tap0"]);
    s.host.ns().ip("tuntap del dev tap0 mode tap");
    let stop_mark = s.lan.mark();
    let (stop, at_stop) = s.streamed(&["stop"]);
    let acked = s.lan.wait_ack(stop_mark, HOST_MAC, Duration::from_secs(10));
    s.report("networkd_host_bridged_for_three_leases");

    for o in at_start.iter().chain(&at_stop) {
        eprintln!(
            "gap: {} lost {} datagrams at 1,000/s = {} ms ({:?})",
            o.label, o.lost, o.lost, o.lost_ranges
        );
    }
    for o in &at_start {
        assert!(
            o.lost <= 1,
            "start: {} lost {} ({:?})",
            o.label,
            o.lost,
            o.lost_ranges
        );
    }
    assert_eq!(b.probes.lost(), 0, "{}", b.probes.table());
    for (at, v4, v6s, (lepont, tap0)) in &b.samples {
        assert_eq!(*v4, Some(lease), "the lease on lepont {at} s after start");
        assert_eq!(v6s, &vec![v6], "lepont's IPv6 address {at} s after start");
        assert_eq!(lepont, "routable:configured", "{at} s after start");
        assert!(
            tap0.is_empty() || tap0.ends_with(":unmanaged"),
            "networkd manages the tap: {tap0}"
        );
    }
    assert!(
        b.acks >= 3,
        "the lease was not renewed through lepont: {} DHCPACKs",
        b.acks
    );
    assert_eq!(
        s.lan.lease_of(HOST_MAC).map(|l| l.ip),
        Some(lease),
        "dnsmasq's lease"
    );
    assert!(b.status.stdout.contains("drift    none"), "{}", b.status);
    assert_tap_unchanged(&b.tap_before, &b.tap_after);
    assert!(del.success(), "{del}");
    assert!(stop.success(), "{stop}");
    assert!(acked, "no DHCPACK for eth0 after stop");
    s.assert_given_back();
    for o in &at_stop {
        assert!(o.lost_ranges.len() <= 1, "stop: {o:?}");
    }
    drop(s);
    machine.assert_unchanged();
}

/// doctor names networkd and eth0's file, --dry-run shows the handover as an admin's
/// commands; networkd restarted while bridged reads the runtime files again (they live in
/// /run), the host stays bridged and reachable, and stop still gives eth0 back.
#[test]
fn networkd_restarted_while_bridged() {
    require_netns!();
    let machine = Footprint::take();
    let mut s = Scenario::new();
    s.assert_doctor_and_dry_run(
        &format!(
            "systemd-networkd ({NETWORKD_PROFILE_PATH}) manages eth0; start: handed over to the bridge"
        ),
        &[
            "cat > /run/systemd/network/00-env-qemu-lepont.network <<'EOF'",
            "Name=lepont",
            "IgnoreCarrierLoss=yes",
            "IAID=",
            "networkctl reload",
            "cat > /run/systemd/network/00-env-qemu-eth0.network <<'EOF'",
            "KeepMaster=yes",
        ],
    );
    assert_eq!(s.runtime_files(), "", "--dry-run wrote files");
    let start = s.env_qemu(&["start", "eth0"]);
    assert!(start.success(), "{start}");
    let probes = Pinger::from_lan(&s.lan, &s.up.targets(), Duration::from_millis(200));
    s.host.restart_networkd();
    let again = wait_until(Duration::from_secs(20), || {
        (s.link("lepont") == "routable:configured" && s.link("eth0") == "enslaved:configured")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let master = s.host.ns().ip_json("link show dev eth0")[0]["master"].clone();
    let status = s.env_qemu(&["status"]);
    let probes = probes.stop();
    let stop_mark = s.lan.mark();
    let stop = s.env_qemu(&["stop"]);
    let acked = s.lan.wait_ack(stop_mark, HOST_MAC, Duration::from_secs(10));
    s.report("networkd_restarted_while_bridged");
    eprintln!("across the restart: {}", probes.table());
    assert!(
        again.is_some(),
        "networkd did not take lepont and its port again: {}",
        s.networkctl(&["list", "--no-pager"])
    );
    assert_eq!(master, "lepont", "eth0 left the bridge");
    assert_eq!(probes.lost(), 0, "{}", probes.table());
    assert!(status.stdout.contains("drift    none"), "{status}");
    assert!(stop.success(), "{stop}");
    assert!(acked, "no DHCPACK for eth0 after stop");
    s.assert_given_back();
    drop(s);
    machine.assert_unchanged();
}

/// `env-qemu start` SIGKILLed in the middle of the handover: as soon as its journal holds
/// `at` (polled every millisecond), the process is stopped and killed. networkd has no
/// checkpoint: stop, from the saved pre-start snapshot, restores the host and removes the
/// runtime files, and networkd renews on eth0 again. networkd's own RA default route on
/// eth0 and its `configured` state are not required (a known gap, docs/networkd.md): the
/// test prints them. Two kill points: the bridge's file journalled (the bridge made, nothing
/// moved yet) and the port's (everything moved, the NIC a port networkd still runs its own
/// file on).
#[test]
fn networkd_start_killed_mid_handover_is_restored_by_stop() {
    require_netns!();
    let machine = Footprint::take();
    for at in [
        r#""host":"networkd_write""#,
        "/run/systemd/network/00-env-qemu-eth0.network",
    ] {
        let mut s = Scenario::new();
        let KilledStart { seen, status, .. } = s.start_killed_at(Path::new(BIN), at);
        let files = s.runtime_files();
        eprintln!(
            "[{:7.2} s] env-qemu start SIGKILLed at {at} ({status}): runtime files {files:?}; {}",
            s.t0.elapsed().as_secs_f64(),
            s.networkctl(&["list", "--no-legend", "--no-pager"])
        );
        let stop_mark = s.lan.mark();
        let stop = s.env_qemu(&["stop"]);
        // networkd renews on eth0 again: at once if it ran another file there, else at T1.
        let acked = s.lan.wait_ack(
            stop_mark,
            HOST_MAC,
            s.lan.spec().lease / 2 + Duration::from_secs(10),
        );
        s.report("networkd_start_killed_mid_handover_is_restored_by_stop");
        assert!(seen, "the journal never held {at}");
        assert!(stop.success(), "{stop}");
        // Not networkd's own RA route: see docs/networkd.md, "Limits".
        s.given_back(false);
        assert!(acked, "no DHCPACK for eth0 within T1 after stop");
        drop(s);
    }
    machine.assert_unchanged();
}
