//! start and stop on hosts whose NIC a real program manages (kernel SLAAC, dhclient,
//! dhcpcd), the env-qemu binary run inside each host as a real host's runs (nsenter into
//! the host's namespaces, which adds the same few milliseconds to each): what the
//! handover of the DHCP client adds beside the SLAAC-only host.

use std::path::Path;
use std::time::Duration;

use env_qemu_integration::hosts::{ClientHost, HostSpec, Lan, LanSpec, Manager};
use serde_json::{json, Value};

use crate::stats::Summary;
use crate::Ctx;

pub struct HostTimes {
    pub label: &'static str,
    pub start: Summary,
    pub stop: Summary,
}

impl HostTimes {
    pub fn json(&self) -> Value {
        json!({ "host": self.label, "start": self.start.json(), "stop": self.stop.json() })
    }
}

/// `runs` start/stop cycles on each kind of host, a few seconds apart (a DHCP client
/// handed back to the NIC checks its address by ARP for a few seconds).
pub fn run(ctx: &Ctx, runs: usize) -> Vec<HostTimes> {
    let kinds = [
        (Manager::KernelSlaac, "kernel SLAAC only"),
        (Manager::Dhclient, "dhclient (+ kernel SLAAC)"),
        (Manager::DhcpcdManager, "dhcpcd (manager)"),
    ];
    let mut out = Vec::new();
    for (manager, label) in kinds {
        progress!("hosts: {label}, {runs} start/stop cycles");
        let lan = Lan::start(LanSpec::default());
        let host = ClientHost::start(&lan, HostSpec::new(manager));
        host.wait_up(Duration::from_secs(30));
        let (mut starts, mut stops) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let start = host.env_qemu(Path::new(&ctx.bin), &["start", "eth0", "--shm-size", "off"]);
            assert!(start.success(), "start on a {label} host:\n{start}");
            starts.push(start.took);
            std::thread::sleep(Duration::from_secs(2));
            let stop = host.env_qemu(Path::new(&ctx.bin), &["stop"]);
            assert!(stop.success(), "stop on a {label} host:\n{stop}");
            stops.push(stop.took);
            std::thread::sleep(Duration::from_secs(4));
        }
        out.push(HostTimes {
            label,
            start: Summary::of(&starts),
            stop: Summary::of(&stops),
        });
    }
    out
}
