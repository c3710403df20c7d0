//! Operations: each one kernel request, one `ip` command, and the unit of journal, undo,
//! fault injection and `--dry-run`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{format_size, Address, Family, IfName, MacAddr, NudState, Route, SysctlKey};

/// A link to create.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkSpec {
    /// `ip link add NAME [address MAC] [mtu N] type bridge stp_state 0|1 forward_delay D`.
    /// Created down.
    Bridge {
        /// The bridge's name.
        name: IfName,
        /// Its MAC address (`address`); `None` lets the kernel pick a random one, replaced by the
        /// lowest port's MAC as ports join.
        mac: Option<MacAddr>,
        /// Its MTU (`mtu`); `None` leaves the kernel's 1500.
        mtu: Option<u32>,
        /// Spanning tree on (`stp_state 1`) or off (`stp_state 0`, what env-qemu makes: no 30 s
        /// listening and learning before a port forwards).
        stp: bool,
        /// `forward_delay`, in hundredths of a second (the kernel's unit for bridge times).
        forward_delay: u32,
    },
    /// `ip tuntap add dev NAME mode tap [user U] [group G]`: persistent, created through
    /// the tun ioctls (rtnetlink cannot create taps). Created down, without carrier.
    Tap {
        /// The tap's name.
        name: IfName,
        /// The user allowed to open it without privileges (`user U`, TUNSETOWNER); `None`: root
        /// only.
        owner: Option<u32>,
        /// The group allowed to open it (`group G`, TUNSETGROUP).
        group: Option<u32>,
    },
    /// `ip link add NAME type veth peer name PEER`: both ends, down.
    Veth {
        /// The first end's name.
        name: IfName,
        /// The peer's name.
        peer: IfName,
    },
}

impl LinkSpec {
    /// The name of the link to create.
    pub fn name(&self) -> &IfName {
        match self {
            LinkSpec::Bridge { name, .. }
            | LinkSpec::Tap { name, .. }
            | LinkSpec::Veth { name, .. } => name,
        }
    }
}

/// One attribute change of an existing link (`ip link set dev NAME …`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChange {
    /// `ip link set dev NAME up`: IFF_UP. Carrier still depends on the device (a cable, a bridge
    /// with a forwarding port).
    Up,
    /// `ip link set dev NAME down`: the kernel deletes the routes through it and, unless
    /// `keep_addr_on_down` is set, its IPv6 addresses; IPv4 addresses stay.
    Down,
    /// `ip link set dev NAME master BRIDGE`: make it a port of the bridge (IFLA_MASTER).
    Master(IfName),
    /// `ip link set dev NAME nomaster`: release it from its bridge.
    NoMaster,
    /// `ip link set dev NAME mtu N`. On a bridge, an MTU set this way is "set by user" and no
    /// longer follows its ports.
    Mtu(u32),
    /// `ip link set dev NAME address MAC`. On a bridge, a MAC set this way stays fixed instead of
    /// following the lowest port's.
    Mac(MacAddr),
}

/// Every change env-qemu makes to a kernel, as data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `ip link add …` / `ip tuntap add …`: creates a link, down. EEXIST when the name is taken.
    LinkAdd {
        /// What to create.
        spec: LinkSpec,
    },
    /// `ip link del dev NAME`: deletes the link with its addresses and routes (a bridge releases
    /// its ports first). ENODEV when there is none.
    LinkDel {
        /// The link to delete.
        name: IfName,
    },
    /// `ip link set dev NAME …`: one attribute change of an existing link.
    LinkSet {
        /// The link to change.
        name: IfName,
        /// What to change.
        change: LinkChange,
    },
    /// Adds `address` with its scope, configurable flags, broadcast and lifetimes. Kernel
    /// state in it (`secondary`, `tentative`) is not sent: the kernel decides it.
    AddrAdd {
        /// The address, on its device.
        address: Address,
    },
    /// `ip address del ADDR/LEN dev DEV`: deleting a primary IPv4 address deletes its secondaries
    /// too (unless `promote_secondaries`), and the last IPv4 address of a device flushes its IPv4
    /// routes. EADDRNOTAVAIL when absent.
    AddrDel {
        /// The address to delete (matched by device, address and prefix length).
        address: Address,
    },
    /// `ip route add …`: adds the route; EEXIST when one with the same key ([`Route::key`]) exists.
    RouteAdd {
        /// The route to add, with its device, gateway and attributes.
        route: Route,
    },
    /// Swaps the route with the same key ([`Route::key`]) in place, or adds it.
    RouteReplace {
        /// The route that replaces the one with its key.
        route: Route,
    },
    /// `ip route append`: adds the route behind those with the same key (EEXIST only for an
    /// identical one). What plans use to put back a kernel prefix route of an address that
    /// is there already: beside the same prefix of other devices, as the kernel adds its
    /// own (an IPv6 `add` is refused while another device's route has the key, and a
    /// `replace` would take that one).
    RouteAppend {
        /// The route to append.
        route: Route,
    },
    /// `ip route del …`: deletes the first route matching the key and the attributes given. ESRCH
    /// when none matches.
    RouteDel {
        /// The route to delete.
        route: Route,
    },
    /// `ip neigh replace IP lladdr MAC dev DEV nud STATE [router]`: creates the entry or
    /// overwrites it (a permanent one too), and sets or clears the router flag.
    NeighReplace {
        /// The device the entry belongs to.
        dev: IfName,
        /// The neighbour's IP address.
        ip: IpAddr,
        /// Its link-layer (MAC) address.
        lladdr: MacAddr,
        /// The entry's state (`nud permanent` for the static entries env-qemu moves).
        state: NudState,
        /// The `router` flag (NTF_ROUTER): the neighbour is an IPv6 router.
        router: bool,
    },
    /// `ip neigh del IP dev DEV`. ENOENT when there is no such entry.
    NeighDel {
        /// The device the entry belongs to.
        dev: IfName,
        /// The neighbour's IP address.
        ip: IpAddr,
    },
    /// `mount -o remount,size=SIZE PATH` (never umount: other programs have files there).
    TmpfsResize {
        /// The mount point.
        path: PathBuf,
        /// The new size, in bytes.
        size_bytes: u64,
    },
    /// `sysctl -w net.ipv6.conf.DEV.KNOB=VALUE`: writes one per-device knob under `/proc/sys`.
    /// ENOENT when the device (or its IPv6 configuration) is gone.
    SysctlSet {
        /// Which knob of which device.
        key: SysctlKey,
        /// The value written, as text.
        value: String,
    },
    /// Waits until the kernel has decided duplicate address detection for these IPv6
    /// addresses of `dev` (none `tentative` any more). DAD starts asynchronously after an
    /// address is added and reads `accept_dad` only then: an address added while DAD is
    /// switched off, whose DAD work runs after `accept_dad` is switched back on, sits
    /// `tentative` (unusable) for a second or more. A plan waits here before switching it
    /// back on. Changes nothing.
    AwaitDad {
        /// The device the addresses are on.
        dev: IfName,
        /// The addresses waited for; addresses already gone are not waited for.
        addresses: Vec<IpAddr>,
    },
    /// A change to a program that manages the uplink (a DHCP client handed over to the
    /// bridge); applied by the [`crate::host::Host`], not the kernel.
    Host {
        /// What to do, and to which program.
        host: crate::host::HostOp,
    },
}

impl Op {
    /// The object this operation acts on, as errors name it: `interface eth0`,
    /// `address 192.0.2.1/24 on eth0`, `route default via 192.0.2.1 dev eth0 table 100`.
    pub fn object(&self) -> String {
        match self {
            Op::LinkAdd { spec } => format!("interface {}", spec.name()),
            Op::LinkDel { name } | Op::LinkSet { name, .. } => format!("interface {name}"),
            Op::AddrAdd { address } | Op::AddrDel { address } => address.to_string(),
            Op::RouteAdd { route }
            | Op::RouteReplace { route }
            | Op::RouteAppend { route }
            | Op::RouteDel { route } => route.to_string(),
            Op::NeighReplace { dev, ip, .. } | Op::NeighDel { dev, ip } => {
                format!("neighbour {ip} on {dev}")
            }
            Op::TmpfsResize { path, .. } => format!("tmpfs {}", path.display()),
            Op::SysctlSet { key, .. } => key.to_string(),
            Op::AwaitDad { dev, .. } => format!("duplicate address detection on {dev}"),
            Op::Host { host } => host.object(),
        }
    }
}

impl fmt::Display for Op {
    /// The equivalent command, copy-pastable into a root shell.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::LinkAdd { spec } => match spec {
                LinkSpec::Bridge {
                    name,
                    mac,
                    mtu,
                    stp,
                    forward_delay,
                } => {
                    write!(f, "ip link add {name}")?;
                    if let Some(m) = mac {
                        write!(f, " address {m}")?;
                    }
                    if let Some(m) = mtu {
                        write!(f, " mtu {m}")?;
                    }
                    write!(
                        f,
                        " type bridge stp_state {} forward_delay {forward_delay}",
                        u8::from(*stp)
                    )
                }
                LinkSpec::Tap { name, owner, group } => {
                    write!(f, "ip tuntap add dev {name} mode tap")?;
                    if let Some(u) = owner {
                        write!(f, " user {u}")?;
                    }
                    if let Some(g) = group {
                        write!(f, " group {g}")?;
                    }
                    Ok(())
                }
                LinkSpec::Veth { name, peer } => {
                    write!(f, "ip link add {name} type veth peer name {peer}")
                }
            },
            Op::LinkDel { name } => write!(f, "ip link del dev {name}"),
            Op::LinkSet { name, change } => {
                write!(f, "ip link set dev {name} ")?;
                match change {
                    LinkChange::Up => f.write_str("up"),
                    LinkChange::Down => f.write_str("down"),
                    LinkChange::Master(m) => write!(f, "master {m}"),
                    LinkChange::NoMaster => f.write_str("nomaster"),
                    LinkChange::Mtu(m) => write!(f, "mtu {m}"),
                    LinkChange::Mac(m) => write!(f, "address {m}"),
                }
            }
            Op::AddrAdd { address: a } => {
                write!(f, "ip addr add {} dev {}", a.cidr(), a.dev)?;
                if a.family() == Family::Inet {
                    if let Some(b) = a.broadcast {
                        write!(f, " broadcast {b}")?;
                    }
                }
                if a.scope != crate::model::AddrScope::default_for(&a.ip) {
                    write!(f, " scope {}", a.scope.ip_word())?;
                }
                for flag in a.configurable_flags() {
                    write!(f, " {}", flag.ip_word())?;
                }
                if a.valid_lft.is_some() || a.preferred_lft.is_some() {
                    let lft = |v: Option<u32>| v.map_or("forever".to_string(), |s| s.to_string());
                    write!(
                        f,
                        " valid_lft {} preferred_lft {}",
                        lft(a.valid_lft),
                        lft(a.preferred_lft)
                    )?;
                }
                Ok(())
            }
            Op::AddrDel { address: a } => write!(f, "ip addr del {} dev {}", a.cidr(), a.dev),
            Op::RouteAdd { route } => write!(f, "ip {}route add {}", fam(route), route.ip_args()),
            Op::RouteReplace { route } => {
                write!(f, "ip {}route replace {}", fam(route), route.ip_args())
            }
            Op::RouteAppend { route } => {
                write!(f, "ip {}route append {}", fam(route), route.ip_args())
            }
            Op::RouteDel { route } => write!(f, "ip {}route del {}", fam(route), route.ip_args()),
            Op::NeighReplace {
                dev,
                ip,
                lladdr,
                state,
                router,
            } => {
                write!(
                    f,
                    "ip neigh replace {ip} lladdr {lladdr} dev {dev} nud {}",
                    state.ip_word()
                )?;
                if *router {
                    f.write_str(" router")?;
                }
                Ok(())
            }
            Op::NeighDel { dev, ip } => write!(f, "ip neigh del {ip} dev {dev}"),
            Op::TmpfsResize { path, size_bytes } => write!(
                f,
                "mount -o remount,size={} {}",
                format_size(*size_bytes),
                path.display()
            ),
            Op::SysctlSet { key, value } => write!(f, "sysctl -w {}={value}", key.dotted()),
            Op::Host { host } => write!(f, "{host}"),
            Op::AwaitDad { dev, addresses } => {
                let ips: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "while ip -6 addr show dev {dev} tentative | grep -qwE '{}'; do sleep 0.01; done",
                    ips.join("|")
                )
            }
        }
    }
}

fn fam(r: &Route) -> &'static str {
    match r.family() {
        Family::Inet => "",
        Family::Inet6 => "-6 ",
    }
}
