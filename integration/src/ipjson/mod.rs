//! Reads a namespace's state from `ip -j` output into [`NetState`], independently of the
//! netlink backend, so the two can be compared.
//!
//! `-N` makes `ip` print protocol, scope, table and type as numbers, which map onto the
//! model without name tables. `ip` prints `default` for both families' default route, so
//! the family comes from `-4`/`-6`.

mod addresses;
mod links;
mod routes;

use env_qemu_core::model::{Family, NetState};
use serde_json::Value;

use crate::TestNs;

pub use addresses::parse_addresses;
pub use links::{parse_links, SysfsFacts};
pub use routes::parse_routes;

/// `ip -j -d link show`, `ip -j -N addr show`, `ip -j -d -N -4/-6 route show table all`.
pub fn read_state(ns: &TestNs) -> NetState {
    let facts = links::read_sysfs_facts(ns);
    let links = parse_links(&ns.ip_json("-d link show"), &facts);
    let addresses = parse_addresses(&ns.ip_json("-N addr show"));
    let mut routes = parse_routes(&ns.ip_json("-d -N -4 route show table all"), Family::Inet);
    routes.extend(parse_routes(
        &ns.ip_json("-d -N -6 route show table all"),
        Family::Inet6,
    ));
    NetState {
        links,
        addresses,
        routes,
    }
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A number `ip -N` may print as a JSON number or as a string ("254", "0x10").
pub(crate) fn num_of(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

pub(crate) fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}
