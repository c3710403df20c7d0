//! `NetlinkKernel::dump` against the independent `ip -j` reading, in throwaway namespaces.

use env_qemu_core::model::{Address, DumpFilter, IfName, Neighbour, NetState, NudState, Route};
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

/// A host with every kind of link, address and route the model knows.
fn rich_host() -> Topology {
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
    topo
}

#[tokio::test]
async fn everything_the_model_knows() {
    require_tun!();
    let topo = rich_host();
    assert_dump_matches_ip(&topo.host, &topo.host.kernel()).await;
}

/// `dump_filtered` asks the kernel for less (links by name and master, addresses by
/// ifindex, routes by output device) and must still mean `DumpFilter::apply` of the full
/// dump, on every kind of link and route: multipath routes through two devices (kept with
/// their first hop's), other tables, a tap on another bridge, absent names.
#[tokio::test]
async fn filtered_dumps_are_the_full_dump_cut_to_the_filter() {
    require_tun!();
    let topo = rich_host();
    let h = &topo.host;
    h.ip("addr add 198.51.100.77/24 dev v1");
    h.ip("addr add 2001:db8:77::1/64 nodad dev v1");
    h.ip("route add 203.0.113.200/32 via 198.51.100.1 dev v1 table 200");
    h.ip("route add 198.18.0.0/24 nexthop via 198.51.100.2 dev v1 nexthop via 192.0.2.9 dev eth0");
    h.ip("route add 198.18.1.0/24 nexthop via 192.0.2.9 dev eth0 nexthop via 198.51.100.2 dev v1");
    h.ip("-6 route add 2001:db8:78::/64 via 2001:db8:77::2 dev v1 table 100");
    h.ip("tuntap add dev tap2 mode tap");
    h.ip("link set tap2 master br1");
    let k = h.kernel();
    let full = k.dump().await.unwrap();
    let name = |s: &str| IfName::new(s).unwrap();
    let (eth0, v1, br0, br1) = (name("eth0"), name("v1"), name("br0"), name("br1"));
    let (tap0, tap2, gone) = (name("tap0"), name("tap2"), name("gone0"));
    let filters = [
        DumpFilter::devices(&[&eth0, &gone]),
        DumpFilter::devices(&[&v1, &eth0]),
        DumpFilter::links(&[&tap0, &br0]),
        DumpFilter::devices(&[&eth0, &eth0]),
        DumpFilter::links(&[&tap2, &br0]),
        DumpFilter {
            ports_of: Some(br1.clone()),
            ..DumpFilter::devices(&[&eth0, &br1, &tap0])
        },
        DumpFilter {
            ports_of: Some(gone.clone()),
            ..DumpFilter::links(&[&gone])
        },
        DumpFilter {
            tables: vec![254, 100],
            ..DumpFilter::devices(&[&eth0])
        },
        DumpFilter {
            tables: vec![254],
            ..DumpFilter::links(&[&v1])
        },
    ];
    for f in &filters {
        let got = k.dump_filtered(f).await.unwrap();
        let want = f.apply(&full);
        assert_eq!(got.normalized(), want.normalized(), "{f:?}");
        // Plans follow dump order: per device, it is the full dump's.
        for dev in &f.links {
            let per_dev = |s: &NetState| -> Vec<Route> { s.routes_via(dev).cloned().collect() };
            assert_eq!(
                per_dev(&got),
                per_dev(&want),
                "{f:?}: {dev}'s routes in order"
            );
            let addrs = |s: &NetState| -> Vec<Address> { s.addresses_of(dev).cloned().collect() };
            assert_eq!(
                addrs(&got),
                addrs(&want),
                "{f:?}: {dev}'s addresses in order"
            );
        }
    }
    // Non-trivial: each kind of thing was selected by some filter, and cut by it.
    let f = &filters[1];
    let cut = f.apply(&full);
    assert!(cut
        .routes
        .iter()
        .any(|r| r.dst.to_string() == "198.18.0.0/24"));
    assert!(cut.routes.len() < full.routes.len());
    let ports = filters[5].apply(&full);
    assert!(ports.links.iter().any(|l| l.name == tap2), "{ports:?}");
    let other = filters[4].apply(&full);
    let t2 = other.links.iter().find(|l| l.name == tap2).unwrap();
    assert_eq!(
        t2.master.as_ref(),
        Some(&br1),
        "a master outside the filter is named"
    );
}

/// `neighbours(Some(dev))` is the kernel filtering by device (NDA_IFINDEX on a strict dump
/// request) and must equal the full neighbour dump cut to that device.
#[tokio::test]
async fn neighbours_by_device_are_the_full_dump_cut() {
    require_tun!();
    let ns = TestNs::new();
    ns.ip("link add v0 type veth peer name v1");
    ns.ip("link add br0 type bridge");
    for dev in ["v0", "v1", "br0"] {
        ns.ip(&format!("link set {dev} up"));
    }
    ns.ip("neigh replace 192.0.2.1 lladdr 02:00:00:00:00:01 dev v0 nud stale");
    ns.ip("neigh replace 2001:db8::1 lladdr 02:00:00:00:00:02 dev v0 nud permanent router");
    ns.ip("neigh replace 192.0.2.2 lladdr 02:00:00:00:00:03 dev br0 nud stale");
    let k = ns.kernel();
    // The kernel adds `noarp` entries of its own, for the multicast groups it reports to,
    // at any moment after a device comes up: the comparison sets them aside.
    let ours = |v: Vec<Neighbour>| -> Vec<Neighbour> {
        let mut v: Vec<_> = v
            .into_iter()
            .filter(|n| n.state != NudState::Noarp)
            .collect();
        v.sort();
        v
    };
    let all = ours(k.neighbours(None).await.unwrap());
    for dev in ["v0", "v1", "br0"] {
        let dev = IfName::new(dev).unwrap();
        let got = ours(k.neighbours(Some(&dev)).await.unwrap());
        let want: Vec<_> = all.iter().filter(|n| n.dev == dev).cloned().collect();
        assert_eq!(got, want, "{dev}");
    }
    let br0 = ours(
        k.neighbours(Some(&IfName::new("br0").unwrap()))
            .await
            .unwrap(),
    );
    assert_eq!(br0.len(), 1, "{br0:?}");
    assert_eq!(all.len(), 3, "{all:?}");
}
