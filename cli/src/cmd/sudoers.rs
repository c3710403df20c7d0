//! `env-qemu sudoers`: the narrowest rule that lets a group run QEMU's ifup/ifdown.

use crate::args::SudoersArgs;
use crate::exit::Failure;

/// One interface name, and nothing that could be read as an option. In sudoers syntax: a
/// `,` inside a regular expression must be escaped.
const NAME_RE: &str = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}";

pub fn run(a: &SudoersArgs) -> Result<(), Failure> {
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
    print!("{}", rule(&a.group, &exe));
    Ok(())
}

/// A regular expression (sudo >= 1.9.10) covers the whole argument string, from `^` to
/// `$`: `add ^RE$` would be a wildcard pattern, matching nothing.
fn rule(group: &str, exe: &str) -> String {
    format!(
        "# /etc/sudoers.d/env-qemu: members of {group} may attach and detach VM taps, nothing else.\n\
         # Install with: env-qemu sudoers --group {group} | sudo tee /etc/sudoers.d/env-qemu && sudo visudo -c\n\
         # Needs sudo >= 1.9.10 (regular expressions in arguments). start/stop stay root-only:\n\
         # they move the host's addresses.\n\
         %{group} ALL=(root) NOPASSWD: {exe} ^add {NAME_RE}$, {exe} ^del {NAME_RE}$\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rule_allows_only_add_and_del_of_one_name() {
        let r = super::rule("qemu", "/usr/bin/env-qemu");
        let line = r.lines().find(|l| l.starts_with('%')).unwrap();
        assert_eq!(
            line,
            r"%qemu ALL=(root) NOPASSWD: /usr/bin/env-qemu ^add [A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}$, /usr/bin/env-qemu ^del [A-Za-z0-9_][A-Za-z0-9_.-]{0\,14}$"
        );
        assert!(!line.contains("start") && !line.contains("stop") && !line.contains('*'));
    }
}
