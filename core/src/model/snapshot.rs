//! Whole observed states: what `dump` returns and what `start` saves.

use serde::{Deserialize, Serialize};

use crate::host::Managers;

use super::{Address, IfName, Link, Neighbour, Route, SysctlKey, SysctlValue, Tmpfs};

/// Links, addresses and routes of one network namespace. The local routing table is left
/// out: the kernel derives it from the addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetState {
    /// Every link (`ip link`).
    pub links: Vec<Link>,
    /// Every address (`ip address`).
    pub addresses: Vec<Address>,
    /// Every route of every table but `local` (`ip route show table all`).
    pub routes: Vec<Route>,
}

impl NetState {
    /// The link named `name`.
    pub fn link(&self, name: &IfName) -> Option<&Link> {
        self.links.iter().find(|l| &l.name == name)
    }

    /// The addresses of `dev`.
    pub fn addresses_of<'a>(&'a self, dev: &'a IfName) -> impl Iterator<Item = &'a Address> + 'a {
        self.addresses.iter().filter(move |a| &a.dev == dev)
    }

    /// The routes whose device is `dev`, in every table.
    pub fn routes_via<'a>(&'a self, dev: &'a IfName) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| r.via(dev))
    }

    /// The ports of `bridge` (links whose master it is).
    pub fn ports_of<'a>(&'a self, bridge: &'a IfName) -> impl Iterator<Item = &'a Link> + 'a {
        self.links
            .iter()
            .filter(move |l| l.master.as_ref() == Some(bridge))
    }

    /// A canonical form for comparing two states: kernel-chosen ifindexes zeroed, every list
    /// sorted. Two namespaces that differ only in what the kernel picked compare equal.
    pub fn normalized(&self) -> NetState {
        let mut n = self.clone();
        for l in &mut n.links {
            l.index = 0;
        }
        n.links.sort_by(|a, b| a.name.cmp(&b.name));
        n.addresses.sort_by_key(|a| {
            (
                a.dev.clone(),
                a.ip,
                a.prefix_len,
                serde_json::to_string(a).unwrap_or_default(),
            )
        });
        n.routes
            .sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
        n
    }
}

/// Everything `stop` must bring back: the network plus the sysctls and the tmpfs the plan
/// touches; and, read only where a plan uses them, some devices' neighbour entries (a
/// cache, never restored, so never saved).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Links, addresses and routes.
    pub net: NetState,
    /// The IPv6 knobs read (`net.ipv6.conf.DEV.*`).
    pub sysctls: Vec<SysctlValue>,
    /// The tmpfs read, if one was asked for.
    pub tmpfs: Option<Tmpfs>,
    /// Neighbour entries of the devices read for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<Neighbour>,
    /// The programs managing the devices read (a DHCP client, NetworkManager), where a
    /// command asked the host.
    #[serde(default, skip_serializing_if = "Managers::is_empty")]
    pub managers: crate::host::Managers,
}

impl Snapshot {
    /// The value of a knob, if it was read.
    pub fn sysctl(&self, key: &SysctlKey) -> Option<&str> {
        self.sysctls
            .iter()
            .find(|s| &s.key == key)
            .map(|s| s.value.as_str())
    }

    /// A canonical form for comparing two snapshots (see [`NetState::normalized`]), sysctls and
    /// neighbours sorted too.
    pub fn normalized(&self) -> Snapshot {
        let mut s = self.clone();
        s.net = s.net.normalized();
        s.sysctls.sort();
        s.neighbours.sort();
        s
    }

    /// The neighbour entries of `dev` that were read.
    pub fn neighbours_of<'a>(
        &'a self,
        dev: &'a IfName,
    ) -> impl Iterator<Item = &'a Neighbour> + 'a {
        self.neighbours.iter().filter(move |n| &n.dev == dev)
    }
}
