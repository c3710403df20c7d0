//! Creating, deleting and changing links over rtnetlink (taps: see [`crate::tap`]).

use env_qemu_core::model::{IfName, MacAddr};
use env_qemu_core::LinkChange;
use rtnetlink::packet_route::link::{BridgeStpState, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::errors::Failure;
use crate::request::{execute, ifindex, Netlink, CREATE_EXCL};

/// `ip link add NAME [address MAC] [mtu N] type bridge stp_state S forward_delay D`,
/// created down. `forward_delay` is in centiseconds, as IFLA_BR_FORWARD_DELAY carries it.
/// The kernel applies the delay before the STP state, and enabling STP clamps a delay
/// below 200 up to 200, so `stp: true, forward_delay: 0` reads back as 200.
pub(crate) async fn add_bridge(
    nl: &Netlink,
    name: &IfName,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    stp: bool,
    forward_delay: u32,
) -> Result<(), Failure> {
    let stp_state = if stp {
        BridgeStpState::KernelStp
    } else {
        BridgeStpState::Disabled
    };
    let mut builder = LinkMessageBuilder::<LinkBridge>::new(name.as_str())
        .stp_state(stp_state)
        .forward_delay(forward_delay);
    if let Some(mac) = mac {
        builder = builder.address(mac.0.to_vec());
    }
    if let Some(mtu) = mtu {
        builder = builder.mtu(mtu);
    }
    new_link(nl, builder.build()).await
}

/// `ip link add NAME type veth peer name PEER`: both ends down.
pub(crate) async fn add_veth(nl: &Netlink, name: &IfName, peer: &IfName) -> Result<(), Failure> {
    let message = LinkVeth::new(name.as_str(), peer.as_str()).build();
    new_link(nl, message).await
}

async fn new_link(nl: &Netlink, message: LinkMessage) -> Result<(), Failure> {
    execute(nl, RouteNetlinkMessage::NewLink(message), CREATE_EXCL).await?;
    Ok(())
}

/// `ip link del dev NAME` (also deletes taps, whatever their flags, and a veth's peer).
pub(crate) async fn delete(nl: &Netlink, name: &IfName) -> Result<(), Failure> {
    // RTM_DELLINK finds the device by IFLA_IFNAME when the index is 0.
    let message = LinkUnspec::new_with_name(name.as_str()).build();
    execute(nl, RouteNetlinkMessage::DelLink(message), 0).await?;
    Ok(())
}

/// `ip link set dev NAME up|down|master M|nomaster|mtu N|address MAC`.
pub(crate) async fn set(nl: &Netlink, name: &IfName, change: &LinkChange) -> Result<(), Failure> {
    let builder = LinkUnspec::new_with_name(name.as_str());
    let message = match change {
        LinkChange::Up => builder.up().build(),
        LinkChange::Down => builder.down().build(),
        LinkChange::Master(master) => {
            let index = ifindex(nl, master.as_str()).await?;
            builder.controller(index).build()
        }
        LinkChange::NoMaster => builder.nocontroller().build(),
        LinkChange::Mtu(mtu) => builder.mtu(*mtu).build(),
        LinkChange::Mac(mac) => builder.address(mac.0.to_vec()).build(),
    };
    execute(nl, RouteNetlinkMessage::SetLink(message), 0).await?;
    Ok(())
}
