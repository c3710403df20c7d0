//! [`Lan`]: the LAN's router namespace with dnsmasq (DHCPv4 and router advertisements),
//! and a far host one hop behind it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::guard::{wait_until, ChildGuard, ScratchDir};
use crate::hosts::logfile::{LogFile, LogMark};
use crate::hosts::process::end_all_in;
use crate::hosts::{
    FAR_ROUTER_V4, FAR_ROUTER_V6, FAR_V4, FAR_V6, POOL, ROUTER_MAC, ROUTER_V4, ROUTER_V6,
};
use crate::qemu::find_program;
use crate::TestNs;

/// The Default Router Preference of the router advertisements (RFC 4191).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaPreference {
    High,
    Medium,
    Low,
}

/// What the LAN's dnsmasq serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanSpec {
    /// DHCPv4 lease time; dnsmasq's minimum is 2 minutes.
    pub lease: Duration,
    pub ra_preference: RaPreference,
    /// Seconds between unsolicited router advertisements (dnsmasq jitters them).
    pub ra_interval: u32,
    /// The router lifetime advertised, seconds.
    pub router_lifetime: u32,
    /// Valid and preferred lifetime of the advertised prefix.
    pub prefix_lifetime: Duration,
}

impl Default for LanSpec {
    /// 2-minute leases (T1 60 s, T2 105 s), RA preference high every ~10 s, router
    /// lifetime and prefix lifetimes 600 s.
    fn default() -> Self {
        LanSpec {
            lease: Duration::from_secs(120),
            ra_preference: RaPreference::High,
            ra_interval: 10,
            router_lifetime: 600,
            prefix_lifetime: Duration::from_secs(600),
        }
    }
}

impl LanSpec {
    /// dnsmasq's arguments for this spec (without files and interface).
    fn dnsmasq_args(&self) -> Vec<String> {
        assert!(
            self.lease >= Duration::from_secs(120),
            "dnsmasq's shortest lease is 2 minutes, not {:?}",
            self.lease
        );
        let pref = match self.ra_preference {
            RaPreference::High => "high,",
            RaPreference::Medium => "",
            RaPreference::Low => "low,",
        };
        vec![
            format!(
                "--dhcp-range={},{},255.255.255.0,{}",
                POOL.0,
                POOL.1,
                self.lease.as_secs()
            ),
            format!("--dhcp-option=option:router,{ROUTER_V4}"),
            "--enable-ra".into(),
            format!(
                "--dhcp-range=2001:db8:42::,ra-only,64,{}",
                self.prefix_lifetime.as_secs()
            ),
            format!(
                "--ra-param=lan0,{pref}{},{}",
                self.ra_interval, self.router_lifetime
            ),
        ]
    }
}

/// One line of dnsmasq's lease file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// When it expires, seconds since the epoch.
    pub expiry: u64,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
    /// The client identifier (`ff:…` for dhcpcd's IAID + DUID, `01:MAC` for NM), `*` if
    /// none was sent.
    pub client_id: String,
}

/// One DHCP message dnsmasq logged: `DHCPACK(lan0) 198.51.100.122 02:00:5e:10:00:01`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpEvent {
    /// `DHCPDISCOVER`, `DHCPOFFER`, `DHCPREQUEST`, `DHCPACK`, `DHCPNAK`, `DHCPRELEASE`…
    pub kind: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<String>,
    /// The whole log line.
    pub line: String,
}

static PORTS: AtomicU32 = AtomicU32::new(0);

/// The router namespace (bridge `lan0`, dnsmasq, forwarding) and the far host. Hosts
/// attach with a veth port each ([`crate::hosts::ClientHost::start`]).
#[derive(Debug)]
pub struct Lan {
    // Dropped in this order: dnsmasq first, then the namespaces, then the files.
    dnsmasq: ChildGuard,
    router: TestNs,
    far: TestNs,
    dir: ScratchDir,
    log: LogFile,
    leases: PathBuf,
    spec: LanSpec,
}

impl Lan {
    /// Builds the router and the far host and starts dnsmasq; returns once dnsmasq has
    /// bound its DHCP socket.
    pub fn start(spec: LanSpec) -> Lan {
        let router = TestNs::new();
        let far = TestNs::new();
        let dir = ScratchDir::new();
        router.ip("link set lo up");
        // A bridge, so that any number of hosts can attach and dnsmasq's interface exists
        // before the first one does. No STP, no forwarding delay, no multicast snooping
        // (no querier here: snooping would only add a way to lose an NS).
        router.ip(&format!(
            "link add lan0 address {ROUTER_MAC} type bridge stp_state 0 forward_delay 0 \
             mcast_snooping 0"
        ));
        // Its link-local must never be tentative when a host solicits: an RA sent from
        // the global address instead is ignored by hosts.
        router.set_sysctl("net.ipv6.conf.lan0.accept_dad", "0");
        router.ip(&format!("addr add {ROUTER_V4}/24 dev lan0"));
        router.ip(&format!("addr add {ROUTER_V6}/64 dev lan0 nodad"));
        router.ip("link set lan0 up");
        // Forwarding on: IPv6 neighbour advertisements then carry the router flag (else
        // hosts drop their RA default route at the first NUD probe;
        // docs/kernel-behaviour.md, S13).
        router.set_sysctl("net.ipv4.ip_forward", "1");
        router.set_sysctl("net.ipv6.conf.all.forwarding", "1");

        router.ip(&format!(
            "link add far0 type veth peer name eth0 netns {}",
            far.name()
        ));
        router.ip(&format!("addr add {FAR_ROUTER_V4}/24 dev far0"));
        router.ip(&format!("addr add {FAR_ROUTER_V6}/64 dev far0 nodad"));
        router.ip("link set far0 up");
        // dnsmasq advertises router lifetime 0 unless the router has an IPv6 default
        // route (docs/kernel-behaviour.md, S13): the far host stands for the rest of the
        // world.
        router.ip(&format!("-6 route add default via {FAR_V6} dev far0"));
        far.ip("link set lo up");
        far.ip(&format!("addr add {FAR_V4}/24 dev eth0"));
        far.ip(&format!("addr add {FAR_V6}/64 dev eth0 nodad"));
        far.ip("link set eth0 up");
        far.ip(&format!("route add default via {FAR_ROUTER_V4}"));
        far.ip(&format!("-6 route add default via {FAR_ROUTER_V6}"));

        let log = LogFile::new(dir.join("dnsmasq.log"));
        let leases = dir.join("dnsmasq.leases");
        let dnsmasq = start_dnsmasq(&router, &dir, &spec, &log, &leases);
        Lan {
            dnsmasq,
            router,
            far,
            dir,
            log,
            leases,
            spec,
        }
    }

    pub fn spec(&self) -> &LanSpec {
        &self.spec
    }

    /// The router namespace (`lan0`, dnsmasq).
    pub fn router(&self) -> &TestNs {
        &self.router
    }

    /// The far host's namespace (one hop behind the router).
    pub fn far(&self) -> &TestNs {
        &self.far
    }

    pub fn dnsmasq_pid(&self) -> u32 {
        self.dnsmasq.pid()
    }

    /// Adds a port to `lan0`: a veth whose other end is `uplink` (with `mac`) in `host`.
    /// Returns the port's name in the router namespace.
    pub fn attach(&self, host: &TestNs, uplink: &str, mac: &str) -> String {
        let port = format!("h{}", PORTS.fetch_add(1, Ordering::Relaxed));
        self.router.ip(&format!(
            "link add {port} type veth peer name {uplink} address {mac} netns {}",
            host.name()
        ));
        self.router.ip(&format!("link set {port} master lan0"));
        self.router.ip(&format!("link set {port} up"));
        port
    }

    /// dnsmasq's log (`--log-dhcp`).
    pub fn log(&self) -> &LogFile {
        &self.log
    }

    /// The end of dnsmasq's log now: [`Lan::dhcp_events_since`] and
    /// [`Lan::acks_since`] count from there.
    pub fn mark(&self) -> LogMark {
        self.log.mark()
    }

    /// The DHCP messages dnsmasq logged after `mark`.
    pub fn dhcp_events_since(&self, mark: LogMark) -> Vec<DhcpEvent> {
        parse_dhcp_events(&self.log.since(mark))
    }

    /// How many DHCPACKs dnsmasq sent after `mark` for `who` (a MAC or an IPv4 address).
    pub fn acks_since(&self, mark: LogMark, who: &str) -> usize {
        let who = who.to_ascii_lowercase();
        self.dhcp_events_since(mark)
            .iter()
            .filter(|e| e.kind == "DHCPACK")
            .filter(|e| {
                e.mac.as_deref() == Some(who.as_str())
                    || e.ip.is_some_and(|ip| ip.to_string() == who)
            })
            .count()
    }

    /// Waits up to `timeout` for a DHCPACK for `who` after `mark`.
    pub fn wait_ack(&self, mark: LogMark, who: &str, timeout: Duration) -> bool {
        wait_until(timeout, || (self.acks_since(mark, who) > 0).then_some(())).is_some()
    }

    /// The lease file's leases.
    pub fn leases(&self) -> Vec<Lease> {
        parse_leases(&std::fs::read_to_string(&self.leases).unwrap_or_default())
    }

    /// The lease of `mac`, if dnsmasq has granted one.
    pub fn lease_of(&self, mac: &str) -> Option<Lease> {
        let mac = mac.to_ascii_lowercase();
        self.leases().into_iter().find(|l| l.mac == mac)
    }

    /// The test directory holding dnsmasq's files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // dnsmasq and anything else in the router or the far namespace (a test's stray
        // process) is ended by PID after `ip netns identify`; then dnsmasq, our child, is
        // reaped by its guard.
        for ns in [&self.router, &self.far] {
            for line in end_all_in(ns.name(), &[], Duration::from_secs(3)) {
                eprintln!("lan drop: {line}");
            }
        }
    }
}

/// `ip netns exec ROUTER unshare -m --propagation private sh -c 'mount …; exec dnsmasq …'`:
/// a private mount namespace with tmpfs over /run and /var/lib/misc (dnsmasq's default
/// pid and lease places), named `env-qemu-test-ROUTER-…` like a holder's; its files in
/// `dir`.
fn start_dnsmasq(
    router: &TestNs,
    dir: &ScratchDir,
    spec: &LanSpec,
    log: &LogFile,
    leases: &std::path::Path,
) -> ChildGuard {
    let dnsmasq = find_program("dnsmasq").expect("dnsmasq is installed (dnsmasq-base)");
    std::fs::write(leases, "").expect("create the lease file");
    let stderr = dir.join("dnsmasq.stderr");
    let path = |p: &std::path::Path| p.display().to_string();
    let mut args: Vec<String> = vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        // No DNS: no option 6 either, so the clients' resolv.conf hooks have nothing.
        "--port=0".into(),
        "--interface=lan0".into(),
        "--bind-interfaces".into(),
        "--dhcp-authoritative".into(),
        // No ICMP probe of an address before offering it (saves 3 s per lease).
        "--no-ping".into(),
        "--log-dhcp".into(),
        "--user=root".into(),
        format!("--dhcp-leasefile={}", path(leases)),
        format!("--log-facility={}", path(log.path())),
        format!("--pid-file={}", path(&dir.join("dnsmasq.pid"))),
    ];
    args.extend(spec.dnsmasq_args());
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", router.name()])
        .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -n -t tmpfs -o mode=0755 env-qemu-test-{ns}-dnsmasq-run /run && \
             mount -n -t tmpfs -o mode=0755 env-qemu-test-{ns}-dnsmasq-lib /var/lib/misc && \
             exec \"$0\" \"$@\"",
            ns = router.name()
        ))
        .arg(&dnsmasq)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("create dnsmasq.stderr"));
    let mut process = ChildGuard::spawn("dnsmasq", &mut cmd);
    let bound = wait_until(Duration::from_secs(10), || {
        if let Some(status) = process.try_wait() {
            panic!(
                "dnsmasq exited at once ({status}):\n{}{}",
                std::fs::read_to_string(&stderr).unwrap_or_default(),
                log.text()
            );
        }
        log.text()
            .contains("sockets bound exclusively to interface")
            .then_some(())
    });
    assert!(
        bound.is_some(),
        "dnsmasq did not bind within 10 s:\n{}",
        log.text()
    );
    process
}

/// `EXPIRY MAC IP HOSTNAME CLIENT-ID` lines.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            Some(Lease {
                expiry: f[0].parse().ok()?,
                mac: f[1].to_ascii_lowercase(),
                ip: f[2].parse().ok()?,
                hostname: f.get(3).unwrap_or(&"*").to_string(),
                client_id: f.get(4).unwrap_or(&"*").to_string(),
            })
        })
        .collect()
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// dnsmasq's `DHCPxxx(IFACE) [IP] [MAC] …` lines.
pub fn parse_dhcp_events(text: &str) -> Vec<DhcpEvent> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let kind = words
                .by_ref()
                .find(|w| w.starts_with("DHCP") && w.contains('('))?;
            let kind = kind.split('(').next().unwrap_or_default().to_string();
            let rest: Vec<&str> = words.collect();
            Some(DhcpEvent {
                kind,
                ip: rest.iter().find_map(|w| w.parse().ok()),
                mac: rest
                    .iter()
                    .find(|w| is_mac(w))
                    .map(|m| m.to_ascii_lowercase()),
                line: line.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lines() {
        let text = "1796404029 02:00:5e:10:00:01 198.51.100.122 * \
                    ff:5e:10:00:01:00:01:00:01:32:a5:af:44:02:00:5e:10:00:01\n\n";
        let l = &parse_leases(text)[0];
        assert_eq!(l.expiry, 1_796_404_029);
        assert_eq!(l.ip, Ipv4Addr::new(198, 51, 100, 122));
        assert_eq!(l.hostname, "*");
        assert!(l.client_id.starts_with("ff:5e"));
    }

    #[test]
    fn dhcp_log_lines() {
        let text = "\
Dec  4 17:05:14 dnsmasq-dhcp[8877]: 3212 available DHCP range: 198.51.100.100 -- 198.51.100.150
Dec  4 17:05:14 dnsmasq-dhcp[8877]: 3212 DHCPDISCOVER(lan0) 02:00:5e:10:00:01
Dec  4 17:05:14 dnsmasq-dhcp[8877]: 3212 DHCPOFFER(lan0) 198.51.100.122 02:00:5e:10:00:01
Dec  4 17:05:14 dnsmasq-dhcp[8877]: 3212 DHCPACK(lan0) 198.51.100.122 02:00:5e:10:00:01 eqt-1-2
Dec  4 17:05:15 dnsmasq-dhcp[8877]: 3213 DHCPREQUEST(lan0) 198.51.100.122 02:00:5e:10:00:01
";
        let ev = parse_dhcp_events(text);
        let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["DHCPDISCOVER", "DHCPOFFER", "DHCPACK", "DHCPREQUEST"]
        );
        assert_eq!(ev[0].ip, None);
        assert_eq!(ev[2].ip, Some(Ipv4Addr::new(198, 51, 100, 122)));
        assert_eq!(ev[2].mac.as_deref(), Some("02:00:5e:10:00:01"));
    }

    #[test]
    fn ra_preference_and_lease_in_the_arguments() {
        let args = LanSpec::default().dnsmasq_args();
        assert!(args.contains(&"--ra-param=lan0,high,10,600".to_string()));
        assert!(args[0].ends_with(",120"), "{args:?}");
        let medium = LanSpec {
            ra_preference: RaPreference::Medium,
            ..LanSpec::default()
        };
        assert!(medium
            .dnsmasq_args()
            .contains(&"--ra-param=lan0,10,600".to_string()));
    }
}
