//! tun/tap attributes: IFLA_INFO_DATA of kind `tun` (`ip -d link show` prints them as
//! `tun type tap pi off vnet_hdr on persist on user U group G`), or sysfs before 4.15.

use rtnetlink::packet_core::Nla;
use rtnetlink::packet_route::link::{InfoData, InfoTun};

use crate::sysfs::Sysfs;

/// IFLA_INFO_DATA of a tun device (IFLA_TUN_*).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TunData {
    pub(crate) tap: bool,
    pub(crate) owner: Option<u32>,
    pub(crate) group: Option<u32>,
    pub(crate) persist: bool,
}

const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PERSIST: u16 = 6;
const IFF_TAP: u32 = 0x0002;
const IFF_PERSIST: u32 = 0x0800;

/// IFLA_TUN_* (Linux 4.15+); netlink-packet-route 0.34 leaves them as raw attributes.
/// OWNER and GROUP are only present when set.
pub(crate) fn from_info_data(data: Option<&InfoData>) -> Option<TunData> {
    let Some(InfoData::Tun(attrs)) = data else {
        return None;
    };
    let mut t = TunData::default();
    let mut saw_type = false;
    for attr in attrs {
        let InfoTun::Other(nla) = attr else {
            continue;
        };
        let mut value = vec![0u8; nla.value_len()];
        nla.emit_value(&mut value);
        let u32_value = value
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes);
        match nla.kind() {
            IFLA_TUN_OWNER => t.owner = u32_value,
            IFLA_TUN_GROUP => t.group = u32_value,
            IFLA_TUN_TYPE => {
                saw_type = true;
                t.tap = value.first().is_some_and(|v| u32::from(*v) & IFF_TAP != 0);
            }
            IFLA_TUN_PERSIST => t.persist = value.first().is_some_and(|v| *v != 0),
            _ => {}
        }
    }
    saw_type.then_some(t)
}

/// `tun_flags` (hex: IFF_TAP, IFF_PERSIST…; a persistent tap reads 0x1802), `owner` and
/// `group` (-1 when unset) under /sys/class/net/DEV.
pub(crate) fn from_sysfs(sysfs: &Sysfs, dev: &str) -> TunData {
    let id = |attr| {
        sysfs
            .read(dev, attr)
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|v| u32::try_from(v).ok())
    };
    let flags = sysfs
        .read(dev, "tun_flags")
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or(IFF_TAP);
    TunData {
        tap: flags & IFF_TAP != 0,
        owner: id("owner"),
        group: id("group"),
        persist: flags & IFF_PERSIST != 0,
    }
}
