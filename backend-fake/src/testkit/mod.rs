//! Tools for checking your own network scripts against the simulated kernel: build a host
//! world ([`world`]), read everything a restore must bring back, normalised for comparison
//! ([`full_state`]), list what differs between two such readings ([`differences`]), turn
//! `ip` command lines into operations ([`script`]), and check that the LAN's traffic to
//! the host still flows ([`traffic`]).
//!
//! The usual check of a teardown script: build a world, read it, run your setup (or
//! env-qemu's `start`), run your teardown, read again, and expect no difference.
//!
//! ```
//! use env_qemu_backend_fake::testkit::{self, script::Script, world::WorldSpec};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // eth0 with 192.0.2.10/26 and a default route via 192.0.2.1.
//! let sim = testkit::world::build(&WorldSpec::seed());
//! let before = testkit::full_state(&sim).await;
//! let setup = "ip link add lepont type bridge
//!              ip link set dev eth0 master lepont
//!              ip addr del 192.0.2.10/26 dev eth0
//!              ip addr add 192.0.2.10/26 brd + dev lepont
//!              ip link set dev lepont up
//!              ip route add default via 192.0.2.1 dev lepont proto dhcp metric 100";
//! Script::parse(setup).unwrap().apply(&sim).unwrap();
//! // A teardown that only deletes the bridge loses eth0's address and route.
//! Script::parse("ip link del lepont").unwrap().apply(&sim).unwrap();
//! let after = testkit::full_state(&sim).await;
//! let lost: Vec<String> = testkit::differences(&before, &after)
//!     .iter()
//!     .map(|d| d.to_string())
//!     .collect();
//! assert_eq!(lost, [
//!     "- address 192.0.2.10/26 dev eth0 brd 192.0.2.63 scope global",
//!     "- route default via 192.0.2.1 dev eth0 proto dhcp scope global metric 100",
//!     "- route 192.0.2.0/26 dev eth0 proto kernel scope link src 192.0.2.10 metric 0",
//! ]);
//! # });
//! ```

pub mod script;
pub mod traffic;
pub mod world;

use std::fmt;

use std::path::PathBuf;

use env_qemu_core::commands::{self, CommandError, Env, Report};
use env_qemu_core::model::{
    format_size, Address, IfName, Link, LinkKind, Neighbour, NudState, Snapshot,
};
use env_qemu_core::observe::observe;
use env_qemu_core::plan::{ShmRequest, StartRequest, VmTaps};
use env_qemu_core::store::StateStore;
use env_qemu_core::Kernel;

use crate::SimKernel;

/// The mount point of the shm tmpfs in the worlds of [`world::build`].
pub const SHM: &str = "/sim/dev/shm";

/// An interface name from a literal, for fixtures: panics if `s` is not a valid name.
pub fn ifname(s: &str) -> IfName {
    IfName::new(s).unwrap_or_else(|e| panic!("{s:?} is not an interface name: {e}"))
}

/// Everything env-qemu may touch, read from `sim` and normalised for comparison: links
/// (without ifindexes), addresses and routes in a stable order, every device's IPv6
/// knobs, the [`SHM`] tmpfs if mounted, and the static (`nud permanent`) neighbour
/// entries. Learnt neighbour entries are the kernel's cache, not configuration: left out.
///
/// # Panics
/// If `sim` has crashed ([`SimKernel::crash_after`]): revive it first.
pub async fn full_state(sim: &SimKernel) -> Snapshot {
    let net = sim.net();
    let devs: Vec<IfName> = net.links.iter().map(|l| l.name.clone()).collect();
    let refs: Vec<&IfName> = devs.iter().collect();
    let mut snap = observe(sim, &refs, Some(std::path::Path::new(SHM)))
        .await
        .expect("the simulated kernel answers when it has not crashed");
    snap.neighbours = sim
        .neighbours_now()
        .into_iter()
        .filter(|n| n.state == NudState::Permanent)
        .collect();
    snap.normalized()
}

/// `env-qemu start UPLINK` with the bridge `lepont` and, given `shm_mb`, the [`SHM`]
/// tmpfs grown to that many MiB.
pub fn start_request(uplink: &str, shm_mb: Option<u64>) -> StartRequest {
    StartRequest {
        uplink: ifname(uplink),
        bridge: ifname("lepont"),
        shm: shm_mb.map(|mb| ShmRequest {
            path: PathBuf::from(SHM),
            size_bytes: mb << 20,
        }),
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    }
}

/// Runs `env-qemu start` as the CLI does, on `kernel` (a [`SimKernel`], or a wrapper
/// around one) with its state in `store`, on a host where no program manages the NIC.
pub async fn start(
    kernel: &dyn Kernel,
    store: &dyn StateStore,
    req: &StartRequest,
) -> Result<Report, CommandError> {
    let mut quiet = |_: env_qemu_core::exec::Event<'_>| {};
    let mut env = env(kernel, store, &mut quiet);
    commands::start(&mut env, req).await
}

/// Runs `env-qemu stop` (`--force`: VMs' taps detached) as the CLI does; see [`start`].
pub async fn stop(kernel: &dyn Kernel, store: &dyn StateStore) -> Result<Report, CommandError> {
    let mut quiet = |_: env_qemu_core::exec::Event<'_>| {};
    let mut env = env(kernel, store, &mut quiet);
    commands::stop(&mut env, VmTaps::Detach).await
}

fn env<'a>(
    kernel: &'a dyn Kernel,
    store: &'a dyn StateStore,
    observer: &'a mut (dyn FnMut(env_qemu_core::exec::Event<'_>) + Send),
) -> Env<'a> {
    Env {
        kernel,
        host: &env_qemu_core::host::NoHost,
        store,
        netns: "sim".into(),
        observer,
    }
}

/// One object that is in one reading and not the other (see [`differences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delta {
    /// In the expected state only (shown `- object`): lost.
    Missing(String),
    /// In the found state only (shown `+ object`): left behind or changed.
    Extra(String),
}

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delta::Missing(o) => write!(f, "- {o}"),
            Delta::Extra(o) => write!(f, "+ {o}"),
        }
    }
}

/// Every object (link, address, route, static neighbour, IPv6 knob, tmpfs) that differs
/// between `expected` and `found`, each written as one line close to `ip`'s words: a
/// changed object appears twice, its expected form [`Delta::Missing`] and its found form
/// [`Delta::Extra`]. Empty exactly when the two normalised readings are equal.
pub fn differences(expected: &Snapshot, found: &Snapshot) -> Vec<Delta> {
    let (a, b) = (lines(&expected.normalized()), lines(&found.normalized()));
    let mut out: Vec<Delta> = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|l| Delta::Missing(l.clone()))
        .collect();
    out.extend(
        b.iter()
            .filter(|l| !a.contains(l))
            .map(|l| Delta::Extra(l.clone())),
    );
    if out.is_empty() && expected.normalized() != found.normalized() {
        // A field the lines do not show (a program managing a device): show it all.
        out.push(Delta::Missing(format!("{expected:?}")));
        out.push(Delta::Extra(format!("{found:?}")));
    }
    out
}

fn lines(s: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = s.net.links.iter().map(link_line).collect();
    out.extend(s.net.addresses.iter().map(address_line));
    out.extend(
        s.net
            .routes
            .iter()
            .map(|r| format!("route {}", r.ip_args())),
    );
    out.extend(s.neighbours.iter().map(neighbour_line));
    out.extend(
        s.sysctls
            .iter()
            .map(|v| format!("sysctl {}={}", v.key.dotted(), v.value)),
    );
    out.extend(s.tmpfs.iter().map(|t| {
        format!(
            "tmpfs {} size {}",
            t.path.display(),
            format_size(t.size_bytes)
        )
    }));
    out
}

fn link_line(l: &Link) -> String {
    let mut s = format!("link {} {} {} mtu {}", l.name, l.kind.name(), l.mac, l.mtu);
    match &l.kind {
        LinkKind::Bridge(b) => s.push_str(&format!(
            " stp_state {} forward_delay {}",
            u8::from(b.stp),
            b.forward_delay
        )),
        LinkKind::Tap(t) => {
            if let Some(u) = t.owner {
                s.push_str(&format!(" user {u}"));
            }
            if let Some(g) = t.group {
                s.push_str(&format!(" group {g}"));
            }
        }
        _ => {}
    }
    s.push_str(if l.up { " up" } else { " down" });
    if !l.carrier {
        s.push_str(" no-carrier");
    }
    if let Some(m) = &l.master {
        s.push_str(&format!(" master {m}"));
    }
    s
}

fn address_line(a: &Address) -> String {
    let mut s = format!("address {} dev {}", a.cidr(), a.dev);
    if let Some(b) = a.broadcast {
        s.push_str(&format!(" brd {b}"));
    }
    s.push_str(&format!(" scope {}", a.scope.ip_word()));
    if a.secondary {
        s.push_str(" secondary");
    }
    for f in &a.flags {
        s.push(' ');
        s.push_str(f.ip_word());
    }
    let lft = |v: Option<u32>| v.map_or("forever".to_string(), |s| format!("{s}sec"));
    if a.valid_lft.is_some() || a.preferred_lft.is_some() {
        s.push_str(&format!(
            " valid_lft {} preferred_lft {}",
            lft(a.valid_lft),
            lft(a.preferred_lft)
        ));
    }
    s
}

fn neighbour_line(n: &Neighbour) -> String {
    let mut s = format!("neighbour {} dev {}", n.ip, n.dev);
    if let Some(m) = n.lladdr {
        s.push_str(&format!(" lladdr {m}"));
    }
    s.push_str(&format!(" nud {}", n.state.ip_word()));
    if n.router {
        s.push_str(" router");
    }
    s
}
