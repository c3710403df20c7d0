//! Which interface `start` bridges when none is named: the one carrying the default route.

use super::PlanError;
use crate::model::{Family, IfName, NetState, Prefix, TABLE_MAIN};

/// The interface carrying the default route of the main table: IPv4 first, then IPv6,
/// the lowest metric. Several at the same metric, or none, is a refusal: guessing would
/// bridge the wrong NIC.
pub fn default_uplink(net: &NetState) -> Result<IfName, PlanError> {
    for fam in [Family::Inet, Family::Inet6] {
        let mut defaults: Vec<_> = net
            .routes
            .iter()
            .filter(|r| {
                r.table == TABLE_MAIN && r.dst == Prefix::default_for(fam) && r.dev.is_some()
            })
            .collect();
        defaults.sort_by_key(|r| r.metric);
        let Some(best) = defaults.first() else {
            continue;
        };
        let mut tied: Vec<IfName> = defaults
            .iter()
            .filter(|r| r.metric == best.metric)
            .filter_map(|r| r.dev.clone())
            .collect();
        tied.sort();
        tied.dedup();
        if tied.len() > 1 {
            return Err(PlanError::TiedDefaultRoutes(tied));
        }
        return Ok(tied.remove(0));
    }
    Err(PlanError::NoDefaultRoute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Route;

    fn n(s: &str) -> IfName {
        IfName::new(s).unwrap()
    }

    fn default(dev: &str, metric: u32, fam: Family) -> Route {
        let gw = match fam {
            Family::Inet => "192.0.2.1".parse().unwrap(),
            Family::Inet6 => "2001:db8::1".parse().unwrap(),
        };
        Route::new(Prefix::default_for(fam), Some(gw), Some(n(dev))).metric(metric)
    }

    fn net(routes: Vec<Route>) -> NetState {
        NetState {
            routes,
            ..NetState::default()
        }
    }

    #[test]
    fn the_lowest_ipv4_metric_wins_over_ipv6() {
        let s = net(vec![
            default("eth1", 600, Family::Inet),
            default("eth0", 100, Family::Inet),
            default("eth2", 1, Family::Inet6),
        ]);
        assert_eq!(default_uplink(&s), Ok(n("eth0")));
        let v6 = net(vec![default("eth2", 1024, Family::Inet6)]);
        assert_eq!(default_uplink(&v6), Ok(n("eth2")));
    }

    #[test]
    fn a_tie_or_no_default_is_refused_with_the_fix() {
        let tie = net(vec![
            default("eth0", 100, Family::Inet),
            default("eth1", 100, Family::Inet),
        ]);
        let e = default_uplink(&tie).unwrap_err();
        assert_eq!(e, PlanError::TiedDefaultRoutes(vec![n("eth0"), n("eth1")]));
        assert!(e.to_string().contains("eth0 and eth1"), "{e}");
        assert!(e.to_string().contains("env-qemu start IFACE"), "{e}");
        let none = default_uplink(&NetState::default()).unwrap_err();
        assert!(none.to_string().contains("no default route"), "{none}");
    }
}
