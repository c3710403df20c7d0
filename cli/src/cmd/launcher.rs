//! `env-qemu launcher NAME -- COMMAND…`: a freedesktop Desktop Entry (a menu entry for
//! GNOME, KDE, …) that starts COMMAND through `sudo -n env-qemu run -- COMMAND…`, so
//! the VM starts from the panel like the seed's `~/emule_pc`. `sudo -n` never asks for
//! a password (there is no terminal to ask in): `env-qemu sudoers --allow-run` is what
//! lets the group run it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::args::{Global, LauncherArgs, DEFAULT_CONFIG, DEFAULT_STATE_DIR};
use crate::exit::{Code, Failure};
use crate::output::Out;

/// Where `--system` puts launchers: the local administrator's share of XDG_DATA_DIRS.
pub const SYSTEM_DIR: &str = "/usr/local/share/applications";

pub fn run(g: &Global, out: Out, a: &LauncherArgs) -> Result<(), Failure> {
    check_name(&a.name)?;
    let place = Place::of(a.system)?;
    let path = place.dir.join(format!("env-qemu-{}.desktop", a.name));
    if a.remove {
        place
            .as_owner(|| std::fs::remove_file(&path))
            .map_err(|e| {
                let code = match e.kind() {
                    std::io::ErrorKind::NotFound => Code::NotFound,
                    std::io::ErrorKind::PermissionDenied => Code::Permission,
                    _ => Code::Kernel,
                };
                Failure::new(
                    code,
                    format!(
                        "launcher {}: {}: {e}{}",
                        a.name,
                        path.display(),
                        if a.system {
                            ""
                        } else {
                            " (a --system one is removed with --system)"
                        }
                    ),
                )
            })?;
        out.say(format!(
            "env-qemu: launcher {} removed ({})",
            a.name,
            path.display()
        ));
        return Ok(());
    }
    let exec = exec_argv(g, &a.command);
    let terminal = a.terminal || uses_terminal(&a.command);
    let icon = a.icon.clone().unwrap_or_else(default_icon);
    let entry = desktop_entry(&a.name, &exec, terminal, &icon)?;
    let shown = exec_line(&exec)?;
    place
        .as_owner(|| write_atomically(&place.dir, &path, entry.as_bytes()))
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                Code::Permission
            } else {
                Code::Kernel
            };
            Failure::new(
                code,
                format!(
                    "launcher {}: writing {}: {e}{}",
                    a.name,
                    path.display(),
                    if a.system {
                        " (--system needs root)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
    out.say(format!(
        "env-qemu: launcher {} written to {}; it runs: {shown}",
        a.name,
        path.display(),
    ));
    if exec
        .iter()
        .skip(3)
        .take_while(|s| *s != "run")
        .next()
        .is_some()
    {
        out.say("note: it passes options before `run`, which the rule of `env-qemu sudoers --allow-run` (`env-qemu run -- COMMAND`) does not allow: sudo -n will refuse it unless another rule does");
    } else {
        out.say("note: members of the group need `env-qemu sudoers --allow-run` in /etc/sudoers.d for sudo -n to let them start it");
    }
    Ok(())
}

/// NAME becomes part of a file name: letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "launcher name {name:?}: use letters, digits, `.`, `_` and `-` (at most 64, not starting with `.`), e.g. win11"
    )))
}

/// Where the launcher goes, and whose it is.
struct Place {
    dir: PathBuf,
    /// Write as this user (uid, gid, groups), not as root: a user's home is theirs (a
    /// symbolic link there must not make root write elsewhere).
    owner: Option<(Uid, Gid, Vec<Gid>)>,
}

impl Place {
    fn of(system: bool) -> Result<Place, Failure> {
        if system {
            return Ok(Place {
                dir: PathBuf::from(SYSTEM_DIR),
                owner: None,
            });
        }
        let root = nix::unistd::geteuid().is_root();
        if let (true, Ok(uid)) = (root, std::env::var("SUDO_UID")) {
            let uid: u32 = uid
                .parse()
                .map_err(|_| Failure::usage(format!("SUDO_UID={uid:?} is not a uid")))?;
            if uid != 0 {
                return Place::of_sudo_caller(uid);
            }
        }
        let data = match std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
            Some(d) if d.is_absolute() => d,
            _ => {
                let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
                    Failure::usage("HOME is not set: cannot tell where your launchers go")
                })?;
                home.join(".local/share")
            }
        };
        Ok(Place {
            dir: data.join("applications"),
            owner: None,
        })
    }

    /// Run through sudo: the caller's own `~/.local/share/applications`, written as them.
    fn of_sudo_caller(uid: u32) -> Result<Place, Failure> {
        let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
            return Err(Failure::new(
                Code::NotFound,
                format!("uid {uid} (SUDO_UID) has no account, so no home for its launchers: run `env-qemu launcher` without sudo, or with --system"),
            ));
        };
        let name = std::ffi::CString::new(user.name.as_bytes())
            .map_err(|_| Failure::usage("user name holds a NUL"))?;
        let groups = nix::unistd::getgrouplist(&name, user.gid)
            .map_err(|e| Failure::new(Code::Kernel, format!("groups of {}: {e}", user.name)))?;
        Ok(Place {
            dir: user.dir.join(".local/share/applications"),
            owner: Some((user.uid, user.gid, groups)),
        })
    }

    /// Runs `f` with the owner's effective ids (and groups), then root's again.
    fn as_owner<T>(&self, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        let Some((uid, gid, groups)) = &self.owner else {
            return f();
        };
        let saved = nix::unistd::getgroups().map_err(std::io::Error::from)?;
        nix::unistd::setgroups(groups).map_err(std::io::Error::from)?;
        nix::unistd::setegid(*gid).map_err(std::io::Error::from)?;
        nix::unistd::seteuid(*uid).map_err(std::io::Error::from)?;
        let result = f();
        let back = nix::unistd::seteuid(Uid::from_raw(0))
            .and_then(|()| nix::unistd::setegid(Gid::from_raw(0)))
            .and_then(|()| nix::unistd::setgroups(&saved));
        // Staying as the user would be safe but wrong; say so rather than go on.
        back.map_err(std::io::Error::from)?;
        result
    }
}

/// `DIR/NAME.desktop` through a temporary file and a rename: a reader never sees half of
/// it. Directories are made as needed (0755).
fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("desktop.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `sudo -n /path/env-qemu [global options] run -- COMMAND…`: the global options given to
/// `launcher` that differ from the defaults are passed on, so the launcher runs the same
/// command as `env-qemu … run` typed here.
fn exec_argv(g: &Global, command: &[String]) -> Vec<String> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/local/bin/env-qemu".into());
    let mut argv = vec!["sudo".to_string(), "-n".to_string(), exe];
    if let Some(n) = &g.netns {
        argv.extend(["--netns".to_string(), n.clone()]);
    }
    if let Some(b) = &g.bridge {
        argv.extend(["--bridge".to_string(), b.clone()]);
    }
    if g.state_dir != Path::new(DEFAULT_STATE_DIR) {
        argv.extend(["--state-dir".to_string(), g.state_dir.display().to_string()]);
    }
    if g.config != Path::new(DEFAULT_CONFIG) {
        argv.extend(["--config".to_string(), g.config.display().to_string()]);
    }
    argv.extend(["run".to_string(), "--".to_string()]);
    argv.extend(command.iter().cloned());
    argv
}

/// Whether QEMU's command line uses the terminal it is started from: `-nographic`,
/// `-curses`, `-display curses`, or a serial port, monitor or character device on stdio.
pub fn uses_terminal(command: &[String]) -> bool {
    let mut prev = "";
    for arg in command {
        let a = arg.trim_start_matches('-');
        let flag = prev.trim_start_matches('-');
        if matches!(a, "nographic" | "curses")
            || (flag == "display" && arg.starts_with("curses"))
            || (matches!(flag, "serial" | "monitor" | "chardev" | "qmp")
                && arg.split(',').any(|p| p == "stdio" || p == "mon:stdio"))
        {
            return true;
        }
        prev = arg;
    }
    false
}

/// QEMU's own icon when its package installed one, else the generic `computer`.
fn default_icon() -> String {
    let hicolor = Path::new("/usr/share/icons/hicolor");
    let has_qemu = std::fs::read_dir(hicolor).is_ok_and(|sizes| {
        sizes.flatten().any(|s| {
            ["qemu.png", "qemu.svg"]
                .iter()
                .any(|f| s.path().join("apps").join(f).exists())
        })
    });
    if has_qemu { "qemu" } else { "computer" }.to_string()
}

/// The Desktop Entry (specification 1.4: what desktop-file-utils 0.26, Debian 12, knows).
pub fn desktop_entry(
    name: &str,
    exec: &[String],
    terminal: bool,
    icon: &str,
) -> Result<String, Failure> {
    let exec = exec_line(exec)?;
    Ok(format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Version=1.4\n\
         Name={name}\n\
         GenericName=Virtual machine\n\
         Comment=Starts the virtual machine {name} on the LAN (env-qemu run)\n\
         Exec={exec}\n\
         Icon={}\n\
         Terminal={terminal}\n\
         Categories=System;Emulator;\n\
         Keywords=VM;QEMU;virtual machine;\n\
         StartupNotify=false\n",
        escape_string(icon),
    ))
}

/// The characters that make an Exec argument need quoting.
const RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";

/// The value of an `Exec=` key: each argument quoted when needed (inside quotes `"`,
/// `` ` ``, `$` and `\` are backslash-escaped), `%` doubled (field codes), then the whole
/// escaped as a string value (`\` → `\\`, newline → `\n`…).
pub fn exec_line(argv: &[String]) -> Result<String, Failure> {
    let mut words = Vec::new();
    for arg in argv {
        if arg
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n')
        {
            return Err(Failure::usage(format!(
                "argument {arg:?} holds a control character, which a launcher cannot carry"
            )));
        }
        let arg = arg.replace('%', "%%");
        let word = if arg.is_empty() || arg.chars().any(|c| RESERVED.contains(c)) {
            let mut q = String::from("\"");
            for c in arg.chars() {
                if "\"`$\\".contains(c) {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            q
        } else {
            arg
        };
        words.push(word);
    }
    Ok(escape_string(&words.join(" ")))
}

/// A `string`/`localestring` value: `\` → `\\`, newline, tab and carriage return as
/// `\n`, `\t`, `\r`.
fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exec_quotes_what_the_specification_reserves() {
        let line = exec_line(&s(&[
            "sudo",
            "-n",
            "/usr/bin/env-qemu",
            "run",
            "--",
            "qemu",
            "-name",
            "my vm",
            "-drive",
            "file=/vm/$HOME\\a.qcow2",
            "100%",
            "",
        ]))
        .unwrap();
        assert_eq!(
            line,
            r#"sudo -n /usr/bin/env-qemu run -- qemu -name "my vm" -drive "file=/vm/\\$HOME\\\\a.qcow2" 100%% """#
        );
    }

    #[test]
    fn the_terminal_is_used_only_when_qemu_needs_one() {
        assert!(uses_terminal(&s(&["qemu", "-nographic"])));
        assert!(uses_terminal(&s(&["qemu", "-serial", "mon:stdio"])));
        assert!(uses_terminal(&s(&["qemu", "-display", "curses"])));
        assert!(uses_terminal(&s(&["qemu", "-chardev", "stdio,id=c0"])));
        assert!(!uses_terminal(&s(&[
            "qemu",
            "-display",
            "gtk",
            "-serial",
            "file:/tmp/s"
        ])));
    }

    #[test]
    fn names_become_file_names_safely() {
        assert!(check_name("win11").is_ok());
        assert!(check_name("deb-12.x_y").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "x\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
