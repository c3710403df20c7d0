//! Network scripts as operations: `ip` command lines (and the `sysctl -w` and
//! `mount -o remount,size=` lines env-qemu's own plans print) parsed into core [`Op`]s,
//! to run on a [`SimKernel`].
//!
//! What a script may hold, one command a line:
//! - `ip [-4|-6] [-n NETNS] OBJECT VERB …`, or the same without `ip` as `ip -batch` reads
//!   it: `link add NAME [address MAC] [mtu N] type bridge [stp_state 0|1]
//!   [forward_delay N]` or `type veth peer name PEER`; `link del`; `link set [dev] NAME`
//!   with `up`, `down`, `master BR`, `nomaster`, `mtu N`, `address MAC`; `tuntap add|del
//!   [dev] NAME mode tap [user UID] [group GID]`; `addr add|del CIDR [brd ADDR|+]
//!   [scope S] [FLAGS] [valid_lft N preferred_lft N] dev DEV`; `route
//!   add|replace|append|del [TYPE] PREFIX|default [via GW] [dev DEV] [table T]
//!   [proto P] [scope S] [src IP] [metric N] [onlink] [pref P] [expires N] [METRICS]`;
//!   `neigh add|replace|change|del IP [lladdr MAC] dev DEV [nud STATE] [router]`.
//!   `show`, `list` and `get` change nothing: they give no operation.
//! - `sysctl -w net.ipv6.conf.DEV.KNOB=VALUE` for the knobs env-qemu touches.
//! - `mount -o remount,size=SIZE PATH`.
//! - Comments (`#` to the end of the line), blank lines, `\` continuations.
//!
//! Shell is not interpreted: no variables, loops or pipes. Write the commands out, as
//! `bash -x` prints them or as `ip -batch` takes them.
//!
//! A few readings to know:
//! - each setting of one `ip link set` line is one operation, in the order written;
//! - `ip neigh add` is read as `replace` (core has one operation that creates an entry):
//!   a script relying on `add` failing for an existing entry is not checked on that;
//! - `ip route del` matches as the kernel does: what the line leaves out (metric,
//!   protocol, scope, type, gateway, device) matches any;
//! - the namespace of `-n NETNS` is recorded ([`Command::netns`]), not used: the
//!   simulated kernel is one namespace.
//!
//! ```
//! use env_qemu_backend_fake::testkit::script::Script;
//!
//! let s = Script::parse("ip link add lepont type bridge\n# comment\nip link set eth0 master lepont up")
//!     .unwrap();
//! let ops: Vec<String> = s.ops().map(|o| o.to_string()).collect();
//! assert_eq!(ops, [
//!     "ip link add lepont type bridge stp_state 0 forward_delay 1500",
//!     "ip link set dev eth0 master lepont",
//!     "ip link set dev eth0 up",
//! ]);
//! let e = Script::parse("ip link add x type dummy").unwrap_err();
//! assert_eq!((e.line, e.token.as_str()), (1, "dummy"));
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use env_qemu_core::model::{
    parse_size, rtax, AddrFlag, AddrScope, Address, Family, IfName, Knob, MacAddr, NudState,
    Prefix, Route, RouteMetrics, RoutePref, RouteProtocol, RouteScope, RouteType, SysctlKey,
    TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN,
};
use env_qemu_core::{KernelError, LinkChange, LinkSpec, Op};

use crate::SimKernel;

/// A parsed script: its commands in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The commands, one per line that is not blank or a comment.
    pub commands: Vec<Command>,
}

/// One command line and its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The line it starts on, from 1.
    pub line: usize,
    /// The command as written (continuations joined, comment removed).
    pub text: String,
    /// The namespace an `ip -n NETNS` line names.
    pub netns: Option<String>,
    /// What it does, in order; empty for a reading command (`ip route show`).
    pub ops: Vec<Op>,
}

/// A line the parser cannot read: where, which token, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line, from 1.
    pub line: usize,
    /// The token at fault; empty when the line ended too early.
    pub token: String,
    /// What was expected, or why the command is not supported.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            write!(f, "line {}: at the end: {}", self.line, self.message)
        } else {
            write!(f, "line {}: `{}`: {}", self.line, self.token, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// An operation of a script that the kernel refused.
#[derive(Debug, Clone)]
pub struct ApplyError {
    /// The line of the command.
    pub line: usize,
    /// The command as written.
    pub text: String,
    /// The operation refused.
    pub op: Op,
    /// The kernel's answer.
    pub error: KernelError,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} ({}): {}", self.line, self.text, self.error)
    }
}

impl std::error::Error for ApplyError {}

impl Script {
    /// Parses `text`. The first line that cannot be read is the error.
    pub fn parse(text: &str) -> Result<Script, ParseError> {
        let mut commands = Vec::new();
        for (line, words) in logical_lines(text) {
            if words.is_empty() {
                continue;
            }
            let (netns, ops) = command(&words).map_err(|b| ParseError {
                line,
                token: b.token,
                message: b.message,
            })?;
            commands.push(Command {
                line,
                text: words.join(" "),
                netns,
                ops,
            });
        }
        Ok(Script { commands })
    }

    /// Every operation, in order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> + '_ {
        self.commands.iter().flat_map(|c| c.ops.iter())
    }

    /// Applies the operations to `sim` as another program would (no fault injection),
    /// stopping at the first the kernel refuses, as `set -e` and `ip -batch` do.
    pub fn apply(&self, sim: &SimKernel) -> Result<(), Box<ApplyError>> {
        match self.run(sim, OnError::Stop).into_iter().next() {
            Some(e) => Err(Box::new(e)),
            None => Ok(()),
        }
    }

    /// Applies every operation to `sim`, going on after refusals (`ip -batch -force`);
    /// returns the refusals.
    pub fn apply_all(&self, sim: &SimKernel) -> Vec<ApplyError> {
        self.run(sim, OnError::Continue)
    }

    fn run(&self, sim: &SimKernel, on_error: OnError) -> Vec<ApplyError> {
        let mut out = Vec::new();
        for c in &self.commands {
            for op in &c.ops {
                if let Err(error) = sim.apply_now(op) {
                    out.push(ApplyError {
                        line: c.line,
                        text: c.text.clone(),
                        op: op.clone(),
                        error,
                    });
                    if on_error == OnError::Stop {
                        return out;
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Stop,
    Continue,
}

/// Lines with continuations joined and comments cut, split into words (simple quotes
/// removed), each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        let (body, continued) = match raw.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        acc.push(' ');
        acc.push_str(body);
        if continued {
            pending = Some((start, acc));
            continue;
        }
        out.push((start, words(&acc)));
    }
    if let Some((start, acc)) = pending {
        out.push((start, words(&acc)));
    }
    out
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .map(|w| {
            let q = |c: char| w.len() >= 2 && w.starts_with(c) && w.ends_with(c);
            if q('"') || q('\'') {
                w[1..w.len() - 1].to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// Why a line cannot be read.
struct Bad {
    token: String,
    message: String,
}

type Res<T> = Result<T, Bad>;

fn bad<T>(token: &str, message: impl Into<String>) -> Res<T> {
    Err(Bad {
        token: token.to_string(),
        message: message.into(),
    })
}

/// The words of one command, read left to right.
struct Words<'a> {
    words: &'a [String],
    at: usize,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.at)?;
        self.at += 1;
        Some(w)
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).map(String::as_str)
    }

    /// The value after keyword `key`.
    fn value(&mut self, key: &str) -> Res<&'a str> {
        match self.next() {
            Some(v) => Ok(v),
            None => bad("", format!("`{key}` needs a value")),
        }
    }

    fn ifname(&mut self, key: &str) -> Res<IfName> {
        let v = self.value(key)?;
        IfName::new(v).or_else(|e| bad(v, format!("not an interface name: {e}")))
    }

    fn number(&mut self, key: &str) -> Res<u32> {
        let v = self.value(key)?;
        number(v)
    }

    fn mac(&mut self, key: &str) -> Res<MacAddr> {
        let v = self.value(key)?;
        v.parse()
            .or_else(|_| bad(v, "not a MAC address (expected 52:54:00:12:34:56)"))
    }
}

fn number(v: &str) -> Res<u32> {
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.or_else(|_| bad(v, "not a number"))
}

fn ip_of(v: &str, family: Option<Family>) -> Res<IpAddr> {
    let ip: IpAddr = v.parse().or_else(|_| bad(v, "not an IP address"))?;
    match family {
        Some(f) if Family::of(&ip) != f => bad(v, format!("not an {} address", fam_word(f))),
        _ => Ok(ip),
    }
}

fn fam_word(f: Family) -> &'static str {
    match f {
        Family::Inet => "IPv4 (-4)",
        Family::Inet6 => "IPv6 (-6)",
    }
}

/// `ADDR[/LEN]`, as `ip addr` and `ip route` take it; no length means a host prefix.
fn cidr(v: &str, family: Option<Family>) -> Res<(IpAddr, u8)> {
    let (a, l) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip = ip_of(a, family)?;
    let max = Family::of(&ip).max_len();
    let len = match l {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return bad(v, format!("the prefix length must be 0 to {max}")),
        },
    };
    Ok((ip, len))
}

fn command(words: &[String]) -> Res<(Option<String>, Vec<Op>)> {
    let mut w = Words { words, at: 0 };
    let first = w.peek().unwrap_or_default();
    match first {
        "sysctl" => return sysctl(&mut w).map(|op| (None, vec![op])),
        "mount" => return mount(&mut w).map(|op| (None, vec![op])),
        "ip" => {
            w.next();
        }
        _ if first.starts_with('-') || object(first).is_some() => {}
        _ => {
            return bad(
                first,
                "not a command this parser reads (ip, sysctl -w, mount -o remount)",
            )
        }
    }
    let mut family = None;
    let mut netns = None;
    let obj = loop {
        let Some(word) = w.next() else {
            return bad(
                "",
                "an object (link, addr, route, neigh, tuntap) is missing",
            );
        };
        match word {
            "-4" => family = Some(Family::Inet),
            "-6" => family = Some(Family::Inet6),
            "-f" | "-family" => {
                let v = w.value(word)?;
                family = match v {
                    "inet" => Some(Family::Inet),
                    "inet6" => Some(Family::Inet6),
                    _ => return bad(v, "the family must be inet or inet6"),
                }
            }
            "-n" | "-netns" => netns = Some(w.value(word)?.to_string()),
            // How `show` prints: no bearing on a change.
            "-o" | "-oneline" | "-br" | "-brief" | "-j" | "-json" | "-d" | "-details" | "-s"
            | "-stats" | "-p" | "-pretty" => {}
            _ if word.starts_with('-') => return bad(word, "an option this parser does not know"),
            _ => match object(word) {
                Some(o) => break o,
                None => return bad(word, "not an object (link, addr, route, neigh, tuntap)"),
            },
        }
    };
    let Some(verb) = w.next() else {
        return bad("", "a verb (add, del, …) is missing");
    };
    if matches!(verb, "show" | "list" | "sh" | "ls" | "get" | "lst") {
        return Ok((netns, Vec::new()));
    }
    let ops = match obj {
        Object::Link => link(&mut w, verb)?,
        Object::Tuntap => vec![tuntap(&mut w, verb)?],
        Object::Addr => vec![addr(&mut w, verb, family)?],
        Object::Route => vec![route(&mut w, verb, family)?],
        Object::Neigh => vec![neigh(&mut w, verb, family)?],
    };
    if let Some(extra) = w.next() {
        return bad(extra, "not understood here");
    }
    Ok((netns, ops))
}

#[derive(Debug, Clone, Copy)]
enum Object {
    Link,
    Tuntap,
    Addr,
    Route,
    Neigh,
}

fn object(word: &str) -> Option<Object> {
    Some(match word {
        "link" | "l" => Object::Link,
        "tuntap" => Object::Tuntap,
        "address" | "addr" | "a" => Object::Addr,
        "route" | "r" | "ro" => Object::Route,
        "neighbour" | "neighbor" | "neigh" | "n" => Object::Neigh,
        _ => return None,
    })
}

fn unsupported_verb<T>(verb: &str, supported: &str) -> Res<T> {
    bad(
        verb,
        format!("not a verb this parser reads here ({supported})"),
    )
}

fn link(w: &mut Words<'_>, verb: &str) -> Res<Vec<Op>> {
    match verb {
        "add" => link_add(w).map(|s| vec![Op::LinkAdd { spec: s }]),
        "del" | "delete" => {
            if w.peek() == Some("dev") {
                w.next();
            }
            let name = w.ifname("del")?;
            if w.peek() == Some("type") {
                w.next();
                w.value("type")?;
            }
            Ok(vec![Op::LinkDel { name }])
        }
        "set" | "change" => link_set(w),
        _ => unsupported_verb(verb, "add, del, set"),
    }
}

fn link_add(w: &mut Words<'_>) -> Res<LinkSpec> {
    let (mut name, mut mac, mut mtu) = (None, None, None);
    let kind = loop {
        let Some(word) = w.next() else {
            return bad("", "`ip link add` needs `type bridge` or `type veth`");
        };
        match word {
            "name" | "dev" => name = Some(w.ifname(word)?),
            "address" => mac = Some(w.mac(word)?),
            "mtu" => mtu = Some(w.number(word)?),
            "type" => break w.value(word)?,
            _ if name.is_none() && !is_link_keyword(word) => {
                name = Some(IfName::new(word).or_else(|e| bad(word, e.to_string()))?);
            }
            _ => return bad(word, "a link setting this parser does not read"),
        }
    };
    let Some(name) = name else {
        return bad(kind, "the new link has no name");
    };
    match kind {
        "bridge" => {
            let (mut stp, mut forward_delay) = (false, 1500);
            while let Some(word) = w.peek() {
                match word {
                    "stp_state" => {
                        w.next();
                        stp = match w.value(word)? {
                            "0" => false,
                            "1" => true,
                            v => return bad(v, "stp_state is 0 or 1"),
                        };
                    }
                    "forward_delay" => {
                        w.next();
                        forward_delay = w.number(word)?;
                    }
                    _ => return bad(word, "a bridge setting this parser does not read"),
                }
            }
            Ok(LinkSpec::Bridge {
                name,
                mac,
                mtu,
                stp,
                forward_delay,
            })
        }
        "veth" => {
            if mac.is_some() || mtu.is_some() {
                return bad(kind, "set a veth's address and mtu with `ip link set`");
            }
            match w.next() {
                Some("peer") => {}
                Some(other) => return bad(other, "expected `peer name PEER`"),
                None => return bad("", "a veth needs `peer name PEER`"),
            }
            if w.peek() == Some("name") {
                w.next();
            }
            let peer = w.ifname("peer")?;
            Ok(LinkSpec::Veth { name, peer })
        }
        _ => bad(
            kind,
            "a link type the simulated kernel does not make (bridge, veth; taps with \
             `ip tuntap add`)",
        ),
    }
}

fn is_link_keyword(word: &str) -> bool {
    matches!(
        word,
        "link" | "txqueuelen" | "txqlen" | "numtxqueues" | "numrxqueues" | "index" | "group"
    )
}

fn link_set(w: &mut Words<'_>) -> Res<Vec<Op>> {
    if w.peek() == Some("dev") {
        w.next();
    }
    let name = w.ifname("set")?;
    let mut ops = Vec::new();
    while let Some(word) = w.next() {
        let change = match word {
            "up" => LinkChange::Up,
            "down" => LinkChange::Down,
            "master" => LinkChange::Master(w.ifname(word)?),
            "nomaster" => LinkChange::NoMaster,
            "mtu" => LinkChange::Mtu(w.number(word)?),
            "address" => LinkChange::Mac(w.mac(word)?),
            _ => {
                return bad(
                    word,
                    "a link setting this parser does not read (up, down, master, nomaster, \
                     mtu, address)",
                )
            }
        };
        ops.push(Op::LinkSet {
            name: name.clone(),
            change,
        });
    }
    if ops.is_empty() {
        return bad("", "`ip link set` changes nothing");
    }
    Ok(ops)
}

fn tuntap(w: &mut Words<'_>, verb: &str) -> Res<Op> {
    let add = match verb {
        "add" => true,
        "del" | "delete" => false,
        _ => return unsupported_verb(verb, "add, del"),
    };
    let (mut name, mut owner, mut group, mut mode) = (None, None, None, None);
    while let Some(word) = w.next() {
        match word {
            "dev" | "name" => name = Some(w.ifname(word)?),
            "mode" => mode = Some(w.value(word)?),
            "user" | "group" => {
                let v = w.value(word)?;
                let id = number(v).or_else(|_| bad(v, "give the id as a number"))?;
                *if word == "user" {
                    &mut owner
                } else {
                    &mut group
                } = Some(id);
            }
            _ if name.is_none() => {
                name = Some(IfName::new(word).or_else(|e| bad(word, e.to_string()))?);
            }
            _ => return bad(word, "a tuntap setting this parser does not read"),
        }
    }
    match mode {
        Some("tap") => {}
        Some(m) => return bad(m, "only tap devices are simulated"),
        None => return bad("", "`ip tuntap` needs `mode tap`"),
    }
    let Some(name) = name else {
        return bad("", "`ip tuntap` needs the device's name");
    };
    Ok(if add {
        Op::LinkAdd {
            spec: LinkSpec::Tap { name, owner, group },
        }
    } else {
        Op::LinkDel { name }
    })
}

fn addr(w: &mut Words<'_>, verb: &str, family: Option<Family>) -> Res<Op> {
    let add = match verb {
        "add" => true,
        "del" | "delete" => false,
        "replace" | "change" => {
            return bad(
                verb,
                "core has no address replace: write `ip addr del` then `add`",
            )
        }
        "flush" => return bad(verb, "write the addresses out, one `ip addr del` each"),
        _ => return unsupported_verb(verb, "add, del"),
    };
    let mut local: Option<(IpAddr, u8)> = None;
    let mut dev = None;
    let mut brd: Option<&str> = None;
    let mut scope = None;
    let mut flags = Vec::new();
    let (mut valid, mut preferred) = (None, None);
    while let Some(word) = w.next() {
        match word {
            "dev" => dev = Some(w.ifname(word)?),
            "local" => local = Some(cidr(w.value(word)?, family)?),
            "broadcast" | "brd" => brd = Some(w.value(word)?),
            "scope" => scope = Some(addr_scope(w.value(word)?)?),
            "valid_lft" => valid = Some(lifetime(w.value(word)?)?),
            "preferred_lft" => preferred = Some(lifetime(w.value(word)?)?),
            "nodad" => flags.push(AddrFlag::Nodad),
            "noprefixroute" => flags.push(AddrFlag::Noprefixroute),
            "mngtmpaddr" => flags.push(AddrFlag::Mngtmpaddr),
            "home" => flags.push(AddrFlag::Home),
            "optimistic" => flags.push(AddrFlag::Optimistic),
            "autojoin" => flags.push(AddrFlag::Autojoin),
            "peer" | "label" | "metric" | "anycast" | "proto" => {
                return bad(word, "an address setting this parser does not read")
            }
            _ if local.is_none() => local = Some(cidr(word, family)?),
            _ => return bad(word, "not understood here"),
        }
    }
    let Some((ip, len)) = local else {
        return bad("", "the address (ADDRESS/LENGTH) is missing");
    };
    let Some(dev) = dev else {
        return bad("", "`dev DEV` is missing");
    };
    let mut a = Address::new(dev, ip, len);
    if !add {
        return Ok(Op::AddrDel { address: a });
    }
    if let Some(b) = brd {
        a.broadcast = match (b, ip) {
            ("+", IpAddr::V4(v4)) => {
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                Some(IpAddr::V4((u32::from(v4) | host).into()))
            }
            (_, IpAddr::V6(_)) => return bad(b, "IPv6 has no broadcast address"),
            _ => Some(ip_of(b, Some(Family::Inet))?),
        };
    }
    if let Some(s) = scope {
        a.scope = s;
    }
    a.flags.extend(flags);
    (a.valid_lft, a.preferred_lft) = (valid.flatten(), preferred.flatten());
    if valid.is_some() != preferred.is_some() {
        return bad(
            if valid.is_some() {
                "valid_lft"
            } else {
                "preferred_lft"
            },
            "give both valid_lft and preferred_lft",
        );
    }
    Ok(Op::AddrAdd { address: a })
}

/// `forever` or seconds (`600`, `600sec`).
fn lifetime(v: &str) -> Res<Option<u32>> {
    if v == "forever" {
        return Ok(None);
    }
    number(v.strip_suffix("sec").unwrap_or(v)).map(Some)
}

fn addr_scope(v: &str) -> Res<AddrScope> {
    Ok(match v {
        "global" | "universe" => AddrScope::Global,
        "site" => AddrScope::Site,
        "link" => AddrScope::Link,
        "host" => AddrScope::Host,
        _ => AddrScope::Other(small(v)?),
    })
}

fn small(v: &str) -> Res<u8> {
    u8::try_from(number(v)?).or_else(|_| bad(v, "a number from 0 to 255"))
}

fn route(w: &mut Words<'_>, verb: &str, family: Option<Family>) -> Res<Op> {
    let del = match verb {
        "add" | "replace" | "append" | "change" | "prepend" => false,
        "del" | "delete" => true,
        "flush" => return bad(verb, "write the routes out, one `ip route del` each"),
        _ => return unsupported_verb(verb, "add, replace, append, del"),
    };
    let mut family = family;
    let mut dst: Option<Option<(IpAddr, u8)>> = None;
    let mut kind = None;
    let (mut gateway, mut dev, mut table, mut proto) = (None, None, None, None);
    let (mut scope, mut prefsrc, mut metric, mut onlink) = (None, None, None, false);
    let (mut tos, mut pref, mut expires) = (0u8, RoutePref::Medium, None);
    let mut metrics = RouteMetrics::default();
    let mut locks = 0u32;
    while let Some(word) = w.next() {
        match word {
            "via" => {
                let mut v = w.value(word)?;
                let mut gw_family = family;
                if let Some(f) = family_word(v) {
                    gw_family = Some(f);
                    v = w.value(word)?;
                }
                let gw = ip_of(v, gw_family)?;
                family.get_or_insert(Family::of(&gw));
                gateway = Some(gw);
            }
            "dev" | "oif" => dev = Some(w.ifname(word)?),
            "table" => table = Some(table_id(w.value(word)?)?),
            "proto" | "protocol" => proto = Some(protocol(w.value(word)?)?),
            "scope" => scope = Some(route_scope(w.value(word)?)?),
            "src" => {
                let s = ip_of(w.value(word)?, family)?;
                family.get_or_insert(Family::of(&s));
                prefsrc = Some(s);
            }
            "metric" | "priority" | "preference" => metric = Some(w.number(word)?),
            "onlink" => onlink = true,
            "tos" | "dsfield" => tos = small(w.value(word)?)?,
            "pref" => {
                let v = w.value(word)?;
                pref = match v {
                    "low" => RoutePref::Low,
                    "medium" => RoutePref::Medium,
                    "high" => RoutePref::High,
                    _ => return bad(v, "pref is low, medium or high"),
                };
            }
            "expires" => expires = Some(w.number(word)?),
            "features" => match w.value(word)? {
                "ecn" => metrics.set(rtax::FEATURES, rtax::FEATURE_ECN),
                v => return bad(v, "the only feature is ecn"),
            },
            "congctl" => {
                if w.peek() == Some("lock") {
                    w.next();
                    locks |= 1 << rtax::CC_ALGO;
                }
                metrics.congctl = Some(w.value(word)?.to_string());
            }
            "rto_min" => {
                metrics.set(rtax::RTO_MIN, w.number(word)?);
                locks |= 1 << rtax::RTO_MIN;
            }
            _ if metric_rtax(word).is_some() => {
                let r = metric_rtax(word).unwrap_or_default();
                if w.peek() == Some("lock") {
                    w.next();
                    locks |= 1 << r;
                }
                metrics.set(r, w.number(word)?);
            }
            "to" => dst = Some(destination(w.value(word)?, family)?),
            _ if dst.is_none() && kind.is_none() && route_type(word).is_some() => {
                kind = route_type(word);
            }
            _ if dst.is_none() => {
                let d = destination(word, family)?;
                if let Some((ip, _)) = d {
                    family.get_or_insert(Family::of(&ip));
                }
                dst = Some(d);
            }
            _ => return bad(word, "a route setting this parser does not read"),
        }
    }
    let Some(dst) = dst else {
        return bad("", "the destination (PREFIX or default) is missing");
    };
    let family = family.unwrap_or(Family::Inet);
    let dst = match dst {
        None => Prefix::default_for(family),
        Some((ip, len)) if Family::of(&ip) == family => {
            Prefix::new(ip, len).expect("cidr checked the length")
        }
        Some((ip, _)) => return bad(&ip.to_string(), "the destination's family differs"),
    };
    if locks != 0 {
        metrics.set(rtax::LOCK, locks);
    }
    let v6 = family == Family::Inet6;
    let kind_given = kind;
    let kind = kind.unwrap_or(RouteType::Unicast);
    let mut r = Route::new(dst, gateway, dev);
    r.kind = kind;
    r.table = table.unwrap_or(if kind == RouteType::Local {
        TABLE_LOCAL
    } else {
        TABLE_MAIN
    });
    r.protocol = proto.unwrap_or(RouteProtocol::Boot);
    // As ip chooses the scope when none is given.
    r.scope = scope.unwrap_or(match kind {
        RouteType::Local => RouteScope::Host,
        RouteType::Broadcast | RouteType::Multicast | RouteType::Anycast => RouteScope::Link,
        RouteType::Unicast if gateway.is_none() && !v6 => RouteScope::Link,
        _ => RouteScope::Universe,
    });
    r.prefsrc = prefsrc;
    r.metric = match metric {
        None | Some(0) if v6 => 1024,
        m => m.unwrap_or(0),
    };
    (r.onlink, r.tos, r.pref, r.expires, r.metrics) = (onlink, tos, pref, expires, metrics);
    if !del {
        return Ok(match verb {
            "replace" | "change" => Op::RouteReplace { route: r },
            "append" => Op::RouteAppend { route: r },
            "prepend" => return bad(verb, "core has no prepend: use add"),
            _ => Op::RouteAdd { route: r },
        });
    }
    // What a delete leaves out matches anything.
    r.metric = metric.unwrap_or(0);
    r.protocol = proto.unwrap_or(RouteProtocol::Unspec);
    r.scope = scope.unwrap_or(RouteScope::Nowhere);
    r.kind = kind_given.unwrap_or(RouteType::Other(0));
    Ok(Op::RouteDel { route: r })
}

/// `default`, `all` or `ADDR[/LEN]`; `None` for a default of a family not known yet.
fn destination(v: &str, family: Option<Family>) -> Res<Option<(IpAddr, u8)>> {
    match v {
        "default" | "all" | "any" => Ok(None),
        _ => cidr(v, family).map(Some),
    }
}

fn family_word(v: &str) -> Option<Family> {
    match v {
        "inet" => Some(Family::Inet),
        "inet6" => Some(Family::Inet6),
        _ => None,
    }
}

fn table_id(v: &str) -> Res<u32> {
    Ok(match v {
        "main" => TABLE_MAIN,
        "local" => TABLE_LOCAL,
        "default" => TABLE_DEFAULT,
        _ => number(v)?,
    })
}

fn protocol(v: &str) -> Res<RouteProtocol> {
    Ok(match v {
        "unspec" => RouteProtocol::Unspec,
        "redirect" => RouteProtocol::Redirect,
        "kernel" => RouteProtocol::Kernel,
        "boot" => RouteProtocol::Boot,
        "static" => RouteProtocol::Static,
        "ra" => RouteProtocol::Ra,
        "dhcp" => RouteProtocol::Dhcp,
        _ => RouteProtocol::from_u8(
            small(v).or_else(|_| bad(v, "a protocol name (boot, static, dhcp…) or number"))?,
        ),
    })
}

fn route_scope(v: &str) -> Res<RouteScope> {
    Ok(match v {
        "global" | "universe" => RouteScope::Universe,
        "site" => RouteScope::Site,
        "link" => RouteScope::Link,
        "host" => RouteScope::Host,
        "nowhere" => RouteScope::Nowhere,
        _ => RouteScope::from_u8(small(v)?),
    })
}

fn route_type(v: &str) -> Option<RouteType> {
    Some(match v {
        "unicast" => RouteType::Unicast,
        "local" => RouteType::Local,
        "broadcast" => RouteType::Broadcast,
        "anycast" => RouteType::Anycast,
        "multicast" => RouteType::Multicast,
        "blackhole" => RouteType::Blackhole,
        "unreachable" => RouteType::Unreachable,
        "prohibit" => RouteType::Prohibit,
        "throw" => RouteType::Throw,
        _ => return None,
    })
}

fn metric_rtax(v: &str) -> Option<u16> {
    Some(match v {
        "mtu" => rtax::MTU,
        "window" => rtax::WINDOW,
        "rtt" => rtax::RTT,
        "rttvar" => rtax::RTTVAR,
        "ssthresh" => rtax::SSTHRESH,
        "cwnd" => rtax::CWND,
        "advmss" => rtax::ADVMSS,
        "reordering" => rtax::REORDERING,
        "hoplimit" => rtax::HOPLIMIT,
        "initcwnd" => rtax::INITCWND,
        "initrwnd" => rtax::INITRWND,
        "quickack" => rtax::QUICKACK,
        "fastopen_no_cookie" => rtax::FASTOPEN_NO_COOKIE,
        _ => return None,
    })
}

fn neigh(w: &mut Words<'_>, verb: &str, family: Option<Family>) -> Res<Op> {
    let del = match verb {
        "add" | "replace" | "change" => false,
        "del" | "delete" => true,
        "flush" => return bad(verb, "write the entries out, one `ip neigh del` each"),
        _ => return unsupported_verb(verb, "add, replace, del"),
    };
    let (mut ip, mut lladdr, mut dev) = (None, None, None);
    let (mut state, mut router) = (NudState::Permanent, false);
    while let Some(word) = w.next() {
        match word {
            "lladdr" => lladdr = Some(w.mac(word)?),
            "dev" => dev = Some(w.ifname(word)?),
            "nud" => {
                let v = w.value(word)?;
                state = nud(v).ok_or_else(|| Bad {
                    token: v.into(),
                    message: "not a neighbour state (permanent, reachable, stale, noarp…)".into(),
                })?;
            }
            "router" => router = true,
            "to" => ip = Some(ip_of(w.value(word)?, family)?),
            "proxy" => return bad(word, "proxy entries are not simulated"),
            _ if ip.is_none() => ip = Some(ip_of(word, family)?),
            _ => return bad(word, "a neighbour setting this parser does not read"),
        }
    }
    let Some(ip) = ip else {
        return bad("", "the neighbour's address is missing");
    };
    let Some(dev) = dev else {
        return bad("", "`dev DEV` is missing");
    };
    if del {
        return Ok(Op::NeighDel { dev, ip });
    }
    let Some(lladdr) = lladdr else {
        return bad("", "`lladdr MAC` is missing");
    };
    Ok(Op::NeighReplace {
        dev,
        ip,
        lladdr,
        state,
        router,
    })
}

fn nud(v: &str) -> Option<NudState> {
    Some(match v {
        "permanent" => NudState::Permanent,
        "noarp" => NudState::Noarp,
        "reachable" => NudState::Reachable,
        "stale" => NudState::Stale,
        "delay" => NudState::Delay,
        "probe" => NudState::Probe,
        "failed" => NudState::Failed,
        "incomplete" => NudState::Incomplete,
        "none" => NudState::None,
        _ => return None,
    })
}

/// `sysctl [-w] [-q] net.ipv6.conf.DEV.KNOB=VALUE`.
fn sysctl(w: &mut Words<'_>) -> Res<Op> {
    w.next();
    let mut setting = None;
    while let Some(word) = w.next() {
        match word {
            "-w" | "-q" | "-wq" | "-qw" => {}
            _ if setting.is_none() && word.contains('=') => setting = Some(word),
            _ => return bad(word, "expected `sysctl -w KEY=VALUE`"),
        }
    }
    let Some(setting) = setting else {
        return bad("", "expected `sysctl -w KEY=VALUE`");
    };
    let (key, value) = setting.split_once('=').unwrap_or_default();
    let unknown = || {
        bad(
            key,
            "not a knob env-qemu touches (net.ipv6.conf.DEV.autoconf, accept_ra, accept_dad, \
             use_tempaddr, ra_defrtr_metric)",
        )
    };
    let Some(rest) = key
        .strip_prefix("net.ipv6.conf.")
        .or_else(|| key.strip_prefix("net/ipv6/conf/"))
    else {
        return unknown();
    };
    let Some((dev, leaf)) = rest.rsplit_once(['.', '/']) else {
        return unknown();
    };
    let knob = match leaf {
        "autoconf" => Knob::Ipv6Autoconf,
        "accept_ra" => Knob::Ipv6AcceptRa,
        "accept_dad" => Knob::Ipv6AcceptDad,
        "use_tempaddr" => Knob::Ipv6UseTempaddr,
        "ra_defrtr_metric" => Knob::Ipv6RaDefrtrMetric,
        _ => return unknown(),
    };
    // sysctl(8) writes an interface name's dots as slashes.
    let dev = dev.replace('/', ".");
    let dev = IfName::new(dev.as_str()).or_else(|e| bad(key, e.to_string()))?;
    Ok(Op::SysctlSet {
        key: SysctlKey::new(&dev, knob),
        value: value.to_string(),
    })
}

/// `mount -o remount,size=SIZE PATH`.
fn mount(w: &mut Words<'_>) -> Res<Op> {
    w.next();
    let (mut size, mut path) = (None, None);
    while let Some(word) = w.next() {
        match word {
            "-o" => {
                let opts = w.value(word)?;
                let mut remount = false;
                for o in opts.split(',') {
                    match o.split_once('=') {
                        None if o == "remount" => remount = true,
                        Some(("size", s)) => {
                            size = Some(parse_size(s).ok_or_else(|| Bad {
                                token: s.into(),
                                message: "not a size (512M, 2G, 1048576)".into(),
                            })?);
                        }
                        _ => return bad(o, "a mount option this parser does not read"),
                    }
                }
                if !remount {
                    return bad(opts, "only `-o remount,size=SIZE` is read");
                }
            }
            _ if path.is_none() && !word.starts_with('-') => path = Some(PathBuf::from(word)),
            _ => return bad(word, "expected `mount -o remount,size=SIZE PATH`"),
        }
    }
    match (size, path) {
        (Some(size_bytes), Some(path)) => Ok(Op::TmpfsResize { path, size_bytes }),
        _ => bad("", "expected `mount -o remount,size=SIZE PATH`"),
    }
}
