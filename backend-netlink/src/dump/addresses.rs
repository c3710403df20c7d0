//! RTM_NEWADDR messages → [`Address`] (`ip addr show`).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use env_qemu_core::model::{AddrFlag, AddrScope, Address, IfName};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use super::Stale;

/// A lifetime of 0xFFFFFFFF is "forever" (INFINITY_LIFE_TIME).
pub(crate) const FOREVER: u32 = u32::MAX;

const IFA_F_SECONDARY: u32 = 0x01;

/// Model flags and their IFA_F_* bits. IFA_F_SECONDARY is `Address::secondary` on IPv4
/// and [`AddrFlag::Temporary`] on IPv6 (a privacy address), so it is not in this table.
/// PERMANENT follows from the lifetimes and STABLE_PRIVACY from addr_gen_mode, so both
/// are dropped.
const FLAGS: [(AddrFlag, u32); 9] = [
    (AddrFlag::Nodad, 0x02),
    (AddrFlag::Optimistic, 0x04),
    (AddrFlag::Dadfailed, 0x08),
    (AddrFlag::Home, 0x10),
    (AddrFlag::Deprecated, 0x20),
    (AddrFlag::Tentative, 0x40),
    (AddrFlag::Mngtmpaddr, 0x100),
    (AddrFlag::Noprefixroute, 0x200),
    (AddrFlag::Autojoin, 0x400),
];

/// IFA_F_* bits of a set of model flags.
pub(crate) fn flag_bits(flags: impl IntoIterator<Item = AddrFlag>) -> u32 {
    flags
        .into_iter()
        .filter_map(|f| FLAGS.iter().find(|(m, _)| *m == f).map(|(_, b)| *b))
        .fold(0, |acc, b| acc | b)
}

fn model_flags(bits: u32) -> BTreeSet<AddrFlag> {
    FLAGS
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(f, _)| *f)
        .collect()
}

pub(crate) fn scope_to_u8(scope: AddrScope) -> u8 {
    match scope {
        AddrScope::Global => 0,
        AddrScope::Site => 200,
        AddrScope::Link => 253,
        AddrScope::Host => 254,
        AddrScope::Other(n) => n,
    }
}

fn scope_from_u8(v: u8) -> AddrScope {
    match v {
        0 => AddrScope::Global,
        200 => AddrScope::Site,
        253 => AddrScope::Link,
        254 => AddrScope::Host,
        n => AddrScope::Other(n),
    }
}

fn lifetime(v: u32) -> Option<u32> {
    (v != FOREVER).then_some(v)
}

/// Converts one address; `Err(Stale)` when its device is missing from `names` (created
/// after the link dump: the caller dumps again).
///
/// The address is IFA_LOCAL when present (IPv4 always sends it; IFA_ADDRESS is then the
/// peer), else IFA_ADDRESS. Peers (`ip addr add A peer B`) are not in the model.
pub(crate) fn convert(
    msg: &AddressMessage,
    names: &HashMap<u32, IfName>,
) -> Result<Option<Address>, Stale> {
    let dev = names
        .get(&msg.header.index)
        .ok_or(Stale(msg.header.index))?
        .clone();
    let mut local = None;
    let mut address = None;
    let mut broadcast = None;
    let mut flags = u32::from(msg.header.flags.bits());
    let mut valid_lft = None;
    let mut preferred_lft = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Broadcast(b) => broadcast = Some(IpAddr::V4(*b)),
            // IFA_FLAGS supersedes the 8-bit header field when present.
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::CacheInfo(c) => {
                valid_lft = lifetime(c.ifa_valid);
                preferred_lft = lifetime(c.ifa_preferred);
            }
            _ => {}
        }
    }
    let Some(ip) = local.or(address) else {
        return Ok(None);
    };
    let mut model = model_flags(flags);
    if ip.is_ipv6() && flags & IFA_F_SECONDARY != 0 {
        model.insert(AddrFlag::Temporary);
    }
    Ok(Some(Address {
        dev,
        ip,
        prefix_len: msg.header.prefix_len,
        scope: scope_from_u8(u8::from(msg.header.scope)),
        secondary: ip.is_ipv4() && flags & IFA_F_SECONDARY != 0,
        broadcast,
        flags: model,
        valid_lft,
        preferred_lft,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        let all: BTreeSet<AddrFlag> = FLAGS.iter().map(|(f, _)| *f).collect();
        assert_eq!(model_flags(flag_bits(all.iter().copied())), all);
        // secondary/temporary, permanent and stable-privacy are not model flags.
        assert!(model_flags(0x01 | 0x80 | 0x800).is_empty());
    }

    #[test]
    fn scopes_round_trip() {
        for s in [0u8, 200, 253, 254, 17] {
            assert_eq!(scope_to_u8(scope_from_u8(s)), s);
        }
    }
}
