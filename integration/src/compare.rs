//! Comparing two [`NetState`]s: the netlink dump against the `ip -j` reading.
//!
//! Remaining address lifetimes and route expiries count down between two reads, and DAD
//! can finish between them (`tentative` disappears), so comparisons retry until the
//! state has settled and treat lifetimes and expiries within a few seconds as equal.

use std::time::Duration;

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::model::{rtax, NetState, Route};
use env_qemu_core::Kernel;

use crate::TestNs;

/// Lifetimes (and route expiries) that differ by at most this many seconds are the same.
pub const LIFETIME_SLACK: u32 = 3;

/// Whether `a` and `b` are the same state, up to ifindexes, ordering, lifetime slack and
/// metric locks (see [`ip_visible`]).
pub fn same_state(a: &NetState, b: &NetState) -> bool {
    let (na, nb) = (ip_visible(a), ip_visible(b));
    without_lifetimes(&na) == without_lifetimes(&nb)
        && na.addresses.iter().zip(&nb.addresses).all(|(x, y)| {
            close(x.valid_lft, y.valid_lft) && close(x.preferred_lft, y.preferred_lft)
        })
        && routes_by_stripped(&na)
            .iter()
            .zip(&routes_by_stripped(&nb))
            .all(|(x, y)| close(x.expires, y.expires))
}

/// The state as `ip -j` can show it, normalised: iproute2 prints a route metric's
/// `lock` in its text output only, so the RTAX_LOCK bitmask is left out. (The simulated
/// kernel is compared with the netlink dump, which carries it.)
pub fn ip_visible(s: &NetState) -> NetState {
    let mut s = s.normalized();
    for r in &mut s.routes {
        r.metrics.set(rtax::LOCK, 0);
    }
    s
}

/// The routes sorted by their form without expiry, so that two reads pair up.
fn routes_by_stripped(s: &NetState) -> Vec<Route> {
    let mut routes = s.routes.clone();
    routes.sort_by_key(|r| serde_json::to_string(&r.expiry_normalized()).unwrap_or_default());
    routes
}

fn close(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.abs_diff(b) <= LIFETIME_SLACK,
        (a, b) => a == b,
    }
}

/// The state with every finite lifetime and route expiry replaced by 0.
pub fn without_lifetimes(s: &NetState) -> NetState {
    let mut s = s.clone();
    for a in &mut s.addresses {
        a.valid_lft = a.valid_lft.map(|_| 0);
        a.preferred_lft = a.preferred_lft.map(|_| 0);
    }
    for r in &mut s.routes {
        *r = r.expiry_normalized();
    }
    s.normalized()
}

/// What is in one state and not the other, for assertion messages.
pub fn difference(a: &NetState, b: &NetState) -> String {
    let (a, b) = (
        without_lifetimes(&ip_visible(a)),
        without_lifetimes(&ip_visible(b)),
    );
    let mut out = String::new();
    section(&mut out, "link", &debug_all(&a.links), &debug_all(&b.links));
    section(
        &mut out,
        "address",
        &debug_all(&a.addresses),
        &debug_all(&b.addresses),
    );
    section(
        &mut out,
        "route",
        &debug_all(&a.routes),
        &debug_all(&b.routes),
    );
    out
}

fn debug_all<T: std::fmt::Debug>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| format!("{i:?}")).collect()
}

fn section(out: &mut String, what: &str, left: &[String], right: &[String]) {
    for x in left.iter().filter(|x| !right.contains(x)) {
        out.push_str(&format!("  {what} only in left:  {x}\n"));
    }
    for x in right.iter().filter(|x| !left.contains(x)) {
        out.push_str(&format!("  {what} only in right: {x}\n"));
    }
}

/// Asserts that `kernel.dump()` equals the `ip -j` reading of `ns`, retrying for a few
/// seconds while the namespace is still changing (DAD, lifetimes).
pub async fn assert_dump_matches_ip(ns: &TestNs, kernel: &NetlinkKernel) {
    let mut last = String::new();
    for _ in 0..20 {
        let before = ns.read_state();
        let dumped = kernel.dump().await.expect("dump");
        let after = ns.read_state();
        if same_state(&before, &after) && same_state(&dumped, &before) {
            return;
        }
        last = difference(&dumped, &before);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("netlink dump (left) differs from ip -j (right):\n{last}");
}
