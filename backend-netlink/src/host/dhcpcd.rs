//! dhcpcd: its files under /run/dhcpcd, and its control socket.
//!
//! Measured on dhcpcd 9.4.1 (docs/kernel-behaviour.md, C4–C6) and read in its source
//! (control.c, dhcpcd.c, privsep-control.c):
//! - A manager (`dhcpcd -b`) writes `/run/dhcpcd/pid` and listens on `/run/dhcpcd/sock`;
//!   a daemon for one interface (`dhcpcd eth0`) writes `eth0.pid` and listens on
//!   `eth0.sock` (`eth0-4.*` / `eth0-6.*` with `-4` / `-6`).
//! - A message is one write of NUL-terminated words, read by dhcpcd in one `read` of at
//!   most 1023 bytes. Several commands go in one message: the last word of each but the
//!   last ends with `'\n'` before its NUL. A command's first word is `dhcpcd` (its argv[0],
//!   which getopt skips); the special commands `--version` and `--getinterfaces` are first
//!   words themselves.
//! - With privilege separation, a command that produces no reply keeps the control proxy's
//!   only client slot taken until the daemon restarts, and every later command is dropped
//!   (`ps_ctl_dispatch: cannot handle another client`). So every command env-qemu sends
//!   carries a `--version` after it, which replies and frees the slot.
//! - Replies are `size_t` length-prefixed; `--getinterfaces` first writes a bare `size_t`
//!   count of the dumps that follow. The `--version` reply ends every exchange, so the
//!   answer is complete when the bytes end with it: no waiting for the peer to go idle.
//! - A daemon for one interface told `-x` exits before it answers: the connection closes
//!   with nothing read, its socket goes away (measured: before the process is gone).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use env_qemu_core::host::{DhcpcdMode, Lease};
use env_qemu_core::ErrorKind;

use super::error::HostFailure;
use super::process::{self, Scan};

pub(crate) const RUNDIR: &str = "/run/dhcpcd";

/// How much dhcpcd reads of one message (`control_handle_data`: a 1024-byte buffer, one
/// byte kept for a terminator).
pub(crate) const MAX_MESSAGE: usize = 1023;

/// The health check: lists the active interfaces and replies even when there are none.
/// `--getinterfaces` alone leaves the slot taken when there are none (measured, E3).
pub(crate) const GET_INTERFACES: &[u8] = b"--getinterfaces\n\0--version\0";

/// The answer of dhcpcd 9.4.1 to one control message, once complete.
const SIZE: usize = std::mem::size_of::<usize>();

/// `dhcpcd ARGS` as one control message, with the `--version` that frees the slot.
pub(crate) fn command(args: &[String]) -> Result<Vec<u8>, String> {
    if args.is_empty() {
        return Err("no arguments: a bare `dhcpcd` would reload the daemon's configuration and restart every interface".into());
    }
    if let Some(bad) = args
        .iter()
        .find(|a| a.is_empty() || a.contains('\0') || a.contains('\n'))
    {
        return Err(format!(
            "argument {bad:?} cannot be sent (empty, or with a NUL or newline)"
        ));
    }
    let mut out = b"dhcpcd\0".to_vec();
    for (i, a) in args.iter().enumerate() {
        out.extend_from_slice(a.as_bytes());
        if i + 1 == args.len() {
            out.push(b'\n');
        }
        out.push(0);
    }
    out.extend_from_slice(b"--version\0");
    if out.len() > MAX_MESSAGE {
        return Err(format!(
            "the message is {} bytes; dhcpcd reads at most {MAX_MESSAGE}",
            out.len()
        ));
    }
    Ok(out)
}

/// If `buf` ends with the reply to `--version` (`size_t` length, then `9.4.1\0`), where
/// that reply starts.
pub(crate) fn version_reply_at(buf: &[u8]) -> Option<usize> {
    (2..=32).find_map(|n| {
        let start = buf.len().checked_sub(n)?;
        let len_at = start.checked_sub(SIZE)?;
        let len = usize::from_ne_bytes(buf[len_at..start].try_into().ok()?);
        (len == n && is_version(&buf[start..])).then_some(len_at)
    })
}

fn is_version(s: &[u8]) -> bool {
    let Some((0, text)) = s.split_last() else {
        return false;
    };
    text.first().is_some_and(u8::is_ascii_digit)
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(b))
}

/// One interface dump of `--getinterfaces`: the variables a hook script would get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dump {
    pub vars: BTreeMap<String, String>,
}

impl Dump {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The DHCPv4 lease this dump shows (`new_ip_address`, `new_dhcp_lease_time`; the
    /// `-U` dump spells them without `new_`).
    pub fn lease(&self) -> Option<Lease> {
        if self.get("protocol").is_some_and(|p| p != "dhcp") {
            return None;
        }
        let var = |k: &str| self.get(&format!("new_{k}")).or_else(|| self.get(k));
        Some(Lease {
            address: var("ip_address")?.parse::<IpAddr>().ok()?,
            seconds: var("dhcp_lease_time")?.parse().ok()?,
        })
    }
}

/// The part of a `--getinterfaces` answer before the version reply: a `size_t` count,
/// then that many length-prefixed dumps of NUL-terminated `KEY=VALUE` words.
pub(crate) fn parse_interfaces(buf: &[u8]) -> Result<Vec<Dump>, String> {
    let word = |at: usize| -> Result<usize, String> {
        buf.get(at..at + SIZE)
            .map(|b| usize::from_ne_bytes(b.try_into().expect("SIZE bytes")))
            .ok_or_else(|| format!("answer cut short at byte {at} of {}", buf.len()))
    };
    let count = word(0)?;
    let mut at = SIZE;
    let mut dumps = Vec::new();
    for _ in 0..count {
        let len = word(at)?;
        at += SIZE;
        let data = buf
            .get(at..at + len)
            .ok_or_else(|| format!("a dump of {len} bytes is cut short at byte {at}"))?;
        at += len;
        let vars = data
            .split(|b| *b == 0)
            .filter_map(|w| {
                let w = String::from_utf8_lossy(w);
                let (k, v) = w.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        dumps.push(Dump { vars });
    }
    if at != buf.len() {
        return Err(format!("{} bytes after {count} dumps", buf.len() - at));
    }
    Ok(dumps)
}

/// The interfaces a daemon manages, with the DHCPv4 lease each holds.
pub(crate) fn managed(dumps: &[Dump]) -> BTreeMap<String, Option<Lease>> {
    let mut out: BTreeMap<String, Option<Lease>> = BTreeMap::new();
    for d in dumps {
        let Some(iface) = d.get("interface") else {
            continue;
        };
        let lease = out.entry(iface.to_string()).or_default();
        if lease.is_none() {
            *lease = d.lease();
        }
    }
    out
}

/// What came back for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The bytes before the closing version reply.
    Replied(Vec<u8>),
    /// The daemon closed the connection without the version reply.
    Closed { received: usize },
    /// Nothing complete within the timeout: the control channel is stuck.
    Silent { received: usize },
}

/// Connects to `socket`, writes `message` in one write, reads until the version reply.
/// `Err` is a failure to connect or write.
pub(crate) fn exchange(socket: &Path, message: &[u8], timeout: Duration) -> io::Result<Answer> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(timeout))?;
    let written = stream.write(message)?;
    if written != message.len() {
        // dhcpcd handles each read on its own: a message split in two is two bad messages.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {written} of {} bytes in one write", message.len()),
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Answer::Silent {
                received: buf.len(),
            });
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Ok(Answer::Closed {
                    received: buf.len(),
                })
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = version_reply_at(&buf) {
                    buf.truncate(at);
                    return Ok(Answer::Replied(buf));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Answer::Silent {
                    received: buf.len(),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long dhcpcd gets to answer one message (it answers in milliseconds; a stuck slot
/// never does).
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a daemon told `-x` gets to remove its socket and exit.
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

const STUCK_FIX: &str = "dhcpcd 9.4.1 takes one control command that gets no reply and then ignores every other until it restarts: restart it (`dhcpcd -x` ends it by signal, and with `persistent` its addresses stay), start its service again, then run env-qemu again";

/// Sends `dhcpcd ARGS` to the daemon at `socket` and waits for its answer.
pub(crate) fn send(socket: &Path, args: &[String]) -> Result<(), HostFailure> {
    let message = command(args).map_err(|why| {
        HostFailure::new(
            ErrorKind::Invalid,
            why,
            "this is a bug in the plan: report it",
        )
    })?;
    // A daemon this command ends closes the connection instead of answering: pin it
    // first (by its pid file), to wait for it to be gone.
    let daemon = exits(args).then(|| daemon_of(socket)).flatten();
    let answer = exchange(socket, &message, REPLY_TIMEOUT).map_err(|e| connect_failure(&e))?;
    let shown = format!("`dhcpcd {}`", args.join(" "));
    match answer {
        Answer::Replied(_) => Ok(()),
        Answer::Closed { .. } if exits(args) => {
            let ended = daemon
                .as_ref()
                .is_none_or(|fd| process::exited(fd, EXIT_TIMEOUT).unwrap_or(false));
            if ended && gone(socket, EXIT_TIMEOUT) {
                Ok(())
            } else {
                Err(HostFailure::new(
                    ErrorKind::Busy,
                    format!(
                        "it closed the connection after {shown} but still runs {:.0} s later",
                        EXIT_TIMEOUT.as_secs_f64()
                    ),
                    "see dhcpcd's log; stop it yourself if it hangs, then run env-qemu again",
                ))
            }
        }
        Answer::Closed { received } => Err(HostFailure::new(
            ErrorKind::Other,
            format!("it closed the connection after {received} bytes, without answering {shown}"),
            "dhcpcd refused the command: see its log (`journalctl -u dhcpcd`)",
        )),
        Answer::Silent { received } => Err(HostFailure::new(
            ErrorKind::Busy,
            format!(
                "no answer to {shown} within {:.0} s ({received} bytes)",
                REPLY_TIMEOUT.as_secs_f64()
            ),
            STUCK_FIX,
        )),
    }
}

/// A pidfd of the dhcpcd listening at `socket`, by the pid file beside it (`sock` →
/// `pid`, `eth0.sock` → `eth0.pid`).
fn daemon_of(socket: &Path) -> Option<OwnedFd> {
    let name = socket.file_name()?.to_str()?.strip_suffix("sock")?;
    let pid_file = socket.with_file_name(format!("{name}pid"));
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let fd = process::pidfd_open(pid).ok()?;
    // Checked after the pidfd pins it: a reused PID is not dhcpcd.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim_end() == "dhcpcd").then_some(fd)
}

fn connect_failure(e: &io::Error) -> HostFailure {
    let fix = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED) => {
            "dhcpcd is not running there any more: see who manages the interface now with `env-qemu status`"
        }
        Some(libc::EACCES | libc::EPERM) => "run env-qemu as root",
        _ => "see dhcpcd's log, then run env-qemu again",
    };
    HostFailure::io(e, "connect and write", fix)
}

/// Whether the command makes the daemon exit (`-x` to a daemon for one interface, or to
/// a manager without an interface).
fn exits(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--exit" || (a.starts_with('-') && !a.starts_with("--") && a.contains('x')))
}

/// Waits up to `timeout` for nothing to listen at `socket` any more.
fn gone(socket: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // A connection that writes nothing takes no slot: dhcpcd only reads it.
        match UnixStream::connect(socket) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => {
                return true
            }
            _ if Instant::now() >= deadline => return false,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A running dhcpcd found by its pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Daemon {
    pub pid: u32,
    pub mode: DhcpcdMode,
    /// The interface of a daemon for one interface.
    pub dev: Option<String>,
    pub socket: PathBuf,
}

/// The pid files of /run/dhcpcd whose process is a live dhcpcd of the scanned namespace.
pub(crate) fn daemons(scan: &Scan) -> Vec<Daemon> {
    let Ok(entries) = std::fs::read_dir(RUNDIR) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((mode, dev, stem)) = pid_file(&name) else {
            continue;
        };
        let Some(pid) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if scan.get(pid).is_none_or(|p| p.comm != "dhcpcd") {
            continue;
        }
        out.push(Daemon {
            pid,
            mode,
            dev,
            socket: Path::new(RUNDIR).join(format!("{stem}sock")),
        });
    }
    out.sort_by_key(|d| d.pid);
    out
}

/// `pid` → a manager (socket `sock`); `eth0.pid`, `eth0-4.pid` → a daemon for eth0
/// (socket `eth0.sock`, `eth0-4.sock`). Returns the mode, the interface and the socket
/// name's stem.
fn pid_file(name: &str) -> Option<(DhcpcdMode, Option<String>, String)> {
    if name == "pid" {
        return Some((DhcpcdMode::Manager, None, String::new()));
    }
    let stem = name.strip_suffix(".pid")?;
    let dev = stem
        .strip_suffix("-4")
        .or_else(|| stem.strip_suffix("-6"))
        .unwrap_or(stem);
    (!dev.is_empty()).then(|| {
        (
            DhcpcdMode::PerInterface,
            Some(dev.to_string()),
            format!("{stem}."),
        )
    })
}

/// The interfaces a dhcpcd process says it runs for, from its rewritten title:
/// `dhcpcd: eth0 [ip4] [ip6]` → eth0; `dhcpcd: [manager] …` or anything else → every
/// interface (`None`).
pub(crate) fn title_devices(argv: &[String]) -> Option<String> {
    let [title] = argv else { return None };
    let first = title.strip_prefix("dhcpcd: ")?.split_whitespace().next()?;
    (!first.starts_with('[')).then(|| first.to_string())
}

/// The dhcpcd processes of `scan` that head their tree: not a child of another dhcpcd,
/// and not a privilege-separation helper (`dhcpcd: [privileged proxy] …`, `[network
/// proxy]`, `[control proxy]`, `[BPF …]`), which outlive their daemon by a few
/// milliseconds when it exits, orphaned.
pub(crate) fn heads(scan: &Scan) -> impl Iterator<Item = &process::Proc> {
    scan.named("dhcpcd")
        .filter(|p| {
            scan.get(p.ppid)
                .is_none_or(|parent| parent.comm != "dhcpcd")
        })
        .filter(|p| !is_helper(&p.argv))
}

fn is_helper(argv: &[String]) -> bool {
    let [title] = argv else { return false };
    title
        .strip_prefix("dhcpcd: ")
        .and_then(|t| t.split_whitespace().next())
        .is_some_and(|first| first.starts_with('[') && first != "[manager]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn release_command_bytes() {
        assert_eq!(
            command(&words(&["-p", "-x", "eth0"])).unwrap(),
            b"dhcpcd\0-p\0-x\0eth0\n\0--version\0"
        );
    }

    #[test]
    fn start_command_bytes_with_the_name_sixteen_times() {
        let mut args = vec!["-n".to_string()];
        args.extend(std::iter::repeat_n("lepont".to_string(), 16));
        let mut want = b"dhcpcd\0-n\0".to_vec();
        for _ in 0..15 {
            want.extend_from_slice(b"lepont\0");
        }
        want.extend_from_slice(b"lepont\n\0--version\0");
        assert_eq!(command(&args).unwrap(), want);
        assert_eq!(want.len(), 10 + 16 * 7 + 1 + 10);
    }

    #[test]
    fn commands_that_cannot_be_sent() {
        assert!(command(&[]).is_err());
        assert!(command(&words(&["-x", ""])).is_err());
        assert!(command(&words(&["-x", "eth0\n-k"])).is_err());
        assert!(command(&words(&["-x", "a\0b"])).is_err());
        let long: Vec<String> = std::iter::repeat_n("x".repeat(15), 70).collect();
        assert!(command(&long).unwrap_err().contains("at most 1023"));
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut v = data.len().to_ne_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn finds_the_version_reply_at_the_end() {
        let version = frame(b"9.4.1\0");
        assert_eq!(version.len(), 14);
        assert_eq!(version_reply_at(&version), Some(0));
        let mut two = frame(b"interface=eth0\0");
        let at = two.len();
        two.extend_from_slice(&version);
        assert_eq!(version_reply_at(&two), Some(at));
        // Not yet complete.
        assert_eq!(version_reply_at(&version[..13]), None);
        assert_eq!(version_reply_at(&frame(b"reason=BOUND\0")), None);
        assert_eq!(version_reply_at(b""), None);
    }

    /// The answer of a dhcpcd 9.4.1 manager with eth0 bound (measured in the lab, PATH
    /// shortened): a count of 2, the link dump, the DHCP dump, the version.
    #[test]
    fn parses_a_measured_getinterfaces_answer() {
        let link = b"PATH=/usr/sbin:/usr/bin\0pid=6648\0reason=CARRIER\0interface=eth0\0protocol=link\0if_configured=true\0ifcarrier=up\0ifmetric=1002\0";
        let dhcp = b"PATH=/usr/sbin:/usr/bin\0pid=6648\0reason=BOUND\0interface=eth0\0protocol=dhcp\0if_up=true\0new_ip_address=198.51.100.122\0new_subnet_cidr=24\0new_routers=198.51.100.1\0new_dhcp_lease_time=120\0new_dhcp_renewal_time=60\0";
        let mut answer = 2usize.to_ne_bytes().to_vec();
        answer.extend(frame(link));
        answer.extend(frame(dhcp));
        let dumps_end = answer.len();
        answer.extend(frame(b"9.4.1\0"));
        let at = version_reply_at(&answer).expect("complete");
        assert_eq!(at, dumps_end);
        let dumps = parse_interfaces(&answer[..at]).unwrap();
        assert_eq!(dumps.len(), 2);
        assert_eq!(dumps[0].get("reason"), Some("CARRIER"));
        assert_eq!(dumps[0].lease(), None);
        let m = managed(&dumps);
        assert_eq!(
            m.get("eth0"),
            Some(&Some(Lease {
                address: "198.51.100.122".parse().unwrap(),
                seconds: 120
            }))
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn no_active_interface_is_a_count_of_zero() {
        // 22 bytes measured: count 0, then the version reply.
        let mut answer = 0usize.to_ne_bytes().to_vec();
        answer.extend(frame(b"9.4.1\0"));
        assert_eq!(answer.len(), 22);
        let at = version_reply_at(&answer).unwrap();
        assert_eq!(parse_interfaces(&answer[..at]).unwrap(), vec![]);
    }

    #[test]
    fn cut_answers_are_errors() {
        let mut answer = 1usize.to_ne_bytes().to_vec();
        answer.extend(&frame(b"interface=eth0\0")[..10]);
        assert!(parse_interfaces(&answer).is_err());
        assert!(parse_interfaces(&[1, 2]).is_err());
    }

    #[test]
    fn pid_file_names() {
        assert_eq!(
            pid_file("pid"),
            Some((DhcpcdMode::Manager, None, String::new()))
        );
        assert_eq!(
            pid_file("eth0.pid"),
            Some((
                DhcpcdMode::PerInterface,
                Some("eth0".into()),
                "eth0.".into()
            ))
        );
        assert_eq!(
            pid_file("eth0-4.pid"),
            Some((
                DhcpcdMode::PerInterface,
                Some("eth0".into()),
                "eth0-4.".into()
            ))
        );
        assert_eq!(pid_file("sock"), None);
        assert_eq!(pid_file("eth0.sock"), None);
    }

    #[test]
    fn helpers_are_no_daemons() {
        assert!(is_helper(&words(&[
            "dhcpcd: [privileged proxy] eth0 [ip4] [ip6]"
        ])));
        assert!(is_helper(&words(&[
            "dhcpcd: [network proxy] 198.51.100.122"
        ])));
        assert!(is_helper(&words(&[
            "dhcpcd: [BPF ARP] eth0 198.51.100.122"
        ])));
        assert!(!is_helper(&words(&["dhcpcd: [manager] [ip4] [ip6]"])));
        assert!(!is_helper(&words(&["dhcpcd: eth0 [ip4] [ip6]"])));
        assert!(!is_helper(&words(&["dhcpcd", "-q", "-b"])));
    }

    #[test]
    fn titles() {
        assert_eq!(
            title_devices(&words(&["dhcpcd: eth0 [ip4] [ip6]"])),
            Some("eth0".into())
        );
        assert_eq!(
            title_devices(&words(&["dhcpcd: [manager] [ip4] [ip6]"])),
            None
        );
        assert_eq!(title_devices(&words(&["dhcpcd", "-q", "-b"])), None);
    }

    #[test]
    fn commands_that_make_a_daemon_exit() {
        assert!(exits(&words(&["-p", "-x", "eth0"])));
        assert!(exits(&words(&["-px", "eth0"])));
        assert!(exits(&words(&["--exit"])));
        assert!(!exits(&words(&["-n", "lepont"])));
        assert!(!exits(&words(&["--nohook", "x"])));
    }
}
