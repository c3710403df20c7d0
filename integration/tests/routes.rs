//! Route operations through `NetlinkKernel::apply`, read back with `ip -j`, and the exact
//! dump → delete → restore round trip a `stop` depends on.

use env_qemu_core::model::{
    rtax, IfName, NetState, Route, RouteMetrics, RoutePref, RouteProtocol, RouteScope, RouteType,
};
use env_qemu_core::{Kernel, Op};
use env_qemu_integration::compare::difference;
use env_qemu_integration::{require_netns, same_state, HostConfig, Topology, TopologySpec};

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

/// A route through eth0 as these tests send it: scope universe, metric 0.
fn route(dst: &str) -> Route {
    Route {
        scope: RouteScope::Universe,
        metric: 0,
        ..Route::new(dst.parse().unwrap(), None, Some(n("eth0")))
    }
}

fn routes_to(state: &NetState, dst: &str) -> Vec<Route> {
    state
        .routes
        .iter()
        .filter(|r| r.dst.to_string() == dst)
        .cloned()
        .collect()
}

#[tokio::test]
async fn add_reads_back_exactly() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let k = topo.host.kernel();
    let gw = Some("192.0.2.1".parse().unwrap());
    let wanted = [
        Route {
            gateway: gw,
            protocol: RouteProtocol::Dhcp,
            metric: 100,
            prefsrc: Some("192.0.2.10".parse().unwrap()),
            ..route("default")
        },
        Route {
            table: 100,
            scope: RouteScope::Link,
            protocol: RouteProtocol::Static,
            ..route("203.0.113.0/24")
        },
        Route {
            gateway: Some("192.0.2.77".parse().unwrap()),
            onlink: true,
            tos: 0x10,
            metric: 5,
            ..route("198.51.100.0/24")
        },
        Route {
            kind: RouteType::Blackhole,
            dev: None,
            table: 1000,
            ..route("198.51.100.128/25")
        },
        Route {
            gateway: Some("2001:db8::1".parse().unwrap()),
            metric: 1024,
            protocol: RouteProtocol::Ra,
            ..route("2001:db8:f::/64")
        },
    ];
    for r in &wanted {
        k.apply(&Op::RouteAdd { route: r.clone() }).await.unwrap();
    }
    let state = topo.host.read_state();
    for r in &wanted {
        assert_eq!(
            routes_to(&state, &r.dst.to_string()),
            std::slice::from_ref(r)
        );
    }
}

#[tokio::test]
async fn ipv6_metric_zero_becomes_1024() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let r = route("2001:db8:f::/64");
    topo.host
        .kernel()
        .apply(&Op::RouteAdd { route: r.clone() })
        .await
        .unwrap();
    let got = routes_to(&topo.host.read_state(), "2001:db8:f::/64");
    assert_eq!(got, [Route { metric: 1024, ..r }]);
}

#[tokio::test]
async fn replace_swaps_in_place_and_del_removes() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let k = topo.host.kernel();
    let via = |gw: &str| Route {
        gateway: Some(gw.parse().unwrap()),
        ..route("default")
    };
    k.apply(&Op::RouteAdd {
        route: via("192.0.2.1"),
    })
    .await
    .unwrap();
    k.apply(&Op::RouteReplace {
        route: via("192.0.2.2"),
    })
    .await
    .unwrap();
    assert_eq!(
        routes_to(&topo.host.read_state(), "default"),
        [via("192.0.2.2")]
    );
    // replace adds when nothing has the key.
    let other_metric = Route {
        metric: 50,
        ..via("192.0.2.3")
    };
    k.apply(&Op::RouteReplace {
        route: other_metric.clone(),
    })
    .await
    .unwrap();
    assert_eq!(routes_to(&topo.host.read_state(), "default").len(), 2);

    k.apply(&Op::RouteDel {
        route: via("192.0.2.2"),
    })
    .await
    .unwrap();
    assert_eq!(
        routes_to(&topo.host.read_state(), "default"),
        [other_metric]
    );
}

/// What `stop` does: routes dumped, deleted, re-added from the dump; the kernel ends up
/// exactly where it was, proto/scope/table/metric/src/onlink/tos included.
#[tokio::test]
async fn dump_delete_restore_is_exact() {
    require_netns!();
    let mut config = HostConfig::dhcp_like();
    config.routes.extend([
        "203.0.113.0/24 dev eth0 scope link table 100".to_string(),
        "203.0.113.0/25 via 192.0.2.1 proto static metric 10 table 100".into(),
        "203.0.113.64/26 via 192.0.2.1 proto dhcp src 192.0.2.10 metric 20".into(),
        "203.0.113.128/25 via 192.0.2.99 dev eth0 onlink tos 0x10".into(),
        "blackhole 198.51.100.0/24 table 100".into(),
        "198.51.100.0/25 dev eth0 proto boot scope link metric 7".into(),
        "2001:db8:f::/64 via 2001:db8::1 proto static metric 30 table 100".into(),
        "-6 unreachable 2001:db8:e::/64 metric 40".into(),
    ]);
    let topo = Topology::build(&TopologySpec {
        host: config,
        far: false,
    });
    let k = topo.host.kernel();
    let before = k.dump().await.unwrap();
    // The kernel's own routes (prefix routes, fe80::/64) come back with the addresses.
    let ours: Vec<Route> = before
        .routes
        .iter()
        .filter(|r| r.protocol != RouteProtocol::Kernel)
        .cloned()
        .collect();
    assert_eq!(ours.len(), 10, "{ours:#?}");

    for r in &ours {
        k.apply(&Op::RouteDel { route: r.clone() }).await.unwrap();
    }
    let emptied = topo.host.read_state();
    assert!(
        emptied
            .routes
            .iter()
            .all(|r| r.protocol == RouteProtocol::Kernel),
        "{:#?}",
        emptied.routes
    );

    for r in &ours {
        k.apply(&Op::RouteAdd { route: r.clone() }).await.unwrap();
    }
    let after = k.dump().await.unwrap();
    assert!(
        same_state(&before, &after),
        "{}",
        difference(&before, &after)
    );
    assert!(same_state(&after, &topo.host.read_state()));
}

/// Router preference, expiry and metrics go out and come back, through the backend and
/// through `ip -j`. Measured (kernel 6.18): IPv4 accepts `pref` and `expires` and drops
/// them (every IPv4 route reads medium, never expiring); IPv6 keeps them, and reports
/// `pref medium` for every route; both keep metrics.
#[tokio::test]
async fn pref_expires_and_metrics_read_back() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let k = topo.host.kernel();
    let mut m = RouteMetrics::default();
    m.set(rtax::HOPLIMIT, 64);
    m.set(rtax::MTU, 1400);
    m.set(rtax::ADVMSS, 1300);
    m.set(rtax::INITCWND, 10);
    m.congctl = Some("reno".into());
    let v6 = Route {
        gateway: Some("2001:db8::1".parse().unwrap()),
        metric: 1024,
        ..route("2001:db8:f::/64")
    }
    .pref(RoutePref::High)
    .expires(600)
    .metrics(m.clone());
    let v4 = Route {
        gateway: Some("192.0.2.1".parse().unwrap()),
        ..route("203.0.113.0/24")
    }
    .pref(RoutePref::Low)
    .expires(600)
    .metrics(m.clone());
    for r in [&v6, &v4] {
        k.apply(&Op::RouteAdd { route: r.clone() }).await.unwrap();
    }
    let dumped = k.dump().await.unwrap();
    let by_ip = topo.host.read_state();
    for state in [&dumped, &by_ip] {
        let got = routes_to(state, "2001:db8:f::/64");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].same_ignoring_expiry(&v6), "{got:?}");
        assert!(v6.expiry_within(&got[0], 5, 1), "{got:?}");
        let got = routes_to(state, "203.0.113.0/24");
        let expect = Route {
            pref: RoutePref::Medium,
            expires: None,
            ..v4.clone()
        };
        assert_eq!(got, [expect]);
    }
    // Every other route reads medium, never expiring, without metrics.
    let ours = |r: &&Route| r.same_ignoring_expiry(&v6) || r.dst == v4.dst;
    for r in dumped.routes.iter().filter(|r| !ours(r)) {
        assert_eq!(
            (r.pref, r.expires, r.metrics.is_empty()),
            (RoutePref::Medium, None, true),
            "{r:?}"
        );
    }
    // IPv4 deletes only the route whose metrics are the request's (fib_metrics_match).
    let mut other = m.clone();
    other.set(rtax::MTU, 1300);
    let wrong = v4.clone().metrics(other);
    let e = k.apply(&Op::RouteDel { route: wrong }).await.unwrap_err();
    assert_eq!(e.errno, Some(libc::ESRCH), "{e}");
    k.apply(&Op::RouteDel { route: v4 }).await.unwrap();
    // IPv6 ignores them.
    let wrong = v6
        .clone()
        .metrics(RouteMetrics::default())
        .pref(RoutePref::Low);
    k.apply(&Op::RouteDel { route: wrong }).await.unwrap();
}
