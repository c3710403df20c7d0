//! `env-qemu sudoers`: the narrowest rule that lets a group run QEMU's ifup/ifdown, and
//! with `--allow-run`, `env-qemu run -- COMMAND` (what `env-qemu launcher` starts).

use crate::args::{Global, SudoersArgs};
use crate::context::{Config, DEFAULT_BRIDGE};
use crate::exit::Failure;

/// One interface name, and nothing that could be read as an option. In sudoers syntax: a
/// `,` inside a regular expression must be escaped.
const NAME_RE: &str = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}";

/// The variables a desktop VM needs that sudo's env_reset drops; env-qemu (root) reads none
/// of them, and passes them on only to COMMAND, run as the caller.
const DESKTOP_ENV: &str = "WAYLAND_DISPLAY XDG_RUNTIME_DIR XDG_SESSION_TYPE XDG_CURRENT_DESKTOP DBUS_SESSION_BUS_ADDRESS PULSE_SERVER";

pub fn run(g: &Global, a: &SudoersArgs) -> Result<(), Failure> {
    if a.group.is_empty()
        || !a
            .group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        return Err(Failure::usage(format!(
            "group {:?} is not a group name",
            a.group
        )));
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/local/bin/env-qemu".into());
    let run = if a.allow_run {
        let config = Config::load(&g.config)?;
        Some(Uses {
            config: g.config.display().to_string(),
            uplink: config.uplink,
            bridge: config.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.into()),
        })
    } else {
        None
    };
    print!("{}", rule(&a.group, &exe, run.as_ref()));
    Ok(())
}

/// What `run` started through the rule uses: the config file's uplink and bridge.
struct Uses {
    config: String,
    uplink: Option<String>,
    bridge: String,
}

fn rule(group: &str, exe: &str, run: Option<&Uses>) -> String {
    let mut r = format!(
        "# /etc/sudoers.d/env-qemu: members of {group} may attach and detach VM taps{}.\n\
         # Install with: env-qemu sudoers --group {group}{} | sudo tee /etc/sudoers.d/env-qemu && sudo visudo -c\n\
         # Needs sudo >= 1.9.10 (regular expressions in arguments). start/stop stay root-only:\n\
         # they move the host's addresses.\n",
        if run.is_some() { " and start VMs with `env-qemu run`" } else { ", nothing else" },
        if run.is_some() { " --allow-run" } else { "" },
    );
    // A regular expression (sudo >= 1.9.10) covers the whole argument string, from `^` to
    // `$`: `add ^RE$` would be a wildcard pattern, matching nothing.
    let mut allowed = format!("{exe} ^add {NAME_RE}$, {exe} ^del {NAME_RE}$");
    if let Some(u) = run {
        let uplink = match &u.uplink {
            Some(i) => format!("uplink {i}"),
            None => "the interface carrying the default route (no `uplink` set there)".into(),
        };
        r.push_str(&format!(
            "# `run -- COMMAND` bridges {uplink} on bridge {} as {} says: no option can\n\
             # precede `--`, so no other interface, bridge, config or user can be named. It makes\n\
             # a tap for the caller and runs COMMAND as the caller (never as root), then stops.\n\
             Cmnd_Alias ENV_QEMU_RUN = {exe} run -- *\n\
             Defaults!ENV_QEMU_RUN env_keep += \"{DESKTOP_ENV}\"\n",
            u.bridge, u.config
        ));
        allowed.push_str(", ENV_QEMU_RUN");
    }
    r.push_str(&format!("%{group} ALL=(root) NOPASSWD: {allowed}\n"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_allows_only_add_and_del_of_one_name() {
        let r = rule("qemu", "/usr/bin/env-qemu", None);
        let line = r.lines().find(|l| l.starts_with('%')).unwrap();
        assert_eq!(
            line,
            r"%qemu ALL=(root) NOPASSWD: /usr/bin/env-qemu ^add [A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}$, /usr/bin/env-qemu ^del [A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}$"
        );
        assert!(!line.contains("start") && !line.contains("stop") && !line.contains('*'));
    }

    #[test]
    fn allow_run_adds_run_with_nothing_before_the_command() {
        let uses = Uses {
            config: "/etc/env-qemu.toml".into(),
            uplink: Some("enp3s0".into()),
            bridge: "lepont".into(),
        };
        let r = rule("qemu", "/usr/bin/env-qemu", Some(&uses));
        assert!(
            r.contains("Cmnd_Alias ENV_QEMU_RUN = /usr/bin/env-qemu run -- *\n"),
            "{r}"
        );
        assert!(r.contains("uplink enp3s0 on bridge lepont"), "{r}");
        let line = r.lines().find(|l| l.starts_with('%')).unwrap();
        assert!(line.ends_with(", ENV_QEMU_RUN"), "{line}");
        for l in r.lines().filter(|l| !l.starts_with('#')) {
            assert!(!l.contains(" start") && !l.contains(" stop"), "{l}");
        }
    }
}
