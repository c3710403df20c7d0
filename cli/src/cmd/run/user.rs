//! Who COMMAND runs as: the user who ran sudo (SUDO_UID/SUDO_GID), the user `--user`
//! names, or root only with `--as-root`; and the environment it gets, reset like sudo's
//! `env_reset`.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

use crate::args::RunArgs;
use crate::exit::{Code, Failure};

/// The `PATH` COMMAND gets (Debian's sudo `secure_path`).
pub const SECURE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables COMMAND keeps from env-qemu's environment: the display, audio, D-Bus session
/// and locale a desktop VM needs. Everything else goes.
const KEPT: [&str; 14] = [
    "TERM",
    "COLORTERM",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_TYPE",
    "XDG_CURRENT_DESKTOP",
    "DBUS_SESSION_BUS_ADDRESS",
    "PULSE_SERVER",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "TZ",
];

/// Variables sudo checks (`env_check`): kept only without `/` or `%` in their value.
const CHECKED: [&str; 5] = ["TERM", "COLORTERM", "LANG", "LANGUAGE", "LC_ALL"];

/// An account COMMAND can run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `None` for a uid without a passwd entry.
    pub name: Option<String>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (initgroups: every group listing the user, and `gid`).
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    fn of(user: &User, gid: Gid) -> Result<Account, Failure> {
        let cname = CString::new(user.name.as_bytes())
            .map_err(|_| Failure::usage(format!("user name {:?} holds a NUL", user.name)))?;
        let groups = nix::unistd::getgrouplist(&cname, gid).map_err(|e| {
            Failure::new(
                Code::Kernel,
                format!(
                    "the groups of user {}: {e}; check `id {}`",
                    user.name, user.name
                ),
            )
        })?;
        Ok(Account {
            name: Some(user.name.clone()),
            uid: user.uid.as_raw(),
            gid: gid.as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
            home: user.dir.clone(),
            shell: user.shell.clone(),
        })
    }

    /// The account of `uid`, with primary group `gid` if given (sudo's SUDO_GID). A uid
    /// without a passwd entry runs with `gid` alone, HOME=/.
    fn by_uid(uid: u32, gid: Option<u32>) -> Result<Account, Failure> {
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(u)) => {
                let g = gid.map_or(u.gid, Gid::from_raw);
                Account::of(&u, g)
            }
            Ok(None) => {
                let gid = gid.ok_or_else(|| {
                    Failure::new(
                        Code::NotFound,
                        format!("uid {uid} has no account (see `getent passwd {uid}`): name a user with --user NAME"),
                    )
                })?;
                Ok(Account {
                    name: None,
                    uid,
                    gid,
                    groups: vec![gid],
                    home: PathBuf::from("/"),
                    shell: PathBuf::from("/bin/sh"),
                })
            }
            Err(e) => Err(Failure::new(
                Code::Kernel,
                format!("looking up uid {uid}: {e}"),
            )),
        }
    }

    /// `--user NAME` or `--user UID`.
    fn named(s: &str) -> Result<Account, Failure> {
        if let Ok(uid) = s.parse::<u32>() {
            return Account::by_uid(uid, None);
        }
        match User::from_name(s) {
            Ok(Some(u)) => {
                let gid = u.gid;
                Account::of(&u, gid)
            }
            _ => Err(Failure::new(
                Code::NotFound,
                format!("user {s} not found (see `getent passwd {s}`)"),
            )),
        }
    }

    /// `alice (uid 1000)`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }

    /// The names of `groups`, for messages: `alice kvm qemu`.
    pub fn group_names(&self) -> String {
        self.groups
            .iter()
            .map(|g| match Group::from_gid(Gid::from_raw(*g)) {
                Ok(Some(gr)) => gr.name,
                _ => g.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Who COMMAND runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// Another user: env-qemu switches to them.
    User(Account),
    /// Root, asked for with `--as-root`.
    Root(Account),
    /// env-qemu is not root: COMMAND runs as env-qemu's own user.
    Caller(Account),
}

impl RunAs {
    /// Decides from the arguments and sudo's variables, before anything changes.
    pub fn resolve(a: &RunArgs) -> Result<RunAs, Failure> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 {
            let me = Account::by_uid(euid, Some(nix::unistd::getegid().as_raw()))?;
            return match (&a.user, a.as_root) {
                (_, true) => Err(Failure::new(
                    Code::Permission,
                    "--as-root: env-qemu is not running as root; run it with sudo",
                )),
                (Some(u), _) if Account::named(u)?.uid != me.uid => Err(Failure::new(
                    Code::Permission,
                    format!("--user {u}: only root can run COMMAND as another user; run env-qemu with sudo"),
                )),
                _ => Ok(RunAs::Caller(me)),
            };
        }
        if a.as_root {
            return Ok(RunAs::Root(Account::by_uid(0, None)?));
        }
        if let Some(u) = &a.user {
            return user(Account::named(u)?, &format!("--user {u}"));
        }
        match std::env::var("SUDO_UID") {
            Ok(v) => {
                let uid = v.parse::<u32>().map_err(|_| {
                    Failure::usage(format!("SUDO_UID={v:?} is not a uid; name the user with --user NAME"))
                })?;
                let gid = match std::env::var("SUDO_GID") {
                    Ok(g) => Some(g.parse::<u32>().map_err(|_| {
                        Failure::usage(format!(
                            "SUDO_GID={g:?} is not a gid; name the user with --user NAME"
                        ))
                    })?),
                    Err(_) => None,
                };
                user(Account::by_uid(uid, gid)?, "sudo's caller (SUDO_UID)")
            }
            Err(_) => Err(Failure::usage(
                "COMMAND would run as root: run env-qemu through sudo as the user the VM is for, name that user with --user NAME, or pass --as-root to run it as root",
            )),
        }
    }

    pub fn account(&self) -> &Account {
        match self {
            RunAs::User(a) | RunAs::Root(a) | RunAs::Caller(a) => a,
        }
    }

    /// The account to switch to in the child, if any.
    pub fn switch_to(&self) -> Option<&Account> {
        match self {
            RunAs::User(a) => Some(a),
            RunAs::Root(_) | RunAs::Caller(_) => None,
        }
    }

    /// Whether COMMAND gets PR_SET_NO_NEW_PRIVS (not with `--as-root`: root asked for
    /// everything).
    pub fn no_new_privs(&self) -> bool {
        !matches!(self, RunAs::Root(_))
    }

    /// Who may open the tap made for COMMAND (root always may).
    pub fn tap_owner(&self) -> Option<u32> {
        Some(self.account().uid).filter(|&u| u != 0)
    }
}

/// `acc`, refused if it is root: root needs `--as-root`.
fn user(acc: Account, from: &str) -> Result<RunAs, Failure> {
    if acc.uid == 0 {
        return Err(Failure::usage(format!(
            "{from} is root: pass --as-root to run COMMAND as root, or --user NAME"
        )));
    }
    Ok(RunAs::User(acc))
}

/// COMMAND's environment: [`KEPT`] variables from `from` (sudo's checks applied), then
/// HOME, USER, LOGNAME, SHELL of `acc` and [`SECURE_PATH`], then `extra`.
pub fn environment(
    from: impl Iterator<Item = (OsString, OsString)>,
    acc: &Account,
    extra: &[(&str, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = from.filter(|(k, v)| kept(k, v)).collect();
    let name = acc.name.clone().unwrap_or_else(|| acc.uid.to_string());
    let set: [(&str, OsString); 5] = [
        ("HOME", acc.home.clone().into_os_string()),
        ("USER", name.clone().into()),
        ("LOGNAME", name.into()),
        ("SHELL", acc.shell.clone().into_os_string()),
        ("PATH", SECURE_PATH.into()),
    ];
    for (k, v) in set
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (*k, OsString::from(v))))
    {
        env.retain(|(e, _)| e != k);
        env.push((k.into(), v));
    }
    env
}

fn kept(k: &OsStr, v: &OsStr) -> bool {
    let Some(k) = k.to_str() else {
        return false;
    };
    let v = v.as_bytes();
    if v.starts_with(b"()") {
        // A shell function: never passed on, like sudo.
        return false;
    }
    let listed = KEPT.contains(&k) || k.starts_with("LC_");
    let checked = CHECKED.contains(&k) || k.starts_with("LC_");
    let tz_ok = k != "TZ" || !(v.starts_with(b"/") || v.windows(2).any(|w| w == b".."));
    listed && tz_ok && !(checked && v.iter().any(|b| *b == b'/' || *b == b'%'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc() -> Account {
        Account {
            name: Some("alice".into()),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 108],
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let from = pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut out: Vec<(String, String)> =
            environment(from, &acc(), &[("ENV_QEMU_TAP", "eqtap0".into())])
                .into_iter()
                .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
                .collect();
        out.sort();
        out
    }

    #[test]
    fn the_environment_is_reset_like_sudo() {
        let got = env(&[
            ("DISPLAY", ":0"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("PATH", "/tmp/evil:/usr/bin"),
            ("HOME", "/root"),
            ("SUDO_COMMAND", "/usr/bin/env-qemu run"),
            ("BASH_FUNC_x%%", "() { :; }"),
            ("TERM", "../../evil"),
            ("LC_TIME", "de_DE.UTF-8"),
            ("TZ", "/etc/evil"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        let want: Vec<(String, String)> = [
            ("DISPLAY", ":0"),
            ("ENV_QEMU_TAP", "eqtap0"),
            ("HOME", "/home/alice"),
            ("LC_TIME", "de_DE.UTF-8"),
            ("LOGNAME", "alice"),
            ("PATH", SECURE_PATH),
            ("SHELL", "/bin/bash"),
            ("USER", "alice"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
