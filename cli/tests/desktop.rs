//! The desktop side: `env-qemu launcher` writes a Desktop Entry that Debian's
//! `desktop-file-validate` accepts and whose Exec line runs `sudo -n env-qemu run -- …`,
//! the same command as typed; `env-qemu sudoers --allow-run` writes a rule `visudo -c`
//! accepts, which lets the group use `run -- COMMAND` and the taps, and nothing else.
//!
//! Nothing is written to this machine's home directories, /usr or /etc: the user's
//! launcher goes under a temporary HOME, the system one and the sudoers rule are looked at
//! inside a private mount namespace (a tmpfs over /usr/local/share, the rule bind-mounted
//! over /etc/sudoers there).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_restored, nobody, settled, writable_by, EnvQemu, Outcome, TempDir, BIN};
use env_qemu_integration::qemu::find_program;
use env_qemu_integration::topology::{HostConfig, Topology, TopologySpec};
use env_qemu_integration::{require_netns, require_tun};

/// The program, or a skip (a failure under ENV_QEMU_REQUIRE_NETNS=1).
fn program(name: &str, package: &str) -> Option<PathBuf> {
    let p = find_program(name);
    if p.is_none() {
        env_qemu_integration::skip::skip(&format!(
            "{name} is not installed (Debian: {package}; `bash ci/install-deps` installs it)"
        ));
    }
    p
}

/// The arguments of an `Exec=` value, read as the Desktop Entry specification says: the
/// string escapes first (`\\`, `\s`, `\n`, `\t`, `\r`), then words split at spaces with
/// `"…"` quoting (`\"`, `` \` ``, `\$`, `\\` inside), then `%%` as `%` (any other field
/// code is refused: a launcher passes none).
fn exec_argv(value: &str) -> Vec<String> {
    let mut unescaped = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            unescaped.push(c);
            continue;
        }
        match chars.next().expect("a complete escape") {
            's' => unescaped.push(' '),
            'n' => unescaped.push('\n'),
            't' => unescaped.push('\t'),
            'r' => unescaped.push('\r'),
            '\\' => unescaped.push('\\'),
            other => panic!("unknown string escape \\{other} in {value:?}"),
        }
    }
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = unescaped.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(word.take()),
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next().expect("a closing quote") {
                        '"' => break,
                        '\\' => {
                            let e = chars.next().expect("an escaped character");
                            assert!("\"`$\\".contains(e), "\\{e} inside quotes");
                            w.push(e);
                        }
                        other => w.push(other),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
        .into_iter()
        .map(|w| {
            let mut out = String::new();
            let mut it = w.chars();
            while let Some(c) = it.next() {
                if c == '%' {
                    assert_eq!(it.next(), Some('%'), "a field code in {w:?}");
                }
                out.push(c);
            }
            out
        })
        .collect()
}

fn key<'a>(entry: &'a str, k: &str) -> &'a str {
    entry
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("no {k}= in:\n{entry}"))
}

fn validate(validator: &Path, file: &Path) {
    let out = Command::new(validator)
        .arg(file)
        .output()
        .expect("desktop-file-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "desktop-file-validate: {text}");
    assert!(
        !text.contains("error") && !text.contains("warning"),
        "desktop-file-validate: {text}"
    );
}

#[test]
fn the_launcher_passes_validation_and_its_exec_runs_the_same_command() {
    require_tun!();
    let Some(validator) = program("desktop-file-validate", "desktop-file-utils") else {
        return;
    };
    let topo = Topology::build(&TopologySpec {
        host: HostConfig::dhcp_like(),
        far: false,
    });
    let before = settled(&topo.host);
    let dir = TempDir::new();
    let eq = EnvQemu::new(&topo.host, &dir);
    let caller = nobody();
    let home = dir.path().join("home");
    let out_dir = writable_by(&caller, dir.path(), "out dir");
    let mark = out_dir.join("ran as");
    // Quoting on purpose: a space in a path, $, `, \, % and an empty argument.
    let script = r#"id -u > "$1"; echo 100% $HOME `true` \ >/dev/null"#;
    let command: Vec<String> = ["sh", "-c", script, "sh"]
        .iter()
        .map(|s| s.to_string())
        .chain([mark.display().to_string(), String::new()])
        .collect();
    let mut args = vec!["launcher", "vm1", "--"];
    args.extend(command.iter().map(String::as_str));
    let out: Outcome = eq
        .command(&args)
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("SUDO_UID")
        .output()
        .expect("env-qemu runs")
        .into();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let file = home.join(".local/share/applications/env-qemu-vm1.desktop");
    validate(&validator, &file);
    let entry = std::fs::read_to_string(&file).expect("the launcher");
    assert_eq!(key(&entry, "Name"), "vm1");
    assert_eq!(
        key(&entry, "Terminal"),
        "false",
        "no terminal: no -nographic"
    );
    let argv = exec_argv(key(&entry, "Exec"));
    let bin = std::fs::canonicalize(BIN).expect("the binary");
    let mut want = vec!["sudo".to_string(), "-n".into(), bin.display().to_string()];
    want.extend(eq.confinement());
    want.extend(["run".to_string(), "--".to_string()]);
    want.extend(command.iter().cloned());
    assert_eq!(argv, want, "Exec= reads back as the command");

    // What the desktop runs, sudo -n's part played by the test (root, SUDO_UID/GID).
    let ran = Command::new(&argv[2])
        .args(&argv[3..])
        .env("SUDO_UID", caller.uid.to_string())
        .env("SUDO_GID", caller.gid.to_string())
        .output()
        .expect("the Exec line runs");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let uid = std::fs::read_to_string(&mark).expect("COMMAND ran");
    assert_eq!(uid.trim(), caller.uid.to_string(), "as the caller");
    assert!(eq.state_files().is_empty());
    assert_restored(&topo.host, &before, "after the launcher's command");

    let removed = eq
        .command(&["launcher", "--remove", "vm1"])
        .env("HOME", &home)
        .output();
    assert!(removed.expect("runs").status.success());
    assert!(!file.exists(), "--remove");
    let again: Outcome = eq
        .command(&["launcher", "--remove", "vm1"])
        .env("HOME", &home)
        .output()
        .expect("runs")
        .into();
    assert_eq!(again.code, Some(3), "{}", again.stderr);
    assert!(
        again.stderr.contains("env-qemu-vm1.desktop"),
        "{}",
        again.stderr
    );
}

/// Run through sudo, the launcher goes to the caller's home and is written as the caller:
/// `nobody`'s home does not exist and root does not make it.
#[test]
fn through_sudo_the_launcher_is_written_as_the_caller() {
    require_netns!();
    let home = Path::new("/nonexistent");
    let existed = home.exists();
    let dir = TempDir::new();
    let out: Outcome = Command::new(BIN)
        .args(["--state-dir", &dir.path().display().to_string()])
        .args(["launcher", "vm3", "--", "true"])
        .env("SUDO_UID", nobody().uid.to_string())
        .env("SUDO_GID", nobody().gid.to_string())
        .output()
        .expect("env-qemu runs")
        .into();
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("/nonexistent/.local/share/applications/env-qemu-vm3.desktop"),
        "{}",
        out.stderr
    );
    assert_eq!(home.exists(), existed, "root created the caller's home");
}

#[test]
fn a_system_launcher_goes_to_usr_local_share_applications() {
    require_netns!();
    let Some(validator) = program("desktop-file-validate", "desktop-file-utils") else {
        return;
    };
    let script = r#"set -e
mount -n -t tmpfs tmpfs /usr/local/share
"$0" launcher --system vm2 -- qemu-system-x86_64 -nographic -m 512
"$1" /usr/local/share/applications/env-qemu-vm2.desktop
cat /usr/local/share/applications/env-qemu-vm2.desktop
"$0" launcher --system --remove vm2
test ! -e /usr/local/share/applications/env-qemu-vm2.desktop && echo REMOVED"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(BIN)
        .arg(&validator)
        .output()
        .expect("unshare runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains("error") && !stdout.contains("warning"),
        "{stdout}"
    );
    assert_eq!(
        key(&stdout, "Terminal"),
        "true",
        "-nographic needs a terminal"
    );
    let bin = std::fs::canonicalize(BIN).expect("the binary");
    assert_eq!(
        exec_argv(key(&stdout, "Exec")),
        [
            "sudo",
            "-n",
            &bin.display().to_string(),
            "run",
            "--",
            "qemu-system-x86_64",
            "-nographic",
            "-m",
            "512"
        ]
    );
    assert!(stdout.contains("REMOVED"), "{stdout}");
}

#[test]
fn sudoers_allow_run_passes_visudo_and_allows_only_run_and_the_taps() {
    require_netns!();
    let (Some(visudo), Some(_)) = (program("visudo", "sudo"), program("sudo", "sudo")) else {
        return;
    };
    let dir = TempDir::new();
    let config = dir.path().join("env-qemu.toml");
    std::fs::write(&config, "uplink = \"eth0\"\nbridge = \"lepont\"\n").expect("config");
    let caller = nobody();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(caller.gid))
        .expect("read group")
        .expect("nobody's group")
        .name;
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["sudoers", "--group", &group, "--allow-run"])
        .output()
        .expect("env-qemu runs");
    assert!(out.status.success());
    let rule = String::from_utf8(out.stdout).expect("text");
    assert!(rule.contains("uplink eth0 on bridge lepont"), "{rule}");
    let file = dir.path().join("sudoers");
    std::fs::write(&file, &rule).expect("write the rule");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    let checked = Command::new(&visudo)
        .args(["-c", "-f"])
        .arg(&file)
        .output()
        .expect("visudo runs");
    assert!(
        checked.status.success(),
        "visudo -c: {}{}\n{rule}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // What sudo lets the caller run, with this rule as the only sudoers file.
    let bin = std::fs::canonicalize(BIN).expect("the binary");
    let cases: [(&str, bool); 13] = [
        ("add eqtap0", true),
        ("del vm1", true),
        (
            "run -- qemu-system-x86_64 -m 1G -netdev tap,id=n0,fd={tapfd}",
            true,
        ),
        ("run -- sh", true),
        ("start", false),
        ("stop --force", false),
        ("run eth1 -- qemu", false),
        ("run --as-root -- qemu", false),
        ("run --user root -- qemu", false),
        ("--config /tmp/evil.toml run -- qemu", false),
        ("--netns other run -- qemu", false),
        ("add -x", false),
        ("add eqtap0 lepont", false),
    ];
    let mut script = String::from(
        "set -e\nmount -n --bind \"$0\" /etc/sudoers\n[ -d /run/sudo ] && mount -n -t tmpfs tmpfs /run/sudo\nset +e\n",
    );
    for (args, _) in &cases {
        script.push_str(&format!(
            "if sudo -n -l -U {} {} {args} >/dev/null 2>&1; then echo 'ALLOW {args}'; else echo 'DENY {args}'; fi\n",
            caller.name,
            bin.display()
        ));
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(&file)
        .output()
        .expect("unshare runs");
    let verdicts = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{verdicts}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, allowed) in cases {
        let line = format!("{} {args}", if allowed { "ALLOW" } else { "DENY" });
        assert!(
            verdicts.lines().any(|l| l == line),
            "expected {line:?}:\n{verdicts}\n{rule}"
        );
    }
}
