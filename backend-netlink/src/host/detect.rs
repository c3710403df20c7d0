//! Who manages each device, found on the host: the programs of the target network
//! namespace, their pid files, sockets and lease files (docs/kernel-behaviour.md, C4–C8).
//!
//! Runs on a thread inside the target network namespace (for `/proc/thread-self/net`
//! and interface indexes), in env-qemu's own mount namespace: the /run it reads is
//! env-qemu's. A program of the namespace whose files are elsewhere (another mount
//! namespace, as a confined daemon has) is named as such, never taken for absent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use env_qemu_core::host::{Client, DhcpcdMode, Managed, Managers};
use env_qemu_core::model::IfName;

use super::dhclient;
use super::dhcpcd::{self, Answer};
use super::process::{self, Proc, Scan};

/// What [`super::SystemHost::detect`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    /// The programs managing each device asked about, in the order of the devices.
    pub managers: Managers,
    /// What stands in the way of a handover, one entry per device it concerns. Each also
    /// appears in `managers` as a [`Client::Unknown`] naming it, so that start refuses.
    pub problems: Vec<Problem>,
    /// Processes whose network namespace could not be read (other users' processes,
    /// when not root): what they are is not known.
    pub unreadable: usize,
}

/// A program that manages a device but cannot be handed over from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub dev: IfName,
    /// `dhcpcd manager`, `dhclient`…
    pub program: String,
    pub pid: u32,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// dhcpcd's control socket does not answer the health check (`--getinterfaces`
    /// bundled with `--version`): the one client slot of dhcpcd 9.4.1's privilege
    /// separation is stuck, or the socket is gone.
    NoAnswer { socket: PathBuf, why: String },
    /// The program lives in the target network namespace, but its files (/run) are in
    /// another mount namespace: env-qemu cannot read its state nor restart it there.
    OtherMountNamespace,
    /// NetworkManager runs, but the system bus at `address` does not lead to it: it
    /// cannot be connected to, or another NetworkManager answers there.
    NoBus { address: String, why: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (program, pid, dev) = (&self.program, self.pid, &self.dev);
        match &self.kind {
            ProblemKind::NoAnswer { socket, why } => write!(
                f,
                "{program} (pid {pid}) may manage {dev}, but its control socket {} {why}: \
                 start cannot hand it over. dhcpcd 9.4.1 takes one control command that gets \
                 no reply and then ignores every other until it restarts: restart it \
                 (`dhcpcd -x` ends it by signal, and with `persistent` its addresses stay), \
                 then start its service again",
                socket.display()
            ),
            ProblemKind::NoBus { address, why } => write!(
                f,
                "{program} (pid {pid}) runs in this network namespace and may manage {dev}, \
                 but env-qemu cannot ask it over the system bus {address} ({why}): start \
                 cannot hand {dev} over. Run env-qemu where NetworkManager's system bus is \
                 (`nsenter -t {pid} -m -n env-qemu …`), or set DBUS_SYSTEM_BUS_ADDRESS to it"
            ),
            ProblemKind::OtherMountNamespace => write!(
                f,
                "{program} (pid {pid}) runs in this network namespace and may manage {dev}, \
                 but its files are in another mount namespace, out of env-qemu's sight: run \
                 env-qemu there (`nsenter -t {pid} -m -n env-qemu …`)"
            ),
        }
    }
}

/// Other DHCP clients env-qemu knows by name but cannot hand over.
const OTHER_CLIENTS: &[&str] = &[
    "udhcpc",
    "udhcpc6",
    "odhcpc",
    "odhcp6c",
    "dhcp6c",
    "pump",
    "wickedd-dhcp4",
    "wickedd-dhcp6",
    "connmand",
    "netifd",
];

/// Programs looked at by name above the generic raw-socket check.
const KNOWN: &[&str] = &["dhcpcd", "dhclient", "NetworkManager", "systemd-network"];

/// ETH_P_IP: the packet sockets DHCP clients read offers from (dhclient uses ETH_P_ALL;
/// so do packet capture tools, which are no managers).
const ETH_P_IP: u16 = 0x0800;

struct Found<'a> {
    devs: &'a [IfName],
    managed: Vec<Managed>,
    problems: Vec<Problem>,
    seen: BTreeSet<(IfName, String)>,
}

impl<'a> Found<'a> {
    fn wanted(&self, name: &str) -> Option<&'a IfName> {
        self.devs.iter().find(|d| d.as_str() == name)
    }

    /// The devices asked about among `names`, or every one when `names` is `None`.
    fn among(&self, names: Option<&[String]>) -> Vec<IfName> {
        match names {
            None => self.devs.to_vec(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.wanted(n))
                .cloned()
                .collect(),
        }
    }

    fn add(&mut self, dev: &IfName, client: Client) {
        if self.seen.insert((dev.clone(), client.describe())) {
            self.managed.push(Managed {
                dev: dev.clone(),
                client,
            });
        }
    }

    fn problem(&mut self, dev: &IfName, program: &str, pid: u32, kind: ProblemKind, name: String) {
        self.add(
            dev,
            Client::Unknown {
                name,
                pid: Some(pid),
            },
        );
        self.problems.push(Problem {
            dev: dev.clone(),
            program: program.to_string(),
            pid,
            kind,
        });
    }

    fn elsewhere(&mut self, devs: &[IfName], program: &str, pid: u32) {
        for dev in devs {
            let name = format!("{program} in another mount namespace");
            self.problem(dev, program, pid, ProblemKind::OtherMountNamespace, name);
        }
    }

    fn finish(mut self, unreadable: usize) -> Detected {
        let order = |d: &IfName| self.devs.iter().position(|x| x == d);
        // Stable: programs keep the order they were found in, per device.
        self.managed.sort_by_key(|m| order(&m.dev));
        self.problems.sort_by_key(|p| order(&p.dev));
        Detected {
            managers: Managers {
                managed: self.managed,
            },
            problems: self.problems,
            unreadable,
        }
    }
}

/// Detection for `devs` in the network namespace of inode `netns`; the calling thread
/// must be in it.
pub(crate) fn detect(netns: u64, devs: &[IfName], bus: Option<&str>) -> std::io::Result<Detected> {
    let scan = process::scan(netns)?;
    let mut found = Found {
        devs,
        managed: Vec::new(),
        problems: Vec::new(),
        seen: BTreeSet::new(),
    };
    dhcpcd_daemons(&scan, &mut found);
    dhclients(&scan, &mut found);
    if let Some(nm) = scan.named("NetworkManager").next() {
        network_manager(&scan, nm, bus, &mut found);
    }
    if let Some(networkd) = scan.named("systemd-network").next() {
        networkd_links(&scan, networkd, &mut found);
    }
    other_clients(&scan, &mut found);
    raw_socket_holders(&scan, &mut found);
    Ok(found.finish(scan.unreadable))
}

fn dhcpcd_daemons(scan: &Scan, found: &mut Found<'_>) {
    let daemons = dhcpcd::daemons(scan);
    for d in &daemons {
        let program = match d.mode {
            DhcpcdMode::Manager => "dhcpcd manager",
            DhcpcdMode::PerInterface => "dhcpcd",
        };
        let targets = found.among(d.dev.as_ref().map(std::slice::from_ref));
        let answer = dhcpcd::exchange(&d.socket, dhcpcd::GET_INTERFACES, dhcpcd::REPLY_TIMEOUT);
        let why = match answer {
            Ok(Answer::Replied(bytes)) => match dhcpcd::parse_interfaces(&bytes) {
                Ok(dumps) => {
                    let managed = dhcpcd::managed(&dumps);
                    for dev in &targets {
                        let lease = managed.get(dev.as_str());
                        // A daemon for one interface manages it, bound or not; a
                        // manager, the interfaces it lists.
                        if lease.is_none() && d.mode == DhcpcdMode::Manager {
                            continue;
                        }
                        let client = Client::Dhcpcd {
                            mode: d.mode.clone(),
                            socket: d.socket.clone(),
                            pid: d.pid,
                            lease: lease.cloned().flatten(),
                        };
                        found.add(dev, client);
                    }
                    continue;
                }
                Err(e) => format!("answers what env-qemu cannot read ({e})"),
            },
            Ok(Answer::Silent { .. }) => format!(
                "answers nothing within {:.0} s",
                dhcpcd::REPLY_TIMEOUT.as_secs_f64()
            ),
            Ok(Answer::Closed { .. }) => "closes the connection without answering".to_string(),
            Err(e) => format!("cannot be reached ({e})"),
        };
        for dev in &targets {
            let name = format!("{program} that does not answer on {}", d.socket.display());
            let kind = ProblemKind::NoAnswer {
                socket: d.socket.clone(),
                why: why.clone(),
            };
            found.problem(dev, program, d.pid, kind, name);
        }
    }
    let known: BTreeSet<u32> = daemons.iter().map(|d| d.pid).collect();
    for head in dhcpcd::heads(scan).filter(|h| !known.contains(&h.pid)) {
        let dev = dhcpcd::title_devices(&head.argv).map(|d| vec![d]);
        let targets = found.among(dev.as_deref());
        if !process::sees_same(scan, head.pid, Path::new(dhcpcd::RUNDIR)) {
            found.elsewhere(&targets, "dhcpcd", head.pid);
            continue;
        }
        for dev in &targets {
            let client = Client::Unknown {
                name: format!("dhcpcd without a pid file in {}", dhcpcd::RUNDIR),
                pid: Some(head.pid),
            };
            found.add(dev, client);
        }
    }
}

fn dhclients(scan: &Scan, found: &mut Found<'_>) {
    for p in scan.named("dhclient") {
        let args = dhclient::parse_args(&p.argv);
        // ifupdown's pid file names the interface even when the command line does not.
        let by_pid_file: Vec<String> = found
            .devs
            .iter()
            .filter(|d| {
                fs::read_to_string(format!("/run/dhclient.{d}.pid"))
                    .is_ok_and(|s| s.trim().parse() == Ok(p.pid))
            })
            .map(|d| d.to_string())
            .collect();
        let every = args.ifaces.is_empty() && by_pid_file.is_empty();
        let names: Vec<String> = args.ifaces.iter().chain(&by_pid_file).cloned().collect();
        let targets = found.among((!every).then_some(names.as_slice()));
        if targets.is_empty() {
            continue;
        }
        if !process::sees_same(scan, p.pid, &args.pid_file) {
            found.elsewhere(&targets, "dhclient", p.pid);
            continue;
        }
        if every {
            for dev in &targets {
                let client = Client::Unknown {
                    name: "dhclient for every interface (its command line names none)".into(),
                    pid: Some(p.pid),
                };
                found.add(dev, client);
            }
            continue;
        }
        let lease_file = if args.lease_file.is_relative() {
            PathBuf::from(format!("/proc/{}/cwd", p.pid)).join(&args.lease_file)
        } else {
            args.lease_file.clone()
        };
        let leases = fs::read_to_string(lease_file).unwrap_or_default();
        for dev in &targets {
            let client = Client::Dhclient {
                pid: p.pid,
                argv: p.argv.clone(),
                lease: dhclient::lease_of(&leases, dev.as_str(), args.v6),
            };
            found.add(dev, client);
        }
    }
}

/// NetworkManager, asked over the system bus `bus` (`DBUS_SYSTEM_BUS_ADDRESS`) or, when
/// none is given, the default one if the daemon sees the same socket there. Every device
/// it knows gets a [`Client::NetworkManager`] with its view (a profile of its own active
/// there, or one it assumed, or none). A daemon out of reach is named as a problem.
fn network_manager(scan: &Scan, nm: &Proc, bus: Option<&str>, found: &mut Found<'_>) {
    let devs = found.devs.to_vec();
    let address = match bus {
        Some(a) => a,
        None => {
            let path = Path::new(super::nm::DEFAULT_BUS.trim_start_matches("unix:path="));
            if !process::sees_same(scan, nm.pid, path) {
                found.elsewhere(&devs, "NetworkManager", nm.pid);
                return;
            }
            super::nm::DEFAULT_BUS
        }
    };
    let asked = super::nm::Nm::connect(address, nm.pid).and_then(|c| c.devices(&devs));
    match asked {
        Ok(views) => {
            for (dev, view) in views {
                found.add(&dev, Client::NetworkManager(Box::new(view)));
            }
        }
        Err(why) => {
            for dev in &devs {
                let kind = ProblemKind::NoBus {
                    address: address.to_string(),
                    why: why.to_string(),
                };
                let name = format!("NetworkManager out of reach on {address}");
                found.problem(dev, "NetworkManager", nm.pid, kind, name);
            }
        }
    }
}

/// systemd-networkd manages a link unless its state file says `ADMIN_STATE=unmanaged`
/// (no .network file matched it). A device that does not exist is nobody's yet. What its
/// state files say (the `.network` file applied, the lease and its IAID) is read only
/// where networkd sees the same files as env-qemu.
fn networkd_links(scan: &Scan, networkd: &Proc, found: &mut Found<'_>) {
    let dir = Path::new(super::networkd::LINKS);
    let readable = process::sees_same(scan, networkd.pid, dir);
    for dev in found.devs {
        let Some(index) = if_index(dev) else {
            continue;
        };
        let link = if readable {
            super::networkd::link(index).unwrap_or_default()
        } else {
            Default::default()
        };
        if link.state.as_deref() == Some("unmanaged") {
            continue;
        }
        found.add(dev, Client::Networkd(Box::new(link)));
    }
}

/// The index of interface `dev` in the calling thread's namespace.
pub(crate) fn if_index(dev: &IfName) -> Option<u32> {
    let name = std::ffi::CString::new(dev.as_str()).ok()?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The interface names of the calling thread's namespace.
fn interface_names() -> Vec<String> {
    fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// Which interfaces a command line names: a word that is the name, `-iNAME`, or ends in
/// `=NAME`.
fn names_in(argv: &[String], ifaces: &[String]) -> Vec<String> {
    ifaces
        .iter()
        .filter(|i| {
            argv.iter().skip(1).any(|w| {
                w == *i
                    || w.strip_prefix("-i") == Some(i.as_str())
                    || w.rsplit_once('=').is_some_and(|(_, v)| v == i.as_str())
            })
        })
        .cloned()
        .collect()
}

fn other_clients(scan: &Scan, found: &mut Found<'_>) {
    let ifaces = interface_names();
    for p in scan
        .procs
        .iter()
        .filter(|p| OTHER_CLIENTS.contains(&p.comm.as_str()))
    {
        let named = names_in(&p.argv, &ifaces);
        let targets = found.among((!named.is_empty()).then_some(named.as_slice()));
        for dev in &targets {
            let client = Client::Unknown {
                name: p.comm.clone(),
                pid: Some(p.pid),
            };
            found.add(dev, client);
        }
    }
}

/// `/proc/net/packet` rows: protocol, interface index, socket inode.
fn packet_sockets(text: &str) -> Vec<(u16, u32, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                u16::from_str_radix(f.get(3)?, 16).ok()?,
                f.get(4)?.parse().ok()?,
                f.get(8)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Programs env-qemu does not know that hold an IPv4 packet socket on a device, as DHCP
/// clients do.
fn raw_socket_holders(scan: &Scan, found: &mut Found<'_>) {
    let rows =
        packet_sockets(&fs::read_to_string("/proc/thread-self/net/packet").unwrap_or_default());
    let mut by_inode: BTreeMap<u64, &IfName> = BTreeMap::new();
    for dev in found.devs {
        let Some(index) = if_index(dev) else {
            continue;
        };
        for (_, _, inode) in rows.iter().filter(|r| r.0 == ETH_P_IP && r.1 == index) {
            by_inode.insert(*inode, dev);
        }
    }
    if by_inode.is_empty() {
        return;
    }
    let others = scan
        .procs
        .iter()
        .filter(|p| !KNOWN.contains(&p.comm.as_str()) && !OTHER_CLIENTS.contains(&p.comm.as_str()));
    for p in others {
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", p.pid)) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok());
            if let Some(dev) = inode.and_then(|i| by_inode.get(&i)) {
                let client = Client::Unknown {
                    name: format!(
                        "{} (an IPv4 packet socket on {dev}, as DHCP clients use)",
                        p.comm
                    ),
                    pid: Some(p.pid),
                };
                found.add(dev, client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn interfaces_a_command_line_names() {
        let ifaces = words("lo eth0 eth1 lepont");
        assert_eq!(names_in(&words("udhcpc -i eth0 -b"), &ifaces), ["eth0"]);
        assert_eq!(names_in(&words("udhcpc -ieth1"), &ifaces), ["eth1"]);
        assert_eq!(
            names_in(&words("x --interface=lepont"), &ifaces),
            ["lepont"]
        );
        assert!(names_in(&words("udhcpc -b"), &ifaces).is_empty());
        // argv[0] is the program, never an interface.
        assert!(names_in(&words("eth0"), &ifaces).is_empty());
    }

    #[test]
    fn packet_socket_rows() {
        let text = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n\
                    00000000d5b021f6 3      3    0003   2     1 0      0      772107\n\
                    00000000aa000001 3      2    0800   3     1 0      0      772200\n";
        assert_eq!(
            packet_sockets(text),
            vec![(0x0003, 2, 772107), (0x0800, 3, 772200)]
        );
    }

    #[test]
    fn problems_say_what_to_do() {
        let p = Problem {
            dev: IfName::new("eth0").unwrap(),
            program: "dhcpcd".into(),
            pid: 812,
            kind: ProblemKind::OtherMountNamespace,
        };
        assert!(
            p.to_string().contains("`nsenter -t 812 -m -n env-qemu …`"),
            "{p}"
        );
        let p = Problem {
            kind: ProblemKind::NoAnswer {
                socket: "/run/dhcpcd/sock".into(),
                why: "answers nothing within 2 s".into(),
            },
            ..p
        };
        assert!(p.to_string().contains("restart it"), "{p}");
    }
}
