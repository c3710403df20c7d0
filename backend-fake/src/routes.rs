//! The routing tables (all but `local`): add/replace/del with the kernel's identity keys,
//! the routes the kernel adds and removes by itself, and the order `dump` walks them in.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};

use env_qemu_core::model::{
    rtax, AddrFlag, Address, Family, IfName, Prefix, Route, RouteMetrics, RoutePref, RouteProtocol,
    RouteScope, RouteType, TABLE_MAIN,
};

use crate::error::{exists, Fail, Res};
use crate::nexthop;
use crate::state::{Kind, Ns};

/// `ip route add` (`replace = false`) and `ip route replace`.
pub(crate) fn add(ns: &mut Ns, req: &Route, replace: bool) -> Res {
    let created = touch_v6_table(ns, req);
    let r = nexthop::validate(ns, req).map_err(|f| f.kept_partial(created))?;
    let same_key = |x: &Route| same_key(x, &r);
    let Some(first) = in_dump_order(ns)
        .into_iter()
        .find(|&k| same_key(&ns.routes[k]))
    else {
        ns.routes.push(r);
        return Ok(());
    };
    if !replace {
        // Another gateway, device or protocol under the same key is still the same
        // route to the kernel.
        return Err(exists());
    }
    // An identical route already there: nothing to do. Otherwise the first of the key
    // is swapped in place, so appended siblings keep their order.
    if !ns.routes.iter().any(|x| same_key(x) && *x == r) {
        ns.routes[first] = r;
    }
    Ok(())
}

/// `ip route append`: after the routes of the same key; EEXIST only for an identical one.
/// (The kernel makes IPv6 gateway routes multipath siblings of one route; the model keeps
/// them as separate entries.)
pub(crate) fn append(ns: &mut Ns, req: &Route) -> Res {
    let created = touch_v6_table(ns, req);
    let r = nexthop::validate(ns, req).map_err(|f| f.kept_partial(created))?;
    if ns.routes.contains(&r) {
        return Err(exists());
    }
    ns.routes.push(r);
    Ok(())
}

/// ip6_route_info_create calls fib6_new_table before any nexthop check: an IPv6 request
/// that gets past the backend's device lookup creates its table, accepted or not.
/// Returns whether it was new.
fn touch_v6_table(ns: &mut Ns, req: &Route) -> bool {
    let dev_known = req.dev.as_ref().is_none_or(|d| ns.idx(d).is_some());
    req.family() == Family::Inet6 && dev_known && ns.v6_tables.insert(req.table)
}

/// IPv4: (table, dst, tos, metric). IPv6: (table, dst, metric).
fn same_key(a: &Route, b: &Route) -> bool {
    a.family() == b.family()
        && a.table == b.table
        && a.dst == b.dst
        && a.metric == b.metric
        && (a.family() == Family::Inet6 || a.tos == b.tos)
}

/// `ip route del`: the key plus every attribute the request carries. Unset attributes
/// (no gateway/dev/prefsrc, metric 0, proto unspec, scope nowhere, no metrics) match
/// anything. IPv4 also matches every metric the request carries, as sent, against the
/// stored (clamped) value (fib_metrics_match; measured: another `mtu` is ESRCH); IPv6
/// ignores metrics, preference and expiry.
pub(crate) fn del(ns: &mut Ns, req: &Route) -> Res {
    if let Some(dev) = &req.dev {
        ns.require(dev)?;
    }
    let v6 = req.family() == Family::Inet6;
    let hit = |x: &Route| {
        x.family() == req.family()
            && x.table == req.table
            && x.dst == req.dst
            && (v6 || x.tos == req.tos)
            && (req.metric == 0 || x.metric == req.metric)
            && (req.protocol == RouteProtocol::Unspec || x.protocol == req.protocol)
            && (req.gateway.is_none() || x.gateway == req.gateway)
            && (req.dev.is_none() || x.dev == req.dev)
            // IPv6 routes have no scope, and fib6 ignores type and prefsrc on delete.
            && (v6 || req.scope == RouteScope::Nowhere || x.scope == req.scope)
            && (v6 || req.kind == RouteType::Other(0) || x.kind == req.kind)
            && (v6 || req.prefsrc.is_none() || x.prefsrc == req.prefsrc)
            && (v6 || metrics_match(&req.metrics, &x.metrics))
    };
    let Some(k) = in_dump_order(ns).into_iter().find(|&k| hit(&ns.routes[k])) else {
        return Err(
            del_miss_v6(ns, req).unwrap_or_else(|| Fail::new(libc::ESRCH, "No such process"))
        );
    };
    ns.routes.remove(k);
    Ok(())
}

/// fib_metrics_match: each metric of the request equals the route's.
fn metrics_match(req: &RouteMetrics, x: &RouteMetrics) -> bool {
    req.numeric().into_iter().all(|(k, v)| x.get(k) == Some(v))
        && req
            .congctl
            .as_ref()
            .is_none_or(|c| x.congctl.as_ref() == Some(c))
}

/// ip6_route_del's misses that are not plain ESRCH. A table that does not exist says so.
/// A table's root node (`::/0`) holds the null entry while it has no default route:
/// proto kernel, metric 0xffffffff, no gateway, device lo. A request it matches "finds"
/// it, and fib6_del refuses to delete it with ENOENT.
fn del_miss_v6(ns: &Ns, req: &Route) -> Option<Fail> {
    if req.family() != Family::Inet6 {
        return None;
    }
    if !ns.v6_tables.contains(&req.table) {
        return Some(Fail::new(libc::ESRCH, "FIB table does not exist"));
    }
    let has_default = ns
        .routes
        .iter()
        .any(|r| r.family() == Family::Inet6 && r.table == req.table && r.dst.is_default());
    let null_entry = req.dst.is_default()
        && !has_default
        && req.gateway.is_none()
        && req.dev.as_ref().is_none_or(|d| *d == ns.loopback())
        && matches!(req.metric, 0 | u32::MAX)
        && matches!(req.protocol, RouteProtocol::Unspec | RouteProtocol::Kernel);
    null_entry.then(|| Fail::new(libc::ENOENT, "No such file or directory"))
}

/// The prefix route the kernel keeps for a primary IPv4 address: table main, proto
/// kernel, scope link, src = the address, metric 0. Only on an up device (the nexthop
/// check refuses a down one), never for /32 or 0.0.0.0/8, and on lo it lives in the
/// local table.
fn prefix_route_v4(ns: &Ns, i: u32, a: &Address) -> Option<Route> {
    let d = ns.dev(i);
    let p = a.prefix();
    let zeronet = matches!(p.addr(), IpAddr::V4(v) if v.octets()[0] == 0);
    if a.has(AddrFlag::Noprefixroute) || a.prefix_len >= 32 || zeronet {
        return None;
    }
    if matches!(d.kind, Kind::Loopback) {
        return None;
    }
    Some(Route {
        table: TABLE_MAIN,
        dst: p,
        kind: RouteType::Unicast,
        gateway: None,
        dev: Some(d.name.clone()),
        metric: 0,
        protocol: RouteProtocol::Kernel,
        scope: RouteScope::Link,
        prefsrc: Some(a.ip),
        onlink: false,
        tos: 0,
        pref: RoutePref::Medium,
        expires: None,
        metrics: RouteMetrics::default(),
    })
}

/// fib_magic for a primary's prefix route: `add` appends it (even when the same prefix
/// already goes through another device) unless an identical one exists; removal takes
/// exactly the kernel's own route, leaving any user route with that prefix.
pub(crate) fn kernel_prefix_v4(ns: &mut Ns, i: u32, a: &Address, add: bool) {
    let Some(r) = prefix_route_v4(ns, i, a) else {
        return;
    };
    if add {
        if ns.dev(i).up && !ns.routes.contains(&r) {
            ns.routes.push(r);
        }
    } else if let Some(k) = ns.routes.iter().position(|x| *x == r) {
        ns.routes.remove(k);
    }
}

/// addrconf_prefix_route: proto kernel, metric 256, expiring with the address that
/// made it (`expires` = its valid lifetime; `None` for a permanent one). A route with
/// the same prefix and metric through the same device without gateway counts as
/// already there (fib6_add_rt2node: rt6_duplicate_nexthop, EEXIST to addrconf): a
/// permanent one stays as it is, an expiring one (a user route too) takes the new
/// expiry, or none (measured: a dynamic address then a permanent one leave a permanent
/// route; the other way round, it expires with the latest dynamic address). On lo it
/// never expires.
pub(crate) fn kernel_prefix_v6(ns: &mut Ns, dev: &IfName, dst: Prefix, expires: Option<u32>) {
    // Through lo it is a reject route inside the kernel, whose flags lose RTF_EXPIRES
    // (see `nexthop::reject_flags`; measured with a dynamic address on lo).
    let on_lo = ns
        .idx(dev)
        .is_some_and(|i| matches!(ns.dev(i).kind, Kind::Loopback));
    let expires = expires.filter(|_| !on_lo);
    let r = Route {
        table: TABLE_MAIN,
        dst,
        kind: RouteType::Unicast,
        gateway: None,
        dev: Some(dev.clone()),
        metric: 256,
        protocol: RouteProtocol::Kernel,
        scope: RouteScope::Universe,
        prefsrc: None,
        onlink: false,
        tos: 0,
        pref: RoutePref::Medium,
        expires,
        metrics: RouteMetrics::default(),
    };
    let dup = ns.routes.iter_mut().find(|x| {
        x.family() == Family::Inet6
            && x.table == r.table
            && x.dst == dst
            && x.metric == 256
            && x.dev == r.dev
            && x.gateway.is_none()
    });
    match dup {
        Some(x) if x.expires.is_some() => x.expires = expires,
        Some(_) => {}
        None => ns.routes.push(r),
    }
}

/// cleanup_prefix_route: addrconf_get_prefix_route takes the first gateway-less route
/// for the prefix through the device in main, in the node's order (lowest metric
/// first), whoever added it: a user route with a lower metric goes instead of the
/// kernel's own (measured).
pub(crate) fn remove_kernel_prefix_v6(ns: &mut Ns, dev: &IfName, dst: Prefix) {
    if let Some(k) = kernel_prefix_v6_at(ns, dev, dst) {
        ns.routes.remove(k);
    }
}

/// cleanup_prefix_route without deleting: the prefix route that `remove_kernel_prefix_v6`
/// would take, if it does not expire yet, now expires in `expires` seconds.
pub(crate) fn expire_kernel_prefix_v6(ns: &mut Ns, dev: &IfName, dst: Prefix, expires: u32) {
    if let Some(k) = kernel_prefix_v6_at(ns, dev, dst) {
        let r = &mut ns.routes[k];
        if r.expires.is_none() {
            r.expires = Some(expires);
        }
    }
}

/// addrconf_get_prefix_route's pick (see `remove_kernel_prefix_v6`).
fn kernel_prefix_v6_at(ns: &Ns, dev: &IfName, dst: Prefix) -> Option<usize> {
    in_dump_order(ns).into_iter().find(|&k| {
        let x = &ns.routes[k];
        x.family() == Family::Inet6
            && x.table == TABLE_MAIN
            && x.dst == dst
            && x.dev.as_ref() == Some(dev)
            && x.gateway.is_none()
    })
}

/// Admin down (fib_sync_down_dev without force): every IPv4 route through `dev`, all
/// tables, except scope-host ones, whose nexthop has scope "nowhere" like the local
/// table's entries (measured: `ip route add P dev D scope host` survives `D down`).
pub(crate) fn flush_dev_down_v4(ns: &mut Ns, dev: &IfName) {
    ns.routes.retain(|r| {
        !(r.family() == Family::Inet && r.dev.as_ref() == Some(dev) && r.scope != RouteScope::Host)
    });
}

/// rt6_mtu_change: the device `dev` went from MTU `mtu6` to `mtu`. Every IPv6 route
/// through it whose MTU is not locked takes the new MTU when its own is at least that
/// (a decrease caps it), or when its own was the device's old MTU (an increase follows
/// it). A route without an MTU keeps none. Measured: `mtu 70000` is stored as 65520, and
/// raising the device to 9000 leaves 9000.
pub(crate) fn mtu_change_v6(ns: &mut Ns, dev: &IfName, mtu6: u32, mtu: u32) {
    for r in &mut ns.routes {
        if r.family() != Family::Inet6 || r.dev.as_ref() != Some(dev) {
            continue;
        }
        if r.metrics.locked(rtax::MTU) {
            continue;
        }
        let pmtu = r.metrics.mtu.unwrap_or(0);
        if pmtu >= mtu || pmtu == mtu6 {
            r.metrics.set(rtax::MTU, mtu);
        }
    }
}

/// Every route of `family` through `dev`, all tables.
pub(crate) fn flush_dev(ns: &mut Ns, dev: &IfName, family: Family) {
    ns.routes
        .retain(|r| !(r.family() == family && r.dev.as_ref() == Some(dev)));
}

pub(crate) fn flush_prefsrc_main(ns: &mut Ns, ip: IpAddr) {
    ns.routes
        .retain(|r| !(r.table == TABLE_MAIN && r.prefsrc == Some(ip)));
}

pub(crate) fn drop_prefsrc_v6(ns: &mut Ns, ip: Ipv6Addr) {
    let still: Vec<bool> = ns
        .routes
        .iter()
        .map(|r| {
            let dev = r.dev.as_ref().and_then(|d| ns.idx(d));
            dev.is_some_and(|d| ns.has_v6(ip, d, false))
        })
        .collect();
    for (r, keep) in ns.routes.iter_mut().zip(still) {
        if r.prefsrc == Some(IpAddr::V6(ip)) && !keep {
            r.prefsrc = None;
        }
    }
}

/// Indexes of `ns.routes` in the order the kernel dumps them.
pub(crate) fn in_dump_order(ns: &Ns) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..ns.routes.len()).collect();
    idx.sort_by(|&a, &b| dump_cmp(&ns.routes[a], &ns.routes[b]));
    idx
}

/// IPv4 before IPv6 (an AF_UNSPEC dump walks families in that order), tables by id,
/// then each family's tree order, then tos (descending) and metric; ties keep
/// insertion order (the sort is stable).
fn dump_cmp(a: &Route, b: &Route) -> Ordering {
    a.family()
        .cmp(&b.family())
        .then(a.table.cmp(&b.table))
        .then_with(|| match a.family() {
            Family::Inet => v4_tree(&a.dst, &b.dst),
            Family::Inet6 => v6_tree(&a.dst, &b.dst),
        })
        .then(b.tos.cmp(&a.tos))
        .then(a.metric.cmp(&b.metric))
}

/// fib_trie: by key; at one key, longer prefixes first (sorted by suffix length).
fn v4_tree(a: &Prefix, b: &Prefix) -> Ordering {
    a.addr().cmp(&b.addr()).then(b.len().cmp(&a.len()))
}

/// fib6 walks its radix tree left, right, then the node itself: a prefix comes after
/// every more specific one it contains, so `default` is last.
fn v6_tree(a: &Prefix, b: &Prefix) -> Ordering {
    let common = a.len().min(b.len());
    let (ma, mb) = (
        Prefix::new(a.addr(), common).map(|p| p.addr()),
        Prefix::new(b.addr(), common).map(|p| p.addr()),
    );
    if ma != mb {
        return ma.cmp(&mb);
    }
    b.len().cmp(&a.len())
}
