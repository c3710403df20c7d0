//! Fault injection and crashes, through the async `Kernel` interface.

mod common;

use std::path::Path;

use common::fixtures::*;
use env_qemu_backend_fake::SimKernel;
use env_qemu_core::model::{Knob, SysctlKey};
use env_qemu_core::{ErrorKind, Kernel};

#[tokio::test]
async fn fail_nth_fails_exactly_that_call_and_changes_nothing() {
    let sim = with_nic();
    let ops = [
        add(addr("eth0", "192.0.2.1/24")),
        add(addr("eth0", "192.0.2.2/24")),
        add(addr("eth0", "192.0.2.3/24")),
    ];
    sim.fail_nth(2, libc::EBUSY);
    sim.apply(&ops[0]).await.unwrap();
    let before = sim.net();
    let e = sim.apply(&ops[1]).await.unwrap_err();
    assert_eq!((e.kind, e.errno), (ErrorKind::Busy, Some(libc::EBUSY)));
    assert_eq!(e.object, "address 192.0.2.2/24 on eth0");
    assert_eq!(sim.net(), before);
    sim.apply(&ops[1]).await.unwrap();
    sim.apply(&ops[2]).await.unwrap();
    assert_eq!(sim.mutations(), 3);
}

#[tokio::test]
async fn a_natural_refusal_counts_as_a_call_but_not_as_a_mutation() {
    let sim = with_nic();
    sim.fail_nth(2, libc::EIO);
    let e = sim
        .apply(&rdel(route("10.0.0.0/8", None, None)))
        .await
        .unwrap_err();
    assert_eq!(e.errno, Some(libc::ESRCH));
    assert_eq!(
        sim.apply(&add(addr("eth0", "192.0.2.1/24")))
            .await
            .unwrap_err()
            .errno,
        Some(libc::EIO)
    );
    assert_eq!(sim.mutations(), 0);
}

#[tokio::test]
async fn a_crash_refuses_every_call_until_revived() {
    let sim = with_nic();
    sim.mount_tmpfs("/sim/shm", 64 << 20);
    sim.crash_after(1);
    sim.apply(&add(addr("eth0", "192.0.2.1/24"))).await.unwrap();
    assert!(sim.is_crashed());
    let frozen = sim.net();
    let key = SysctlKey::new(&n("eth0"), Knob::Ipv6Autoconf);
    let errors = [
        sim.apply(&add(addr("eth0", "192.0.2.2/24")))
            .await
            .unwrap_err(),
        sim.dump().await.unwrap_err(),
        sim.read_sysctl(&key).await.unwrap_err(),
        sim.read_tmpfs(Path::new("/sim/shm")).await.unwrap_err(),
    ];
    assert!(
        errors.iter().all(|e| e.kind == ErrorKind::Unavailable),
        "{errors:?}"
    );
    // Another handle is the same kernel: as dead for it as for the first.
    let other = sim.clone();
    assert!(other.dump().await.is_err());
    assert_eq!(sim.net(), frozen, "the test's own view still works");
    sim.revive();
    assert_eq!(other.dump().await.unwrap(), frozen);
    assert_eq!(sim.mutations(), 1);
}

#[tokio::test]
async fn crash_after_0_is_immediate_and_clear_faults_disarms_the_rest() {
    let sim = SimKernel::new();
    sim.crash_after(0);
    assert!(sim.dump().await.is_err());
    sim.revive();
    sim.fail_nth(1, libc::EBUSY);
    sim.crash_after(5);
    sim.clear_faults();
    for i in 0..6 {
        sim.apply(&veth(&format!("a{i}"), &format!("b{i}")))
            .await
            .unwrap();
    }
    assert!(!sim.is_crashed());
}

#[tokio::test]
async fn world_building_and_forks_bypass_faults() {
    let sim = with_nic();
    sim.fail_nth(1, libc::EBUSY);
    sim.apply_now(&add(addr("eth0", "192.0.2.1/24"))).unwrap();
    assert_eq!(sim.mutations(), 0);
    let fork = sim.fork();
    fork.apply(&add(addr("eth0", "192.0.2.2/24")))
        .await
        .unwrap();
    assert_eq!(addrs(&sim.net(), "eth0").len(), 2, "a fork is independent");
    assert_eq!(addrs(&fork.net(), "eth0").len(), 3);
    assert!(
        sim.apply(&add(addr("eth0", "192.0.2.3/24"))).await.is_err(),
        "the fault is still armed"
    );
}
