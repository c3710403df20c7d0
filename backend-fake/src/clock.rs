//! The clock: address lifetimes and route expiries count down, and what the kernel does
//! when they run out (measured in a namespace with `valid_lft 6 preferred_lft 3` on
//! IPv4 and IPv6 addresses and `expires 5` on IPv6 routes):
//!
//! - a preferred lifetime reaching 0 makes the address `deprecated` (both families;
//!   addrconf_verify, check_lifetime);
//! - a valid lifetime reaching 0 deletes the address with every side effect of
//!   `ip addr del` (IPv4: the prefix route, secondaries or their promotion, the flush
//!   after the last address; IPv6: its temporary addresses, sources of routes), and
//!   nothing more;
//! - an IPv6 route whose expiry reaches 0 is deleted. The real kernel keeps it in the
//!   table, reporting a negative remainder, until its garbage collection runs
//!   (net.ipv6.route.gc_interval, 30 s): the simulator deletes it at once.
//!
//! Everything counts in whole seconds, as the dumps report them; a fraction of a second
//! is carried over to the next advance.

use std::time::Duration;

use env_qemu_core::model::{AddrFlag, Address};

use crate::addresses;
use crate::state::Ns;

pub(crate) fn advance(ns: &mut Ns, by: Duration) {
    let total = ns.clock_residue + by;
    let secs = total.as_secs();
    ns.clock_residue = total - Duration::from_secs(secs);
    let mut left = u32::try_from(secs).unwrap_or(u32::MAX);
    // From event to event, so that what runs out first acts first.
    loop {
        expire(ns);
        if left == 0 {
            break;
        }
        let step = next_event(ns).map_or(left, |e| e.min(left));
        age(ns, step);
        left -= step;
    }
}

fn addresses_mut(ns: &mut Ns) -> impl Iterator<Item = &mut Address> {
    ns.devs.values_mut().flat_map(|d| {
        d.v4.iter_mut()
            .chain(d.v6.iter_mut().flat_map(|v| v.addrs.iter_mut()))
    })
}

/// Seconds until the next lifetime or expiry runs out, if any does.
fn next_event(ns: &Ns) -> Option<u32> {
    let addrs = ns
        .devs
        .values()
        .flat_map(|d| d.v4.iter().chain(d.v6.iter().flat_map(|v| v.addrs.iter())))
        .flat_map(|a| [a.valid_lft, a.preferred_lft]);
    let routes = ns.routes.iter().map(|r| r.expires);
    addrs.chain(routes).flatten().filter(|s| *s > 0).min()
}

fn age(ns: &mut Ns, secs: u32) {
    for a in addresses_mut(ns) {
        a.valid_lft = a.valid_lft.map(|v| v.saturating_sub(secs));
        a.preferred_lft = a.preferred_lft.map(|p| p.saturating_sub(secs));
    }
    for r in &mut ns.routes {
        r.expires = r.expires.map(|e| e.saturating_sub(secs));
    }
}

/// Applies what has run out: deprecations, address deletions, route deletions.
fn expire(ns: &mut Ns) {
    for a in addresses_mut(ns) {
        if a.preferred_lft == Some(0) {
            a.flags.insert(AddrFlag::Deprecated);
        }
    }
    // One at a time: a deletion can take others with it (secondaries, temporaries).
    loop {
        let due = ns
            .devs
            .values()
            .flat_map(|d| d.v4.iter().chain(d.v6.iter().flat_map(|v| v.addrs.iter())))
            .find(|a| a.valid_lft == Some(0))
            .cloned();
        let Some(a) = due else { break };
        if addresses::del(ns, &a).is_err() {
            // Cannot happen (it was just found); never loop on it.
            break;
        }
    }
    ns.routes.retain(|r| r.expires != Some(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use env_qemu_core::model::{IfName, Route};
    use env_qemu_core::{LinkChange, LinkSpec, Op};

    fn ns_with_v0() -> Ns {
        let mut ns = Ns::new();
        let v0 = IfName::new("v0").unwrap();
        let v1 = IfName::new("v1").unwrap();
        let ops = [
            Op::LinkAdd {
                spec: LinkSpec::Veth {
                    name: v0.clone(),
                    peer: v1.clone(),
                },
            },
            Op::LinkSet {
                name: v0,
                change: LinkChange::Up,
            },
            Op::LinkSet {
                name: v1,
                change: LinkChange::Up,
            },
        ];
        for op in &ops {
            ns.apply(op).unwrap();
        }
        ns
    }

    fn addr(s: &str, valid: u32, preferred: u32) -> Address {
        let (ip, len) = s.split_once('/').unwrap();
        let mut a = Address::new(
            IfName::new("v0").unwrap(),
            ip.parse().unwrap(),
            len.parse().unwrap(),
        );
        a.flags.insert(AddrFlag::Nodad);
        a.valid_lft = Some(valid);
        a.preferred_lft = Some(preferred);
        a
    }

    #[test]
    fn lifetimes_deprecate_then_delete_and_routes_expire() {
        let mut ns = ns_with_v0();
        let mut v4 = addr("192.0.2.1/24", 6, 3);
        v4.flags.clear();
        ns.apply(&Op::AddrAdd { address: v4 }).unwrap();
        ns.apply(&Op::AddrAdd {
            address: addr("2001:db8::1/64", 6, 3),
        })
        .unwrap();
        let r = Route::new(
            "2001:db8:f::/64".parse().unwrap(),
            None,
            Some(IfName::new("v0").unwrap()),
        )
        .expires(4);
        ns.apply(&Op::RouteAdd { route: r }).unwrap();
        let prefix6 = |ns: &Ns| {
            ns.routes
                .iter()
                .find(|r| r.dst.to_string() == "2001:db8::/64")
                .and_then(|r| r.expires)
        };
        assert_eq!(prefix6(&ns), Some(6));
        advance(&mut ns, Duration::from_millis(2500));
        assert_eq!(prefix6(&ns), Some(4));
        advance(&mut ns, Duration::from_millis(600));
        let all: Vec<&Address> = ns.devs.values().flat_map(|d| d.v4.iter()).collect();
        assert!(all.iter().any(|a| a.has(AddrFlag::Deprecated)), "{all:?}");
        assert_eq!(ns.routes.iter().filter(|r| r.expires.is_some()).count(), 2);
        advance(&mut ns, Duration::from_secs(1));
        assert!(!ns
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "2001:db8:f::/64"));
        advance(&mut ns, Duration::from_secs(2));
        let v0 = ns.idx(&IfName::new("v0").unwrap()).unwrap();
        assert!(ns.dev(v0).v4.is_empty());
        assert!(!ns
            .dev(v0)
            .v6
            .as_ref()
            .unwrap()
            .addrs
            .iter()
            .any(|a| a.valid_lft.is_some()));
        // The IPv4 prefix route went with the address; the IPv6 one expired with it.
        assert!(!ns
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "192.0.2.0/24"));
        assert_eq!(prefix6(&ns), None);
    }
}
