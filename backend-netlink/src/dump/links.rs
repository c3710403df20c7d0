//! RTM_NEWLINK messages → [`Link`] (`ip -d link show`), completed with the sysfs facts
//! rtnetlink does not carry.

use std::collections::HashMap;

use env_qemu_core::model::{BridgeInfo, IfName, Link, LinkKind, MacAddr, TapInfo};
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo,
    LinkLayerType, LinkMessage,
};

use super::tun::{self, TunData};
use crate::sysfs::Sysfs;

/// What the link message says about the kind, before sysfs fills the gaps.
#[derive(Debug, Clone)]
pub(crate) enum KindHint {
    Loopback,
    /// No IFLA_INFO_KIND: a physical NIC, Ethernet or wireless.
    Physical,
    Veth,
    Vlan,
    Macvlan,
    Bridge {
        stp: bool,
        forward_delay: u32,
    },
    /// A tun/tap; `None` when the kernel (< 4.15) sent no IFLA_INFO_DATA for it.
    Tun(Option<TunData>),
    Other(String),
}

/// One link as rtnetlink reports it, the master still as an index.
#[derive(Debug, Clone)]
pub(crate) struct RawLink {
    pub(crate) index: u32,
    pub(crate) name: IfName,
    kind: KindHint,
    mac: MacAddr,
    mtu: u32,
    up: bool,
    carrier: bool,
    pub(crate) master: Option<u32>,
}

/// Parses one link message; `None` if it has no usable name.
pub(crate) fn parse(msg: &LinkMessage) -> Option<RawLink> {
    let mut name = None;
    let mut mac = MacAddr::ZERO;
    let mut mtu = 0;
    let mut master = None;
    let mut kind = None;
    let mut data = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = IfName::new(n.clone()).ok(),
            LinkAttribute::Address(a) if a.len() == 6 => {
                mac = MacAddr(a.as_slice().try_into().ok()?);
            }
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Controller(m) if *m != 0 => master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => kind = Some(k.clone()),
                        LinkInfo::Data(d) => data = Some(d.clone()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let flags = msg.header.flags;
    let kind = match kind {
        _ if msg.header.link_layer_type == LinkLayerType::Loopback => KindHint::Loopback,
        None => KindHint::Physical,
        Some(InfoKind::Veth) => KindHint::Veth,
        Some(InfoKind::Vlan) => KindHint::Vlan,
        Some(InfoKind::MacVlan) => KindHint::Macvlan,
        Some(InfoKind::Bridge) => bridge(data.as_ref()),
        Some(InfoKind::Tun) => KindHint::Tun(tun::from_info_data(data.as_ref())),
        Some(other) => KindHint::Other(other.to_string()),
    };
    Some(RawLink {
        index: msg.header.index,
        name: name?,
        kind,
        mac,
        mtu,
        up: flags.contains(LinkFlags::Up),
        carrier: flags.contains(LinkFlags::LowerUp),
        master,
    })
}

/// IFLA_BR_STP_STATE (0 off, 1 kernel STP, 2 user-space STP) and IFLA_BR_FORWARD_DELAY,
/// which the kernel reports in clock_t, i.e. centiseconds, like `ip -d link`.
fn bridge(data: Option<&InfoData>) -> KindHint {
    let (mut stp, mut forward_delay) = (false, 0);
    if let Some(InfoData::Bridge(infos)) = data {
        for info in infos {
            match info {
                InfoBridge::StpState(s) => stp = *s != BridgeStpState::Disabled,
                InfoBridge::ForwardDelay(d) => forward_delay = *d,
                _ => {}
            }
        }
    }
    KindHint::Bridge { stp, forward_delay }
}

/// Facts read from sysfs inside the namespace, per link name.
#[derive(Debug, Clone, Default)]
pub(crate) struct SysfsFacts {
    /// `addr_assign_type` == 3 (NET_ADDR_SET): the MAC was set explicitly.
    mac_fixed: bool,
    wireless: bool,
    tun: Option<TunData>,
}

/// Reads, on the namespace worker, what the messages could not say.
pub(crate) fn sysfs_facts(sysfs: &Sysfs, links: &[RawLink]) -> HashMap<IfName, SysfsFacts> {
    let mut facts = HashMap::new();
    for link in links {
        let dev = link.name.as_str();
        let f = match link.kind {
            KindHint::Bridge { .. } => SysfsFacts {
                mac_fixed: sysfs.read(dev, "addr_assign_type").as_deref() == Some("3"),
                ..SysfsFacts::default()
            },
            KindHint::Physical => SysfsFacts {
                wireless: sysfs.exists(dev, "wireless") || sysfs.exists(dev, "phy80211"),
                ..SysfsFacts::default()
            },
            KindHint::Tun(None) => SysfsFacts {
                tun: Some(tun::from_sysfs(sysfs, dev)),
                ..SysfsFacts::default()
            },
            _ => continue,
        };
        facts.insert(link.name.clone(), f);
    }
    facts
}

/// The model link, with the master's index resolved through `names`.
pub(crate) fn finish(
    raw: RawLink,
    facts: Option<&SysfsFacts>,
    names: &HashMap<u32, IfName>,
) -> Link {
    let facts = facts.cloned().unwrap_or_default();
    let kind = match raw.kind {
        KindHint::Loopback => LinkKind::Loopback,
        KindHint::Physical if facts.wireless => LinkKind::Wireless,
        KindHint::Physical => LinkKind::Ethernet,
        KindHint::Veth => LinkKind::Veth,
        KindHint::Vlan => LinkKind::Vlan,
        KindHint::Macvlan => LinkKind::Macvlan,
        KindHint::Bridge { stp, forward_delay } => LinkKind::Bridge(BridgeInfo {
            stp,
            forward_delay,
            mac_fixed: facts.mac_fixed,
        }),
        KindHint::Tun(data) => match data.or(facts.tun).unwrap_or_default() {
            t if t.tap => LinkKind::Tap(TapInfo {
                owner: t.owner,
                group: t.group,
                persist: t.persist,
            }),
            _ => LinkKind::Tun,
        },
        KindHint::Other(s) => LinkKind::Other(s),
    };
    Link {
        index: raw.index,
        name: raw.name,
        kind,
        mac: raw.mac,
        mtu: raw.mtu,
        up: raw.up,
        carrier: raw.carrier,
        master: raw.master.and_then(|m| names.get(&m).cloned()),
    }
}
