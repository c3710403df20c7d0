//! Which part of a namespace a filtered dump reads: what a command needs about a few
//! devices, at a cost that does not grow with the rest of the namespace (500 taps on the
//! bridge, 60,000 routes through other devices).

use super::{IfName, NetState};

/// What a filtered dump ([`crate::Kernel::dump_filtered`]) keeps: the named links (and a bridge's
/// ports), optionally their addresses and routes, and every route of some tables. The default reads
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpFilter {
    /// These links, by name; absent ones are left out.
    pub links: Vec<IfName>,
    /// Also every link whose master is this one (a bridge's ports).
    pub ports_of: Option<IfName>,
    /// The addresses of the links named in `links`.
    pub addresses: bool,
    /// The routes through the links named in `links` (their `dev`: a multipath route's
    /// first hop), in every table but `local`.
    pub routes: bool,
    /// Also every route of these tables, whatever its device: what `start` needs to see
    /// another device's route with the same key as one it moves.
    pub tables: Vec<u32>,
}

impl DumpFilter {
    /// Links only: `links` and nothing about their addresses or routes.
    pub fn links(links: &[&IfName]) -> DumpFilter {
        DumpFilter {
            links: links.iter().map(|l| (*l).clone()).collect(),
            ..DumpFilter::default()
        }
    }

    /// `links` with their addresses and routes.
    pub fn devices(links: &[&IfName]) -> DumpFilter {
        DumpFilter {
            addresses: true,
            routes: true,
            ..DumpFilter::links(links)
        }
    }

    fn named(&self, name: &IfName) -> bool {
        self.links.contains(name)
    }

    /// The meaning of a filtered dump, which every backend implements: the part of the
    /// full dump `full` this filter selects, in the same order.
    pub fn apply(&self, full: &NetState) -> NetState {
        NetState {
            links: full
                .links
                .iter()
                .filter(|l| {
                    self.named(&l.name) || (l.master.is_some() && l.master == self.ports_of)
                })
                .cloned()
                .collect(),
            addresses: full
                .addresses
                .iter()
                .filter(|a| self.addresses && self.named(&a.dev))
                .cloned()
                .collect(),
            routes: full
                .routes
                .iter()
                .filter(|r| {
                    (self.routes && r.dev.as_ref().is_some_and(|d| self.named(d)))
                        || self.tables.contains(&r.table)
                })
                .cloned()
                .collect(),
        }
    }
}
