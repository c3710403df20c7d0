//! `ip -j -N addr show` → addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use env_qemu_core::model::{AddrFlag, AddrScope, Address, IfName};
use serde_json::Value;

use super::{array, flag, num_of, str_of};

/// The flag keys `ip -j` prints for each model flag.
/// (`ip` prints IFA_F_SECONDARY as `secondary` on IPv4, `temporary` on IPv6.)
const FLAGS: [(&str, AddrFlag); 10] = [
    ("nodad", AddrFlag::Nodad),
    ("noprefixroute", AddrFlag::Noprefixroute),
    ("mngtmpaddr", AddrFlag::Mngtmpaddr),
    ("home", AddrFlag::Home),
    ("optimistic", AddrFlag::Optimistic),
    ("autojoin", AddrFlag::Autojoin),
    ("tentative", AddrFlag::Tentative),
    ("dadfailed", AddrFlag::Dadfailed),
    ("deprecated", AddrFlag::Deprecated),
    ("temporary", AddrFlag::Temporary),
];

pub fn parse_addresses(json: &Value) -> Vec<Address> {
    let mut out = Vec::new();
    for link in array(json) {
        let dev = IfName::new(str_of(link, "ifname").expect("ifname")).expect("ifname");
        for a in array(link.get("addr_info").unwrap_or(&Value::Null)) {
            let ip: IpAddr = str_of(a, "local").expect("local").parse().expect("ip");
            let lifetime = |key| {
                num_of(a, key)
                    .filter(|v| *v != u64::from(u32::MAX))
                    .map(|v| v as u32)
            };
            out.push(Address {
                dev: dev.clone(),
                ip,
                prefix_len: num_of(a, "prefixlen").expect("prefixlen") as u8,
                scope: scope(num_of(a, "scope").unwrap_or(0) as u8),
                secondary: ip.is_ipv4() && flag(a, "secondary"),
                broadcast: str_of(a, "broadcast").map(|b| b.parse().expect("broadcast")),
                flags: FLAGS
                    .iter()
                    .filter(|(k, _)| flag(a, k))
                    .map(|(_, f)| *f)
                    .collect::<BTreeSet<_>>(),
                valid_lft: lifetime("valid_life_time"),
                preferred_lft: lifetime("preferred_life_time"),
            });
        }
    }
    out
}

fn scope(v: u8) -> AddrScope {
    match v {
        0 => AddrScope::Global,
        200 => AddrScope::Site,
        253 => AddrScope::Link,
        254 => AddrScope::Host,
        n => AddrScope::Other(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_j_n_addr() {
        let json: Value = serde_json::from_str(
            r#"[{"ifindex":3,"ifname":"tp0","addr_info":[
              {"family":"inet","local":"198.51.100.1","prefixlen":24,"broadcast":"198.51.100.255",
               "scope":"0","dynamic":true,"label":"tp0","valid_life_time":300,"preferred_life_time":200},
              {"family":"inet","local":"192.0.2.3","prefixlen":24,"scope":"0","secondary":true,
               "label":"tp0","valid_life_time":4294967295,"preferred_life_time":4294967295},
              {"family":"inet6","local":"fe80::3c59:3bff:fe8b:17c1","prefixlen":64,"scope":"253",
               "tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#,
        )
        .unwrap();
        let a = parse_addresses(&json);
        assert_eq!(a[0].broadcast, Some("198.51.100.255".parse().unwrap()));
        assert_eq!((a[0].valid_lft, a[0].preferred_lft), (Some(300), Some(200)));
        assert!(a[1].secondary && a[1].valid_lft.is_none());
        assert_eq!(a[2].scope, AddrScope::Link);
        assert!(a[2].flags.contains(&AddrFlag::Tentative));
    }
}
