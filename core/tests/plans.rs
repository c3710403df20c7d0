//! Golden plans: what `start` and `add` do, as the `ip` commands `--dry-run` prints.

mod worlds;

use env_qemu_core::model::*;
use env_qemu_core::op::Op;
use env_qemu_core::plan::{plan_add, plan_start, PlanError};
use worlds::*;

#[test]
fn seed_start_plan() {
    let plan = plan_start(&seed(), &request("eth0")).unwrap();
    insta::assert_snapshot!("seed_start", plan.to_string());
}

#[test]
fn rich_start_plan() {
    let plan = plan_start(&rich(), &request("eth0")).unwrap();
    insta::assert_snapshot!("rich_start", plan.to_string());
}

#[test]
fn start_moves_every_route_before_deleting_any_address() {
    let plan = plan_start(&rich(), &request("eth0")).unwrap();
    let ops: Vec<&Op> = plan.ops().collect();
    let last_replace = ops
        .iter()
        .rposition(|o| matches!(o, Op::RouteReplace { .. }))
        .unwrap();
    let first_del = ops
        .iter()
        .position(|o| matches!(o, Op::AddrDel { .. }))
        .unwrap();
    let enslave = ops
        .iter()
        .position(|o| o.to_string() == "ip link set dev eth0 master lepont")
        .unwrap();
    let last_add = ops
        .iter()
        .rposition(|o| matches!(o, Op::AddrAdd { .. }))
        .unwrap();
    assert!(last_add < enslave && enslave < last_replace && last_replace < first_del);
    // Four routes go through eth0 besides the kernel's own: all four move, none via eth1.
    let replaced: Vec<String> = ops
        .iter()
        .filter_map(|o| match o {
            Op::RouteReplace { route } => Some(route.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(replaced.len(), 4, "{replaced:?}");
    assert!(replaced.iter().all(|r| r.contains("dev lepont")));
}

#[test]
fn shm_is_never_shrunk() {
    let mut s = seed();
    s.tmpfs = Some(shm("2G"));
    let plan = plan_start(&s, &request("eth0")).unwrap();
    assert!(!plan.ops().any(|o| matches!(o, Op::TmpfsResize { .. })));
    assert!(
        plan.notes.iter().any(|n| n.contains("already 2G")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn refusals_name_the_object() {
    let s = rich();
    let mut lo = nic(1, "lo", "00:00:00:00:00:00");
    lo.kind = LinkKind::Loopback;
    let mut with_lo = s.clone();
    with_lo.net.links.push(lo);
    assert_eq!(
        plan_start(&with_lo, &request("lo")).unwrap_err(),
        PlanError::UplinkIsLoopback(n("lo"))
    );
    assert_eq!(
        plan_start(&s, &request("eth9")).unwrap_err(),
        PlanError::NoSuchInterface(n("eth9"))
    );
    let mut taken = s.clone();
    let mut other = nic(4, "lepont", "52:54:00:00:00:01");
    other.kind = LinkKind::Bridge(BridgeInfo {
        stp: false,
        forward_delay: 0,
        mac_fixed: true,
    });
    taken.net.links.push(other);
    let e = plan_start(&taken, &request("eth0")).unwrap_err();
    assert_eq!(e, PlanError::BridgeNameTaken(n("lepont")));
    assert!(e.to_string().contains("--bridge"), "{e}");
    let mut enslaved = s;
    enslaved.net.links[1].master = Some(n("br9"));
    assert!(matches!(
        plan_start(&enslaved, &request("eth1")).unwrap_err(),
        PlanError::UplinkEnslaved { .. }
    ));
}

#[test]
fn appended_routes_are_refused_not_mangled() {
    let mut s = seed();
    let r = s.net.routes[0].clone();
    s.net.routes.push(Route {
        gateway: Some(ip("192.168.1.2")),
        ..r
    });
    let e = plan_start(&s, &request("eth0")).unwrap_err();
    assert!(matches!(e, PlanError::AppendedRoute(_)), "{e}");
}

#[test]
fn add_only_takes_taps() {
    let mut s = seed();
    let mut br = nic(5, "lepont", "52:54:00:12:34:56");
    br.kind = LinkKind::Bridge(BridgeInfo {
        stp: false,
        forward_delay: 0,
        mac_fixed: true,
    });
    br.mtu = 9000;
    let mut tap = nic(6, "tap0", "fe:00:00:00:00:01");
    tap.kind = LinkKind::Tap(TapInfo::default());
    tap.up = false;
    s.net
        .links
        .extend([br, tap, nic(7, "veth0", "02:00:00:00:00:07")]);
    let (plan, rec) = plan_add(&s, &n("lepont"), &n("eth0"), &n("tap0")).unwrap();
    insta::assert_snapshot!("add_tap0", plan.to_string());
    assert_eq!((rec.mtu, rec.up), (1500, false));
    assert!(matches!(
        plan_add(&s, &n("lepont"), &n("eth0"), &n("veth0")).unwrap_err(),
        PlanError::NotATap { .. }
    ));
    assert_eq!(
        plan_add(&s, &n("lepont"), &n("eth0"), &n("lepont")).unwrap_err(),
        PlanError::TapIsBridge(n("lepont"))
    );
    assert_eq!(
        plan_add(&s, &n("lepont"), &n("eth0"), &n("eth0")).unwrap_err(),
        PlanError::TapIsUplink(n("eth0"))
    );
}

#[test]
fn a_wireless_uplink_is_refused_with_the_reason() {
    let mut s = seed();
    s.net.links[0].kind = LinkKind::Wireless;
    let e = plan_start(&s, &request("eth0")).unwrap_err();
    assert_eq!(e, PlanError::UplinkIsWireless(n("eth0")));
    let msg = e.to_string();
    assert!(
        msg.contains("Wi-Fi") && msg.contains("wired uplink"),
        "{msg}"
    );
}
