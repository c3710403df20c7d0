//! Routes as the kernel reports them (`ip route show table all`, minus the local table).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Family, IfName, Prefix};

pub const TABLE_MAIN: u32 = 254;
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_DEFAULT: u32 = 253;

/// `proto` of a route. A restore must copy it: `ip route add` uses `boot`, rtnetlink's
/// builder defaults to `static`, the kernel's own prefix routes are `kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteProtocol {
    Unspec,
    Redirect,
    Kernel,
    Boot,
    Static,
    Ra,
    Dhcp,
    Other(u8),
}

impl RouteProtocol {
    pub fn from_u8(v: u8) -> RouteProtocol {
        match v {
            0 => RouteProtocol::Unspec,
            1 => RouteProtocol::Redirect,
            2 => RouteProtocol::Kernel,
            3 => RouteProtocol::Boot,
            4 => RouteProtocol::Static,
            9 => RouteProtocol::Ra,
            16 => RouteProtocol::Dhcp,
            n => RouteProtocol::Other(n),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            RouteProtocol::Unspec => 0,
            RouteProtocol::Redirect => 1,
            RouteProtocol::Kernel => 2,
            RouteProtocol::Boot => 3,
            RouteProtocol::Static => 4,
            RouteProtocol::Ra => 9,
            RouteProtocol::Dhcp => 16,
            RouteProtocol::Other(n) => n,
        }
    }

    fn ip_word(self) -> String {
        match self {
            RouteProtocol::Unspec => "unspec".into(),
            RouteProtocol::Redirect => "redirect".into(),
            RouteProtocol::Kernel => "kernel".into(),
            RouteProtocol::Boot => "boot".into(),
            RouteProtocol::Static => "static".into(),
            RouteProtocol::Ra => "ra".into(),
            RouteProtocol::Dhcp => "dhcp".into(),
            RouteProtocol::Other(n) => n.to_string(),
        }
    }
}

/// `scope` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteScope {
    Universe,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl RouteScope {
    pub fn from_u8(v: u8) -> RouteScope {
        match v {
            0 => RouteScope::Universe,
            200 => RouteScope::Site,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            255 => RouteScope::Nowhere,
            n => RouteScope::Other(n),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            RouteScope::Universe => 0,
            RouteScope::Site => 200,
            RouteScope::Link => 253,
            RouteScope::Host => 254,
            RouteScope::Nowhere => 255,
            RouteScope::Other(n) => n,
        }
    }

    fn ip_word(self) -> String {
        match self {
            RouteScope::Universe => "global".into(),
            RouteScope::Site => "site".into(),
            RouteScope::Link => "link".into(),
            RouteScope::Host => "host".into(),
            RouteScope::Nowhere => "nowhere".into(),
            RouteScope::Other(n) => n.to_string(),
        }
    }
}

/// Route type (`unicast`, `blackhole`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Other(u8),
}

impl RouteType {
    pub fn from_u8(v: u8) -> RouteType {
        match v {
            1 => RouteType::Unicast,
            2 => RouteType::Local,
            3 => RouteType::Broadcast,
            4 => RouteType::Anycast,
            5 => RouteType::Multicast,
            6 => RouteType::Blackhole,
            7 => RouteType::Unreachable,
            8 => RouteType::Prohibit,
            9 => RouteType::Throw,
            n => RouteType::Other(n),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            RouteType::Unicast => 1,
            RouteType::Local => 2,
            RouteType::Broadcast => 3,
            RouteType::Anycast => 4,
            RouteType::Multicast => 5,
            RouteType::Blackhole => 6,
            RouteType::Unreachable => 7,
            RouteType::Prohibit => 8,
            RouteType::Throw => 9,
            RouteType::Other(n) => n,
        }
    }

    fn ip_word(self) -> Option<String> {
        Some(match self {
            RouteType::Unicast => return None,
            RouteType::Local => "local".into(),
            RouteType::Broadcast => "broadcast".into(),
            RouteType::Anycast => "anycast".into(),
            RouteType::Multicast => "multicast".into(),
            RouteType::Blackhole => "blackhole".into(),
            RouteType::Unreachable => "unreachable".into(),
            RouteType::Prohibit => "prohibit".into(),
            RouteType::Throw => "throw".into(),
            RouteType::Other(n) => n.to_string(),
        })
    }
}

/// One route. Everything a restore must reproduce is here; the kernel's state flags
/// (`linkdown`) are not, they follow from the device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub table: u32,
    pub dst: Prefix,
    #[serde(rename = "type")]
    pub kind: RouteType,
    pub gateway: Option<IpAddr>,
    pub dev: Option<IfName>,
    /// `metric`/`priority`. The kernel turns IPv6's 0 into 1024.
    pub metric: u32,
    pub protocol: RouteProtocol,
    pub scope: RouteScope,
    pub prefsrc: Option<IpAddr>,
    pub onlink: bool,
    pub tos: u8,
}

impl Route {
    /// A route as `ip route add DST [via GW] [dev DEV]` makes it: table main, unicast,
    /// proto boot, scope link when there is no gateway (IPv4), metric 0 (IPv4) or 1024
    /// (IPv6).
    pub fn new(dst: Prefix, gateway: Option<IpAddr>, dev: Option<IfName>) -> Route {
        let v6 = dst.family() == Family::Inet6;
        Route {
            table: TABLE_MAIN,
            dst,
            kind: RouteType::Unicast,
            gateway,
            scope: if gateway.is_none() && !v6 {
                RouteScope::Link
            } else {
                RouteScope::Universe
            },
            dev,
            metric: if v6 { 1024 } else { 0 },
            protocol: RouteProtocol::Boot,
            prefsrc: None,
            onlink: false,
            tos: 0,
        }
    }

    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = metric;
        self
    }

    pub fn proto(mut self, protocol: RouteProtocol) -> Route {
        self.protocol = protocol;
        self
    }

    pub fn src(mut self, prefsrc: IpAddr) -> Route {
        self.prefsrc = Some(prefsrc);
        self
    }

    pub fn family(&self) -> Family {
        self.dst.family()
    }

    /// What the kernel compares to decide that a new route already exists (EEXIST) or which
    /// one `replace` swaps: (table, destination, tos, metric). IPv6 has no tos.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst,
            tos: self.tos,
            metric: self.metric,
        }
    }

    pub fn via(&self, dev: &IfName) -> bool {
        self.dev.as_ref() == Some(dev)
    }

    /// The same route through another device (what `start` moves onto the bridge).
    pub fn on(&self, dev: &IfName) -> Route {
        Route {
            dev: Some(dev.clone()),
            ..self.clone()
        }
    }

    /// The arguments of `ip route add|replace|del` that reproduce this route exactly.
    pub fn ip_args(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.kind.ip_word() {
            s.push_str(&t);
            s.push(' ');
        }
        s.push_str(&self.dst.to_string());
        if self.tos != 0 {
            s.push_str(&format!(" tos 0x{:02x}", self.tos));
        }
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(dev) = &self.dev {
            s.push_str(&format!(" dev {dev}"));
        }
        if self.table != TABLE_MAIN {
            s.push_str(&format!(" table {}", self.table));
        }
        s.push_str(&format!(" proto {}", self.protocol.ip_word()));
        s.push_str(&format!(" scope {}", self.scope.ip_word()));
        if let Some(src) = self.prefsrc {
            s.push_str(&format!(" src {src}"));
        }
        s.push_str(&format!(" metric {}", self.metric));
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }
}

impl fmt::Display for Route {
    /// `route default via 192.0.2.1 dev eth0 table 100`: how errors name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

/// See [`Route::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteKey {
    pub table: u32,
    pub dst: Prefix,
    pub tos: u8,
    pub metric: u32,
}
