//! `ip -j -d -N route show table all` → routes (without table local).

use std::net::IpAddr;

use env_qemu_core::model::{
    rtax, Family, IfName, Prefix, Route, RouteMetrics, RoutePref, RouteProtocol, RouteScope,
    RouteType, TABLE_LOCAL, TABLE_MAIN,
};
use serde_json::Value;

use super::{array, num_of, str_of};

/// Parses the routes of one family (`ip -4`/`ip -6`: `ip` prints `default` for both
/// families' default route). A multipath route is represented by its first next hop, as
/// the netlink backend does.
pub fn parse_routes(json: &Value, family: Family) -> Vec<Route> {
    array(json)
        .iter()
        .filter(|r| table(r) != TABLE_LOCAL)
        .map(|r| route(r, family))
        .collect()
}

fn table(r: &Value) -> u32 {
    num_of(r, "table").unwrap_or(u64::from(TABLE_MAIN)) as u32
}

fn route(r: &Value, family: Family) -> Route {
    let first_hop = r
        .get("nexthops")
        .and_then(|h| h.as_array())
        .and_then(|h| h.first());
    let hop = first_hop.unwrap_or(r);
    let gateway: Option<IpAddr> = str_of(hop, "gateway").map(|g| g.parse().expect("gateway"));
    let prefsrc: Option<IpAddr> = str_of(r, "prefsrc").map(|s| s.parse().expect("prefsrc"));
    let dst = str_of(r, "dst").expect("dst");
    let dst = if dst == "default" {
        Prefix::default_for(family)
    } else {
        dst.parse().expect("dst")
    };
    let has_flag = |v: &Value, f: &str| {
        array(v.get("flags").unwrap_or(&Value::Null))
            .iter()
            .any(|x| x.as_str() == Some(f))
    };
    Route {
        table: table(r),
        dst,
        kind: RouteType::from_u8(num_of(r, "type").unwrap_or(1) as u8),
        gateway,
        dev: str_of(hop, "dev").map(|d| IfName::new(d).expect("dev")),
        metric: num_of(r, "metric").unwrap_or(0) as u32,
        protocol: RouteProtocol::from_u8(num_of(r, "protocol").unwrap_or(0) as u8),
        scope: RouteScope::from_u8(num_of(r, "scope").unwrap_or(0) as u8),
        prefsrc,
        onlink: has_flag(r, "onlink") || has_flag(hop, "onlink"),
        tos: num_of(r, "tos").unwrap_or(0) as u8,
        pref: match str_of(r, "pref") {
            Some("low") => RoutePref::Low,
            Some("high") => RoutePref::High,
            _ => RoutePref::Medium,
        },
        // `expires` is the remaining whole seconds, negative once past (the route waits
        // for garbage collection): 0 then, as the netlink backend reads it.
        expires: r
            .get("expires")
            .and_then(Value::as_i64)
            .map(|s| u32::try_from(s).unwrap_or(0)),
        metrics: metrics(r.get("metrics").and_then(|m| array(m).first())),
    }
}

/// `"metrics":[{"mtu":1400,"hoplimit":64,"ecn":null,"congestion":"reno",…}]`. `ip`
/// prints `rtt` and `rttvar` in milliseconds (the kernel's value / 8 and / 4, rounded
/// down) and leaves the lock bits out of JSON: routes compared with this must use
/// multiples and no lock.
fn metrics(m: Option<&Value>) -> RouteMetrics {
    let mut out = RouteMetrics::default();
    let Some(Value::Object(m)) = m else {
        return out;
    };
    for (k, v) in m {
        let n = v.as_u64().unwrap_or(0) as u32;
        let (key, value) = match k.as_str() {
            "mtu" => (rtax::MTU, n),
            "window" => (rtax::WINDOW, n),
            "rtt" => (rtax::RTT, n * 8),
            "rttvar" => (rtax::RTTVAR, n * 4),
            "ssthresh" => (rtax::SSTHRESH, n),
            "cwnd" => (rtax::CWND, n),
            "advmss" => (rtax::ADVMSS, n),
            "reordering" => (rtax::REORDERING, n),
            "hoplimit" => (rtax::HOPLIMIT, n),
            "initcwnd" => (rtax::INITCWND, n),
            "ecn" => (rtax::FEATURES, rtax::FEATURE_ECN),
            "rto_min" => (rtax::RTO_MIN, n),
            "initrwnd" => (rtax::INITRWND, n),
            "quickack" => (rtax::QUICKACK, n),
            "fastopen_no_cookie" => (rtax::FASTOPEN_NO_COOKIE, n),
            "congestion" => {
                out.congctl = v.as_str().map(str::to_string);
                continue;
            }
            _ => continue,
        };
        out.set(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_d_n_output() {
        let json: Value = serde_json::from_str(
            r#"[
            {"type":"1","dst":"default","gateway":"192.0.2.1","dev":"tp0","table":"254",
             "protocol":"16","scope":"0","prefsrc":"192.0.2.2","metric":100,"flags":[]},
            {"type":"1","dst":"203.0.113.0/25","tos":"0x10","gateway":"192.0.2.9","dev":"tp0",
             "table":"254","protocol":"3","scope":"0","flags":["onlink"]},
            {"type":"6","dst":"203.0.113.128/25","table":"1000","protocol":"3","scope":"0",
             "flags":[]},
            {"type":"1","dst":"198.51.100.0/24","table":"254","protocol":"3","scope":"0",
             "flags":[],"nexthops":[{"gateway":"192.0.2.7","dev":"tp0","weight":1,"flags":[]},
             {"gateway":"192.0.2.8","dev":"tp0","weight":1,"flags":[]}]},
            {"type":"2","dst":"192.0.2.2","dev":"tp0","table":"255","protocol":"2",
             "scope":"254","prefsrc":"192.0.2.2","flags":[]}
        ]"#,
        )
        .unwrap();
        let routes = parse_routes(&json, Family::Inet);
        assert_eq!(routes.len(), 4, "table local left out");
        let r = &routes[0];
        assert_eq!(r.dst, Prefix::default_for(Family::Inet));
        assert_eq!((r.protocol, r.metric), (RouteProtocol::Dhcp, 100));
        assert_eq!(r.prefsrc, Some("192.0.2.2".parse().unwrap()));
        assert_eq!((routes[1].tos, routes[1].onlink), (0x10, true));
        assert_eq!(
            (routes[2].kind, routes[2].table, routes[2].dev.as_ref()),
            (RouteType::Blackhole, 1000, None)
        );
        assert_eq!(routes[3].gateway, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn ipv6_default_keeps_its_family() {
        let json: Value = serde_json::from_str(
            r#"[{"type":"1","dst":"default","gateway":"2001:db8::1","dev":"eth0","table":"254",
                 "protocol":"3","scope":"0","metric":1024,"flags":[],"pref":"medium"}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_routes(&json, Family::Inet6)[0].dst,
            Prefix::default_for(Family::Inet6)
        );
    }

    #[test]
    fn reads_pref_expires_and_metrics() {
        let json: Value = serde_json::from_str(
            r#"[{"type":"1","dst":"2001:db8:f::/64","gateway":"2001:db8::fe","dev":"v0",
                 "table":"254","protocol":"3","scope":"0","metric":1024,"flags":[],
                 "expires":599,"metrics":[{"mtu":1400,"advmss":1300,"hoplimit":64,
                 "rtt":2,"ecn":null,"congestion":"reno"}],"pref":"high"},
                {"type":"1","dst":"2001:db8:d::/64","dev":"v0","table":"254","protocol":"3",
                 "scope":"0","metric":1024,"flags":[],"expires":-23,"pref":"low"}]"#,
        )
        .unwrap();
        let r = parse_routes(&json, Family::Inet6);
        assert_eq!((r[0].pref, r[0].expires), (RoutePref::High, Some(599)));
        let m = &r[0].metrics;
        assert_eq!(
            (m.mtu, m.advmss, m.hoplimit),
            (Some(1400), Some(1300), Some(64))
        );
        assert_eq!(m.get(rtax::RTT), Some(16));
        assert_eq!(m.get(rtax::FEATURES), Some(rtax::FEATURE_ECN));
        assert_eq!(m.congctl.as_deref(), Some("reno"));
        assert_eq!((r[1].pref, r[1].expires), (RoutePref::Low, Some(0)));
        assert!(r[1].metrics.is_empty());
    }
}
