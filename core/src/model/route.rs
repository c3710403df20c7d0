//! Routes as the kernel reports them (`ip route show table all`, minus the local table).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Family, IfName, Prefix};

/// Routing table `main` (RT_TABLE_MAIN): where `ip route add` puts a route without `table`.
pub const TABLE_MAIN: u32 = 254;
/// Routing table `local` (RT_TABLE_LOCAL): the kernel's routes to the host's own addresses and
/// broadcasts, made and removed with the addresses. Never dumped or restored by env-qemu.
pub const TABLE_LOCAL: u32 = 255;
/// Routing table `default` (RT_TABLE_DEFAULT), consulted after `main` by the default rules.
pub const TABLE_DEFAULT: u32 = 253;

/// `proto` of a route. A restore must copy it: `ip route add` uses `boot`, rtnetlink's
/// builder defaults to `static`, the kernel's own prefix routes are `kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteProtocol {
    /// `proto unspec` (RTPROT_UNSPEC, 0).
    Unspec,
    /// `proto redirect` (RTPROT_REDIRECT, 1): installed by an ICMP redirect.
    Redirect,
    /// `proto kernel` (RTPROT_KERNEL, 2): the kernel's own prefix route of an address, made and
    /// removed with it.
    Kernel,
    /// `proto boot` (RTPROT_BOOT, 3): what `ip route add` sets when none is given.
    Boot,
    /// `proto static` (RTPROT_STATIC, 4): an administrator's route.
    Static,
    /// `proto ra` (RTPROT_RA, 9): learnt from an IPv6 router advertisement.
    Ra,
    /// `proto dhcp` (RTPROT_DHCP, 16): installed by a DHCP client.
    Dhcp,
    /// Any other protocol number (routing daemons, `/etc/iproute2/rt_protos`), kept as is.
    Other(u8),
}

impl RouteProtocol {
    /// The protocol of an `rtm_protocol` byte.
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

    /// The `rtm_protocol` byte sent to the kernel.
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
    /// `scope global` (RT_SCOPE_UNIVERSE, 0): a route through a gateway, or any IPv6 route.
    Universe,
    /// `scope site` (RT_SCOPE_SITE, 200).
    Site,
    /// `scope link` (RT_SCOPE_LINK, 253): a destination directly on the link, such as an IPv4
    /// prefix route.
    Link,
    /// `scope host` (RT_SCOPE_HOST, 254): a destination on this host (the `local` table).
    Host,
    /// `scope nowhere` (RT_SCOPE_NOWHERE, 255): no destination.
    Nowhere,
    /// Any other scope number, kept as is.
    Other(u8),
}

impl RouteScope {
    /// The scope of an `rtm_scope` byte.
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

    /// The `rtm_scope` byte sent to the kernel.
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
    /// RTN_UNICAST: a gateway or a direct route (`ip route` omits the word).
    Unicast,
    /// RTN_LOCAL: a destination that is this host (`local` table).
    Local,
    /// RTN_BROADCAST: a broadcast address, sent as link broadcast.
    Broadcast,
    /// RTN_ANYCAST: an IPv6 anycast address of this host.
    Anycast,
    /// RTN_MULTICAST: a multicast route.
    Multicast,
    /// RTN_BLACKHOLE: packets silently dropped.
    Blackhole,
    /// RTN_UNREACHABLE: packets dropped with ICMP "host unreachable".
    Unreachable,
    /// RTN_PROHIBIT: packets dropped with ICMP "administratively prohibited".
    Prohibit,
    /// RTN_THROW: the lookup goes on in the next rule's table.
    Throw,
    /// Any other type number, kept as is.
    Other(u8),
}

impl RouteType {
    /// The type of an `rtm_type` byte.
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

    /// The `rtm_type` byte sent to the kernel.
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

/// IPv6 router preference (RTA_PREF, RFC 4191): what an RA gave its default and
/// more-specific routes. The kernel stores medium for anything but low and high, and
/// reports it for every IPv6 route; IPv4 accepts and ignores it, so an IPv4 route is
/// always medium.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RoutePref {
    /// `pref low` (ICMPV6_ROUTER_PREF_LOW, 3).
    Low,
    /// `pref medium` (ICMPV6_ROUTER_PREF_MEDIUM, 0): the default, and every IPv4 route.
    #[default]
    Medium,
    /// `pref high` (ICMPV6_ROUTER_PREF_HIGH, 1).
    High,
}

impl RoutePref {
    /// ICMPV6_ROUTER_PREF_*: low 3, medium 0, high 1; the kernel makes anything else
    /// (the reserved 2 included) medium.
    pub fn from_u8(v: u8) -> RoutePref {
        match v {
            3 => RoutePref::Low,
            1 => RoutePref::High,
            _ => RoutePref::Medium,
        }
    }

    /// The RTA_PREF byte sent to the kernel (see [`RoutePref::from_u8`]).
    pub fn to_u8(self) -> u8 {
        match self {
            RoutePref::Low => 3,
            RoutePref::Medium => 0,
            RoutePref::High => 1,
        }
    }

    /// The word `ip route` prints and accepts after `pref`: `low`, `medium` or `high`.
    pub fn ip_word(self) -> &'static str {
        match self {
            RoutePref::Low => "low",
            RoutePref::Medium => "medium",
            RoutePref::High => "high",
        }
    }
}

/// RTAX_* numbers of RTA_METRICS (linux/rtnetlink.h).
pub mod rtax {
    /// RTAX_LOCK: bitmask of the metrics locked against path MTU discovery and the like (`mtu
    /// lock`).
    pub const LOCK: u16 = 1;
    /// RTAX_MTU: the path MTU (`mtu`).
    pub const MTU: u16 = 2;
    /// RTAX_WINDOW: the TCP window clamp (`window`).
    pub const WINDOW: u16 = 3;
    /// RTAX_RTT: the initial TCP round-trip time estimate (`rtt`).
    pub const RTT: u16 = 4;
    /// RTAX_RTTVAR: the initial TCP round-trip time variance (`rttvar`).
    pub const RTTVAR: u16 = 5;
    /// RTAX_SSTHRESH: the initial TCP slow-start threshold (`ssthresh`).
    pub const SSTHRESH: u16 = 6;
    /// RTAX_CWND: the TCP congestion window clamp (`cwnd`).
    pub const CWND: u16 = 7;
    /// RTAX_ADVMSS: the TCP MSS advertised to the peer (`advmss`).
    pub const ADVMSS: u16 = 8;
    /// RTAX_REORDERING: the initial TCP reordering metric (`reordering`).
    pub const REORDERING: u16 = 9;
    /// RTAX_HOPLIMIT: the hop limit (TTL) of packets sent along the route (`hoplimit`).
    pub const HOPLIMIT: u16 = 10;
    /// RTAX_INITCWND: the initial TCP congestion window (`initcwnd`).
    pub const INITCWND: u16 = 11;
    /// RTAX_FEATURES: TCP feature bits such as ECN (`features ecn`).
    pub const FEATURES: u16 = 12;
    /// RTAX_RTO_MIN: the minimum TCP retransmission timeout (`rto_min`).
    pub const RTO_MIN: u16 = 13;
    /// RTAX_INITRWND: the initial TCP receive window (`initrwnd`).
    pub const INITRWND: u16 = 14;
    /// RTAX_QUICKACK: TCP quick acknowledgements on or off (`quickack`).
    pub const QUICKACK: u16 = 15;
    /// RTAX_CC_ALGO: the TCP congestion control algorithm, a name (`congctl`); kept in
    /// [`super::RouteMetrics::congctl`].
    pub const CC_ALGO: u16 = 16;
    /// RTAX_FASTOPEN_NO_COOKIE: TCP Fast Open without a cookie (`fastopen_no_cookie`).
    pub const FASTOPEN_NO_COOKIE: u16 = 17;
    /// RTAX_FEATURE_ECN, the one feature bit `ip route` can set (`features ecn`).
    pub const FEATURE_ECN: u32 = 1;
}

/// A route's metrics (RTA_METRICS) as the kernel stores them: every value non-zero
/// (the kernel neither keeps nor reports a 0). `hoplimit`, `mtu` and `advmss` are what
/// RAs and DHCP set; every other numeric RTAX_* is in `other` by number, RTAX_LOCK
/// (the bitmask of locked metrics, `ip route … mtu lock 1400`) included; the congestion
/// control algorithm (RTAX_CC_ALGO) is a name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteMetrics {
    /// The hop limit of packets along the route (`hoplimit`): an RA's Cur Hop Limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hoplimit: Option<u32>,
    /// The path MTU (`mtu`): an RA's or a DHCP server's MTU option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The TCP MSS advertised along the route (`advmss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Never holds the numbers of the named fields above or RTAX_CC_ALGO.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<u16, u32>,
    /// The congestion control algorithm (`congctl NAME`), RTAX_CC_ALGO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub congctl: Option<String>,
}

impl RouteMetrics {
    /// Whether no metric is set (a route without RTA_METRICS).
    pub fn is_empty(&self) -> bool {
        *self == RouteMetrics::default()
    }

    /// The numeric metric `rtax` (not RTAX_CC_ALGO).
    pub fn get(&self, rtax: u16) -> Option<u32> {
        match rtax {
            rtax::HOPLIMIT => self.hoplimit,
            rtax::MTU => self.mtu,
            rtax::ADVMSS => self.advmss,
            n => self.other.get(&n).copied(),
        }
    }

    /// Sets the numeric metric `rtax`; 0 removes it, as the kernel does not keep it.
    pub fn set(&mut self, rtax: u16, value: u32) {
        let v = (value != 0).then_some(value);
        match rtax {
            rtax::HOPLIMIT => self.hoplimit = v,
            rtax::MTU => self.mtu = v,
            rtax::ADVMSS => self.advmss = v,
            n => match v {
                Some(v) => {
                    self.other.insert(n, v);
                }
                None => {
                    self.other.remove(&n);
                }
            },
        }
    }

    /// Every numeric metric, by RTAX number.
    pub fn numeric(&self) -> Vec<(u16, u32)> {
        let mut all: Vec<(u16, u32)> = self.other.iter().map(|(k, v)| (*k, *v)).collect();
        for (k, v) in [
            (rtax::HOPLIMIT, self.hoplimit),
            (rtax::MTU, self.mtu),
            (rtax::ADVMSS, self.advmss),
        ] {
            if let Some(v) = v {
                all.push((k, v));
            }
        }
        all.sort_unstable();
        all
    }

    /// Whether metric `rtax` is locked (`ip route … mtu lock 1400`).
    pub fn locked(&self, rtax: u16) -> bool {
        rtax < 32 && self.get(rtax::LOCK).unwrap_or(0) & (1 << rtax) != 0
    }

    /// `mtu 1400 advmss 1360 hoplimit 64 …`, as `ip route` takes them: values are raw
    /// (`rtt 20` without a unit is the kernel's own value, not milliseconds), locked
    /// metrics say `lock`. What iproute2 cannot express (unknown RTAX numbers, feature
    /// bits other than ECN, an unlocked `rto_min`) is left out; the netlink backend sends
    /// it all the same.
    pub fn ip_args(&self) -> String {
        let mut out = Vec::new();
        for (k, v) in self.numeric() {
            let lock = if self.locked(k) { " lock" } else { "" };
            let word = match k {
                rtax::MTU => "mtu",
                rtax::WINDOW => "window",
                rtax::RTT => "rtt",
                rtax::RTTVAR => "rttvar",
                rtax::SSTHRESH => "ssthresh",
                rtax::CWND => "cwnd",
                rtax::ADVMSS => "advmss",
                rtax::REORDERING => "reordering",
                rtax::HOPLIMIT => "hoplimit",
                rtax::INITCWND => "initcwnd",
                rtax::INITRWND => "initrwnd",
                rtax::QUICKACK => "quickack",
                rtax::FASTOPEN_NO_COOKIE => "fastopen_no_cookie",
                // `rto_min` always locks, and takes no `lock` word.
                rtax::RTO_MIN => {
                    out.push(format!("rto_min {v}"));
                    continue;
                }
                rtax::FEATURES => {
                    if v & rtax::FEATURE_ECN != 0 {
                        out.push("features ecn".to_string());
                    }
                    continue;
                }
                _ => continue,
            };
            out.push(format!("{word}{lock} {v}"));
        }
        if let Some(cc) = &self.congctl {
            let lock = if self.locked(rtax::CC_ALGO) {
                " lock"
            } else {
                ""
            };
            out.push(format!("congctl{lock} {cc}"));
        }
        out.join(" ")
    }
}

/// One route. Everything a restore must reproduce is here; the kernel's state flags
/// (`linkdown`) are not, they follow from the device.
///
/// `pref`, `expires` and `metrics` came later: a state file without them loads with
/// their defaults (medium, never, none), which is what such routes had. None of them is
/// part of [`Route::key`].
///
/// Equality compares `expires` exactly, but it counts down: a route dumped twice is
/// only [`Route::same_ignoring_expiry`], like an address whose lifetimes go down.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Routing table number (`table`): [`TABLE_MAIN`] unless policy routing put it elsewhere.
    pub table: u32,
    /// Destination prefix (`default` is the /0 of the family).
    pub dst: Prefix,
    /// Route type (RTN_*): unicast for ordinary routes, blackhole, unreachable…
    #[serde(rename = "type")]
    pub kind: RouteType,
    /// Next hop (`via`); `None` for a route directly on the link.
    pub gateway: Option<IpAddr>,
    /// Output device (`dev`); `None` for a blackhole or similar route without one.
    pub dev: Option<IfName>,
    /// `metric`/`priority`. The kernel turns IPv6's 0 into 1024.
    pub metric: u32,
    /// Who installed the route (`proto`); copied on every move so daemons still recognise it.
    pub protocol: RouteProtocol,
    /// `scope`: link for a direct IPv4 route, global through a gateway.
    pub scope: RouteScope,
    /// Preferred source address (`src`, RTA_PREFSRC); must be an address of the host.
    pub prefsrc: Option<IpAddr>,
    /// `onlink`: the gateway is taken as on the link without checking that a route reaches it.
    pub onlink: bool,
    /// Type of service (`tos`), part of the route's key; 0 nearly everywhere.
    pub tos: u8,
    /// RTA_PREF. Always medium on IPv4 (the kernel ignores it there).
    #[serde(default)]
    pub pref: RoutePref,
    /// RTA_EXPIRES: the remaining seconds (`None` = never), like an address's
    /// `valid_lft`. IPv6 only: IPv4 accepts it and ignores it. `Some(0)`: expired, and
    /// still in the table until the kernel's garbage collection removes it.
    #[serde(default)]
    pub expires: Option<u32>,
    /// RTA_METRICS (`mtu`, `hoplimit`, `advmss`…); none on most routes.
    #[serde(default)]
    pub metrics: RouteMetrics,
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
            pref: RoutePref::Medium,
            expires: None,
            metrics: RouteMetrics::default(),
        }
    }

    /// The route in table `table` (`table N`).
    pub fn table(mut self, table: u32) -> Route {
        self.table = table;
        self
    }

    /// The route with metric `metric` (`metric N`).
    pub fn metric(mut self, metric: u32) -> Route {
        self.metric = metric;
        self
    }

    /// The route with protocol `protocol` (`proto P`).
    pub fn proto(mut self, protocol: RouteProtocol) -> Route {
        self.protocol = protocol;
        self
    }

    /// The route with preferred source `prefsrc` (`src IP`).
    pub fn src(mut self, prefsrc: IpAddr) -> Route {
        self.prefsrc = Some(prefsrc);
        self
    }

    /// The route with router preference `pref` (`pref P`).
    pub fn pref(mut self, pref: RoutePref) -> Route {
        self.pref = pref;
        self
    }

    /// The route expiring in `seconds` (`expires N`; honoured for IPv6 only).
    pub fn expires(mut self, seconds: u32) -> Route {
        self.expires = Some(seconds);
        self
    }

    /// The route with metrics `metrics`.
    pub fn metrics(mut self, metrics: RouteMetrics) -> Route {
        self.metrics = metrics;
        self
    }

    /// The destination's address family.
    pub fn family(&self) -> Family {
        self.dst.family()
    }

    /// The route with a finite expiry set to 0: what stays the same while it counts
    /// down (never stays never). The normaliser for comparing a route read later with
    /// one read or sent earlier; bound the count-down with [`Route::expiry_within`].
    pub fn expiry_normalized(&self) -> Route {
        Route {
            expires: self.expires.map(|_| 0),
            ..self.clone()
        }
    }

    /// Equal in everything but `expires`: the same route whether or not, and however
    /// long, it still has to live. How plans recognise a route in a live dump: the
    /// kernel's prefix route of a dynamic IPv6 address expires, a route put back keeps
    /// the expiry it has left.
    pub fn same_ignoring_expiry(&self, other: &Route) -> bool {
        Route {
            expires: None,
            ..self.clone()
        } == Route {
            expires: None,
            ..other.clone()
        }
    }

    /// This route with `aged`'s remaining expiry when both expire: what a restore sends
    /// for a route that has counted down since it was saved.
    pub fn with_expiry_of(&self, aged: &Route) -> Route {
        let mut out = self.clone();
        if let (Some(_), Some(left)) = (self.expires, aged.expires) {
            out.expires = Some(left);
        }
        out
    }

    /// `later`'s expiry is this one's after at most `elapsed` (plus `slack` seconds of
    /// rounding: the kernel counts in ticks and reports whole seconds, rounded down): it
    /// may only count down, and by no more than the time that passed.
    pub fn expiry_within(&self, later: &Route, elapsed_secs: u64, slack: u64) -> bool {
        match (self.expires, later.expires) {
            (Some(a), Some(b)) => b <= a && u64::from(a - b) <= elapsed_secs + slack,
            (a, b) => a == b,
        }
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

    /// Whether the route goes out through `dev`.
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
        if self.pref != RoutePref::Medium {
            s.push_str(&format!(" pref {}", self.pref.ip_word()));
        }
        if let Some(e) = self.expires {
            s.push_str(&format!(" expires {e}"));
        }
        let m = self.metrics.ip_args();
        if !m.is_empty() {
            s.push(' ');
            s.push_str(&m);
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
    /// Routing table number.
    pub table: u32,
    /// Destination prefix.
    pub dst: Prefix,
    /// Type of service (0 for IPv6).
    pub tos: u8,
    /// Metric (`metric`/`priority`).
    pub metric: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(dst: &str) -> Route {
        Route::new(
            dst.parse().unwrap(),
            None,
            Some(IfName::new("eth0").unwrap()),
        )
    }

    #[test]
    fn new_attributes_render_as_ip_takes_them() {
        let mut m = RouteMetrics::default();
        m.set(rtax::HOPLIMIT, 64);
        m.set(rtax::MTU, 1400);
        m.set(rtax::ADVMSS, 1360);
        m.set(rtax::INITCWND, 10);
        m.set(rtax::LOCK, 1 << rtax::MTU);
        m.congctl = Some("reno".into());
        let r = v6("2001:db8:f::/64")
            .pref(RoutePref::High)
            .expires(600)
            .metrics(m);
        assert_eq!(
            r.ip_args(),
            "2001:db8:f::/64 dev eth0 proto boot scope global metric 1024 pref high \
             expires 600 mtu lock 1400 advmss 1360 hoplimit 64 initcwnd 10 congctl reno"
        );
        // Defaults say nothing new.
        assert_eq!(
            v6("2001:db8:f::/64").ip_args(),
            "2001:db8:f::/64 dev eth0 proto boot scope global metric 1024"
        );
    }

    #[test]
    fn metrics_zero_is_absent_and_named_numbers_go_to_their_fields() {
        let mut m = RouteMetrics::default();
        m.set(rtax::HOPLIMIT, 64);
        m.set(rtax::WINDOW, 1000);
        assert_eq!(m.hoplimit, Some(64));
        assert_eq!(m.other.get(&rtax::WINDOW), Some(&1000));
        assert_eq!(
            m.numeric(),
            vec![(rtax::WINDOW, 1000), (rtax::HOPLIMIT, 64)]
        );
        m.set(rtax::HOPLIMIT, 0);
        m.set(rtax::WINDOW, 0);
        assert!(m.is_empty());
    }

    #[test]
    fn expiry_counts_down_and_stays_out_of_the_key() {
        let a = v6("2001:db8::/64").expires(600);
        let b = v6("2001:db8::/64").expires(590);
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), v6("2001:db8::/64").pref(RoutePref::Low).key());
        assert!(a.same_ignoring_expiry(&b));
        assert!(a.same_ignoring_expiry(&v6("2001:db8::/64")));
        assert!(!a.same_ignoring_expiry(&v6("2001:db8::/64").pref(RoutePref::Low)));
        assert_eq!(a.expiry_normalized(), b.expiry_normalized());
        assert_ne!(
            a.expiry_normalized(),
            v6("2001:db8::/64").expiry_normalized()
        );
        assert_eq!(a.with_expiry_of(&b).expires, Some(590));
        assert_eq!(v6("2001:db8::/64").with_expiry_of(&b).expires, None);
        assert!(a.expiry_within(&b, 9, 1));
        assert!(!a.expiry_within(&b, 5, 1));
        assert!(!b.expiry_within(&a, 60, 1), "expiry never counts up");
        assert!(!a.expiry_within(&v6("2001:db8::/64"), 60, 1));
    }

    #[test]
    fn routes_saved_before_the_new_fields_load_with_their_defaults() {
        let old = r#"{"table":254,"dst":"2001:db8::/64","type":"unicast","gateway":null,
            "dev":"eth0","metric":1024,"protocol":"boot","scope":"universe","prefsrc":null,
            "onlink":false,"tos":0}"#;
        let r: Route = serde_json::from_str(old).unwrap();
        assert_eq!(r, v6("2001:db8::/64"));
        let back: Route = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
