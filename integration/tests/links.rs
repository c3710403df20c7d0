//! Every link operation through `NetlinkKernel::apply`, read back with `ip -j`.

use env_qemu_core::model::{BridgeInfo, IfName, LinkKind, MacAddr, TapInfo};
use env_qemu_core::{Kernel, LinkChange, LinkSpec, Op};
use env_qemu_integration::{require_netns, require_tun, TestNs};

fn n(s: &str) -> IfName {
    IfName::new(s).unwrap()
}

const MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0xb0]);

fn bridge(name: &str, mac: Option<MacAddr>, mtu: Option<u32>, stp: bool, fd: u32) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n(name),
            mac,
            mtu,
            stp,
            forward_delay: fd,
        },
    }
}

fn set(name: &str, change: LinkChange) -> Op {
    Op::LinkSet {
        name: n(name),
        change,
    }
}

#[tokio::test]
async fn bridge_with_mac_mtu_and_stp_off() {
    require_netns!();
    let ns = TestNs::new();
    let k = ns.kernel();
    k.apply(&bridge("br0", Some(MAC), Some(1400), false, 0))
        .await
        .unwrap();
    let state = ns.read_state();
    let br = state.link(&n("br0")).unwrap();
    assert_eq!(
        br.kind,
        LinkKind::Bridge(BridgeInfo {
            stp: false,
            forward_delay: 0,
            mac_fixed: true
        })
    );
    assert_eq!((br.mac, br.mtu, br.up), (MAC, 1400, false));
    let json = ns.ip_json("-d link show br0");
    assert_eq!(json[0]["linkinfo"]["info_data"]["stp_state"], 0);
}

#[tokio::test]
async fn bridge_without_mac_and_stp_on() {
    require_netns!();
    let ns = TestNs::new();
    let k = ns.kernel();
    k.apply(&bridge("br1", None, None, true, 1500))
        .await
        .unwrap();
    // Enabling STP clamps forward_delay to at least 200 (2 s).
    k.apply(&bridge("br2", None, None, true, 0)).await.unwrap();
    let state = ns.read_state();
    let info = |name| match &state.link(&n(name)).unwrap().kind {
        LinkKind::Bridge(b) => *b,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        info("br1"),
        BridgeInfo {
            stp: true,
            forward_delay: 1500,
            mac_fixed: false
        }
    );
    assert_eq!(info("br2").forward_delay, 200);
}

#[tokio::test]
async fn veth_pair_both_down() {
    require_netns!();
    let ns = TestNs::new();
    let op = Op::LinkAdd {
        spec: LinkSpec::Veth {
            name: n("v0"),
            peer: n("v0p"),
        },
    };
    ns.kernel().apply(&op).await.unwrap();
    let state = ns.read_state();
    for end in ["v0", "v0p"] {
        let l = state.link(&n(end)).unwrap();
        assert_eq!((&l.kind, l.up), (&LinkKind::Veth, false), "{end}");
    }
}

#[tokio::test]
async fn tap_with_owner_and_group() {
    require_tun!();
    let ns = TestNs::new();
    let k = ns.kernel();
    let tap = |name: &str, owner, group| Op::LinkAdd {
        spec: LinkSpec::Tap {
            name: n(name),
            owner,
            group,
        },
    };
    k.apply(&tap("tap0", Some(4242), Some(4343))).await.unwrap();
    k.apply(&tap("tap1", None, None)).await.unwrap();
    let state = ns.read_state();
    let t0 = state.link(&n("tap0")).unwrap();
    assert_eq!(
        t0.kind,
        LinkKind::Tap(TapInfo {
            owner: Some(4242),
            group: Some(4343),
            persist: true
        })
    );
    assert_eq!((t0.up, t0.carrier), (false, false));
    assert_eq!(
        state.link(&n("tap1")).unwrap().kind,
        LinkKind::Tap(TapInfo {
            owner: None,
            group: None,
            persist: true
        })
    );
    // Created with IFF_VNET_HDR and without packet information, as QEMU expects.
    let data = &ns.ip_json("-d link show tap0")[0]["linkinfo"]["info_data"];
    assert_eq!(
        (data["vnet_hdr"].as_bool(), data["pi"].as_bool()),
        (Some(true), Some(false))
    );
}

#[tokio::test]
async fn set_up_down_mtu_mac_master_nomaster() {
    require_netns!();
    let ns = TestNs::new();
    ns.ip("link add br0 type bridge");
    ns.ip("link add v0 type veth peer name v0p");
    let k = ns.kernel();
    let mac = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    for change in [
        LinkChange::Up,
        LinkChange::Mtu(1280),
        LinkChange::Mac(mac),
        LinkChange::Master(n("br0")),
    ] {
        k.apply(&set("v0", change)).await.unwrap();
    }
    let v0 = ns.read_state().link(&n("v0")).unwrap().clone();
    assert_eq!((v0.up, v0.mtu, v0.mac), (true, 1280, mac));
    assert_eq!(v0.master, Some(n("br0")));

    k.apply(&set("v0", LinkChange::NoMaster)).await.unwrap();
    k.apply(&set("v0", LinkChange::Down)).await.unwrap();
    let v0 = ns.read_state().link(&n("v0")).unwrap().clone();
    assert_eq!((v0.up, v0.master), (false, None));
}

#[tokio::test]
async fn delete_bridge_veth_and_tap() {
    require_tun!();
    let ns = TestNs::new();
    ns.ip("link add br0 type bridge");
    ns.ip("link add v0 type veth peer name v0p");
    ns.ip("tuntap add dev tap0 mode tap");
    let k = ns.kernel();
    for name in ["br0", "v0", "tap0"] {
        k.apply(&Op::LinkDel { name: n(name) }).await.unwrap();
    }
    let names: Vec<String> = ns
        .read_state()
        .links
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    // Deleting one end of a veth deletes its peer.
    assert_eq!(names, ["lo"]);
}

#[tokio::test]
async fn setting_a_bridge_mac_fixes_it() {
    require_tun!();
    let ns = TestNs::new();
    let k = ns.kernel();
    k.apply(&bridge("br0", None, None, false, 0)).await.unwrap();
    let fixed = |ns: &TestNs| match ns.read_state().link(&n("br0")).unwrap().kind {
        LinkKind::Bridge(b) => b.mac_fixed,
        _ => unreachable!(),
    };
    assert!(!fixed(&ns));
    k.apply(&set("br0", LinkChange::Mac(MAC))).await.unwrap();
    assert!(fixed(&ns));
    // A port with a lower MAC no longer changes it.
    ns.ip("tuntap add dev tap0 mode tap");
    ns.ip("link set tap0 address 02:00:00:00:00:01 master br0");
    let state = ns.read_state();
    assert_eq!(state.link(&n("br0")).unwrap().mac, MAC);
    // A tap without a reader is up without carrier.
    k.apply(&set("tap0", LinkChange::Up)).await.unwrap();
    let tap = ns.read_state().link(&n("tap0")).unwrap().clone();
    assert_eq!((tap.up, tap.carrier), (true, false));
}
