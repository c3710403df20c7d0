//! The examples, run as the built binaries a user runs: their verdicts, their exit
//! statuses and the lines a reader relies on.
//!
//! `cargo test -p env-qemu-backend-fake` builds the examples before it runs this file;
//! `--test examples` alone does not (build them with `cargo build --examples`).

use std::path::PathBuf;
use std::process::{Command, Output};

/// `target/<profile>/examples/NAME`, next to this test's own `deps/` directory.
fn example(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("the test binary's path");
    let dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test -p env-qemu-backend-fake` (all targets) or \
         `cargo build -p env-qemu-backend-fake --examples` first",
        path.display()
    );
    path
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ran(out: &Output) -> Ran {
    Ran {
        code: out.status.code().expect("the example exits, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(name: &str, args: &[&str]) -> Ran {
    ran(&Command::new(example(name))
        .args(args)
        .output()
        .expect("the example starts"))
}

/// A script in this test's own scratch directory.
fn script(name: &str, text: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples");
    std::fs::create_dir_all(&dir).expect("the scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the script is written");
    path.to_string_lossy().into_owned()
}

#[test]
fn verify_teardown_shows_a_passing_and_a_failing_script() {
    let r = run("verify_teardown", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let passing = r.stdout.find("== the passing").expect(&r.stdout);
    let failing = r.stdout.find("== the failing").expect(&r.stdout);
    let (first, second) = r.stdout.split_at(failing);
    assert!(passing < failing);
    assert!(first.contains("\nRESTORED: "), "{first}");
    assert!(!first.contains("NOT RESTORED"), "{first}");
    // What `ip link del lepont` alone loses: eth0's address and the routes through it.
    for lost in [
        "NOT RESTORED",
        "  - address 192.0.2.10/26 dev eth0 brd 192.0.2.63 scope global\n",
        "  - route default via 192.0.2.1 dev eth0 proto dhcp scope global metric 100\n",
        "  + sysctl net.ipv6.conf.eth0.accept_ra=0\n",
    ] {
        assert!(second.contains(lost), "{lost:?} not in:\n{second}");
    }
    assert!(second.contains("As expected"), "{second}");
}

#[test]
fn verify_teardown_exit_statuses() {
    assert_eq!(run("verify_teardown", &["--passing"]).code, 0);
    let failing = run("verify_teardown", &["--failing"]);
    assert_eq!(failing.code, 1, "{}", failing.stdout);
    assert!(failing.stdout.contains("NOT RESTORED"));

    // A user's script whose second command the kernel refuses.
    let twice = script(
        "twice.sh",
        "ip link del dev lepont\nip link del dev lepont\n",
    );
    let r = run("verify_teardown", &[&twice]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("REFUSED at line 2 (ip link del dev lepont): interface lepont"),
        "{}",
        r.stdout
    );

    // A user's script that does the job, written with ip -batch lines and comments.
    let good = script(
        "good.sh",
        "link del dev lepont   # releases eth0\n\
         addr add 192.0.2.10/26 brd + dev eth0\n\
         -6 addr add 2001:db8:1::10/64 dev eth0 nodad\n\
         -6 addr add fe80::5054:ff:fe10:2030/64 dev eth0\n\
         route add default via 192.0.2.1 dev eth0 proto dhcp metric 100\n\
         sysctl -w net.ipv6.conf.eth0.accept_ra=1\n\
         sysctl -w net.ipv6.conf.eth0.autoconf=1\n",
    );
    let r = run("verify_teardown", &[&good]);
    assert_eq!(r.code, 0, "{}", r.stdout);

    let unparsable = script(
        "bad.sh",
        "ip link del dev lepont\nip link add x type dummy\n",
    );
    let r = run("verify_teardown", &[&unparsable]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 2: `dummy`: "), "{}", r.stderr);

    let r = run("verify_teardown", &["/nonexistent/teardown.sh"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read /nonexistent/teardown.sh"),
        "{}",
        r.stderr
    );
    assert_eq!(run("verify_teardown", &["--both"]).code, 2);
}

#[test]
fn inject_failure_rolls_back_every_step_it_fails() {
    let r = run("inject_failure", &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(!r.stdout.contains("NOT RESTORED"), "{}", r.stdout);
    let steps = r.stdout.lines().filter(|l| l.starts_with("step ")).count();
    let rolled = r
        .stdout
        .matches("rolled back: the host is exactly as before")
        .count();
    // The seed host's start has about twenty steps; most cannot be done without.
    assert!(steps >= 15, "{}", r.stdout);
    assert!(rolled >= steps / 2, "{}", r.stdout);
    assert!(r.stdout.contains(&format!(
        "\n{rolled} of {steps} steps failed and were rolled back exactly"
    )));
    assert!(r.stdout.contains("step 1/"), "{}", r.stdout);
    // A generated world, by seed.
    let r = run("inject_failure", &["3"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(run("inject_failure", &["three"]).code, 2);
}

#[test]
fn side_effects_shows_what_the_kernel_does_besides() {
    let r = run("side_effects", &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // Deleting eth0's only IPv4 address takes its prefix route and the default route
    // through its gateway along.
    let del = r
        .stdout
        .split("$ ")
        .find(|c| c.starts_with("ip addr del 192.0.2.10/26 dev eth0"))
        .expect(&r.stdout);
    assert!(
        del.contains("  - route default via 192.0.2.1 dev eth0"),
        "{del}"
    );
    assert!(
        del.contains("  - route 192.0.2.0/26 dev eth0 proto kernel"),
        "{del}"
    );
    let refused = script(
        "refused.sh",
        "ip link set dev eth9 up\nip link set dev eth0 down\n",
    );
    let r = run("side_effects", &[&refused]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("REFUSED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("$ ip link set dev eth0 down"),
        "{}",
        r.stdout
    );
}

/// The examples need no privilege: as root (CI), run one as `nobody` through setpriv,
/// from a world-readable copy; as anyone else, the tests above already ran them so.
#[test]
fn the_examples_run_as_a_normal_user() {
    let r = if unsafe_geteuid() == 0 {
        let copy = std::env::temp_dir().join(format!("verify_teardown-{}", std::process::id()));
        // Copied by a child process: a write descriptor of this process's own could be
        // inherited by a child another test thread forks meanwhile, and exec of the copy
        // would then fail with ETXTBSY ("Text file busy") until that child execs.
        let cp = Command::new("cp")
            .arg(example("verify_teardown"))
            .arg(&copy)
            .status()
            .expect("cp runs");
        assert!(cp.success(), "a copy in the temp dir");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .output()
            .expect("setpriv (util-linux) runs");
        let _ = std::fs::remove_file(&copy);
        ran(&out)
    } else {
        run("verify_teardown", &[])
    };
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("As expected"), "{}", r.stdout);
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
