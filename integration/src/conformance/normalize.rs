//! What may legitimately differ between the simulated and the real namespace after the
//! same operations — and nothing else:
//!
//! - ifindexes and list order ([`NetState::normalized`]);
//! - MACs the kernel picked at random (a bridge created without `address`; veths and
//!   taps too when a case does not give them one), and the IPv6 link-locals made from
//!   them. Each such MAC becomes a placeholder named after its device, so "random" still
//!   differs from "zero", from "a port's MAC" and from "the MAC that was set";
//! - remaining address lifetimes and IPv6 route expiries, which count down on the real
//!   kernel only: the real value may be lower than the simulated one by at most the
//!   time elapsed (a route's through [`Route::expiry_normalized`] and
//!   [`Route::expiry_within`], like an address's lifetimes).
//!
//! [`Route::expiry_normalized`]: env_qemu_core::model::Route::expiry_normalized
//! [`Route::expiry_within`]: env_qemu_core::model::Route::expiry_within
//!
//! Everything a restore depends on (flags, scopes, broadcasts, routes with their
//! protocol, scope, source, metric and table, bridge settings, masters) is compared
//! exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use env_qemu_core::model::{IfName, MacAddr, Neighbour, NetState, NudState, Route};

/// The kernel-chosen MACs one side has shown so far, per device name. Kept for the
/// whole case: a link-local outlives the random MAC it was made from (a bridge takes
/// its first port's MAC, or drops to zero without ports).
#[derive(Debug, Clone, Default)]
pub struct KernelChosen {
    seen: BTreeMap<IfName, BTreeSet<MacAddr>>,
}

impl KernelChosen {
    /// Notes every MAC in `state` that nobody asked for (not zero, not in `explicit`).
    pub fn learn(&mut self, state: &NetState, explicit: &BTreeSet<MacAddr>) {
        for l in &state.links {
            if !l.mac.is_zero() && !explicit.contains(&l.mac) {
                self.seen.entry(l.name.clone()).or_default().insert(l.mac);
            }
        }
    }

    /// `state` with kernel-chosen MACs and the link-locals derived from them replaced
    /// by per-device placeholders, then [`NetState::normalized`].
    pub fn apply(&self, state: &NetState) -> NetState {
        let mut s = state.clone();
        for l in &mut s.links {
            if self.chosen(&l.name, &l.mac) {
                l.mac = placeholder(&l.name);
            }
        }
        for a in &mut s.addresses {
            let IpAddr::V6(ip) = a.ip else { continue };
            let Some(seen) = self.seen.get(&a.dev) else {
                continue;
            };
            if a.prefix_len == 64 && seen.iter().any(|m| ip == link_local(m)) {
                a.ip = IpAddr::V6(link_local(&placeholder(&a.dev)));
            }
        }
        s.normalized()
    }

    fn chosen(&self, dev: &IfName, mac: &MacAddr) -> bool {
        self.seen.get(dev).is_some_and(|s| s.contains(mac))
    }
}

/// A stable stand-in for "some MAC the kernel chose for `dev`": locally administered,
/// derived from the name (FNV-1a), so both sides agree on it.
pub fn placeholder(dev: &IfName) -> MacAddr {
    let h = dev.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let b = h.to_be_bytes();
    MacAddr([0x0e, 0xee, b[0], b[1], b[2], b[3]])
}

/// fe80::/64 plus the modified EUI-64 of `mac`, as addr_gen_mode eui64 makes it.
fn link_local(mac: &MacAddr) -> Ipv6Addr {
    let e = mac.eui64();
    Ipv6Addr::from([
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
    ])
}

/// Seconds of rounding allowed on top of the elapsed time: the kernel counts in ticks
/// and reports whole seconds, rounded down.
const ROUNDING: u64 = 2;

/// Whether two normalised states agree: equal once lifetimes and expiries are set
/// aside, and each real remaining lifetime or expiry at most the simulated one and at
/// most `elapsed` (+2 s of rounding) below it.
pub fn agree(sim: &NetState, real: &NetState, elapsed: Duration) -> bool {
    let (s, r) = (strip_lifetimes(sim), strip_lifetimes(real));
    if s != r {
        return false;
    }
    let slack = elapsed.as_secs().saturating_add(ROUNDING);
    let close = |s: Option<u32>, r: Option<u32>| match (s, r) {
        (Some(s), Some(r)) => r <= s && u64::from(s - r) <= slack,
        (s, r) => s == r,
    };
    let addresses =
        sim.addresses.iter().zip(&real.addresses).all(|(s, r)| {
            close(s.valid_lft, r.valid_lft) && close(s.preferred_lft, r.preferred_lft)
        });
    addresses
        && by_stripped(sim)
            .iter()
            .zip(&by_stripped(real))
            .all(|(s, r)| s.expiry_within(r, elapsed.as_secs(), ROUNDING))
}

/// The routes in the order of their stripped form, so that both sides pair up.
fn by_stripped(s: &NetState) -> Vec<Route> {
    let mut routes = s.routes.clone();
    routes.sort_by_key(|r| serde_json::to_string(&r.expiry_normalized()).unwrap_or_default());
    routes
}

/// Finite lifetimes and expiries replaced by 0 (forever and never stay `None`).
pub fn strip_lifetimes(s: &NetState) -> NetState {
    let mut s = s.clone();
    for a in &mut s.addresses {
        a.valid_lft = a.valid_lft.map(|_| 0);
        a.preferred_lft = a.preferred_lft.map(|_| 0);
    }
    for r in &mut s.routes {
        *r = r.expiry_normalized();
    }
    s.normalized()
}

/// Addresses whose lifetimes do not [`agree`], for reports.
pub fn lifetime_report(sim: &NetState, real: &NetState) -> String {
    let mut out = String::new();
    for (s, r) in sim.addresses.iter().zip(&real.addresses) {
        if (s.valid_lft, s.preferred_lft) != (r.valid_lft, r.preferred_lft) {
            out.push_str(&format!(
                "  lifetimes of {s}: simulated valid {:?} preferred {:?}, real valid {:?} preferred {:?}\n",
                s.valid_lft, s.preferred_lft, r.valid_lft, r.preferred_lft
            ));
        }
    }
    for (s, r) in by_stripped(sim).iter().zip(&by_stripped(real)) {
        if s.expires != r.expires {
            out.push_str(&format!(
                "  expiry of {s}: simulated {:?}, real {:?}\n",
                s.expires, r.expires
            ));
        }
    }
    out
}

/// The entries both kernels must agree on: the kernel's own `noarp` entries (multicast
/// destinations it sent to, lo) are not modelled.
pub fn neighbours(mut all: Vec<Neighbour>) -> Vec<Neighbour> {
    all.retain(|n| !matches!(n.state, NudState::Noarp | NudState::None));
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use env_qemu_core::model::{Address, Link, LinkKind};

    fn n(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    fn bridge(mac: MacAddr) -> Link {
        Link {
            index: 7,
            name: n("br0"),
            kind: LinkKind::Other("bridge".into()),
            mac,
            mtu: 1500,
            up: true,
            carrier: true,
            master: None,
        }
    }

    #[test]
    fn random_macs_and_their_link_locals_become_placeholders() {
        let random = MacAddr([0x5a, 1, 2, 3, 4, 5]);
        let ll = Address::new(n("br0"), IpAddr::V6(link_local(&random)), 64);
        let state = NetState {
            links: vec![bridge(random)],
            addresses: vec![ll],
            routes: vec![],
        };
        let mut k = KernelChosen::default();
        k.learn(&state, &BTreeSet::new());
        let s = k.apply(&state);
        assert_eq!(s.links[0].mac, placeholder(&n("br0")));
        assert_eq!(s.links[0].index, 0);
        assert_eq!(
            s.addresses[0].ip,
            IpAddr::V6(link_local(&placeholder(&n("br0"))))
        );
        // Later, with the bridge's MAC at zero, the old link-local is still mapped.
        let mut later = state.clone();
        later.links[0].mac = MacAddr::ZERO;
        let s = k.apply(&later);
        assert!(s.links[0].mac.is_zero());
        assert_eq!(
            s.addresses[0].ip,
            IpAddr::V6(link_local(&placeholder(&n("br0"))))
        );
    }

    #[test]
    fn explicit_macs_stay() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x10]);
        let state = NetState {
            links: vec![bridge(mac)],
            ..NetState::default()
        };
        let mut k = KernelChosen::default();
        k.learn(&state, &BTreeSet::from([mac]));
        assert_eq!(k.apply(&state).links[0].mac, mac);
    }

    #[test]
    fn lifetimes_may_only_count_down() {
        let mut a = Address::new(n("v0"), "192.0.2.1".parse().unwrap(), 24);
        a.valid_lft = Some(600);
        a.preferred_lft = Some(300);
        let sim = NetState {
            addresses: vec![a],
            ..NetState::default()
        };
        let mut real = sim.clone();
        real.addresses[0].valid_lft = Some(598);
        assert!(agree(&sim, &real, Duration::from_secs(1)));
        real.addresses[0].valid_lft = Some(590);
        assert!(!agree(&sim, &real, Duration::from_secs(1)));
        real.addresses[0].valid_lft = Some(601);
        assert!(!agree(&sim, &real, Duration::from_secs(1)));
        real.addresses[0].valid_lft = None;
        assert!(!agree(&sim, &real, Duration::from_secs(1)));
    }

    #[test]
    fn route_expiry_may_only_count_down() {
        let r = Route::new("2001:db8:f::/64".parse().unwrap(), None, Some(n("v0"))).expires(600);
        let sim = NetState {
            routes: vec![r],
            ..NetState::default()
        };
        let mut real = sim.clone();
        real.routes[0].expires = Some(598);
        assert!(agree(&sim, &real, Duration::from_secs(1)));
        real.routes[0].expires = Some(590);
        assert!(!agree(&sim, &real, Duration::from_secs(1)));
        real.routes[0].expires = Some(601);
        assert!(!agree(&sim, &real, Duration::from_secs(1)));
        real.routes[0].expires = None;
        assert!(!agree(&sim, &real, Duration::from_secs(60)));
        assert!(lifetime_report(&sim, &real).contains("expiry of route 2001:db8:f::/64"));
    }
}
