//! IP prefixes (`192.0.2.0/24`, `default`), kept in the kernel's canonical form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The address family of a route, address or sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (AF_INET, `ip -4`).
    Inet,
    /// IPv6 (AF_INET6, `ip -6`).
    Inet6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }

    /// The longest prefix length of the family: 32 or 128.
    pub fn max_len(self) -> u8 {
        match self {
            Family::Inet => 32,
            Family::Inet6 => 128,
        }
    }
}

/// A network prefix with its host bits cleared, as the kernel stores route destinations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a string is not a prefix; holds the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP prefix (expected ADDRESS/LENGTH or 'default')")]
pub struct PrefixParseError(String);

impl Prefix {
    /// Builds the prefix, clearing host bits. `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        if len > Family::of(&addr).max_len() {
            return None;
        }
        Some(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// `default`: the /0 prefix of `family` (`0.0.0.0/0` or `::/0`).
    pub fn default_for(family: Family) -> Prefix {
        match family {
            Family::Inet => Prefix::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            Family::Inet6 => Prefix::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        }
        .expect("length 0 fits every family")
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[allow(clippy::len_without_is_empty)] // a prefix length, not a collection size
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether it is a default (/0) prefix.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// IPv4 or IPv6.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// Whether `ip` is inside the prefix (of the same family).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && mask(*ip, self.len) == self.addr
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Prefix {
    type Err = PrefixParseError;
    fn from_str(s: &str) -> Result<Self, PrefixParseError> {
        let err = || PrefixParseError(s.into());
        if s == "default" {
            return Ok(Prefix::default_for(Family::Inet));
        }
        if s == "default6" {
            return Ok(Prefix::default_for(Family::Inet6));
        }
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let len = match l {
            Some(l) => l.parse().map_err(|_| err())?,
            None => Family::of(&addr).max_len(),
        };
        Prefix::new(addr, len).ok_or_else(err)
    }
}

impl TryFrom<String> for Prefix {
    type Error = PrefixParseError;
    fn try_from(s: String) -> Result<Self, PrefixParseError> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        // Serialised unambiguously: `default` alone would lose the family.
        format!("{}/{}", p.addr, p.len)
    }
}

impl fmt::Display for Prefix {
    /// As `ip route` prints it: `default`, a bare address for host routes, else `a/len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            f.write_str("default")
        } else if self.len == self.family().max_len() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clears_host_bits_and_prints_like_ip() {
        let p: Prefix = "192.0.2.77/24".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.0/24");
        assert_eq!(
            "2001:db8::1/64".parse::<Prefix>().unwrap().to_string(),
            "2001:db8::/64"
        );
        assert_eq!(
            "198.51.100.7".parse::<Prefix>().unwrap().to_string(),
            "198.51.100.7"
        );
        assert_eq!(Prefix::default_for(Family::Inet6).to_string(), "default");
        assert!("192.0.2.0/33".parse::<Prefix>().is_err());
    }

    #[test]
    fn contains_respects_family_and_length() {
        let p: Prefix = "192.0.2.0/25".parse().unwrap();
        assert!(p.contains(&"192.0.2.127".parse().unwrap()));
        assert!(!p.contains(&"192.0.2.128".parse().unwrap()));
        assert!(!p.contains(&"2001:db8::1".parse().unwrap()));
        assert!(Prefix::default_for(Family::Inet).contains(&"203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn serde_keeps_the_family_of_default() {
        let p = Prefix::default_for(Family::Inet6);
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(s, "\"::/0\"");
        assert_eq!(serde_json::from_str::<Prefix>(&s).unwrap(), p);
    }
}
