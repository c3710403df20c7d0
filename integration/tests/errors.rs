//! Kernel refusals arrive as typed errors naming the object, with errno and the kernel's
//! own message, and leave nothing changed.

use std::path::Path;

use env_qemu_core::model::{Address, IfName, Knob, Route, RouteScope, SysctlKey};
use env_qemu_core::{ErrorKind, Kernel, KernelError, LinkChange, LinkSpec, Op};
use env_qemu_integration::{require_netns, require_tun, TestNs, Topology};

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

/// A route through eth0 as these tests send it: scope universe, metric 0.
fn route(dst: &str, gw: Option<&str>) -> Route {
    Route {
        scope: RouteScope::Universe,
        metric: 0,
        ..Route::new(
            dst.parse().unwrap(),
            gw.map(|g| g.parse().unwrap()),
            Some(n("eth0")),
        )
    }
}

fn check(e: &KernelError, kind: ErrorKind, object: &str, errno: i32) {
    assert_eq!(
        (e.kind, e.object.as_str(), e.errno),
        (kind, object, Some(errno)),
        "{e}"
    );
}

#[tokio::test]
async fn duplicate_link_already_exists() {
    require_netns!();
    let ns = TestNs::new();
    ns.ip("link add br0 type bridge");
    let op = Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n("br0"),
            mac: None,
            mtu: None,
            stp: false,
            forward_delay: 0,
        },
    };
    let e = ns.kernel().apply(&op).await.unwrap_err();
    check(&e, ErrorKind::AlreadyExists, "interface br0", libc::EEXIST);
    assert!(
        e.to_string()
            .starts_with("interface br0: already exists (EEXIST"),
        "{e}"
    );
}

#[tokio::test]
async fn duplicate_tap_already_exists_and_changes_nothing() {
    require_tun!();
    let ns = TestNs::new();
    ns.ip("link add tap0 type veth peer name tap0p");
    ns.ip("tuntap add dev tap1 mode tap");
    let before = ns.read_state();
    let k = ns.kernel();
    for name in ["tap0", "tap1"] {
        let op = Op::LinkAdd {
            spec: LinkSpec::Tap {
                name: n(name),
                owner: Some(1000),
                group: None,
            },
        };
        let e = k.apply(&op).await.unwrap_err();
        check(
            &e,
            ErrorKind::AlreadyExists,
            &format!("interface {name}"),
            libc::EEXIST,
        );
    }
    assert_eq!(ns.read_state().normalized(), before.normalized());
}

#[tokio::test]
async fn missing_links() {
    require_netns!();
    let ns = TestNs::new();
    ns.ip("link add v0 type veth peer name v0p");
    let k = ns.kernel();
    let e = k
        .apply(&Op::LinkDel { name: n("nosuch") })
        .await
        .unwrap_err();
    check(&e, ErrorKind::NotFound, "interface nosuch", libc::ENODEV);
    let op = Op::LinkSet {
        name: n("v0"),
        change: LinkChange::Master(n("nosuchbr")),
    };
    let e = k.apply(&op).await.unwrap_err();
    check(&e, ErrorKind::NotFound, "interface v0", libc::ENODEV);
    assert_eq!(e.detail.as_deref(), Some("no interface named nosuchbr"));
}

#[tokio::test]
async fn route_errors() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let k = topo.host.kernel();

    let missing = route("203.0.113.0/24", Some("192.0.2.1"));
    let e = k
        .apply(&Op::RouteDel {
            route: missing.clone(),
        })
        .await
        .unwrap_err();
    check(&e, ErrorKind::NotFound, &missing.to_string(), libc::ESRCH);

    let off_link = route("203.0.113.0/24", Some("198.51.100.1"));
    let e = k
        .apply(&Op::RouteAdd {
            route: off_link.clone(),
        })
        .await
        .unwrap_err();
    check(
        &e,
        ErrorKind::Unreachable,
        "route 203.0.113.0/24 via 198.51.100.1 dev eth0",
        libc::ENETUNREACH,
    );
    assert_eq!(e.detail.as_deref(), Some("Nexthop has invalid gateway"));

    let off_link6 = route("2001:db8:f::/64", Some("2001:db8:99::1"));
    let e = k
        .apply(&Op::RouteAdd { route: off_link6 })
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errno),
        (ErrorKind::Unreachable, Some(libc::EHOSTUNREACH)),
        "{e}"
    );

    let bad_src = Route {
        prefsrc: Some("203.0.113.9".parse().unwrap()),
        ..route("203.0.113.0/24", Some("192.0.2.1"))
    };
    let e = k.apply(&Op::RouteAdd { route: bad_src }).await.unwrap_err();
    assert_eq!(
        (e.kind, e.errno),
        (ErrorKind::Invalid, Some(libc::EINVAL)),
        "{e}"
    );
    assert_eq!(e.detail.as_deref(), Some("Invalid prefsrc address"));

    let ok = route("203.0.113.0/24", Some("192.0.2.1"));
    k.apply(&Op::RouteAdd { route: ok.clone() }).await.unwrap();
    let e = k.apply(&Op::RouteAdd { route: ok }).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");

    let no_dev = Route {
        dev: Some(n("nosuch")),
        ..route("203.0.113.0/24", None)
    };
    let e = k.apply(&Op::RouteAdd { route: no_dev }).await.unwrap_err();
    assert_eq!(
        (e.kind, e.errno),
        (ErrorKind::NotFound, Some(libc::ENODEV)),
        "{e}"
    );
}

#[tokio::test]
async fn address_errors() {
    require_netns!();
    let topo = Topology::dual_stack_host();
    let k = topo.host.kernel();
    let a = Address::new(n("eth0"), "192.0.2.10".parse().unwrap(), 24);
    let e = k.apply(&Op::AddrAdd { address: a }).await.unwrap_err();
    check(
        &e,
        ErrorKind::AlreadyExists,
        "address 192.0.2.10/24 on eth0",
        libc::EEXIST,
    );
    let missing = Address::new(n("eth0"), "198.51.100.10".parse().unwrap(), 24);
    let e = k
        .apply(&Op::AddrDel { address: missing })
        .await
        .unwrap_err();
    check(
        &e,
        ErrorKind::NotFound,
        "address 198.51.100.10/24 on eth0",
        libc::EADDRNOTAVAIL,
    );
}

#[tokio::test]
async fn sysctl_and_tmpfs_errors() {
    require_netns!();
    let ns = TestNs::new();
    let k = ns.kernel();
    let key = SysctlKey::new(&n("nosuch"), Knob::Ipv6Autoconf);
    let e = k.read_sysctl(&key).await.unwrap_err();
    check(
        &e,
        ErrorKind::NotFound,
        "sysctl net.ipv6.conf.nosuch.autoconf",
        libc::ENOENT,
    );
    let e = k
        .apply(&Op::SysctlSet {
            key: key.clone(),
            value: "0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let lo = SysctlKey::new(&n("lo"), Knob::Ipv6AcceptDad);
    let e = k
        .apply(&Op::SysctlSet {
            key: lo,
            value: "not-a-number".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.errno),
        (ErrorKind::Invalid, Some(libc::EINVAL)),
        "{e}"
    );

    // Checked before any mount(2): a plain directory and a non-tmpfs mount are refused.
    // A fresh directory is surely no mount point (the temp dir itself may be a tmpfs).
    let dir = std::env::temp_dir().join(format!("eqt-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = k.read_tmpfs(&dir).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let op = Op::TmpfsResize {
        path: dir.clone(),
        size_bytes: 1 << 20,
    };
    let e = k.apply(&op).await.unwrap_err();
    assert_eq!(
        (e.kind, e.object),
        (ErrorKind::NotFound, format!("tmpfs {}", dir.display()))
    );
    std::fs::remove_dir(&dir).unwrap();
    let e = k.read_tmpfs(Path::new("/proc")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
}
