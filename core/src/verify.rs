//! Verification by dump: what a command's target state says about the devices it touches
//! ([`Expected`]), and the object-by-object differences between that and a live dump.
//!
//! What is compared is what a restore must reproduce: link attributes (MAC, MTU, admin
//! state, master, bridge settings), every address of the devices in scope with its scope,
//! broadcast and configurable flags, every route through them in every table but `local`,
//! their IPv6 sysctls, their static neighbour entries, and the tmpfs size. Lifetimes and
//! route expiry count down, so only "finite or forever" is compared; kernel state (DAD
//! progress, carrier, ifindexes) is not compared.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::Client;
use crate::model::{
    AddrFlag, AddrScope, Address, BridgeInfo, Family, IfName, Link, LinkKind, MacAddr, Neighbour,
    NudState, Route, RouteProtocol, Snapshot, SysctlKey, SysctlValue, Tmpfs,
};
use crate::op::{LinkChange, Op};
use crate::plan::{same_addr, same_route};

/// What one link must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkExpect {
    /// The MAC it must have, if it matters.
    pub mac: Option<MacAddr>,
    /// The MTU it must have.
    pub mtu: u32,
    /// Whether it must be up.
    pub up: bool,
    /// The bridge it must be a port of, or none.
    pub master: Option<IfName>,
    /// For a bridge env-qemu made: its settings.
    pub bridge: Option<BridgeInfo>,
}

/// Whether a link must exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// It must exist and look like this.
    Present(LinkExpect),
    /// If it exists (a VM's tap may be gone), it must look like this.
    IfPresent(LinkExpect),
    /// It must not exist.
    Absent,
}

/// A target state, restricted to the objects a command touches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// The links that matter, and whether they must exist.
    pub links: Vec<(IfName, Presence)>,
    /// The devices whose addresses must be exactly [`Expected::addresses`].
    pub addressed: Vec<IfName>,
    /// Exactly the addresses the devices in [`Expected::addressed`] must have.
    pub addresses: Vec<Address>,
    /// The devices whose routes (every table but `local`) must be exactly
    /// [`Expected::routes`].
    pub routed: Vec<IfName>,
    /// Exactly the routes through the devices in [`Expected::routed`].
    pub routes: Vec<Route>,
    /// Knobs that must have these values.
    pub sysctls: Vec<SysctlValue>,
    /// Static entries that must be there (others may be there too).
    pub statics: Vec<Neighbour>,
    /// The tmpfs size that must hold, if any.
    pub tmpfs: Option<Tmpfs>,
    /// Devices env-qemu created, whose own IPv6 link-local (made by the kernel from their
    /// MAC) and `fe80::/64` route are theirs, not a difference.
    pub own_link_local: Vec<IfName>,
    /// Programs that must (`true`) or must not (`false`) manage a device: the DHCP client
    /// handed over to the bridge, and back.
    pub managed: Vec<(IfName, crate::host::Client, bool)>,
    /// A handed-over client makes its own copies of its `proto dhcp` routes, at its own
    /// metric: they compare by [`crate::plan::same_lease_route`].
    pub client_routes: bool,
    /// Devices NetworkManager configures. When it applies an RA's MTU it switches
    /// `accept_ra` on for an instant, and the kernel may take that RA: the IPv6 routes
    /// this makes (with an expiry: `proto ra` default, `proto kernel` prefix) are the
    /// kernel's, redundant with NM's, and expire; they are not differences (nm.md §6).
    #[serde(default)]
    pub nm_devices: Vec<IfName>,
}

/// One way the live state differs from the target, with the commands that would fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// `address 192.0.2.10/24 on eth0`, `interface lepont`, `route default via … dev eth0`.
    pub object: String,
    /// What it must be, as text.
    pub expected: String,
    /// What it is, as text (`absent` when missing).
    pub found: String,
    /// What would set it right, as operations (`ip` commands when displayed).
    pub fix: Vec<Op>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.object, self.expected, self.found
        )
    }
}

impl Expected {
    /// Every difference between `live` and this target, in a stable order: links, then
    /// addresses, routes, sysctls, neighbours, tmpfs.
    pub fn differences(&self, live: &Snapshot) -> Vec<Difference> {
        let mut out = Vec::new();
        for (name, p) in &self.links {
            link_differences(name, p, live.net.link(name), &mut out);
        }
        self.address_differences(live, &mut out);
        self.route_differences(live, &mut out);
        for want in &self.sysctls {
            let found = live.sysctl(&want.key);
            if found.is_some_and(|v| v != want.value) {
                out.push(Difference {
                    object: want.key.to_string(),
                    expected: want.value.clone(),
                    found: found.unwrap_or_default().to_string(),
                    fix: vec![Op::SysctlSet {
                        key: want.key.clone(),
                        value: want.value.clone(),
                    }],
                });
            }
        }
        for n in &self.statics {
            let there = live.neighbours_of(&n.dev).any(|l| {
                l.ip == n.ip
                    && l.lladdr == n.lladdr
                    && l.router == n.router
                    && l.state == NudState::Permanent
            });
            if !there && live.net.link(&n.dev).is_some() {
                out.push(Difference {
                    object: n.to_string(),
                    expected: "a static entry".into(),
                    found: "none".into(),
                    fix: crate::plan::put_static(n),
                });
            }
        }
        for (dev, client, wanted) in &self.managed {
            let running = live.managers.of(dev).any(|c| c.same_kind(client));
            if running != *wanted {
                let word = |b: bool| if b { "managing it" } else { "not managing it" };
                out.push(Difference {
                    object: format!("{} on {dev}", client.describe()),
                    expected: word(*wanted).into(),
                    found: word(running).into(),
                    fix: vec![],
                });
            }
        }
        if let (Some(want), Some(now)) = (&self.tmpfs, &live.tmpfs) {
            if want.path == now.path && want.size_bytes != now.size_bytes {
                out.push(Difference {
                    object: format!("tmpfs {}", want.path.display()),
                    expected: format!("size {}", crate::model::format_size(want.size_bytes)),
                    found: format!("size {}", crate::model::format_size(now.size_bytes)),
                    fix: vec![Op::TmpfsResize {
                        path: want.path.clone(),
                        size_bytes: want.size_bytes,
                    }],
                });
            }
        }
        out
    }

    fn kernel_own(&self, a: &Address, live: &Snapshot) -> bool {
        self.own_link_local.contains(&a.dev)
            && a.scope == AddrScope::Link
            && live
                .net
                .link(&a.dev)
                .is_some_and(|l| a.ip == std::net::IpAddr::V6(l.mac.link_local()))
    }

    fn address_differences(&self, live: &Snapshot, out: &mut Vec<Difference>) {
        for want in &self.addresses {
            if live.net.link(&want.dev).is_none() {
                continue;
            }
            match live
                .net
                .addresses_of(&want.dev)
                .find(|l| same_addr(l, want) && l.prefix_len == want.prefix_len)
            {
                // A privacy address is the kernel's to renew and replace (user space can
                // only keep a plain copy, until its short lifetime ends).
                None if want.has(AddrFlag::Temporary) => {}
                None => out.push(Difference {
                    object: want.to_string(),
                    expected: "present".into(),
                    found: "absent".into(),
                    fix: vec![Op::AddrAdd {
                        address: want.clone(),
                    }],
                }),
                Some(l) if !same_address(l, want) => out.push(Difference {
                    object: want.to_string(),
                    expected: describe_address(want),
                    found: describe_address(l),
                    fix: vec![
                        Op::AddrDel { address: l.clone() },
                        Op::AddrAdd {
                            address: want.clone(),
                        },
                    ],
                }),
                Some(_) => {}
            }
        }
        // Privacy addresses the kernel makes for an expected `mngtmpaddr` address (when it
        // is added, and at each RA) are its own: user space can neither make nor keep them.
        let temporary_of_expected = |l: &Address| {
            l.has(AddrFlag::Temporary)
                && self.addresses.iter().any(|w| {
                    w.dev == l.dev && w.has(AddrFlag::Mngtmpaddr) && w.prefix() == l.prefix()
                })
        };
        for dev in &self.addressed {
            for l in live.net.addresses_of(dev) {
                let wanted = self
                    .addresses
                    .iter()
                    .any(|w| same_addr(l, w) && l.prefix_len == w.prefix_len);
                if !wanted && !self.kernel_own(l, live) && !temporary_of_expected(l) {
                    out.push(Difference {
                        object: l.to_string(),
                        expected: "absent".into(),
                        found: describe_address(l),
                        fix: vec![Op::AddrDel { address: l.clone() }],
                    });
                }
            }
        }
    }

    fn route_differences(&self, live: &Snapshot, out: &mut Vec<Difference>) {
        let own_fe80 = |r: &Route| {
            r.dev
                .as_ref()
                .is_some_and(|d| self.own_link_local.contains(d))
                && r.family() == Family::Inet6
                && r.protocol == RouteProtocol::Kernel
                && r.dst.to_string() == "fe80::/64"
        };
        let live_routes: Vec<&Route> = live
            .net
            .routes
            .iter()
            .filter(|r| r.dev.as_ref().is_some_and(|d| self.routed.contains(d)))
            .collect();
        let same = |l: &Route, w: &Route| {
            same_route(l, w)
                || crate::plan::same_router(l, w)
                || (self.client_routes && crate::plan::same_lease_route(l, w))
        };
        for want in &self.routes {
            if live_routes.iter().any(|l| same(l, want)) {
                continue;
            }
            let holder = live_routes
                .iter()
                .find(|l| l.key() == want.key() && l.dev == want.dev);
            out.push(Difference {
                object: want.to_string(),
                expected: want.ip_args(),
                found: holder.map_or("absent".into(), |h| h.ip_args()),
                fix: vec![Op::RouteReplace {
                    route: want.clone(),
                }],
            });
        }
        // A kernel prefix route the kernel made for an address that is where it should be
        // is that address's, even if the saved state lacked it (someone had deleted it).
        let derived = |r: &Route| {
            r.protocol == RouteProtocol::Kernel
                && self.addresses.iter().any(|a| {
                    r.dev.as_ref() == Some(&a.dev)
                        && match a.family() {
                            Family::Inet => r.prefsrc == Some(a.ip),
                            Family::Inet6 => a.prefix() == r.dst,
                        }
                })
        };
        for l in live_routes {
            let wanted = self.routes.iter().any(|w| same(l, w));
            let paired = self
                .routes
                .iter()
                .any(|w| w.key() == l.key() && w.dev == l.dev);
            let ra_blip = |r: &Route| {
                r.family() == Family::Inet6
                    && r.expires.is_some()
                    && matches!(r.protocol, RouteProtocol::Ra | RouteProtocol::Kernel)
                    && r.dev.as_ref().is_some_and(|d| self.nm_devices.contains(d))
            };
            if !wanted && !paired && !own_fe80(l) && !derived(l) && !ra_blip(l) {
                out.push(Difference {
                    object: l.to_string(),
                    expected: "absent".into(),
                    found: l.ip_args(),
                    fix: vec![Op::RouteDel { route: l.clone() }],
                });
            }
        }
    }
}

fn link_differences(name: &IfName, p: &Presence, live: Option<&Link>, out: &mut Vec<Difference>) {
    let object = format!("interface {name}");
    let want = match (p, live) {
        (Presence::Absent, None) | (Presence::IfPresent(_), None) => return,
        (Presence::Absent, Some(l)) => {
            out.push(Difference {
                object,
                expected: "absent".into(),
                found: format!("a {}", l.kind.name()),
                fix: vec![Op::LinkDel { name: name.clone() }],
            });
            return;
        }
        (Presence::Present(_), None) => {
            out.push(Difference {
                object,
                expected: "present".into(),
                found: "absent".into(),
                fix: vec![],
            });
            return;
        }
        (Presence::Present(w) | Presence::IfPresent(w), Some(l)) => (w, l),
    };
    let (w, l) = want;
    let mut diff = |what: &str, expected: String, found: String, fix: Option<LinkChange>| {
        out.push(Difference {
            object: format!("{what} of interface {name}"),
            expected,
            found,
            fix: fix
                .map(|c| Op::LinkSet {
                    name: name.clone(),
                    change: c,
                })
                .into_iter()
                .collect(),
        });
    };
    if let Some(mac) = w.mac.filter(|m| *m != l.mac) {
        diff(
            "MAC",
            mac.to_string(),
            l.mac.to_string(),
            Some(LinkChange::Mac(mac)),
        );
    }
    if w.mtu != l.mtu {
        diff(
            "MTU",
            w.mtu.to_string(),
            l.mtu.to_string(),
            Some(LinkChange::Mtu(w.mtu)),
        );
    }
    if w.up != l.up {
        let word = |up: bool| if up { "up" } else { "down" }.to_string();
        let change = if w.up {
            LinkChange::Up
        } else {
            LinkChange::Down
        };
        diff("state", word(w.up), word(l.up), Some(change));
    }
    if w.master != l.master {
        let word = |m: &Option<IfName>| m.as_ref().map_or("none".into(), |m| m.to_string());
        let change = match &w.master {
            Some(m) => LinkChange::Master(m.clone()),
            None => LinkChange::NoMaster,
        };
        diff("master", word(&w.master), word(&l.master), Some(change));
    }
    if let Some(b) = &w.bridge {
        match &l.kind {
            LinkKind::Bridge(found) if found == b => {}
            k => diff("bridge settings", format!("{b:?}"), format!("{k:?}"), None),
        }
    }
}

/// Two copies of one address agree on everything a restore reproduces; lifetimes only as
/// finite or forever (they count down).
fn same_address(a: &Address, b: &Address) -> bool {
    let finite = |x: &Address| (x.valid_lft.is_some(), x.preferred_lft.is_some());
    let flags = |x: &Address| x.configurable_flags().collect::<Vec<AddrFlag>>();
    a.prefix_len == b.prefix_len
        && a.scope == b.scope
        && a.secondary == b.secondary
        && (a.family() == Family::Inet6 || a.broadcast == b.broadcast)
        && flags(a) == flags(b)
        && finite(a) == finite(b)
}

fn describe_address(a: &Address) -> String {
    let mut s = format!("{} scope {}", a.cidr(), a.scope.ip_word());
    if a.secondary {
        s.push_str(" secondary");
    }
    for f in a.configurable_flags() {
        s.push(' ');
        s.push_str(f.ip_word());
    }
    if a.valid_lft.is_some() {
        s.push_str(" dynamic");
    }
    s
}

/// The target of `start`: the NIC a port carrying nothing, the bridge carrying the NIC's
/// MAC, MTU, addresses, routes and static neighbours, the tmpfs grown.
pub fn bridged(pre: &Snapshot, req: &crate::plan::StartRequest) -> Expected {
    let (nic, br) = (&req.uplink, &req.bridge);
    let mut e = Expected::default();
    let Some(was) = pre.net.link(nic) else {
        return e;
    };
    e.links.push((
        nic.clone(),
        Presence::Present(LinkExpect {
            master: Some(br.clone()),
            ..expect_link(was)
        }),
    ));
    let nm = crate::nm::handover(pre, nic, br);
    let networkd = crate::networkd::handover(pre, nic, br);
    e.links.push((
        br.clone(),
        Presence::Present(LinkExpect {
            bridge: Some(BridgeInfo {
                stp: false,
                // NetworkManager's bridge profile cannot say 0.
                forward_delay: if nm.is_some() {
                    crate::nm::FORWARD_DELAY_CS
                } else {
                    0
                },
                mac_fixed: true,
            }),
            ..expect_link(was)
        }),
    ));
    e.addressed = vec![nic.clone(), br.clone()];
    e.addresses = pre.net.addresses_of(nic).map(|a| a.on(br)).collect();
    e.routed = vec![nic.clone(), br.clone()];
    e.routes = pre.net.routes_via(nic).map(|r| r.on(br)).collect();
    let knob = |k| pre.sysctl(&SysctlKey::new(nic, k)).map(str::to_string);
    use crate::model::Knob;
    for k in crate::plan::BRIDGE_TAKES {
        if let Some(v) = knob(k) {
            e.sysctls.push(value(br, k, v));
        }
    }
    for k in crate::plan::PORT_ZEROES {
        if knob(k).is_some() {
            e.sysctls.push(value(nic, k, "0".into()));
        }
    }
    let had_v6 = pre
        .net
        .addresses_of(nic)
        .any(|a| a.family() == Family::Inet6);
    if let Some(v) = knob(Knob::Ipv6AcceptDad).filter(|_| had_v6) {
        e.sysctls.push(value(br, Knob::Ipv6AcceptDad, v));
    }
    e.statics = crate::plan::statics_of(pre, nic)
        .map(|n| Neighbour {
            dev: br.clone(),
            state: NudState::Permanent,
            ..n.clone()
        })
        .collect();
    e.tmpfs = match (&req.shm, &pre.tmpfs) {
        (Some(shm), Some(t)) if t.path == shm.path => Some(Tmpfs {
            path: t.path.clone(),
            size_bytes: t.size_bytes.max(shm.size_bytes),
        }),
        _ => None,
    };
    e.own_link_local = vec![br.clone()];
    e.sysctls.extend(all_dad(pre));
    e.client_routes = crate::plan::client_makes_routes(pre, nic);
    for c in crate::plan::handed(pre, nic) {
        if let (Client::NetworkManager(_), Some(h)) = (c, &nm) {
            e.nm_devices = vec![br.clone()];
            // NetworkManager runs the bridge profile on the bridge, the port profile on
            // the NIC.
            for (dev, p) in [(br, &h.bridge), (nic, &h.port)] {
                e.managed.push((dev.clone(), nm_running(p), true));
            }
            continue;
        }
        if let (Client::Networkd(_), Some(h)) = (c, &networkd) {
            // networkd runs env-qemu's runtime files on the bridge and on the NIC.
            for f in [&h.bridge, &h.port] {
                e.managed
                    .push((f.dev.clone(), networkd_running(&f.path), true));
            }
            continue;
        }
        e.managed.push((nic.clone(), c.clone(), false));
        e.managed.push((br.clone(), c.clone(), true));
    }
    e
}

/// systemd-networkd applying `file` to a device, as a detection reports it.
fn networkd_running(file: &std::path::Path) -> Client {
    Client::Networkd(Box::new(crate::networkd::NetworkdLink {
        state: Some("configured".into()),
        network_file: Some(file.to_path_buf()),
        ..Default::default()
    }))
}

/// NetworkManager running profile `p` on its device, as a detection reports it.
fn nm_running(p: &crate::nm::NmProfile) -> Client {
    Client::NetworkManager(Box::new(crate::nm::NmDevice {
        active: Some(crate::nm::NmActive {
            uuid: p.uuid.clone(),
            id: p.id.clone(),
            state: crate::nm::NmActiveState::Activated,
            external: false,
        }),
        ..crate::nm::NmDevice::default()
    }))
}

/// The target of `stop` and of a rolled-back `start`: the NIC as the pre-start snapshot
/// has it, the bridge gone, the taps env-qemu attached detached and as they were.
pub fn restored(
    pre: &Snapshot,
    req: &crate::plan::StartRequest,
    taps: &[crate::plan::TapRecord],
) -> Expected {
    let (nic, br) = (&req.uplink, &req.bridge);
    let mut e = Expected::default();
    e.links.push((br.clone(), Presence::Absent));
    for t in taps {
        e.links
            .push((t.name.clone(), Presence::IfPresent(detached(t))));
    }
    let Some(was) = pre.net.link(nic) else {
        return e;
    };
    e.links
        .push((nic.clone(), Presence::Present(expect_link(was))));
    e.addressed = vec![nic.clone()];
    e.addresses = pre.net.addresses_of(nic).cloned().collect();
    e.routed = vec![nic.clone()];
    e.routes = pre.net.routes_via(nic).cloned().collect();
    e.sysctls = pre
        .sysctls
        .iter()
        .filter(|v| &v.key.dev == nic)
        .cloned()
        .collect();
    e.sysctls.extend(all_dad(pre));
    e.statics = crate::plan::statics_of(pre, nic).cloned().collect();
    e.tmpfs = req.shm.as_ref().and(pre.tmpfs.clone());
    e.client_routes = crate::plan::client_makes_routes(pre, nic);
    for c in crate::plan::handed(pre, nic) {
        if matches!(c, Client::NetworkManager(_)) {
            e.nm_devices = vec![nic.clone()];
        }
        e.managed.push((nic.clone(), c.clone(), true));
    }
    e
}

/// The target of `add TAP`: on the bridge, up, at the bridge's MTU.
pub fn attached(tap: &IfName, bridge: &IfName, mtu: u32) -> Expected {
    Expected {
        links: vec![(
            tap.clone(),
            Presence::Present(LinkExpect {
                mac: None,
                mtu,
                up: true,
                master: Some(bridge.clone()),
                bridge: None,
            }),
        )],
        ..Expected::default()
    }
}

/// The target of `del TAP` and of a rolled-back `add TAP`: off the bridge, as it was.
pub fn detached_tap(rec: &crate::plan::TapRecord) -> Expected {
    Expected {
        links: vec![(rec.name.clone(), Presence::IfPresent(detached(rec)))],
        ..Expected::default()
    }
}

fn detached(rec: &crate::plan::TapRecord) -> LinkExpect {
    LinkExpect {
        mac: None,
        mtu: rec.mtu,
        up: rec.up,
        master: None,
        bridge: None,
    }
}

fn expect_link(l: &Link) -> LinkExpect {
    LinkExpect {
        mac: Some(l.mac),
        mtu: l.mtu,
        up: l.up,
        master: l.master.clone(),
        bridge: None,
    }
}

fn value(dev: &IfName, knob: crate::model::Knob, value: String) -> SysctlValue {
    SysctlValue {
        key: SysctlKey::new(dev, knob),
        value,
    }
}

/// Whether what `op` is for already holds in `live`: the object a deletion removes is
/// absent, the object an addition makes is there with the same attributes, the setting is
/// at that value. A step that failed but whose purpose holds is done (the kernel, or a
/// program of the host, did it first).
pub fn holds(op: &Op, live: &Snapshot) -> bool {
    match op {
        Op::LinkAdd { spec } => live.net.link(spec.name()).is_some_and(|l| match spec {
            crate::op::LinkSpec::Bridge { mac, .. } => {
                l.kind.is_bridge() && mac.is_none_or(|m| m == l.mac)
            }
            crate::op::LinkSpec::Tap { owner, group, .. } => {
                matches!(l.kind, LinkKind::Tap(t) if t.owner == *owner && t.group == *group)
            }
            crate::op::LinkSpec::Veth { .. } => l.kind == LinkKind::Veth,
        }),
        Op::LinkDel { name } => live.net.link(name).is_none(),
        Op::LinkSet { name, change } => live.net.link(name).is_some_and(|l| match change {
            LinkChange::Up => l.up,
            LinkChange::Down => !l.up,
            LinkChange::Master(m) => l.master.as_ref() == Some(m),
            LinkChange::NoMaster => l.master.is_none(),
            LinkChange::Mtu(m) => l.mtu == *m,
            LinkChange::Mac(m) => l.mac == *m,
        }),
        Op::AddrAdd { address } => live
            .net
            .addresses_of(&address.dev)
            .any(|l| same_addr(l, address) && same_address(l, address)),
        Op::AddrDel { address } => !live
            .net
            .addresses_of(&address.dev)
            .any(|l| same_addr(l, address) && l.prefix_len == address.prefix_len),
        Op::RouteAdd { route } | Op::RouteReplace { route } | Op::RouteAppend { route } => {
            live.net.routes.iter().any(|l| same_route(l, route))
        }
        Op::RouteDel { route } => !live.net.routes.iter().any(|l| same_route(l, route)),
        Op::NeighReplace {
            dev,
            ip,
            lladdr,
            state,
            router,
        } => live.neighbours_of(dev).any(|l| {
            l.ip == *ip
                && l.lladdr == Some(*lladdr)
                && l.router == *router
                && (l.state == *state
                    || (!matches!(state, NudState::Permanent) && l.state.is_learnt()))
        }),
        Op::NeighDel { dev, ip } => !live
            .neighbours_of(dev)
            .any(|l| l.ip == *ip && l.lladdr.is_some()),
        Op::TmpfsResize { path, size_bytes } => live
            .tmpfs
            .as_ref()
            .is_some_and(|t| &t.path == path && t.size_bytes == *size_bytes),
        Op::SysctlSet { key, value } => live.sysctl(key) == Some(value.as_str()),
        // A program's state is not in a dump: a refused handover is a failure.
        Op::Host { .. } => false,
        Op::AwaitDad { dev, addresses } => !live
            .net
            .addresses_of(dev)
            .any(|a| addresses.contains(&a.ip) && a.has(AddrFlag::Tentative)),
    }
}

/// `all.accept_dad` as saved (switched off only while addresses arrive).
fn all_dad(pre: &Snapshot) -> Option<SysctlValue> {
    let key = SysctlKey::all(crate::model::Knob::Ipv6AcceptDad);
    pre.sysctl(&key).map(|v| SysctlValue {
        key: key.clone(),
        value: v.to_string(),
    })
}
