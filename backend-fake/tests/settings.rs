//! IPv6 sysctls and tmpfs mounts.

mod common;

use std::path::{Path, PathBuf};

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{Knob, SysctlKey, Tmpfs};
use env_qemu_core::{ErrorKind, Kernel, Op};

fn key(dev: &str, knob: Knob) -> SysctlKey {
    SysctlKey::new(&n(dev), knob)
}

#[tokio::test]
async fn device_sysctls_start_from_default_and_go_with_the_device() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb")]);
    for k in [Knob::Ipv6Autoconf, Knob::Ipv6AcceptRa, Knob::Ipv6AcceptDad] {
        assert_eq!(sim.read_sysctl(&key("va", k)).await.unwrap(), "1");
    }
    assert_eq!(
        sim.read_sysctl(&key("all", Knob::Ipv6AcceptDad))
            .await
            .unwrap(),
        "0"
    );
    build(
        &sim,
        &[
            Op::SysctlSet {
                key: key("default", Knob::Ipv6Autoconf),
                value: "0".into(),
            },
            tap("tap0"),
        ],
    );
    assert_eq!(
        sim.read_sysctl(&key("tap0", Knob::Ipv6Autoconf))
            .await
            .unwrap(),
        "0"
    );
    assert_eq!(
        sim.read_sysctl(&key("va", Knob::Ipv6Autoconf))
            .await
            .unwrap(),
        "1"
    );
    build(&sim, &[Op::LinkDel { name: n("va") }]);
    let e = sim
        .read_sysctl(&key("va", Knob::Ipv6Autoconf))
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.errno), (ErrorKind::NotFound, Some(libc::ENOENT)));
    assert_eq!(e.object, "sysctl net.ipv6.conf.va.autoconf");
}

#[tokio::test]
async fn sysctl_values_are_integers() {
    let sim = SimKernel::new();
    build(&sim, &[veth("va", "vb")]);
    let k = key("va", Knob::Ipv6AcceptRa);
    build(
        &sim,
        &[Op::SysctlSet {
            key: k.clone(),
            value: " 2\n".into(),
        }],
    );
    assert_eq!(sim.read_sysctl(&k).await.unwrap(), "2");
    let e = refused(
        &sim,
        &Op::SysctlSet {
            key: k.clone(),
            value: "yes".into(),
        },
    );
    assert_eq!(e.errno, Some(libc::EINVAL));
    let e = refused(
        &sim,
        &Op::SysctlSet {
            key: key("nothere", Knob::Ipv6AcceptRa),
            value: "0".into(),
        },
    );
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn tmpfs_resizes_only_where_mounted_and_never_below_use() {
    let sim = SimKernel::new();
    let shm = PathBuf::from("/sim/dev/shm");
    sim.mount_tmpfs(shm.clone(), 64 << 20);
    build(
        &sim,
        &[Op::TmpfsResize {
            path: shm.clone(),
            size_bytes: 512 << 20,
        }],
    );
    let t = sim.read_tmpfs(&shm).await.unwrap();
    assert_eq!(
        t,
        Tmpfs {
            path: shm.clone(),
            size_bytes: 512 << 20
        }
    );
    sim.set_tmpfs_used(&shm, 100 << 20).unwrap();
    let e = refused(
        &sim,
        &Op::TmpfsResize {
            path: shm.clone(),
            size_bytes: 64 << 20,
        },
    );
    assert_eq!(e.errno, Some(libc::EINVAL));
    let other = Path::new("/sim/other");
    let e = refused(
        &sim,
        &Op::TmpfsResize {
            path: other.to_path_buf(),
            size_bytes: 1 << 20,
        },
    );
    assert_eq!((e.kind, e.errno), (ErrorKind::Invalid, Some(libc::EINVAL)));
    assert_eq!(
        sim.read_tmpfs(other).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}
