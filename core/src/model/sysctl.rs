//! The per-interface sysctls a plan touches (`/proc/sys/net/ipv6/conf/DEV/…`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::IfName;

/// A per-device IPv6 knob under `net.ipv6.conf.DEV`, the ones env-qemu reads and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Knob {
    /// SLAAC addresses from router advertisements. Off on a bridge port: the port has no
    /// IP configuration of its own any more.
    Ipv6Autoconf,
    /// Accept router advertisements at all (routes, addresses). Off on a bridge port.
    Ipv6AcceptRa,
    /// Duplicate address detection. Briefly 0 while addresses are re-added, so they are
    /// usable at once yet keep their original flags (no `nodad` invented).
    Ipv6AcceptDad,
    /// Privacy (temporary) addresses from SLAAC: copied to the bridge, which otherwise
    /// makes none (a new device takes `default`'s, 0 on most hosts).
    Ipv6UseTempaddr,
    /// The metric of the default route the kernel makes from router advertisements:
    /// copied to the bridge, and the one env-qemu keeps free for the kernel's route.
    Ipv6RaDefrtrMetric,
}

impl Knob {
    /// The last component of the knob's name (`accept_ra`).
    pub fn leaf(self) -> &'static str {
        match self {
            Knob::Ipv6Autoconf => "autoconf",
            Knob::Ipv6AcceptRa => "accept_ra",
            Knob::Ipv6AcceptDad => "accept_dad",
            Knob::Ipv6UseTempaddr => "use_tempaddr",
            Knob::Ipv6RaDefrtrMetric => "ra_defrtr_metric",
        }
    }

    /// The kernel's default for a new device (net.ipv6.conf.default on a fresh namespace).
    pub fn kernel_default(self) -> &'static str {
        match self {
            Knob::Ipv6Autoconf | Knob::Ipv6AcceptRa | Knob::Ipv6AcceptDad => "1",
            Knob::Ipv6UseTempaddr => "0",
            Knob::Ipv6RaDefrtrMetric => "1024",
        }
    }
}

/// One per-device knob: `net.ipv6.conf.DEV.KNOB`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SysctlKey {
    /// The device.
    pub dev: IfName,
    /// The knob.
    pub knob: Knob,
}

impl SysctlKey {
    /// The knob `knob` of `dev`.
    pub fn new(dev: &IfName, knob: Knob) -> SysctlKey {
        SysctlKey {
            dev: dev.clone(),
            knob,
        }
    }

    /// `net.ipv6.conf.all.KNOB`: for `accept_dad`, the kernel runs DAD if either this or
    /// the device's own is at least 1.
    pub fn all(knob: Knob) -> SysctlKey {
        SysctlKey {
            dev: IfName::new("all").expect("`all` is a valid interface name"),
            knob,
        }
    }

    /// Relative to `/proc/sys`.
    pub fn proc_path(&self) -> String {
        format!("net/ipv6/conf/{}/{}", self.dev, self.knob.leaf())
    }

    /// As `sysctl` spells it (`net.ipv6.conf.eth0.autoconf`). Dots in the interface name
    /// become slashes, as sysctl(8) requires.
    pub fn dotted(&self) -> String {
        format!(
            "net.ipv6.conf.{}.{}",
            self.dev.as_str().replace('.', "/"),
            self.knob.leaf()
        )
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sysctl {}", self.dotted())
    }
}

/// A knob and its value, as read from `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SysctlValue {
    /// Which knob.
    pub key: SysctlKey,
    /// Its value, as text (`1`, `1024`).
    pub value: String,
}
