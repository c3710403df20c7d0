//! Ethernet hardware addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 48-bit Ethernet MAC address, written `52:54:00:12:34:56` (lowercase hex, `:`-separated) in
/// text, JSON and `ip` commands.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `00:00:00:00:00:00`: what devices without a link-layer address (tun, loopback) report.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Whether it is `00:00:00:00:00:00`.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The modified EUI-64 interface identifier (RFC 4291 appendix A), which the kernel uses
    /// for the link-local address of an Ethernet-like device (addr_gen_mode eui64).
    /// The IPv6 link-local address the kernel makes from this MAC (`fe80::/64` plus the
    /// modified EUI-64, addr_gen_mode eui64).
    pub fn link_local(&self) -> std::net::Ipv6Addr {
        let e = self.eui64();
        std::net::Ipv6Addr::from([
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
        ])
    }

    /// The modified EUI-64 interface identifier (RFC 4291 appendix A): the MAC with `ff:fe` in the
    /// middle and the universal/local bit flipped.
    pub fn eui64(&self) -> [u8; 8] {
        let m = self.0;
        [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    }
}

/// Why a string is not a MAC address; holds the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes separated by ':')")]
pub struct MacParseError(String);

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, MacParseError> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| MacParseError(s.into()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(MacParseError(s.into()));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.into()));
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = MacParseError;
    fn try_from(s: String) -> Result<Self, MacParseError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let m: MacAddr = "02:fc:00:00:0a:FF".parse().unwrap();
        assert_eq!(m.to_string(), "02:fc:00:00:0a:ff");
        assert!("02:fc:00:00:0a".parse::<MacAddr>().is_err());
        assert!("02:fc:00:00:0a:ff:01".parse::<MacAddr>().is_err());
        assert!("02:fc:00:00:0a:fg".parse::<MacAddr>().is_err());
    }

    #[test]
    fn eui64_flips_the_universal_bit() {
        let m: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(m.eui64(), [0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56]);
    }
}
