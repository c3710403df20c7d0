//! Spanning tree: the forward delay and ports held back until time passes.

mod common;

use common::fixtures::*;
use env_qemu_backend_fake::{PortState, SimKernel};
use env_qemu_core::model::LinkKind;
use env_qemu_core::{ErrorKind, LinkSpec, Op};

#[test]
fn stp_holds_a_new_port_until_time_passes() {
    let sim = SimKernel::new();
    let br = Op::LinkAdd {
        spec: LinkSpec::Bridge {
            name: n("br0"),
            mac: Some(mac("02:00:00:00:00:50")),
            mtu: None,
            stp: true,
            forward_delay: 0,
        },
    };
    build(
        &sim,
        &[
            br,
            up("br0"),
            veth("va", "vb"),
            master("va", "br0"),
            up("va"),
            up("vb"),
        ],
    );
    assert!(
        matches!(link(&sim.net(), "br0").kind, LinkKind::Bridge(b) if b.stp && b.forward_delay == 200)
    );
    assert_eq!(sim.port_state(&n("va")), Some(PortState::Listening));
    assert!(!link(&sim.net(), "br0").carrier);
    sim.advance_time();
    assert_eq!(sim.port_state(&n("va")), Some(PortState::Forwarding));
    assert!(link(&sim.net(), "br0").carrier);
}

#[test]
fn stp_clamps_the_forward_delay_and_without_stp_keeps_it() {
    let sim = SimKernel::new();
    for (name, stp, fd, want) in [
        ("b1", true, 0, 200),
        ("b2", true, 5000, 3000),
        ("b3", false, 5000, 5000),
        ("b4", false, 0, 0),
    ] {
        let op = Op::LinkAdd {
            spec: LinkSpec::Bridge {
                name: n(name),
                mac: None,
                mtu: None,
                stp,
                forward_delay: fd,
            },
        };
        build(&sim, &[op]);
        assert!(
            matches!(link(&sim.net(), name).kind, LinkKind::Bridge(b) if b.forward_delay == want),
            "{name}"
        );
    }
    let e = refused(&sim, &bridge("b1", None));
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
}
