//! IPv4 FIB lookups as the route checks run them (fib_table_lookup, fib_lookup,
//! inet_addr_type_table), over the local table's entries and the routing tables.
//!
//! The local table holds what the kernel derives from addresses: a `local` /32 per
//! address (devices up or down), a `local` prefix route for a primary on lo, and the
//! `broadcast` entries of up devices. Without custom rules, local and main are one trie
//! (fib_trie aliases local to main): a lookup in either sees both, longest prefix first.

use std::net::{IpAddr, Ipv4Addr};

use env_qemu_core::model::{
    AddrFlag, Address, Family, RouteScope, RouteType, TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN,
};

use crate::error::{Fail, Res};
use crate::state::{Kind, Ns};

/// One FIB entry containing the address looked up.
struct Hit {
    len: u8,
    metric: u32,
    kind: RouteType,
    scope: u8,
    dev: Option<u32>,
}

fn scope(s: RouteScope) -> u8 {
    s.to_u8()
}

fn subnet_broadcast(a: &Address) -> Option<IpAddr> {
    match a.ip {
        IpAddr::V4(v) if a.prefix_len < 31 => {
            let host = u32::MAX >> a.prefix_len;
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(v) | host)))
        }
        _ => None,
    }
}

/// The local table's entries containing `ip` (fib_add_ifaddr's work).
fn local_hits(ns: &Ns, ip: IpAddr) -> Vec<Hit> {
    let mut hits = Vec::new();
    for d in ns.devs.values() {
        let dev = Some(d.index);
        for a in &d.v4 {
            if a.ip == ip {
                let host = scope(RouteScope::Host);
                hits.push(Hit {
                    len: 32,
                    metric: 0,
                    kind: RouteType::Local,
                    scope: host,
                    dev,
                });
            }
            // On lo the prefix route of a primary is a local route in the local table.
            let lo_prefix = matches!(d.kind, Kind::Loopback)
                && !a.secondary
                && !a.has(AddrFlag::Noprefixroute)
                && a.prefix_len < 32;
            if lo_prefix && a.prefix().contains(&ip) {
                let (len, host) = (a.prefix_len, scope(RouteScope::Host));
                hits.push(Hit {
                    len,
                    metric: 0,
                    kind: RouteType::Local,
                    scope: host,
                    dev,
                });
            }
            // Broadcast entries (scope link) exist while the device is up: an explicit
            // `brd`, and the subnet broadcast of a primary.
            let subnet = !a.secondary && subnet_broadcast(a) == Some(ip);
            if d.up && (a.broadcast == Some(ip) || subnet) {
                let link = scope(RouteScope::Link);
                hits.push(Hit {
                    len: 32,
                    metric: 0,
                    kind: RouteType::Broadcast,
                    scope: link,
                    dev,
                });
            }
        }
    }
    hits
}

/// The routes of `table` containing `ip` (only tos 0 matches a lookup's flow).
fn table_hits(ns: &Ns, table: u32, ip: IpAddr) -> Vec<Hit> {
    ns.routes
        .iter()
        .filter(|r| r.family() == Family::Inet && r.table == table && r.tos == 0)
        .filter(|r| r.dst.contains(&ip))
        .map(|r| Hit {
            len: r.dst.len(),
            metric: r.metric,
            kind: r.kind,
            scope: scope(r.scope),
            dev: r.dev.as_ref().and_then(|n| ns.idx(n)),
        })
        .collect()
}

/// What a lookup in `table` sees: main and local are one trie.
fn hits(ns: &Ns, table: u32, ip: IpAddr) -> Vec<Hit> {
    match table {
        TABLE_MAIN | TABLE_LOCAL => {
            let mut h = local_hits(ns, ip);
            h.extend(table_hits(ns, TABLE_MAIN, ip));
            h
        }
        t => table_hits(ns, t, ip),
    }
}

/// fib_props[type].error: what a lookup ending on a reject route returns.
fn reject_errno(k: RouteType) -> Option<i32> {
    match k {
        RouteType::Blackhole => Some(libc::EINVAL),
        RouteType::Unreachable => Some(libc::EHOSTUNREACH),
        RouteType::Prohibit => Some(libc::EACCES),
        RouteType::Throw => Some(libc::EAGAIN),
        _ => None,
    }
}

/// fib_table_lookup: entries by decreasing prefix length, then metric (the local
/// table's own first among equals); narrower than `min` scope passed over; the first
/// reject entry ends the lookup with its error; one through another device than `oif`
/// is passed over. `None`: no match (-EAGAIN).
fn lookup(mut hits: Vec<Hit>, min: u8, oif: Option<u32>) -> Option<Result<(RouteType, u32), i32>> {
    hits.sort_by_key(|h| (std::cmp::Reverse(h.len), h.metric));
    for h in hits.into_iter().filter(|h| h.scope >= min) {
        if let Some(errno) = reject_errno(h.kind) {
            return Some(Err(errno));
        }
        let Some(dev) = h.dev else { continue };
        if oif.is_some_and(|o| o != dev) {
            continue;
        }
        return Some(Ok((h.kind, dev)));
    }
    None
}

/// inet_addr_type_table: the type of the entry `ip` falls in, in `table` (any device,
/// any scope); a reject entry or no match count as unicast.
pub(crate) fn addr_type(ns: &Ns, ip: Ipv4Addr, table: u32) -> RouteType {
    if ip.is_unspecified() || ip.octets()[0] == 0 || ip.is_broadcast() {
        return RouteType::Broadcast;
    }
    if ip.is_multicast() {
        return RouteType::Multicast;
    }
    match lookup(hits(ns, table, IpAddr::V4(ip)), 0, None) {
        Some(Ok((kind, _))) => kind,
        _ => RouteType::Unicast,
    }
}

/// fib_valid_prefsrc: `src` must be local, asked of the route's table (main means
/// local) and then of the local table.
pub(crate) fn valid_prefsrc(ns: &Ns, src: Ipv4Addr, table: u32) -> bool {
    let table = if table == TABLE_MAIN {
        TABLE_LOCAL
    } else {
        table
    };
    addr_type(ns, src, table) == RouteType::Local
        || addr_type(ns, src, TABLE_LOCAL) == RouteType::Local
}

/// fib_check_nh_v4_gw without `onlink`: look the gateway up as a destination, for a flow
/// of scope `route scope + 1` (at least link), out of `dev` if given. A table other
/// than main is tried first; if it fails, fib_lookup: main (with local), then the
/// default table if it exists (the simulator has it while it holds routes; the kernel
/// creates it at its first route). Only a unicast or local result is a usable gateway.
pub(crate) fn resolve_gw(
    ns: &Ns,
    table: u32,
    gw: Ipv4Addr,
    route_scope: RouteScope,
    dev: Option<u32>,
) -> Res<u32> {
    let min = scope(route_scope)
        .saturating_add(1)
        .max(scope(RouteScope::Link));
    let ip = IpAddr::V4(gw);
    let mut found = None;
    if table != TABLE_MAIN {
        found = lookup(hits(ns, table, ip), min, dev).filter(Result::is_ok);
    }
    if found.is_none() {
        found = lookup(hits(ns, TABLE_MAIN, ip), min, dev);
        let default_exists = ns.routes.iter().any(|r| r.table == TABLE_DEFAULT);
        if default_exists && !matches!(found, Some(Ok(_))) {
            found = lookup(hits(ns, TABLE_DEFAULT, ip), min, dev);
        }
    }
    let invalid = |errno| Fail::new(errno, "Nexthop has invalid gateway");
    match found {
        Some(Ok((RouteType::Unicast | RouteType::Local, i))) => Ok(i),
        Some(Ok(_)) => Err(invalid(libc::EINVAL)),
        // No match, or a throw route: "unreachable".
        None | Some(Err(libc::EAGAIN)) => Err(invalid(libc::ENETUNREACH)),
        Some(Err(errno)) => Err(invalid(errno)),
    }
}
