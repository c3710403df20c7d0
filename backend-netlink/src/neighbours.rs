//! `ip neigh replace` and `ip neigh show` over rtnetlink.

use std::collections::HashMap;
use std::net::IpAddr;

use env_qemu_core::model::{IfName, MacAddr, Neighbour, NudState};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::dump::link_names;
use crate::errors::Failure;
use crate::request::{dump, execute, ifindex, Netlink, CREATE_REPLACE};

/// `ip neigh replace IP lladdr MAC dev DEV nud STATE [router]`: NDA_DST and NDA_LLADDR,
/// the state and NTF_ROUTER in the header, as iproute2 sends them.
pub(crate) async fn replace(
    nl: &Netlink,
    dev: &IfName,
    ip: IpAddr,
    lladdr: MacAddr,
    state: NudState,
    router: bool,
) -> Result<(), Failure> {
    let mut m = NeighbourMessage::default();
    m.header.ifindex = ifindex(nl, dev.as_str()).await?;
    m.header.state = to_state(state);
    if router {
        m.header.flags = NeighbourFlags::Router;
    }
    let (family, dst) = match ip {
        IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
    };
    m.header.family = family;
    m.attributes.push(NeighbourAttribute::Destination(dst));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(lladdr.0.to_vec()));
    execute(nl, RouteNetlinkMessage::NewNeighbour(m), CREATE_REPLACE).await?;
    Ok(())
}

/// `ip neigh del IP dev DEV`: NDA_DST on the device's ifindex.
pub(crate) async fn delete(nl: &Netlink, dev: &IfName, ip: IpAddr) -> Result<(), Failure> {
    let mut m = NeighbourMessage::default();
    m.header.ifindex = ifindex(nl, dev.as_str()).await?;
    let (family, dst) = match ip {
        IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
    };
    m.header.family = family;
    m.attributes.push(NeighbourAttribute::Destination(dst));
    execute(nl, RouteNetlinkMessage::DelNeighbour(m), 0).await?;
    Ok(())
}

/// `ip neigh show nud all [dev DEV]`: the ARP and NDP entries of `dev` (filtered by the
/// kernel: the socket does strict dump checking), or of every device. The bridge's
/// forwarding database, which the same dump carries as AF_BRIDGE, is left out.
pub(crate) async fn show(nl: &Netlink, dev: Option<&IfName>) -> Result<Vec<Neighbour>, Failure> {
    let mut query = NeighbourMessage::default();
    query.header.family = AddressFamily::Unspec;
    let names: HashMap<u32, IfName> = match dev {
        // A strict dump request filters by the NDA_IFINDEX attribute; the header's
        // ifindex must stay 0 (the kernel answers such a request with nothing).
        Some(d) => {
            let index = ifindex(nl, d.as_str()).await?;
            query.attributes.push(NeighbourAttribute::IfIndex(index));
            HashMap::from([(index, d.clone())])
        }
        None => link_names(nl).await?,
    };
    let answers = dump(nl, RouteNetlinkMessage::GetNeighbour(query)).await?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => convert(n, &names),
            _ => None,
        })
        .collect())
}

fn convert(n: &NeighbourMessage, names: &HashMap<u32, IfName>) -> Option<Neighbour> {
    if !matches!(n.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    // A device deleted between the two dumps: its entries went with it.
    let dev = names.get(&n.header.ifindex)?.clone();
    let mut ip = None;
    let mut lladdr = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some((*v4).into()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some((*v6).into());
            }
            NeighbourAttribute::LinkLayerAddress(b) => {
                lladdr = <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr);
            }
            _ => {}
        }
    }
    Some(Neighbour {
        dev,
        ip: ip?,
        lladdr,
        state: from_state(n.header.state),
        router: n.header.flags.contains(NeighbourFlags::Router),
    })
}

fn to_state(s: NudState) -> NeighbourState {
    match s {
        NudState::Incomplete => NeighbourState::Incomplete,
        NudState::Reachable => NeighbourState::Reachable,
        NudState::Stale => NeighbourState::Stale,
        NudState::Delay => NeighbourState::Delay,
        NudState::Probe => NeighbourState::Probe,
        NudState::Failed => NeighbourState::Failed,
        NudState::Noarp => NeighbourState::Noarp,
        NudState::Permanent => NeighbourState::Permanent,
        NudState::None => NeighbourState::None,
    }
}

fn from_state(s: NeighbourState) -> NudState {
    match s {
        NeighbourState::Incomplete => NudState::Incomplete,
        NeighbourState::Reachable => NudState::Reachable,
        NeighbourState::Stale => NudState::Stale,
        NeighbourState::Delay => NudState::Delay,
        NeighbourState::Probe => NudState::Probe,
        NeighbourState::Failed => NudState::Failed,
        NeighbourState::Noarp => NudState::Noarp,
        NeighbourState::Permanent => NudState::Permanent,
        _ => NudState::None,
    }
}
