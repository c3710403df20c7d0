//! `env-qemu doctor`: a verdict per check, each failure with the fix. Reads only; changes
//! nothing.

use std::path::Path;

use env_qemu_core::model::{IfName, LinkKind, NetState};
use env_qemu_core::plan::default_uplink;
use env_qemu_core::Kernel;

use crate::args::DoctorArgs;
use crate::context::{ifname, Ctx};
use crate::exit::{Code, Failure};
use crate::managers;
use crate::output::Out;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, serde::Serialize)]
struct Check {
    check: &'static str,
    verdict: Verdict,
    detail: String,
}

fn check(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        check,
        verdict,
        detail: detail.into(),
    }
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn tun() -> Check {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata("/dev/net/tun") {
        Ok(m) if m.file_type().is_char_device() => {
            check("tun", Verdict::Ok, "/dev/net/tun is present")
        }
        Ok(_) => check(
            "tun",
            Verdict::Fail,
            "/dev/net/tun is not a character device: recreate it (`mknod /dev/net/tun c 10 200`)",
        ),
        Err(e) => check(
            "tun",
            Verdict::Fail,
            format!("/dev/net/tun: {e}; load the module (`modprobe tun`)"),
        ),
    }
}

fn bridge_support() -> Check {
    if Path::new("/sys/module/bridge").exists() {
        check("bridge", Verdict::Ok, "the bridge module is loaded")
    } else {
        check("bridge", Verdict::Warn, "the bridge module is not loaded yet; start loads it on demand, or run `modprobe bridge`")
    }
}

/// CAP_NET_ADMIN (bit 12) in the effective set: what start/add/stop need.
fn privileges() -> Check {
    let cap = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .map(str::to_string)
        })
        .and_then(|l| u64::from_str_radix(l.trim_start_matches("CapEff:").trim(), 16).ok())
        .unwrap_or(0);
    if cap & (1 << 12) != 0 {
        check("privileges", Verdict::Ok, "CAP_NET_ADMIN held")
    } else {
        check("privileges", Verdict::Fail, "no CAP_NET_ADMIN: run start/stop with sudo; let a group attach taps with `env-qemu sudoers`")
    }
}

fn uplink(net: &NetState, name: &IfName) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(l) = net.link(name) else {
        out.push(check(
            "uplink",
            Verdict::Fail,
            format!("interface {name} not found"),
        ));
        return out;
    };
    let wireless = matches!(l.kind, LinkKind::Wireless)
        || Path::new(&format!("/sys/class/net/{name}/wireless")).exists()
        || Path::new(&format!("/sys/class/net/{name}/phy80211")).exists();
    if wireless {
        out.push(check("uplink", Verdict::Fail, format!("{name} is Wi-Fi: most drivers cannot be bridged (one MAC per station); start refuses. Use a wired uplink or QEMU's user networking")));
    } else if l.master.is_some() {
        out.push(check(
            "uplink",
            Verdict::Fail,
            format!("{name} is already a port of another device; release it first"),
        ));
    } else {
        out.push(check(
            "uplink",
            Verdict::Ok,
            format!("{name} ({}) can be bridged", l.kind.name()),
        ));
    }
    out
}

/// Bridged frames also traverse iptables' FORWARD chain when br_netfilter is on: a DROP
/// policy (Docker sets one) silently drops every VM packet.
fn firewall() -> Check {
    match read("/proc/sys/net/bridge/bridge-nf-call-iptables").as_deref() {
        Some("1") => check("firewall", Verdict::Warn, "br_netfilter passes bridged traffic through iptables: if the FORWARD policy is DROP (Docker sets it), VM traffic is dropped; allow it (`iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT`) or `sysctl -w net.bridge.bridge-nf-call-iptables=0`"),
        _ => check("firewall", Verdict::Ok, "bridged traffic bypasses iptables (br_netfilter off)"),
    }
}

/// How `start --confirm` runs its revert agent here, and what could kill it early.
fn revert_agent(netns_named: bool) -> Vec<Check> {
    let runner = crate::agent::HostFacts::read(netns_named).runner();
    let mut out = vec![check("revert agent", Verdict::Ok, runner.describe())];
    out.extend(
        crate::agent::hazards(&runner)
            .into_iter()
            .map(|h| check("revert agent", Verdict::Warn, h)),
    );
    out
}

/// Who manages the uplink, what start will do with each, and what stands in the way: a
/// dhcpcd whose control channel is stuck fails; a program start refuses, or one out of
/// env-qemu's sight, warns.
async fn manager_checks(ctx: &Ctx, dev: &IfName) -> Vec<Check> {
    let report = match managers::report(ctx, std::slice::from_ref(dev)).await {
        Ok(r) => r,
        Err(e) => {
            return vec![check(
                "manager",
                Verdict::Warn,
                format!(
                    "could not look for the programs that manage {dev}: {}",
                    e.message
                ),
            )]
        }
    };
    let mut out = Vec::new();
    if report.unreadable > 0 && !nix::unistd::geteuid().is_root() {
        out.push(check(
            "manager",
            Verdict::Warn,
            format!(
                "{} processes of other users could not be looked at: run doctor as root to see every program that may manage {dev}",
                report.unreadable
            ),
        ));
    }
    if report.managers.is_empty() {
        out.push(check(
            "manager",
            Verdict::Ok,
            format!("nothing manages {dev} (static configuration): start moves its addresses and routes as they are"),
        ));
    }
    for m in &report.managers {
        let verdict = if m.handover {
            Verdict::Ok
        } else {
            Verdict::Warn
        };
        out.push(check(
            "manager",
            verdict,
            format!("{}; start: {}", m.manages, m.start),
        ));
    }
    for p in &report.problems {
        let verdict = if p.stuck {
            Verdict::Fail
        } else {
            Verdict::Warn
        };
        out.push(check("manager", verdict, p.message.clone()));
    }
    out
}

pub async fn run(ctx: &Ctx, out: Out, a: &DoctorArgs) -> Result<(), Failure> {
    let net = ctx.kernel.dump().await?;
    let mut checks = vec![tun(), bridge_support(), privileges()];
    let configured = a.iface.as_deref().or(ctx.config.uplink.as_deref());
    let dev = match configured.map(ifname).transpose()? {
        Some(n) => Some(n),
        None => match default_uplink(&net) {
            Ok(n) => Some(n),
            Err(e) => {
                checks.push(check("uplink", Verdict::Warn, e.to_string()));
                None
            }
        },
    };
    if let Some(n) = &dev {
        checks.extend(uplink(&net, n));
        checks.extend(manager_checks(ctx, n).await);
    }
    checks.push(firewall());
    checks.extend(revert_agent(ctx.netns_name.is_some()));
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).expect("checks serialise")
        );
    } else {
        for c in &checks {
            let v = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            println!("{v}  {:<17} {}", c.check, c.detail);
        }
    }
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        return Err(Failure::new(
            Code::Conflict,
            "doctor found problems (FAIL above)",
        ));
    }
    Ok(())
}
