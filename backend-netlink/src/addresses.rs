//! `ip addr add|del` over rtnetlink.

use std::net::IpAddr;

use env_qemu_core::model::Address;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::dump::addresses::{flag_bits, scope_to_u8, FOREVER};
use crate::errors::Failure;
use crate::request::{execute, ifindex, Netlink, CREATE_EXCL};

/// `ip addr add ADDR/LEN dev DEV [broadcast B] [scope S] [FLAGS] [valid_lft V
/// preferred_lft P]`. Sends only what the address carries: no broadcast unless given
/// (rtnetlink's builder would invent one), the configurable flags in IFA_FLAGS, and
/// IFA_CACHEINFO only for an address with a finite lifetime. Kernel state (`secondary`,
/// `tentative`…) is never sent.
pub(crate) async fn add(nl: &Netlink, address: &Address) -> Result<(), Failure> {
    let mut message = base_message(nl, address).await?;
    message.header.scope = AddressScope::from(scope_to_u8(address.scope));
    let flags = flag_bits(address.configurable_flags());
    // The header byte carries the low 8 bits for old kernels; IFA_FLAGS wins on new ones.
    message.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
    message
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    if let (Some(IpAddr::V4(b)), IpAddr::V4(_)) = (address.broadcast, address.ip) {
        message.attributes.push(AddressAttribute::Broadcast(b));
    }
    if address.valid_lft.is_some() || address.preferred_lft.is_some() {
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_valid = address.valid_lft.unwrap_or(FOREVER);
        lifetimes.ifa_preferred = address.preferred_lft.unwrap_or(FOREVER);
        message
            .attributes
            .push(AddressAttribute::CacheInfo(lifetimes));
    }
    execute(nl, RouteNetlinkMessage::NewAddress(message), CREATE_EXCL).await?;
    Ok(())
}

/// `ip addr del ADDR/LEN dev DEV`. EADDRNOTAVAIL when it is not there.
pub(crate) async fn delete(nl: &Netlink, address: &Address) -> Result<(), Failure> {
    let message = base_message(nl, address).await?;
    execute(nl, RouteNetlinkMessage::DelAddress(message), 0).await?;
    Ok(())
}

/// Device, family, prefix length, IFA_LOCAL and IFA_ADDRESS, as `ip addr` sends them
/// for an address without a peer.
async fn base_message(nl: &Netlink, address: &Address) -> Result<AddressMessage, Failure> {
    let mut message = AddressMessage::default();
    message.header.index = ifindex(nl, address.dev.as_str()).await?;
    message.header.family = match address.ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.prefix_len = address.prefix_len;
    message.attributes.push(AddressAttribute::Local(address.ip));
    message
        .attributes
        .push(AddressAttribute::Address(address.ip));
    Ok(message)
}

/// How long [`await_dad`] waits for the kernel's DAD work to run. It is queued at once
/// when an address is added; only a machine stalled for this long would miss it.
const DAD_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Polls `dev`'s addresses until none of `ips` is `tentative`: the kernel's DAD work for
/// them has run (with `accept_dad` off it completes at once).
pub(crate) async fn await_dad(
    worker: &crate::netns::NsWorker,
    dev: &env_qemu_core::model::IfName,
    ips: &[IpAddr],
) -> Result<(), Failure> {
    use env_qemu_core::model::{AddrFlag, DumpFilter};
    let filter = DumpFilter {
        addresses: true,
        ..DumpFilter::links(&[dev])
    };
    let deadline = std::time::Instant::now() + DAD_WAIT;
    loop {
        let state = crate::dump::filtered::net_state(worker, &filter).await?;
        if state.link(dev).is_none() {
            return Err(Failure::errno(libc::ENODEV, None));
        }
        let pending = state
            .addresses_of(dev)
            .any(|a| ips.contains(&a.ip) && a.has(AddrFlag::Tentative));
        if !pending {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Failure::errno(
                libc::ETIMEDOUT,
                format!("addresses still tentative after {} s", DAD_WAIT.as_secs()),
            ));
        }
        // The caller's thread only: the netlink socket is driven by the namespace worker's
        // own runtime, and a runtime without a time driver can call this too.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
