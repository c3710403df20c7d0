//! The host every measurement runs on: integration's [`Topology`] (host, LAN router,
//! optionally a far host one hop behind it) with a rich-enough uplink, plus one VM tap.

use env_qemu_integration::session::settled_state;
use env_qemu_integration::topology::{LAN_ROUTER_V4, LAN_ROUTER_V6};
use env_qemu_integration::{HostConfig, TestNs, Topology, TopologySpec};

pub const HOST_V4: &str = "192.0.2.10";
pub const HOST_V6: &str = "2001:db8::10";
/// The VM tap that add/del attach and detach.
pub const TAP: &str = "bt0";

/// eth0 with an IPv4 primary and secondary and an IPv6 address (through DAD, as on a real
/// host), DHCP-like defaults in both families, and a route per family in table 100:
/// 4 addresses (with the link-local), 4 routes to move.
fn host_config() -> HostConfig {
    HostConfig {
        addresses: vec![
            format!("{HOST_V4}/24"),
            "192.0.2.11/24".into(),
            format!("{HOST_V6}/64"),
        ],
        routes: vec![
            format!("default via {LAN_ROUTER_V4} dev eth0 proto dhcp src {HOST_V4} metric 100"),
            format!("-6 default via {LAN_ROUTER_V6} dev eth0 metric 1024"),
            format!("198.51.100.0/24 via {LAN_ROUTER_V4} dev eth0 table 100"),
            format!("-6 2001:db8:f::/64 via {LAN_ROUTER_V6} dev eth0 table 100"),
        ],
        ..HostConfig::bare()
    }
}

pub struct Lab {
    pub topo: Topology,
}

impl Lab {
    pub fn new(far: bool) -> Lab {
        let topo = Topology::build(&TopologySpec {
            host: host_config(),
            far,
        });
        topo.host.ip(&format!("tuntap add dev {TAP} mode tap"));
        // DAD done: nothing changes by itself from here on.
        settled_state(&topo.host);
        Lab { topo }
    }

    pub fn host(&self) -> &TestNs {
        &self.topo.host
    }
}
