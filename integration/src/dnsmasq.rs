//! [`Dnsmasq`]: the LAN's DHCP server or IPv6 router (RAs), inside a test namespace,
//! bound to one interface, DNS off, its lease file and log in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::guard::{wait_until, ChildGuard};
use crate::qemu::find_program;
use crate::TestNs;

/// One DHCP lease, as dnsmasq's lease file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: String,
    pub ip: String,
}

/// `dnsmasq --keep-in-foreground` in a namespace, ended by PID on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    process: ChildGuard,
    leases: PathBuf,
    log: PathBuf,
}

impl Dnsmasq {
    /// Serves DHCP on `iface` of `ns` only (no DNS: `--port=0`), handing out `first`…`last`
    /// (a /24), with its files in `dir`. Returns once its DHCP socket is bound.
    pub fn start(ns: &TestNs, iface: &str, first: &str, last: &str, dir: &Path) -> Dnsmasq {
        let range = format!("--dhcp-range={first},{last},255.255.255.0,10m");
        Dnsmasq::spawn(
            ns,
            iface,
            &[
                &range,
                "--dhcp-authoritative",
                // No ICMP probe of an address before offering it (saves 3 s per lease).
                "--no-ping",
                "--log-dhcp",
            ],
            "sockets bound exclusively to interface",
            dir,
        )
    }

    /// Sends IPv6 router advertisements on `iface` of `ns` for `prefix` (`2001:db8:42::`,
    /// a /64, autonomous: hosts make SLAAC addresses from it), no DHCP and no DNS.
    /// Returns once advertising is enabled.
    pub fn start_ra(ns: &TestNs, iface: &str, prefix: &str, dir: &Path) -> Dnsmasq {
        let range = format!("--dhcp-range={prefix},ra-only,64,10m");
        Dnsmasq::spawn(
            ns,
            iface,
            &["--enable-ra", &range],
            "router advertisement enabled",
            dir,
        )
    }

    /// [`Dnsmasq::start_ra`] as a router with preference `high`, an advertisement every
    /// `interval` seconds or so (dnsmasq jitters it) and a router lifetime of `lifetime`
    /// seconds, addresses valid for `valid` seconds. `ns` needs an IPv6 default route of
    /// its own, or dnsmasq advertises a router lifetime of 0 (no default route on hosts).
    pub fn start_router(
        ns: &TestNs,
        iface: &str,
        prefix: &str,
        (interval, lifetime, valid): (u32, u32, u32),
        dir: &Path,
    ) -> Dnsmasq {
        let range = format!("--dhcp-range={prefix},ra-only,64,{valid}");
        let param = format!("--ra-param={iface},high,{interval},{lifetime}");
        Dnsmasq::spawn(
            ns,
            iface,
            &["--enable-ra", &range, &param],
            "router advertisement enabled",
            dir,
        )
    }

    fn spawn(ns: &TestNs, iface: &str, mode: &[&str], ready: &str, dir: &Path) -> Dnsmasq {
        let dnsmasq = find_program("dnsmasq").expect("dnsmasq is installed (dnsmasq-base)");
        let leases = dir.join("dnsmasq.leases");
        let log = dir.join("dnsmasq.log");
        let stderr = dir.join("dnsmasq.stderr");
        let opt = |k: &str, v: &Path| format!("--{k}={}", v.display());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .arg(&dnsmasq)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-hosts",
                "--no-resolv",
                "--port=0",
                &format!("--interface={iface}"),
                "--bind-interfaces",
            ])
            .args(mode)
            .args([
                "--user=root",
                &opt("dhcp-leasefile", &leases),
                &opt("log-facility", &log),
                &opt("pid-file", &dir.join("dnsmasq.pid")),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("create dnsmasq.stderr"));
        let mut process = ChildGuard::spawn("dnsmasq", &mut cmd);
        let bound = wait_until(Duration::from_secs(10), || {
            if let Some(status) = process.try_wait() {
                panic!(
                    "dnsmasq exited at once ({status}):\n{}{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(ready).then_some(())
        });
        assert!(
            bound.is_some(),
            "dnsmasq was not ready within 10 s (no {ready:?} in its log):\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Dnsmasq {
            process,
            leases,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The lease file's leases (empty before the first one).
    pub fn leases(&self) -> Vec<Lease> {
        parse_leases(&std::fs::read_to_string(&self.leases).unwrap_or_default())
    }

    /// The lease of `mac`, if dnsmasq has granted one.
    pub fn lease_of(&self, mac: &str) -> Option<Lease> {
        let mac = mac.to_ascii_lowercase();
        self.leases().into_iter().find(|l| l.mac == mac)
    }

    /// dnsmasq's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `EXPIRY MAC IP HOSTNAME CLIENT-ID` lines.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| Lease {
                mac: f[1].to_ascii_lowercase(),
                ip: f[2].to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lines() {
        let text = "1795532993 52:54:00:12:34:56 192.0.2.108 * 01:52:54:00:12:34:56\n\n";
        assert_eq!(
            parse_leases(text),
            vec![Lease {
                mac: "52:54:00:12:34:56".into(),
                ip: "192.0.2.108".into()
            }]
        );
    }
}
