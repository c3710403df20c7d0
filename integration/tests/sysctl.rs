//! Sysctls are read and written in the kernel's namespace, not the caller's.

use env_qemu_core::model::{IfName, Knob, SysctlKey};
use env_qemu_core::{Kernel, Op};
use env_qemu_integration::{require_netns, TestNs};

#[tokio::test]
async fn set_then_read_inside_the_namespace() {
    require_netns!();
    let ns = TestNs::new();
    // A device that exists only in the test namespace: a write that reached the
    // caller's namespace would fail with ENOENT instead.
    ns.ip("link add eqtsys0 type veth peer name eqtsys1");
    let dev = IfName::new("eqtsys0").unwrap();
    let k = ns.kernel();
    for knob in [Knob::Ipv6Autoconf, Knob::Ipv6AcceptRa, Knob::Ipv6AcceptDad] {
        let key = SysctlKey::new(&dev, knob);
        assert_eq!(k.read_sysctl(&key).await.unwrap(), knob.kernel_default());
        k.apply(&Op::SysctlSet {
            key: key.clone(),
            value: "0".into(),
        })
        .await
        .unwrap();
        assert_eq!(k.read_sysctl(&key).await.unwrap(), "0");
        assert_eq!(ns.sysctl(&key.dotted()), "0");
    }
}

#[tokio::test]
async fn reads_see_the_namespace_value() {
    require_netns!();
    let ns = TestNs::new();
    ns.set_sysctl("net.ipv6.conf.lo.accept_dad", "0");
    let key = SysctlKey::new(&IfName::new("lo").unwrap(), Knob::Ipv6AcceptDad);
    assert_eq!(ns.kernel().read_sysctl(&key).await.unwrap(), "0");
    ns.set_sysctl("net.ipv6.conf.lo.accept_dad", "2");
    assert_eq!(ns.kernel().read_sysctl(&key).await.unwrap(), "2");
}
