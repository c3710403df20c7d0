//! Interface addresses as the kernel reports them (`ip addr show`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Family, IfName, Prefix};

/// Address flags. The first group is set by whoever adds the address and must be restored;
/// the second is state the kernel sets (DAD progress, expiry) and is never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrFlag {
    /// `nodad` (IFA_F_NODAD): IPv6 only, no duplicate address detection; usable at once.
    Nodad,
    /// `noprefixroute` (IFA_F_NOPREFIXROUTE): the kernel adds no prefix route for the address (DHCP
    /// clients and NetworkManager add their own).
    Noprefixroute,
    /// `mngtmpaddr` (IFA_F_MANAGETEMPADDR): IPv6 only, the kernel makes temporary (privacy)
    /// addresses from it.
    Mngtmpaddr,
    /// `home` (IFA_F_HOMEADDRESS): a Mobile IPv6 home address.
    Home,
    /// `optimistic` (IFA_F_OPTIMISTIC): IPv6 optimistic DAD (RFC 4429), usable while DAD runs.
    Optimistic,
    /// `autojoin` (IFA_F_MCAUTOJOIN): the kernel joins the multicast group of a multicast address.
    Autojoin,
    /// `tentative` (IFA_F_TENTATIVE, kernel state): DAD is still running; the address cannot be
    /// used yet.
    Tentative,
    /// `dadfailed` (IFA_F_DADFAILED, kernel state): DAD found a duplicate; the address stays
    /// unusable.
    Dadfailed,
    /// `deprecated` (IFA_F_DEPRECATED, kernel state): the preferred lifetime is over; still valid,
    /// not chosen as source for new connections.
    Deprecated,
    /// IPv6 only: a temporary (privacy, RFC 8981) address the kernel's SLAAC made from a
    /// `mngtmpaddr` address of the same prefix (IFA_F_TEMPORARY, the bit IPv4 calls
    /// secondary). User space cannot make one: the kernel drops the bit from a request.
    /// Deleting the `mngtmpaddr` address deletes its temporary ones.
    Temporary,
}

impl AddrFlag {
    /// Flags an `ip addr add` can set; the rest are kernel state.
    pub fn is_configurable(self) -> bool {
        matches!(
            self,
            AddrFlag::Nodad
                | AddrFlag::Noprefixroute
                | AddrFlag::Mngtmpaddr
                | AddrFlag::Home
                | AddrFlag::Optimistic
                | AddrFlag::Autojoin
        )
    }

    /// The word `ip address` prints for the flag.
    pub fn ip_word(self) -> &'static str {
        match self {
            AddrFlag::Nodad => "nodad",
            AddrFlag::Noprefixroute => "noprefixroute",
            AddrFlag::Mngtmpaddr => "mngtmpaddr",
            AddrFlag::Home => "home",
            AddrFlag::Optimistic => "optimistic",
            AddrFlag::Autojoin => "autojoin",
            AddrFlag::Tentative => "tentative",
            AddrFlag::Dadfailed => "dadfailed",
            AddrFlag::Deprecated => "deprecated",
            AddrFlag::Temporary => "temporary",
        }
    }
}

/// Address scope (`scope global|link|host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrScope {
    /// `scope global` (RT_SCOPE_UNIVERSE): valid everywhere.
    Global,
    /// `scope site` (RT_SCOPE_SITE): IPv6 site-local, deprecated.
    Site,
    /// `scope link` (RT_SCOPE_LINK): valid on its link only (IPv6 `fe80::/10`).
    Link,
    /// `scope host` (RT_SCOPE_HOST): valid inside this host only (loopback).
    Host,
    /// Any other scope number, kept as is.
    Other(u8),
}

impl AddrScope {
    /// The scope the kernel gives an IPv6 address, and `ip` gives an IPv4 one, by default.
    pub fn default_for(ip: &IpAddr) -> AddrScope {
        match ip {
            IpAddr::V4(a) if a.is_loopback() => AddrScope::Host,
            IpAddr::V4(_) => AddrScope::Global,
            IpAddr::V6(a) if a.is_loopback() => AddrScope::Host,
            IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => AddrScope::Link,
            IpAddr::V6(_) => AddrScope::Global,
        }
    }

    /// The word `ip address` prints after `scope`.
    pub fn ip_word(self) -> String {
        match self {
            AddrScope::Global => "global".into(),
            AddrScope::Site => "site".into(),
            AddrScope::Link => "link".into(),
            AddrScope::Host => "host".into(),
            AddrScope::Other(n) => n.to_string(),
        }
    }
}

/// One address on one interface. `valid_lft`/`preferred_lft` are the remaining lifetimes in
/// seconds (`None` = forever): re-adding with them reproduces a "dynamic" address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The interface the address is on.
    pub dev: IfName,
    /// The address itself (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).
    pub ip: IpAddr,
    /// Prefix length (`/24`): with the address, the subnet of its prefix route.
    pub prefix_len: u8,
    /// `scope`, sent as given on add.
    pub scope: AddrScope,
    /// IPv4 only, set by the kernel: another address of the same subnet came first.
    pub secondary: bool,
    /// IPv4 broadcast (`brd`); `None` when the address was added without one.
    pub broadcast: Option<IpAddr>,
    /// `nodad`, `noprefixroute`… set by whoever added it, and the kernel's state flags.
    pub flags: BTreeSet<AddrFlag>,
    /// Remaining valid lifetime in seconds (`valid_lft`); `None`: forever. At 0 the kernel deletes
    /// the address.
    pub valid_lft: Option<u32>,
    /// Remaining preferred lifetime in seconds (`preferred_lft`); `None`: forever. At 0 the address
    /// is `deprecated`.
    pub preferred_lft: Option<u32>,
}

impl Address {
    /// A permanent address with the default scope and no flags.
    pub fn new(dev: IfName, ip: IpAddr, prefix_len: u8) -> Address {
        Address {
            dev,
            scope: AddrScope::default_for(&ip),
            ip,
            prefix_len,
            secondary: false,
            broadcast: None,
            flags: BTreeSet::new(),
            valid_lft: None,
            preferred_lft: None,
        }
    }

    /// IPv4 or IPv6.
    pub fn family(&self) -> Family {
        Family::of(&self.ip)
    }

    /// The subnet: the address masked to its prefix length (`192.0.2.0/24`).
    pub fn prefix(&self) -> Prefix {
        Prefix::new(self.ip, self.prefix_len).expect("address prefix length validated")
    }

    /// `192.0.2.1/24`, as `ip addr` prints it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix_len)
    }

    /// Whether the address has flag `f`.
    pub fn has(&self, f: AddrFlag) -> bool {
        self.flags.contains(&f)
    }

    /// Whether it is an IPv6 link-local address (`fe80::/10`).
    pub fn is_link_local(&self) -> bool {
        matches!(self.ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
    }

    /// The same address moved to another device (what `start` puts on the bridge).
    pub fn on(&self, dev: &IfName) -> Address {
        Address {
            dev: dev.clone(),
            ..self.clone()
        }
    }

    /// The flags an `ip address add` sets (restored on a move), without the kernel's state flags.
    pub fn configurable_flags(&self) -> impl Iterator<Item = AddrFlag> + '_ {
        self.flags.iter().copied().filter(|f| f.is_configurable())
    }
}

impl fmt::Display for Address {
    /// `address 192.0.2.1/24 on eth0`: how errors name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "address {} on {}", self.cidr(), self.dev)
    }
}
