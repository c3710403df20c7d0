//! ISC dhclient (4.4): its command line and its text lease file.
//!
//! dhclient has no control socket (OMAPI only when configured); its command line stays
//! intact in `/proc/PID/cmdline`, the interfaces are its words that are not options, and
//! the pid and lease files are `-pf` / `-lf` or the compiled-in defaults
//! (`/var/run/dhclient.pid`, `/var/lib/dhcp/dhclient.leases`, `…6…` with `-6`; Debian's
//! strings, read from the binary). Options that take a value, from client/dhclient.c of
//! 4.4.3: `-4o6 -p -pf -cf -df -lf -sf -s -g -e -D --dad-wait-time --prefix-len-hint
//! --address-prefix-len --decline-wait-time`.

use std::net::IpAddr;
use std::path::PathBuf;

use env_qemu_core::host::Lease;

const WITH_VALUE: &[&str] = &[
    "-4o6",
    "-p",
    "-pf",
    "-cf",
    "-df",
    "-lf",
    "-sf",
    "-s",
    "-g",
    "-e",
    "-D",
    "--dad-wait-time",
    "--prefix-len-hint",
    "--address-prefix-len",
    "--decline-wait-time",
];

/// What a dhclient command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    /// The interfaces named; none means every broadcast interface.
    pub ifaces: Vec<String>,
    pub pid_file: PathBuf,
    pub lease_file: PathBuf,
    /// `-6`: a DHCPv6 client.
    pub v6: bool,
}

/// Parses `argv` (argv[0] included) as dhclient 4.4.3 does.
pub(crate) fn parse_args(argv: &[String]) -> Args {
    let mut ifaces = Vec::new();
    let (mut pid_file, mut lease_file, mut v6) = (None, None, false);
    let mut words = argv.iter().skip(1);
    while let Some(w) = words.next() {
        if WITH_VALUE.contains(&w.as_str()) {
            let value = words.next().map(PathBuf::from);
            match w.as_str() {
                "-pf" => pid_file = value,
                "-lf" => lease_file = value,
                _ => {}
            }
        } else if w == "-6" {
            v6 = true;
        } else if w == "-4" {
            v6 = false;
        } else if !w.starts_with('-') {
            ifaces.push(w.clone());
        }
    }
    let six = if v6 { "6" } else { "" };
    Args {
        ifaces,
        pid_file: pid_file.unwrap_or_else(|| format!("/run/dhclient{six}.pid").into()),
        lease_file: lease_file
            .unwrap_or_else(|| format!("/var/lib/dhcp/dhclient{six}.leases").into()),
        v6,
    }
}

/// A statement of a lease file: its words up to `;` or `{`, and the block after `{`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stmt {
    words: Vec<String>,
    block: Option<Vec<Stmt>>,
}

impl Stmt {
    fn is(&self, head: &[&str]) -> bool {
        self.words.len() >= head.len() && self.words.iter().zip(head).all(|(w, h)| w == h)
    }

    fn word(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }

    fn find<'a>(block: &'a [Stmt], head: &'a [&str]) -> impl Iterator<Item = &'a Stmt> + 'a {
        block.iter().filter(move |s| s.is(head))
    }
}

/// Splits a lease file into words (`"…"` strings unquoted), `{`, `}` and `;`; `#` starts
/// a comment.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => s.extend(chars.next()),
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};\"#".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

fn statements(tokens: &mut std::iter::Peekable<std::vec::IntoIter<String>>) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    while let Some(t) = tokens.next() {
        match t.as_str() {
            ";" => out.push(Stmt {
                words: std::mem::take(&mut words),
                block: None,
            }),
            "{" => {
                let block = statements(tokens);
                out.push(Stmt {
                    words: std::mem::take(&mut words),
                    block: Some(block),
                });
                // `lease { … }` ends at its brace; a stray `;` after it is an empty statement.
                if tokens.peek().is_some_and(|t| t == ";") {
                    tokens.next();
                }
            }
            "}" => break,
            _ => words.push(t),
        }
    }
    out
}

fn parse(text: &str) -> Vec<Stmt> {
    statements(&mut tokens(text).into_iter().peekable())
}

/// The newest lease of `dev` in a dhclient lease file (dhclient appends; the last one is
/// current): address and lease time, `fixed-address` and `option dhcp-lease-time` of a
/// `lease { }`, or with `v6` the first `iaaddr` and its `max-life` of a `lease6 { }`.
pub(crate) fn lease_of(text: &str, dev: &str, v6: bool) -> Option<Lease> {
    let file = parse(text);
    let kind = if v6 { "lease6" } else { "lease" };
    file.iter()
        .filter(|s| s.words == [kind])
        .filter_map(|s| s.block.as_deref())
        .filter(|b| Stmt::find(b, &["interface"]).next().and_then(|s| s.word(1)) == Some(dev))
        .filter_map(|b| if v6 { lease6(b) } else { lease4(b) })
        .next_back()
}

fn lease4(block: &[Stmt]) -> Option<Lease> {
    let address = Stmt::find(block, &["fixed-address"]).next()?.word(1)?;
    let seconds = Stmt::find(block, &["option", "dhcp-lease-time"])
        .next()?
        .word(2)?;
    Some(Lease {
        address: address.parse::<IpAddr>().ok()?,
        seconds: seconds.parse().ok()?,
    })
}

fn lease6(block: &[Stmt]) -> Option<Lease> {
    block.iter().find_map(|s| {
        let inner = s.block.as_deref()?;
        if s.is(&["iaaddr"]) {
            let seconds = Stmt::find(inner, &["max-life"]).next()?.word(1)?;
            return Some(Lease {
                address: s.word(1)?.parse::<IpAddr>().ok()?,
                seconds: seconds.parse().ok()?,
            });
        }
        lease6(inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn ifupdown_command_line() {
        let a = parse_args(&words(
            "dhclient -4 -v -i -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases -I -df /var/lib/dhcp/dhclient6.eth0.leases eth0",
        ));
        assert_eq!(
            a,
            Args {
                ifaces: vec!["eth0".into()],
                pid_file: "/run/dhclient.eth0.pid".into(),
                lease_file: "/var/lib/dhcp/dhclient.eth0.leases".into(),
                v6: false,
            }
        );
    }

    #[test]
    fn defaults_and_values_that_look_like_interfaces() {
        let a = parse_args(&words("dhclient -e IF_METRIC=100 -sf /sbin/x -s 192.0.2.1"));
        assert!(a.ifaces.is_empty(), "{a:?}");
        assert_eq!(a.pid_file, PathBuf::from("/run/dhclient.pid"));
        assert_eq!(a.lease_file, PathBuf::from("/var/lib/dhcp/dhclient.leases"));
        let a = parse_args(&words("dhclient -6 -nw eth1 eth2"));
        assert_eq!(a.ifaces, ["eth1", "eth2"]);
        assert_eq!(
            a.lease_file,
            PathBuf::from("/var/lib/dhcp/dhclient6.leases")
        );
        assert!(a.v6);
    }

    /// What dhclient 4.4.3-P1 wrote in the lab (dnsmasq, 2-minute leases), twice: the
    /// first lease of eth0, one of lepont, then eth0's renewal.
    const LEASES: &str = r#"lease {
  interface "eth0";
  fixed-address 198.51.100.122;
  option subnet-mask 255.255.255.0;
  option routers 198.51.100.1;
  option dhcp-lease-time 120;
  option dhcp-message-type 5;
  option dhcp-server-identifier 198.51.100.1;
  option host-name "rdh-host";
  renew 5 2026/12/04 17:06:03;
  rebind 5 2026/12/04 17:06:51;
  expire 5 2026/12/04 17:07:06;
}
lease {
  interface "lepont";
  fixed-address 198.51.100.130;
  option dhcp-lease-time 600;
  expire 5 2026/12/04 17:17:06;
}
lease {
  interface "eth0";
  fixed-address 198.51.100.123;
  option dhcp-lease-time 240;
  option domain-name "a; b { c }";
}
"#;

    #[test]
    fn the_last_lease_of_the_interface() {
        assert_eq!(
            lease_of(LEASES, "eth0", false),
            Some(Lease {
                address: "198.51.100.123".parse().unwrap(),
                seconds: 240
            })
        );
        assert_eq!(
            lease_of(LEASES, "lepont", false),
            Some(Lease {
                address: "198.51.100.130".parse().unwrap(),
                seconds: 600
            })
        );
        assert_eq!(lease_of(LEASES, "eth1", false), None);
        assert_eq!(lease_of("", "eth0", false), None);
        assert_eq!(lease_of("lease { interface \"eth0\"", "eth0", false), None);
    }

    #[test]
    fn a_dhcpv6_lease() {
        let text = r#"default-duid "\000\001\000\001";
lease6 {
  interface "eth0";
  ia-na 5e:10:00:01 {
    starts 1764867000;
    renew 60;
    rebind 105;
    iaaddr 2001:db8:42::7 {
      starts 1764867000;
      preferred-life 105;
      max-life 120;
    }
  }
  option dhcp6.server-id 0:1:0:1;
}
"#;
        assert_eq!(
            lease_of(text, "eth0", true),
            Some(Lease {
                address: "2001:db8:42::7".parse().unwrap(),
                seconds: 120
            })
        );
        assert_eq!(lease_of(text, "eth0", false), None);
    }
}
