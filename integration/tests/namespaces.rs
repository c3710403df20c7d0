//! The backend acts on its own namespace only, from any runtime and any number of tasks,
//! and never moves the caller's threads.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
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

/// Why env-qemu enters namespaces by hand rather than with netns-rs (ARCHITECTURE.md, "Why
/// not netns-rs"), as a case that fails: a panic inside `NetNs::run` skips its switch
/// back, so the calling thread stays in the other namespace and everything it does later
/// (a netlink socket, a `/proc/thread-self/net` read) lands there. env-qemu's backend,
/// given a kernel call that fails inside the namespace, leaves its caller where it was.
#[test]
fn a_panic_inside_netns_rs_run_strands_the_caller_and_the_backend_does_not() {
    require_netns!();
    let ns = TestNs::new();
    // /run/netns/NAME is a bind mount of the namespace's nsfs file: its inode names it.
    let target = format!("net:[{}]", std::fs::metadata(ns.path()).unwrap().ino());
    let name = ns.name().to_string();
    // A thread of its own: the test leaves it stranded and ends it.
    let (before, after) = std::thread::spawn(move || {
        let before = own_netns();
        let netns = netns_rs::NetNs::get(&name).expect("netns-rs opens /run/netns/NAME");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            netns.run(|_| panic!("a failure while inside the namespace"))
        }));
        assert!(outcome.is_err(), "the closure's panic goes through run");
        (before, own_netns())
    })
    .join()
    .expect("the test thread ends");
    assert_ne!(before, target);
    assert_eq!(
        after, target,
        "netns-rs now restores the caller after a panic: revisit ARCHITECTURE.md's reason"
    );

    // The same failure through env-qemu's backend: an operation refused inside the
    // namespace, on this thread, from a runtime of the caller's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let here = own_netns();
    let k = ns.kernel();
    let refused = rt.block_on(k.apply(&Op::LinkDel {
        name: IfName::new("eqt-absent").unwrap(),
    }));
    assert!(refused.is_err(), "deleting an absent link is refused");
    assert_eq!(
        own_netns(),
        here,
        "the backend left its caller's thread alone"
    );
}
