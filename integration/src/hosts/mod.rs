//! Hosts whose NIC is owned by real daemons, confined in throwaway namespaces.
//!
//! ```text
//!   host (ClientHost)                 router (Lan)                          far
//!   eth0 02:00:5e:10:00:01 ── veth ── hN ─ lan0 (bridge) 198.51.100.1/24   far0 203.0.113.1/24 ── veth ── eth0 203.0.113.2/24
//!   owned by dhcpcd, dhclient,               2001:db8:42::1/64              2001:db8:f::1/64              2001:db8:f::2/64
//!   NetworkManager or kernel SLAAC     dnsmasq: DHCPv4 .100–.150, RA     forwarding on, -6 default via far
//! ```
//!
//! - [`Lan`]: the LAN's router namespace running dnsmasq (DHCPv4 with a chosen lease time,
//!   router advertisements with a chosen preference and interval) in a private mount
//!   namespace, its lease file and log in a per-test directory; and a far host one hop
//!   behind the router.
//! - [`ClientHost`]: the host namespace. Its daemons run inside a [`Holder`]: a process
//!   that owns private mount and UTS namespaces set up as docs/kernel-behaviour.md (Q1)
//!   describes (tmpfs `/run` with the netns bound under `/run/netns`, tmpfs
//!   `/var/lib/dhcpcd`, `/var/lib/dhcp`, an overlay over `/etc`; for NetworkManager
//!   also tmpfs `/etc/NetworkManager`, `/var/lib/NetworkManager`, `/sys` read-only and a
//!   private dbus-daemon). Every command is `nsenter -t HOLDER -n -m -u`, so it sees the
//!   host's private `/run` (dhcpcd's socket, the D-Bus socket) as a real host's tools
//!   would.
//! - [`Pinger`] probes the host from the LAN and the far host every N seconds and counts
//!   losses; [`streams_during`] runs 1,000/s UDP streams ([`crate::stream`]) around a
//!   command.
//! - [`Watched`]: a host up and watched (its settled state, an `ip monitor`, a pinger, log
//!   marks), the start of every real-host scenario of the binary's tests.
//! - [`Footprint`]: what the daemons could leave on the machine (files under /etc, /run,
//!   /var/lib, the hostname, mounts), to prove before/after that they left nothing.
//!
//! Every process a host or LAN started is ended by PID when it is dropped (also on a
//! panic), after `ip netns identify PID` named the test's namespace ([`process`]).
//! Namespaces are [`crate::TestNs`] (`eqt-<pid>-<n>`), covered by the stale-namespace
//! sweep and `ci/check-leftovers`. Private mounts are named `env-qemu-test-eqt-<pid>-<n>-…`
//! after the namespace they serve: every daemon's /proc/PID/mountinfo names its test, and
//! `ci/check-leftovers` reports one whose test process is gone ([`process::test_of`]).

mod client;
mod footprint;
mod holder;
mod lan;
mod logfile;
pub mod probe;
pub mod process;
mod watched;

pub use client::{
    ClientHost, EnvQemuRun, HostSpec, Manager, Up, V4Lease, V6Addr, NETWORKD_PROFILE_PATH,
};
pub use footprint::Footprint;
pub use holder::{Holder, HolderKind};
pub use lan::{DhcpEvent, Lan, LanSpec, Lease, RaPreference};
pub use logfile::{LogFile, LogMark};
pub use probe::{streams_during, PingReport, Pinger};
pub use watched::{assert_tap_unchanged, KilledStart, Watched};

/// The host's NIC, inside its namespace.
pub const UPLINK: &str = "eth0";
/// eth0's MAC: fixed, so dnsmasq's lease, dhcpcd's IAID and the IPv6 addresses are the
/// same in every run.
pub const HOST_MAC: &str = "02:00:5e:10:00:01";
/// The router's LAN bridge `lan0` (its link-local is `fe80::5eff:fe10:2`).
pub const ROUTER_MAC: &str = "02:00:5e:10:00:02";
pub const ROUTER_V4: &str = "198.51.100.1";
pub const ROUTER_V6: &str = "2001:db8:42::1";
pub const LAN_V4_PREFIX: &str = "198.51.100.0/24";
pub const LAN_V6_PREFIX: &str = "2001:db8:42::/64";
/// dnsmasq's DHCPv4 pool.
pub const POOL: (&str, &str) = ("198.51.100.100", "198.51.100.150");
pub const FAR_ROUTER_V4: &str = "203.0.113.1";
pub const FAR_ROUTER_V6: &str = "2001:db8:f::1";
/// The far host, one hop behind the router.
pub const FAR_V4: &str = "203.0.113.2";
pub const FAR_V6: &str = "2001:db8:f::2";
