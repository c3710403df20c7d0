//! `dump_filtered()`: the part of `dump()` a [`DumpFilter`] selects, asked of the kernel
//! as such: links by name (`ip link show dev NAME`), a bridge's ports by master
//! (`ip link show master BR`), addresses by ifindex (`ip addr show dev NAME`), routes by
//! output device in every table (`ip route show table all dev NAME`). The route and
//! address filters are the kernel's strict dump filtering (NETLINK_GET_STRICT_CHK, set on
//! the socket); the answers are still cut to the filter here, so a kernel that ignores a
//! filter costs time, never correctness.

use std::collections::HashMap;

use env_qemu_core::model::{DumpFilter, IfName, NetState, Route};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::links::{self, RawLink};
use super::{addresses, routes, Stale};
use crate::errors::Failure;
use crate::netns::NsWorker;
use crate::request::{dump, execute, Netlink};

const FAMILIES: [AddressFamily; 2] = [AddressFamily::Inet, AddressFamily::Inet6];

pub(crate) async fn net_state(worker: &NsWorker, filter: &DumpFilter) -> Result<NetState, Failure> {
    let nl = worker.netlink();
    let mut raw: Vec<RawLink> = Vec::new();
    for name in &filter.links {
        if let Some(l) = link(nl, LinkAttribute::IfName(name.to_string())).await? {
            raw.push(l);
        }
    }
    // The named links in ifindex order, once each (a name may be asked twice).
    let mut named: Vec<(u32, IfName)> = raw.iter().map(|l| (l.index, l.name.clone())).collect();
    named.sort();
    named.dedup();
    if let Some(master) = &filter.ports_of {
        let index = match raw.iter().find(|l| &l.name == master) {
            Some(l) => Some(l.index),
            None => link(nl, LinkAttribute::IfName(master.to_string()))
                .await?
                .map(|l| l.index),
        };
        if let Some(index) = index {
            raw.extend(ports(nl, index).await?);
        }
    }
    raw.sort_by_key(|l| l.index);
    raw.dedup_by_key(|l| l.index);

    let mut names: HashMap<u32, IfName> = raw.iter().map(|l| (l.index, l.name.clone())).collect();
    // Masters outside the filter (a tap on another bridge) are named as `dump` names them.
    let masters: Vec<u32> = raw.iter().filter_map(|l| l.master).collect();
    for m in masters {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(m) {
            if let Some(l) = link_by_index(nl, m).await? {
                e.insert(l.name);
            }
        }
    }

    let mut state = NetState::default();
    for family in FAMILIES {
        for (index, name) in named.iter().filter(|_| filter.addresses) {
            let mut query = AddressMessage::default();
            query.header.family = family;
            query.header.index = *index;
            for m in dump(nl, RouteNetlinkMessage::GetAddress(query)).await? {
                if let RouteNetlinkMessage::NewAddress(a) = &m {
                    if a.header.index == *index {
                        if let Ok(Some(a)) = addresses::convert(a, &names) {
                            debug_assert_eq!(&a.dev, name);
                            state.addresses.push(a);
                        }
                    }
                }
            }
        }
    }
    for family in FAMILIES {
        for (index, name) in named.iter().filter(|_| filter.routes) {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            query.attributes.push(RouteAttribute::Oif(*index));
            for m in dump(nl, RouteNetlinkMessage::GetRoute(query)).await? {
                if let RouteNetlinkMessage::NewRoute(r) = &m {
                    // A multipath route is `via` its first hop's device only; a route of
                    // another device (first hop elsewhere, or an unfiltered answer) is
                    // skipped, not an error.
                    match routes::convert(r, &names) {
                        Ok(Some(r)) if r.dev.as_ref() == Some(name) => state.routes.push(r),
                        Ok(_) | Err(Stale(_)) => {}
                    }
                }
            }
        }
    }

    if !filter.tables.is_empty() {
        state
            .routes
            .extend(foreign_routes(nl, filter, &named).await?);
    }

    state.links = super::finish_links(worker, raw, &names).await?;
    Ok(state)
}

/// `ip link show dev NAME`: one link, `None` when there is no such device.
async fn link(nl: &Netlink, key: LinkAttribute) -> Result<Option<RawLink>, Failure> {
    let mut query = LinkMessage::default();
    query.attributes.push(key);
    one_link(nl, query).await
}

/// The link with this ifindex, `None` when it is gone.
async fn link_by_index(nl: &Netlink, index: u32) -> Result<Option<RawLink>, Failure> {
    let mut query = LinkMessage::default();
    query.header.index = index;
    one_link(nl, query).await
}

async fn one_link(nl: &Netlink, query: LinkMessage) -> Result<Option<RawLink>, Failure> {
    match execute(nl, RouteNetlinkMessage::GetLink(query), 0).await {
        Ok(answers) => Ok(answers.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => links::parse(l),
            _ => None,
        })),
        Err(Failure::Errno { errno, .. }) if errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// `ip link show master INDEX`: the ports of a bridge.
async fn ports(nl: &Netlink, master: u32) -> Result<Vec<RawLink>, Failure> {
    let mut query = LinkMessage::default();
    query.attributes.push(LinkAttribute::Controller(master));
    Ok(dump(nl, RouteNetlinkMessage::GetLink(query))
        .await?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => links::parse(l),
            _ => None,
        })
        .filter(|l| l.master == Some(master))
        .collect())
}

/// The routes of `filter.tables` (`ip route show table T`, filtered by table in the
/// kernel) but those of the named devices when the per-device dumps gave them already,
/// in the kernel's order.
async fn foreign_routes(
    nl: &Netlink,
    filter: &DumpFilter,
    named: &[(u32, IfName)],
) -> Result<Vec<Route>, Failure> {
    let all = super::link_names(nl).await?;
    let is_named = |r: &Route| {
        r.dev
            .as_ref()
            .is_some_and(|d| named.iter().any(|(_, n)| n == d))
    };
    let mut out = Vec::new();
    for family in FAMILIES {
        for &table in &filter.tables {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            query.header.table = u8::try_from(table).unwrap_or(0);
            query.attributes.push(RouteAttribute::Table(table));
            for m in dump(nl, RouteNetlinkMessage::GetRoute(query)).await? {
                if let RouteNetlinkMessage::NewRoute(r) = &m {
                    if let Ok(Some(r)) = routes::convert(r, &all) {
                        if r.table == table && !(filter.routes && is_named(&r)) {
                            out.push(r);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
