//! The backend acts on its own namespace only, from any runtime and any number of tasks,
//! and never moves the caller's threads.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::model::IfName;
use env_qemu_core::{Kernel, LinkSpec, Op};
use env_qemu_integration::cmd::run;
use env_qemu_integration::{assert_dump_matches_ip, require_netns, TestNs};

fn veth(name: &str) -> Op {
    Op::LinkAdd {
        spec: LinkSpec::Veth {
            name: IfName::new(name).unwrap(),
            peer: IfName::new(format!("{name}p")).unwrap(),
        },
    }
}

fn own_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_two_namespaces_nothing_leaks() {
    require_netns!();
    let (a, b) = (TestNs::new(), TestNs::new());
    let (ka, kb) = (Arc::new(a.kernel()), Arc::new(b.kernel()));
    let pid = std::process::id();
    let mut tasks = Vec::new();
    for i in 0..16 {
        for (k, tag) in [(ka.clone(), "a"), (kb.clone(), "b")] {
            let name = format!("q{tag}{}x{i}", pid % 10000);
            tasks.push(tokio::spawn(async move {
                k.apply(&veth(&name)).await.unwrap();
                k.dump().await.unwrap();
                name
            }));
        }
    }
    let main_ns = own_netns();
    for t in tasks {
        let name = t.await.unwrap();
        let (mine, other) = if name.starts_with("qa") {
            (&a, &b)
        } else {
            (&b, &a)
        };
        mine.ip(&format!("link show {name}"));
        assert!(other.try_ip(&format!("link show {name}")).is_err());
        // Not in the caller's (the machine's) namespace either.
        assert!(
            run("ip", &["link", "show", &name]).is_err(),
            "{name} leaked"
        );
    }
    assert_eq!(own_netns(), main_ns);
    assert_eq!(ka.dump().await.unwrap().links.len(), 33);
}

#[tokio::test]
async fn from_an_open_fd() {
    require_netns!();
    let ns = TestNs::new();
    ns.ip("link add br0 type bridge");
    let fd = OwnedFd::from(File::open(ns.path()).unwrap());
    let k = NetlinkKernel::from_netns_fd(fd).unwrap();
    assert_dump_matches_ip(&ns, &k).await;
}

#[tokio::test]
async fn current_is_the_callers_namespace() {
    require_netns!();
    // Read-only: lists the machine's own links and compares names with `ip`.
    let k = NetlinkKernel::current().unwrap();
    let mut dumped: Vec<String> = k
        .dump()
        .await
        .unwrap()
        .links
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    let out = run("ip", &["-j", "link", "show"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut listed: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    dumped.sort();
    listed.sort();
    assert_eq!(dumped, listed);
}

#[tokio::test]
async fn bad_namespace_paths() {
    require_netns!();
    let e = NetlinkKernel::in_netns_path("/run/netns/eqt-does-not-exist".as_ref()).unwrap_err();
    assert_eq!(e.kind, env_qemu_core::ErrorKind::NotFound, "{e}");
    // A file that is not a namespace: setns refuses with EINVAL.
    let e = NetlinkKernel::in_netns_path("/proc/self/status".as_ref()).unwrap_err();
    assert_eq!(e.kind, env_qemu_core::ErrorKind::Invalid, "{e}");
}

#[test]
fn usable_without_a_runtime_of_the_callers() {
    require_netns!();
    let ns = TestNs::new();
    let k = ns.kernel();
    // Two unrelated runtimes use the same kernel one after the other.
    for _ in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let links = rt.block_on(k.dump()).unwrap().links;
        assert_eq!(links.len(), 1);
    }
}
