//! A small LAN of namespaces: `host` (the machine env-qemu runs on), `lan` (its router)
//! and optionally `far` (a machine one hop behind the router).
//!
//! ```text
//!   host                      lan (router, forwarding on)          far
//!   eth0 ── veth ── lan0 192.0.2.1/24          far0 198.51.100.1/24 ── veth ── eth0 198.51.100.2/24
//!                        2001:db8::1/64             2001:db8:f::1/64              2001:db8:f::2/64
//! ```
//!
//! The host side is configured from a [`HostConfig`] with `ip` commands, independently of
//! the backend under test. Documentation ranges only.

use env_qemu_core::model::MacAddr;

use crate::TestNs;

pub const LAN_ROUTER_V4: &str = "192.0.2.1";
pub const LAN_ROUTER_V6: &str = "2001:db8::1";
pub const FAR_HOST_V4: &str = "198.51.100.2";
pub const FAR_HOST_V6: &str = "2001:db8:f::2";
/// The host uplink's name, inside the host namespace.
pub const UPLINK: &str = "eth0";

/// How the host's uplink `eth0` is configured, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// `ip link add eth0 address MAC`; `None` lets the kernel pick one.
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    /// Admin state of eth0 (its peer in `lan` is always up, so up means carrier too).
    pub up: bool,
    /// Arguments of `ip addr add … dev eth0`, e.g. `192.0.2.10/24` or
    /// `2001:db8::10/64 nodad`.
    pub addresses: Vec<String>,
    /// Arguments of `ip route add …`, applied in order after the addresses and `up`;
    /// a leading `-6 ` selects IPv6 (needed when no IPv6 address appears in it).
    pub routes: Vec<String>,
}

impl HostConfig {
    /// eth0 up, nothing configured.
    pub fn bare() -> HostConfig {
        HostConfig {
            mac: Some(MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x10])),
            mtu: None,
            up: true,
            addresses: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// [`HostConfig::dhcp_like`] plus 400 routes in table 100 through the router: enough
    /// that start's plan is still running a few milliseconds after it begins (for tests
    /// that interrupt it).
    pub fn with_many_routes() -> HostConfig {
        let mut host = HostConfig::dhcp_like();
        host.routes.extend((0..400).map(|i| {
            let net = if i < 200 { "198.51.100" } else { "203.0.113" };
            format!("{net}.{}/32 via {LAN_ROUTER_V4} table 100", i % 200)
        }));
        host
    }

    /// What a DHCP/SLAAC-configured laptop looks like: one address per family and
    /// default routes through the router, IPv4 one with proto dhcp, metric 100, src.
    pub fn dhcp_like() -> HostConfig {
        HostConfig {
            addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64 nodad".into()],
            routes: vec![
                format!(
                    "default via {LAN_ROUTER_V4} dev eth0 proto dhcp src 192.0.2.10 metric 100"
                ),
                format!("default via {LAN_ROUTER_V6} dev eth0 metric 1024"),
            ],
            ..HostConfig::bare()
        }
    }
}

/// Which namespaces to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySpec {
    pub host: HostConfig,
    pub far: bool,
}

/// The namespaces, removed on drop.
#[derive(Debug)]
pub struct Topology {
    pub host: TestNs,
    pub lan: TestNs,
    pub far: Option<TestNs>,
}

impl Topology {
    /// A host whose eth0 has 192.0.2.10/24 and 2001:db8::10/64 (`nodad`), on a LAN
    /// without a far host: what the backend's route and error tests act on.
    pub fn dual_stack_host() -> Topology {
        Topology::build(&TopologySpec {
            host: HostConfig {
                addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64 nodad".into()],
                ..HostConfig::bare()
            },
            far: false,
        })
    }

    pub fn build(spec: &TopologySpec) -> Topology {
        let host = TestNs::new();
        let lan = TestNs::new();
        let mac = spec
            .host
            .mac
            .map(|m| format!("address {m} "))
            .unwrap_or_default();
        host.ip(&format!(
            "link add {UPLINK} {mac}type veth peer name lan0 netns {}",
            lan.name()
        ));
        router(&lan, "lan0", "192.0.2.1/24", "2001:db8::1/64");
        let far = spec.far.then(|| {
            let far = TestNs::new();
            lan.ip(&format!(
                "link add far0 type veth peer name eth0 netns {}",
                far.name()
            ));
            router(&lan, "far0", "198.51.100.1/24", "2001:db8:f::1/64");
            far.ip("link set lo up");
            far.ip("addr add 198.51.100.2/24 dev eth0");
            far.ip("addr add 2001:db8:f::2/64 dev eth0 nodad");
            far.ip("link set eth0 up");
            far.ip("route add default via 198.51.100.1");
            far.ip("-6 route add default via 2001:db8:f::1");
            far
        });
        configure_host(&host, &spec.host);
        Topology { host, lan, far }
    }
}

fn router(lan: &TestNs, dev: &str, v4: &str, v6: &str) {
    lan.ip("link set lo up");
    lan.ip(&format!("addr add {v4} dev {dev}"));
    lan.ip(&format!("addr add {v6} dev {dev} nodad"));
    lan.ip(&format!("link set {dev} up"));
    lan.set_sysctl("net.ipv4.ip_forward", "1");
    lan.set_sysctl("net.ipv6.conf.all.forwarding", "1");
}

/// Applies `config` to the host namespace's eth0 with `ip`.
pub fn configure_host(host: &TestNs, config: &HostConfig) {
    host.ip("link set lo up");
    if let Some(mtu) = config.mtu {
        host.ip(&format!("link set {UPLINK} mtu {mtu}"));
    }
    for a in &config.addresses {
        host.ip(&format!("addr add {a} dev {UPLINK}"));
    }
    if config.up {
        host.ip(&format!("link set {UPLINK} up"));
    }
    for r in &config.routes {
        match r.strip_prefix("-6 ") {
            Some(v6) => host.ip(&format!("-6 route add {v6}")),
            None => host.ip(&format!("route add {r}")),
        };
    }
}
