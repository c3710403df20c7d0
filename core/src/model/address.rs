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
    Nodad,
    Noprefixroute,
    Mngtmpaddr,
    Home,
    Optimistic,
    Autojoin,
    Tentative,
    Dadfailed,
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
    Global,
    Site,
    Link,
    Host,
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
    pub dev: IfName,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub scope: AddrScope,
    /// IPv4 only, set by the kernel: another address of the same subnet came first.
    pub secondary: bool,
    /// IPv4 broadcast (`brd`); `None` when the address was added without one.
    pub broadcast: Option<IpAddr>,
    pub flags: BTreeSet<AddrFlag>,
    pub valid_lft: Option<u32>,
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

    pub fn family(&self) -> Family {
        Family::of(&self.ip)
    }

    pub fn prefix(&self) -> Prefix {
        Prefix::new(self.ip, self.prefix_len).expect("address prefix length validated")
    }

    /// `192.0.2.1/24`, as `ip addr` prints it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix_len)
    }

    pub fn has(&self, f: AddrFlag) -> bool {
        self.flags.contains(&f)
    }

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
