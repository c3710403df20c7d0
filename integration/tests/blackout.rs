//! Zero blackout, measured: a fixed-rate UDP echo (1,000 numbered datagrams/s) from the
//! LAN router and from a host one hop behind it, to the host's IPv4 and IPv6 addresses,
//! while `start` and then `stop` run. No route, address or neighbour entry is ever missing
//! (proved step by step on the simulated kernel, property 5); what the kernel itself drops
//! is a frame arriving in the tens of microseconds during which it adds or releases the
//! port (see `stop_hands_over_within_one_datagram`), so each stream may lose at most one.
//!
//! Each test measures both phases and prints the figures with the commands' steps on the
//! same clock (`cargo test --test blackout -- --nocapture`; also on stderr for CI logs).
//! Only losses are asserted, never timings: a datagram is lost only if its echo has not
//! come back two seconds after its stream ended.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use env_qemu_core::model::IfName;
use env_qemu_core::plan::StartRequest;
use env_qemu_core::Op;
use env_qemu_integration::session::settled_state;
use env_qemu_integration::stream::{lan_and_far, table, EchoServer, Outcome, Streams};
use env_qemu_integration::topology::{LAN_ROUTER_V4, LAN_ROUTER_V6};
use env_qemu_integration::{require_netns, HostConfig, Session, Topology, TopologySpec};

const HOST_V4: &str = "192.0.2.10";
const HOST_V6: &str = "2001:db8::10";
const RATE: u32 = 1000;
/// Each stream lasts this long; the command starts `COMMAND_AT` into it.
const STREAM: Duration = Duration::from_secs(3);
const COMMAND_AT: Duration = Duration::from_secs(1);
/// How long after a stream's last datagram an echo still counts.
const WINDOW: Duration = Duration::from_secs(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What one run measured: the streams during start and during stop, and the report.
struct Figures {
    start: Vec<Outcome>,
    stop: Vec<Outcome>,
    report: String,
}

impl Figures {
    fn assert_at_most(&self, outcomes: &[Outcome], phase: &str, lost: u32) {
        let lossy = outcomes.iter().any(|o| o.lost > lost || o.send_errors > 0);
        assert!(
            !lossy,
            "more than {lost} datagram(s) lost in a stream during {phase}:\n{}",
            self.report
        );
    }
}

/// Builds host, LAN router and far host; streams during `start`, then during `stop`.
async fn measure() -> Figures {
    let topo = Topology::build(&TopologySpec {
        host: HostConfig {
            // The IPv6 address goes through DAD (no `nodad`), as on a real host.
            addresses: vec![format!("{HOST_V4}/24"), format!("{HOST_V6}/64")],
            routes: vec![
                format!("default via {LAN_ROUTER_V4} dev eth0 proto dhcp metric 100"),
                format!("default via {LAN_ROUTER_V6} dev eth0 metric 1024"),
            ],
            ..HostConfig::bare()
        },
        far: true,
    });
    let (host, lan) = (&topo.host, &topo.lan);
    let far = topo.far.as_ref().unwrap();
    settled_state(host);
    let specs = lan_and_far(host, lan, far, [ip(HOST_V4), ip(HOST_V6)]);
    let _server = EchoServer::start(host);
    let mut session = Session::new(host);
    let req = StartRequest {
        uplink: IfName::new("eth0").unwrap(),
        bridge: IfName::new("lepont").unwrap(),
        shm: None,
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    };

    let streams = Streams::spawn(&specs, RATE, STREAM, WINDOW);
    tokio::time::sleep(COMMAND_AT).await;
    let t = Instant::now();
    session.start(&req).await.expect("start");
    let start_took = t.elapsed();
    let start_steps = session.timeline(t, streams.t0());
    let start = streams.finish();
    host.ip("link show lepont");

    let streams = Streams::spawn(&specs, RATE, STREAM, WINDOW);
    tokio::time::sleep(COMMAND_AT).await;
    let t = Instant::now();
    let plan = session.stop(false).await.expect("stop");
    let stop_took = t.elapsed();
    let stop_steps = session.timeline(t, streams.t0());
    let stop = streams.finish();
    assert!(host.try_ip("link show lepont").is_err(), "bridge left");
    // The NIC got the bridge's entry for the LAN's router before taking the traffic back.
    for router in [LAN_ROUTER_V4, LAN_ROUTER_V6] {
        let want = ip(router);
        let copied = plan.ops().any(|op| {
            matches!(op, Op::NeighReplace { dev, ip: to, .. } if dev.as_str() == "eth0" && *to == want)
        });
        assert!(
            copied,
            "stop did not copy the bridge's entry for {router}:\n{plan}"
        );
    }

    let report = format!(
        "blackout, {RATE} datagrams/s per stream (datagram n leaves at n ms):\n{}\
         start took {start_took:.1?}, stop took {stop_took:.1?}\n\
         start's steps:\n{start_steps}stop's steps:\n{stop_steps}",
        table(&[("start", &start), ("stop", &stop)])
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and CI's
    // log must show the figures.
    let _ = writeln!(std::io::stderr().lock(), "{report}");
    Figures {
        start,
        stop,
        report,
    }
}

/// Start's order (bridge with the NIC's MAC, addresses on it, enslave, `route replace`,
/// then the NIC's addresses deleted) leaves no instant without a working route; the kernel
/// drops a frame that reaches the NIC while it is being made a port (the port exists,
/// `disabled`, before it forwards), measured about once in two enslavings at 10,000/s.
#[tokio::test]
async fn start_hands_over_within_one_datagram() {
    require_netns!();
    let figures = measure().await;
    figures.assert_at_most(&figures.start, "start", 1);
}

/// Stop moves everything back onto the NIC while it is still a port (addresses, the
/// bridge's neighbour entries, `route replace`, the bridge's addresses deleted), so no
/// route points at the bridge when the NIC is released.
///
/// What remains is the kernel's: releasing a port (`nomaster`, or deleting its bridge)
/// sets the port `disabled` before it unregisters the bridge's receive handler, and a
/// frame arriving in between is dropped by the bridge. Measured at 10,000 datagrams/s
/// with nothing else changing (`ip link set eth0 master`/`nomaster` with all addresses
/// and routes on eth0): about one frame lost in two releases (and in two enslavings),
/// i.e. a window of the order of 50–100 µs that no order of operations avoids. At
/// 5,000/s over 10 stops: env-qemu lost 9 datagrams in all (5 of 10 runs lost any); the
/// former order (NIC's routes appended, bridge deleted) 33 (10 of 10). So this asserts at
/// most one datagram per stream, and prints the figures.
#[tokio::test]
async fn stop_hands_over_within_one_datagram() {
    require_netns!();
    let figures = measure().await;
    figures.assert_at_most(&figures.stop, "stop", 1);
}
