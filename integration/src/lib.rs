//! The real-kernel test harness of env-qemu: throwaway network namespaces ([`TestNs`]),
//! a small LAN topology ([`topology`]), an `ip -j` reader that builds a
//! [`env_qemu_core::model::NetState`] without the netlink backend ([`ipjson`]), a private
//! tmpfs ([`TestTmpfs`]), the skip policy ([`require_netns!`], [`require_tun!`]), env-qemu's
//! commands on a test namespace ([`Session`]) and a fixed-rate UDP echo for blackout
//! measurements ([`stream`]); hosts whose NIC is owned by real daemons (dhcpcd, dhclient,
//! NetworkManager, kernel SLAAC) confined in namespaces, on a LAN with dnsmasq ([`hosts`]).
//!
//! Nothing here touches the machine's own network namespace or /dev/shm.

pub mod cmd;
pub mod compare;
pub mod conformance;
pub mod dnsmasq;
pub mod guard;
pub mod guest;
pub mod host_lab;
pub mod hosts;
pub mod ipjson;
pub mod netns;
pub mod probe;
pub mod qemu;
pub mod session;
pub mod skip;
pub mod stream;
pub mod tmpfs;
pub mod topology;

pub use compare::{assert_dump_matches_ip, same_state};
pub use netns::TestNs;
pub use session::Session;
pub use tmpfs::TestTmpfs;
pub use topology::{HostConfig, Topology, TopologySpec};
