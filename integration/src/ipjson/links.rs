//! `ip -j -d link show` → links.

use std::collections::HashMap;

use env_qemu_core::model::{BridgeInfo, IfName, Link, LinkKind, MacAddr, TapInfo};
use serde_json::Value;

use super::{array, num_of, str_of};
use crate::TestNs;

/// What only /sys says, read through `ip netns exec` (which mounts the namespace's own
/// /sys): `addr_assign_type` and whether the device is wireless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysfsFacts {
    pub addr_assign_type: HashMap<String, u32>,
    pub wireless: Vec<String>,
}

pub(crate) fn read_sysfs_facts(ns: &TestNs) -> SysfsFacts {
    let script = r#"for d in /sys/class/net/*; do
        n=${d##*/}
        echo "type $n $(cat $d/addr_assign_type 2>/dev/null || echo 0)"
        if [ -e $d/wireless ] || [ -e $d/phy80211 ]; then echo "wireless $n"; fi
    done"#;
    let out = ns.exec("sh", &["-c", script]);
    let mut facts = SysfsFacts::default();
    for line in out.lines() {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["type", name, t] => {
                facts
                    .addr_assign_type
                    .insert(name.to_string(), t.parse().unwrap_or(0));
            }
            ["wireless", name] => facts.wireless.push(name.to_string()),
            _ => {}
        }
    }
    facts
}

pub fn parse_links(json: &Value, facts: &SysfsFacts) -> Vec<Link> {
    array(json)
        .iter()
        .map(|l| {
            let name = str_of(l, "ifname").expect("ifname").to_string();
            let flags: Vec<&str> = array(l.get("flags").unwrap_or(&Value::Null))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            Link {
                index: num_of(l, "ifindex").expect("ifindex") as u32,
                kind: kind(l, &name, &flags, facts),
                mac: str_of(l, "address")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(MacAddr::ZERO),
                mtu: num_of(l, "mtu").unwrap_or(0) as u32,
                up: flags.contains(&"UP"),
                carrier: flags.contains(&"LOWER_UP"),
                master: str_of(l, "master").map(|m| IfName::new(m).expect("master name")),
                name: IfName::new(name).expect("ifname"),
            }
        })
        .collect()
}

fn kind(l: &Value, name: &str, flags: &[&str], facts: &SysfsFacts) -> LinkKind {
    let info = l.get("linkinfo");
    let data = info.and_then(|i| i.get("info_data"));
    match info.and_then(|i| str_of(i, "info_kind")) {
        _ if flags.contains(&"LOOPBACK") => LinkKind::Loopback,
        None if facts.wireless.iter().any(|w| w == name) => LinkKind::Wireless,
        None => LinkKind::Ethernet,
        Some("veth") => LinkKind::Veth,
        Some("vlan") => LinkKind::Vlan,
        Some("macvlan") => LinkKind::Macvlan,
        Some("bridge") => {
            let data = data.expect("bridge info_data");
            LinkKind::Bridge(BridgeInfo {
                stp: num_of(data, "stp_state").unwrap_or(0) != 0,
                forward_delay: num_of(data, "forward_delay").unwrap_or(0) as u32,
                mac_fixed: facts.addr_assign_type.get(name) == Some(&3),
            })
        }
        Some("tun") => {
            let data = data.expect("tun info_data");
            if str_of(data, "type") == Some("tap") {
                LinkKind::Tap(TapInfo {
                    owner: data.get("user").map(|u| id(u, true)),
                    group: data.get("group").map(|g| id(g, false)),
                    persist: data
                        .get("persist")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            } else {
                LinkKind::Tun
            }
        }
        Some(other) => LinkKind::Other(other.to_string()),
    }
}

/// `ip` prints a tap's user and group by name when it can resolve them.
fn id(v: &Value, user: bool) -> u32 {
    if let Some(n) = v.as_u64() {
        return n as u32;
    }
    let s = v.as_str().expect("user/group");
    if let Ok(n) = s.parse() {
        return n;
    }
    let resolved = if user {
        nix::unistd::User::from_name(s)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(s)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    resolved.unwrap_or_else(|| panic!("unknown user/group {s}"))
}
