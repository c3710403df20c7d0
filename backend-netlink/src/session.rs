//! What `confirm` needs to know about the session it runs in, read from the kernel: the
//! SSH connection it arrives on (from `$SSH_CONNECTION`, else from an `sshd` among its
//! ancestors), when that connection was opened (the start of the oldest process holding
//! its socket: sshd forks one per connection), and the device the kernel routes replies
//! to the client through (`ip route get`). Also the process identities the revert agent
//! is known by, and the machine's CLOCK_BOOTTIME and boot id.
//!
//! Sockets are looked up in the target namespace (`/proc/thread-self/net/tcp*` read on
//! its worker thread): a session that does not come through that namespace does not
//! depend on its network, and counts as a console.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use env_qemu_core::model::IfName;
use env_qemu_core::pending::{BootTime, Clock, Connection, Origin, Pending};
use env_qemu_core::KernelError;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::errors::Failure;
use crate::request::{execute, Netlink};
use crate::NetlinkKernel;

/// CLOCK_BOOTTIME and the wall clock of this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn boottime(&self) -> BootTime {
        BootTime::from_duration(boottime())
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// `clock_gettime(CLOCK_BOOTTIME)`.
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_BOOTTIME always exists on
    // Linux (2.6.39 and later).
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// `/proc/sys/kernel/random/boot_id`: changes at every boot.
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Clock ticks per second of `/proc/PID/stat`'s times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

/// Fields of `/proc/PID/stat` after the parenthesised comm (which may hold blanks and
/// parentheses): `[state, ppid, pgrp, session, …]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `/proc/PID/stat`'s starttime (field 22: clock ticks after boot), and its state letter.
fn start_ticks(pid: u32) -> Option<(u64, char)> {
    let f = stat_fields(pid)?;
    let state = f.first()?.chars().next()?;
    Some((f.get(19)?.parse().ok()?, state))
}

/// The process `pid` as the revert agent is known: its start time in clock ticks.
pub fn process_start(pid: u32) -> Option<u64> {
    start_ticks(pid).map(|(t, _)| t)
}

/// When `pid` started, on CLOCK_BOOTTIME (to the clock tick, rounded down).
pub fn started_at(pid: u32) -> Option<BootTime> {
    let (ticks, _) = start_ticks(pid)?;
    Some(BootTime(ticks.saturating_mul(1000) / ticks_per_second()))
}

/// Whether the revert agent of `pending` still runs: its PID is a live process (not a
/// zombie) running the agent of that change (its command line names the change's token).
/// Where the command line cannot be read, the start time must match; it is not compared
/// otherwise, for `/proc/PID/stat` counts it on the reader's CLOCK_BOOTTIME, which a time
/// namespace offsets.
pub fn agent_alive(pending: &Pending) -> bool {
    let Some(agent) = &pending.agent else {
        return false;
    };
    let Some((ticks, state)) = start_ticks(agent.pid) else {
        return false;
    };
    if state == 'Z' || state == 'X' {
        return false;
    }
    match fs::read(format!("/proc/{}/cmdline", agent.pid)) {
        Ok(cmdline) if !cmdline.is_empty() => runs_agent_of(&cmdline, &pending.token),
        _ => ticks == agent.started,
    }
}

/// Whether a NUL-separated command line is that of the agent of `token`
/// (`… __agent --token TOKEN …`).
fn runs_agent_of(cmdline: &[u8], token: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&&b"__agent"[..])
        && args
            .windows(2)
            .any(|w| w[0] == b"--token" && w[1] == token.as_bytes())
}

/// `(session, process group)` of `pid`.
pub fn session_of(pid: u32) -> Option<(u32, u32)> {
    let f = stat_fields(pid)?;
    Some((f.get(3)?.parse().ok()?, f.get(2)?.parse().ok()?))
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn comm_of(pid: u32) -> Option<String> {
    Some(
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

/// The socket inodes `pid` holds open.
fn sockets_of(pid: u32) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| socket_inode(&l.to_string_lossy()))
        .collect()
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every process holding the socket `inode`.
fn holders_of(inode: u64) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| sockets_of(*pid).contains(&inode))
        .collect()
}

/// One line of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub established: bool,
    pub inode: u64,
}

/// Parses `/proc/net/tcp` or `/proc/net/tcp6`: addresses in hex, each 32-bit word in
/// host byte order.
pub(crate) fn parse_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local: endpoint(f.get(1)?)?,
                remote: endpoint(f.get(2)?)?,
                established: *f.get(3)? == "01",
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

fn endpoint(hex: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<u32>> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.into_iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            plain(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// `::ffff:192.0.2.10` (an IPv4 peer of a dual-stack socket) as `192.0.2.10`.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `$SSH_CONNECTION`: `CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT`.
pub fn parse_ssh_connection(text: &str) -> Option<((IpAddr, u16), (IpAddr, u16))> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 4 {
        return None;
    }
    let ip = |s: &str| s.parse::<IpAddr>().ok().map(plain);
    Some((
        (ip(f[0])?, f[1].parse().ok()?),
        (ip(f[2])?, f[3].parse().ok()?),
    ))
}

/// The first of `me`'s ancestors (itself excluded) that is an sshd (`sshd`,
/// `sshd-session`): the server side of an SSH session, even where sudo dropped
/// `$SSH_CONNECTION`.
fn sshd_ancestor(me: u32) -> Option<u32> {
    let mut pid = parent_of(me)?;
    for _ in 0..64 {
        if pid <= 1 {
            return None;
        }
        if comm_of(pid).is_some_and(|c| c.starts_with("sshd")) {
            return Some(pid);
        }
        pid = parent_of(pid)?;
    }
    None
}

impl NetlinkKernel {
    /// The TCP sockets of this kernel's namespace.
    pub(crate) async fn tcp_sockets(&self) -> Result<Vec<TcpSocket>, KernelError> {
        let read = self
            .worker()
            .run(|_| {
                let mut all = Vec::new();
                for file in ["tcp", "tcp6"] {
                    match fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
                        Ok(text) => all.extend(parse_tcp(&text)),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(all)
            })
            .await;
        read.and_then(|r| {
            r.map_err(|e| Failure::errno(e.raw_os_error().unwrap_or(libc::EIO), None))
        })
        .map_err(|f| f.into_kernel_error(format!("the TCP sockets of {}", self.namespace())))
    }

    /// The device the kernel sends packets to `dst` through (`ip route get DST`); `None`
    /// when it has no route (unreachable, prohibit).
    pub async fn route_dev(&self, dst: IpAddr) -> Result<Option<IfName>, KernelError> {
        let nl = self.worker().netlink();
        let object = || format!("the route to {dst} in {}", self.namespace());
        let oif = route_oif(nl, dst)
            .await
            .map_err(|f| f.into_kernel_error(object()))?;
        let Some(index) = oif else { return Ok(None) };
        let name = link_name(nl, index)
            .await
            .map_err(|f| f.into_kernel_error(object()))?;
        Ok(name.and_then(|n| IfName::new(&n).ok()))
    }

    /// Where a command run by process `me` comes from: the SSH connection named by
    /// `ssh_connection` (`$SSH_CONNECTION`) or held by an sshd among `me`'s ancestors, if
    /// it is a TCP connection of this namespace; else a console.
    pub async fn origin(
        &self,
        ssh_connection: Option<&str>,
        me: u32,
    ) -> Result<Origin, KernelError> {
        let sockets = self.tcp_sockets().await?;
        let live = |s: &&TcpSocket| s.established;
        let (sock, found_by) = match ssh_connection.filter(|s| !s.trim().is_empty()) {
            Some(text) => {
                let Some((client, server)) = parse_ssh_connection(text) else {
                    return Ok(Origin::Console(format!(
                        "$SSH_CONNECTION ({text:?}) names no connection"
                    )));
                };
                let found = sockets.iter().filter(live).find(|s| {
                    (plain(s.local.0), s.local.1) == server
                        && (plain(s.remote.0), s.remote.1) == client
                });
                match found {
                    Some(s) => (s.clone(), "$SSH_CONNECTION".to_string()),
                    None => {
                        return Ok(Origin::Console(format!(
                            "$SSH_CONNECTION names no established TCP connection of {}: the session does not come through it",
                            self.namespace()
                        )))
                    }
                }
            }
            None => {
                let Some(sshd) = sshd_ancestor(me) else {
                    return Ok(Origin::Console(
                        "no $SSH_CONNECTION and no sshd among this command's parents".into(),
                    ));
                };
                let mine = sockets_of(sshd);
                match sockets
                    .iter()
                    .filter(live)
                    .find(|s| mine.contains(&s.inode))
                {
                    Some(s) => (s.clone(), format!("the socket of sshd (PID {sshd})")),
                    None => {
                        return Ok(Origin::Console(format!(
                            "the SSH session of sshd (PID {sshd}) does not come through {}",
                            self.namespace()
                        )))
                    }
                }
            }
        };
        let opened = holders_of(sock.inode)
            .into_iter()
            .filter_map(started_at)
            .min();
        let client = plain(sock.remote.0);
        let route_dev = match self.route_dev(client).await {
            Ok(Some(dev)) => Ok(dev),
            Ok(None) => Err(format!("the kernel has no route to {client}")),
            Err(e) => Err(e.to_string()),
        };
        Ok(Origin::Remote(Connection {
            client,
            client_port: sock.remote.1,
            server: plain(sock.local.0),
            server_port: sock.local.1,
            found_by,
            opened,
            route_dev,
        }))
    }
}

/// `RTM_GETROUTE` for `dst`: the output interface's index.
async fn route_oif(nl: &Netlink, dst: IpAddr) -> Result<Option<u32>, Failure> {
    let mut query = RouteMessage::default();
    let (family, len, addr) = match dst {
        IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
    };
    query.header.address_family = family;
    query.header.destination_prefix_length = len;
    query.attributes.push(RouteAttribute::Destination(addr));
    let answers = match execute(nl, RouteNetlinkMessage::GetRoute(query), 0).await {
        Ok(a) => a,
        Err(Failure::Errno { errno, .. })
            if [
                libc::ENETUNREACH,
                libc::EHOSTUNREACH,
                libc::EACCES,
                libc::EINVAL,
            ]
            .contains(&errno) =>
        {
            return Ok(None)
        }
        Err(f) => return Err(f),
    };
    Ok(answers.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }),
        _ => None,
    }))
}

/// The name of the interface with ifindex `index`.
async fn link_name(nl: &Netlink, index: u32) -> Result<Option<String>, Failure> {
    let mut query = LinkMessage::default();
    query.header.index = index;
    let answers = execute(nl, RouteNetlinkMessage::GetLink(query), 0).await?;
    Ok(answers.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        }),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_read_back() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0A0200C0:0016 026433C6:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17 1 0000000000000000 100 0 0 10 0";
        let s = parse_tcp(v4);
        assert_eq!(s.len(), 2);
        if cfg!(target_endian = "little") {
            assert_eq!(s[0].local, ("192.0.2.10".parse().unwrap(), 22));
            assert_eq!(s[0].remote, ("198.51.100.2".parse().unwrap(), 40000));
        }
        assert!(s[0].established);
        assert_eq!(s[0].inode, 4242);
        assert!(!s[1].established);
    }

    #[test]
    fn mapped_v6_peers_are_v4() {
        if !cfg!(target_endian = "little") {
            return;
        }
        // ::ffff:192.0.2.10 as /proc/net/tcp6 writes it on little-endian machines.
        let (ip, port) = endpoint("0000000000000000FFFF00000A0200C0:0016").unwrap();
        assert_eq!(ip, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(port, 22);
        let (ip, _) = endpoint("B80D0120000000000000000002000000:0016").unwrap();
        assert_eq!(ip, "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ssh_connection_words() {
        let ((c, cp), (s, sp)) = parse_ssh_connection("198.51.100.2 40000 192.0.2.10 22").unwrap();
        assert_eq!(
            (c.to_string(), cp, s.to_string(), sp),
            ("198.51.100.2".into(), 40000, "192.0.2.10".into(), 22)
        );
        assert!(parse_ssh_connection("198.51.100.2 40000 192.0.2.10").is_none());
        assert!(parse_ssh_connection("x 1 y 2").is_none());
        let ((c, _), _) = parse_ssh_connection("::ffff:198.51.100.2 1 2001:db8::10 22").unwrap();
        assert_eq!(c.to_string(), "198.51.100.2");
    }

    #[test]
    fn agents_are_known_by_the_token_on_their_command_line() {
        let line = b"/run/env-qemu/agent-ab/env-qemu\0--state-dir\0/run/env-qemu\0__agent\0--token\0ab\0--ready\0x\0";
        assert!(runs_agent_of(line, "ab"));
        assert!(!runs_agent_of(line, "abc"));
        assert!(!runs_agent_of(b"sleep\0--token\0ab\0", "ab"));
    }

    #[test]
    fn this_test_is_no_agent_but_is_dated() {
        let me = std::process::id();
        let started = process_start(me).expect("own stat");
        let mut p = Pending::new("ab".into(), "b".into(), Duration::from_secs(1), BootTime(0));
        assert!(!agent_alive(&p), "no agent answered");
        p.agent = Some(env_qemu_core::pending::AgentId {
            pid: me,
            started,
            path: env_qemu_core::pending::AgentPath::Detached,
        });
        assert!(!agent_alive(&p), "this process runs no agent");
        let at = started_at(me).unwrap();
        assert!(at.as_duration() <= boottime());
    }
}
