//! Interface names, validated once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a usable interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("interface name is empty")]
    Empty,
    /// The name is longer than 15 bytes: the name and its length.
    #[error("interface name {0:?} is {1} bytes; Linux allows at most 15 (IFNAMSIZ - 1)")]
    TooLong(String, usize),
    /// The name contains a forbidden character: the name and the character.
    #[error("interface name {0:?} contains {1:?}; names may not contain '/', ':', whitespace or control characters")]
    BadChar(String, char),
    /// The name is `.` or `..`.
    #[error(
        "interface name {0:?} is reserved ('.' and '..' are directory names under /sys/class/net)"
    )]
    Reserved(String),
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:`, whitespace or control characters,
/// not `.` or `..` (the rules of the kernel's `dev_valid_name`, plus `:` which only
/// legacy IPv4 labels use).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// The longest name Linux accepts, in bytes (IFNAMSIZ - 1).
    pub const MAX_LEN: usize = 15;

    /// Validates `name` by the kernel's rules ([`NameError`] says which one it breaks).
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > Self::MAX_LEN {
            let len = name.len();
            return Err(NameError::TooLong(name, len));
        }
        if name == "." || name == ".." {
            return Err(NameError::Reserved(name));
        }
        if let Some(c) = name
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(NameError::BadChar(name, c));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl std::str::FromStr for IfName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "eth0",
            "lepont",
            "enp0s31f6",
            "a",
            "tap-vm1.100",
            "123456789012345",
        ] {
            assert_eq!(IfName::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_what_the_kernel_rejects() {
        assert_eq!(IfName::new(""), Err(NameError::Empty));
        assert!(matches!(
            IfName::new("1234567890123456"),
            Err(NameError::TooLong(_, 16))
        ));
        assert!(matches!(
            IfName::new("a/b"),
            Err(NameError::BadChar(_, '/'))
        ));
        assert!(matches!(
            IfName::new("a b"),
            Err(NameError::BadChar(_, ' '))
        ));
        assert!(matches!(
            IfName::new("a\tb"),
            Err(NameError::BadChar(_, '\t'))
        ));
        assert!(matches!(
            IfName::new("a\u{7}"),
            Err(NameError::BadChar(_, '\u{7}'))
        ));
        assert!(matches!(
            IfName::new("eth0:1"),
            Err(NameError::BadChar(_, ':'))
        ));
        assert!(matches!(IfName::new(".."), Err(NameError::Reserved(_))));
        // 15 bytes but more than 15 chars is impossible; 8 two-byte chars are 16 bytes.
        assert!(matches!(
            IfName::new("éééééééé"),
            Err(NameError::TooLong(_, 16))
        ));
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<IfName>("\"a/b\"").is_err());
        assert_eq!(
            serde_json::from_str::<IfName>("\"br0\"").unwrap().as_str(),
            "br0"
        );
    }
}
