//! The harness itself: namespaces go away on panic, stale ones are collected, the
//! topology routes between its namespaces.

use env_qemu_integration::cmd::run;
use env_qemu_integration::netns::remove_stale;
use env_qemu_integration::probe::udp_echo;
use env_qemu_integration::topology::{FAR_HOST_V4, FAR_HOST_V6};
use env_qemu_integration::{require_netns, HostConfig, TestNs, Topology, TopologySpec};

fn listed(name: &str) -> bool {
    run("ip", &["netns", "list"])
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn namespace_removed_when_the_test_panics() {
    require_netns!();
    let joined = std::thread::spawn(|| {
        let ns = TestNs::new();
        std::fs::write(
            std::env::temp_dir().join(format!("eqt-name-{}", std::process::id())),
            ns.name(),
        )
        .unwrap();
        panic!("deliberate");
    })
    .join();
    assert!(joined.is_err());
    let file = std::env::temp_dir().join(format!("eqt-name-{}", std::process::id()));
    let name = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(file).unwrap();
    assert!(!listed(&name), "{name} survived the panic");
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    require_netns!();
    // Above any pid_max: surely no such process.
    let name = "eqt-4999999-0";
    run("ip", &["netns", "add", name]).unwrap();
    let mine = TestNs::new();
    remove_stale();
    assert!(!listed(name));
    assert!(
        listed(mine.name()),
        "a live process's namespace was removed"
    );
}

#[test]
fn topology_routes_host_to_far() {
    require_netns!();
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: true,
    });
    let far = topo.far.as_ref().unwrap();
    for target in [FAR_HOST_V4, FAR_HOST_V6] {
        let ok = udp_echo(&topo.host, far, target.parse().unwrap(), 10);
        assert!(ok, "no echo from {target}");
    }
    // Without a default route the far host is out of reach.
    topo.host.ip("route del default");
    assert!(!udp_echo(&topo.host, far, FAR_HOST_V4.parse().unwrap(), 2));
}
