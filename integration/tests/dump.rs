//! `NetlinkKernel::dump` against the independent `ip -j` reading, in throwaway namespaces.

use env_qemu_core::Kernel;
use env_qemu_integration::{
    assert_dump_matches_ip, require_netns, require_tun, HostConfig, TestNs, Topology, TopologySpec,
};

#[tokio::test]
async fn empty_namespace() {
    require_netns!();
    let ns = TestNs::new();
    let kernel = ns.kernel();
    assert_dump_matches_ip(&ns, &kernel).await;
    let state = kernel.dump().await.unwrap();
    assert_eq!(state.links.len(), 1, "only lo: {state:?}");
}

#[tokio::test]
async fn dhcp_like_host() {
    require_netns!();
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: true,
    });
    assert_dump_matches_ip(&topo.host, &topo.host.kernel()).await;
    assert_dump_matches_ip(&topo.lan, &topo.lan.kernel()).await;
}

#[tokio::test]
async fn everything_the_model_knows() {
    require_tun!();
    let mut host = HostConfig::dhcp_like();
    host.mtu = Some(1400);
    host.addresses.extend([
        "192.0.2.11/24".to_string(), // secondary
        "198.51.100.9/24 brd + valid_lft 600 preferred_lft 300".into(), // dynamic
        "203.0.113.5/32 scope link".into(),
        "2001:db8:1::5/64 nodad noprefixroute".into(),
        "2001:db8:2::5/64 valid_lft 900 preferred_lft 0 nodad".into(), // deprecated
    ]);
    host.routes.extend([
        "203.0.113.0/24 via 192.0.2.1 table 100 proto static metric 5".to_string(),
        "203.0.113.64/26 dev eth0 scope link proto boot".into(),
        "203.0.113.128/25 via 192.0.2.99 dev eth0 onlink tos 0x10".into(),
        "blackhole 198.51.100.128/25 table 1000".into(),
        "-6 unreachable 2001:db8:e::/64 metric 7".into(),
        "2001:db8:f::/64 via 2001:db8::1 proto ra metric 50 table 100".into(),
    ]);
    let topo = Topology::build(&TopologySpec { host, far: false });
    let h = &topo.host;
    h.ip("link add br0 address 02:00:00:00:00:b0 type bridge stp_state 1 forward_delay 400");
    h.ip("link add br1 type bridge");
    h.ip("link add v0 type veth peer name v1");
    h.ip("link set v0 master br1");
    h.ip("link set v1 up");
    h.ip("tuntap add dev tap0 mode tap user 4242 group 4343");
    h.ip("tuntap add dev tap1 mode tap");
    h.ip("tuntap add dev tun0 mode tun");
    h.ip("link set tap0 master br0");
    h.ip("link add mv0 link v1 type macvlan");
    h.ip("link add vx0 type vxlan id 42 dstport 4789 dev eth0");
    h.ip("route add 203.0.113.32/27 nexthop via 192.0.2.7 dev eth0 nexthop via 192.0.2.8 dev eth0");
    assert_dump_matches_ip(h, &h.kernel()).await;
}
