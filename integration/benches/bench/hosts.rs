//! start and stop on hosts whose NIC a DHCP client owns (a dhcpcd manager, dhclient),
//! beside a host with no DHCP client (kernel SLAAC only) and the static host of the other
//! sections: the binary run inside each host as a real host runs it (nsenter into its
//! namespaces, which adds the same few milliseconds to each), so the difference is what
//! handing the client over to the bridge and back costs. The first cycle on each host
//! runs under 1,000/s datagram streams from the LAN and the far host (not timed).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use env_qemu_integration::hosts::{
    streams_during, ClientHost, EnvQemuRun, HostSpec, Lan, LanSpec, Manager,
};
use env_qemu_integration::probe::udp_echo;
use env_qemu_integration::session::TestDir;
use env_qemu_integration::stream::StreamSpec;

use crate::drivers::timed;
use crate::lab::Lab;
use crate::stats::Summary;
use crate::Ctx;

const START: [&str; 4] = ["start", "eth0", "--shm-size", "off"];

/// `runs` start/stop cycles through `run`, `pause` after each command (a DHCP client
/// handed back to the NIC checks its address by ARP for a few seconds); prints the
/// medians.
fn cycles(ctx: &Ctx, label: &str, pause: Duration, run: impl Fn(&[&str]) -> Duration) {
    let (mut starts, mut stops) = (Vec::new(), Vec::new());
    for _ in 0..ctx.host_runs {
        starts.push(run(&START));
        std::thread::sleep(pause);
        stops.push(run(&["stop"]));
        std::thread::sleep(pause * 2);
    }
    let (start, stop) = (Summary::of(&starts), Summary::of(&stops));
    println!(
        "{label:<40} start {:<22} stop {}",
        start.cell(),
        stop.cell()
    );
}

fn checked(run: &EnvQemuRun, label: &str) -> Duration {
    assert!(run.success(), "on a {label} host:\n{run}");
    run.took
}

/// One start and one stop under four streams (LAN and far host × the host's addresses);
/// prints the datagrams lost.
fn losses(host: &mut ClientHost, lan: &Lan, bin: &Path, label: &str) -> String {
    let up = host.wait_up(Duration::from_secs(30));
    let sources = [("lan", lan.router()), ("far", lan.far())];
    let mut specs = Vec::new();
    for (name, from) in sources {
        for target in up.targets() {
            assert!(
                udp_echo(from, host.ns(), target, 10),
                "no echo from {target}"
            );
            specs.push(StreamSpec::new(name, from, target));
        }
    }
    host.serve_echo();
    let mut out = Vec::new();
    for args in [&START[..], &["stop"]] {
        let budget = Duration::from_secs(10);
        let (run, outcomes, _) = streams_during(&specs, 1000, budget, || host.env_qemu(bin, args));
        checked(&run, label);
        let lost: u32 = outcomes.iter().map(|o| o.lost).sum();
        let sent: u32 = outcomes.iter().map(|o| o.sent).sum();
        out.push(format!("{} lost {lost} of {sent}", args[0]));
        std::thread::sleep(Duration::from_secs(4));
    }
    out.join(", ")
}

pub fn run(ctx: &Ctx) {
    ctx.section("start and stop on hosts with and without a DHCP client (run inside, via nsenter)");
    progress!(
        "hosts: the static host, {} start/stop cycles",
        ctx.host_runs
    );
    let lab = Lab::new(false);
    let dir = TestDir::new();
    cycles(
        ctx,
        "static addresses (bench host)",
        Duration::ZERO,
        |args| {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", lab.host().path().display()))
                .arg(&ctx.bin)
                .args(["--config", "/dev/null", "--state-dir"])
                .arg(dir.path())
                .args(args);
            timed(c, &format!("env-qemu {}", args[0]))
        },
    );
    drop(lab);
    for (manager, label) in [
        (Manager::KernelSlaac, "no DHCP client (kernel SLAAC only)"),
        (Manager::DhcpcdManager, "dhcpcd (manager)"),
        (Manager::Dhclient, "dhclient (+ kernel SLAAC)"),
    ] {
        progress!("hosts: {label}, streams, then {} cycles", ctx.host_runs);
        let lan = Lan::start(LanSpec::default());
        let mut host = ClientHost::start(&lan, HostSpec::new(manager));
        let lost = losses(&mut host, &lan, &ctx.bin, label);
        println!("{label:<40} under 1,000/s streams: {lost}");
        cycles(ctx, label, Duration::from_secs(2), |args| {
            checked(&host.env_qemu(&ctx.bin, args), label)
        });
    }
}
