//! `dump()`: links, addresses and routes of every table but `local`, as one consistent
//! [`NetState`].

pub(crate) mod addresses;
pub(crate) mod filtered;
pub(crate) mod links;
pub(crate) mod routes;
mod tun;

use std::collections::HashMap;

use env_qemu_core::model::{IfName, Link, NetState};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::errors::Failure;
use crate::netns::NsWorker;
use crate::request::dump;

pub(crate) use filtered::net_state as filtered_net_state;

/// An address or route referred to this ifindex, which the link dump did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale(pub(crate) u32);

/// Three dumps are three snapshots; if a device appeared in between, start over.
const ATTEMPTS: usize = 5;

/// `ip -d link show; ip addr show; ip route show table all` (without table local).
pub(crate) async fn net_state(worker: &NsWorker) -> Result<NetState, Failure> {
    let mut missing = 0;
    for _ in 0..ATTEMPTS {
        match attempt(worker).await? {
            Ok(state) => return Ok(state),
            Err(Stale(index)) => missing = index,
        }
    }
    // Either links keep appearing, or the link message of this index could not be
    // decoded (netlink-proto drops undecodable messages, logging them).
    Err(Failure::errno(
        libc::EAGAIN,
        Some(format!(
            "addresses or routes refer to ifindex {missing}, which the link dump did not return"
        )),
    ))
}

async fn attempt(worker: &NsWorker) -> Result<Result<NetState, Stale>, Failure> {
    let nl = worker.netlink();
    let raw_links: Vec<_> = dump(nl, RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await?
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => links::parse(l),
            _ => None,
        })
        .collect();
    let names: HashMap<u32, IfName> = raw_links
        .iter()
        .map(|l| (l.index, l.name.clone()))
        .collect();

    let addr_msgs = dump(
        nl,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )
    .await?;
    let mut route_msgs = Vec::new();
    // One dump per family: AF_UNSPEC would also dump multicast (IPMR) tables.
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        route_msgs.extend(dump(nl, RouteNetlinkMessage::GetRoute(query)).await?);
    }

    let mut state = NetState::default();
    for m in &addr_msgs {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            match addresses::convert(a, &names) {
                Ok(Some(a)) => state.addresses.push(a),
                Ok(None) => {}
                Err(stale) => return Ok(Err(stale)),
            }
        }
    }
    for m in &route_msgs {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            match routes::convert(r, &names) {
                Ok(Some(r)) => state.routes.push(r),
                Ok(None) => {}
                Err(stale) => return Ok(Err(stale)),
            }
        }
    }

    state.links = finish_links(worker, raw_links, &names).await?;
    Ok(Ok(state))
}

/// Every link's name by ifindex (`ip link show`), to name the devices of other dumps.
pub(crate) async fn link_names(
    nl: &crate::request::Netlink,
) -> Result<HashMap<u32, IfName>, Failure> {
    Ok(
        dump(nl, RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .await?
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => links::parse(l).map(|l| (l.index, l.name)),
                _ => None,
            })
            .collect(),
    )
}

/// Completes dumped links with what only sysfs tells (read on the namespace's worker).
pub(crate) async fn finish_links(
    worker: &NsWorker,
    raw: Vec<links::RawLink>,
    names: &HashMap<u32, IfName>,
) -> Result<Vec<Link>, Failure> {
    let for_sysfs = raw.clone();
    let facts = worker
        .run(move |sysfs| links::sysfs_facts(sysfs, &for_sysfs))
        .await?;
    Ok(raw
        .into_iter()
        .map(|l| {
            let f = facts.get(&l.name);
            links::finish(l, f, names)
        })
        .collect())
}
