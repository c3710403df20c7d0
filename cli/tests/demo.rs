//! The README's first command: `env-qemu demo` builds its lab, walks the seed workflow,
//! finds the network identical afterwards, and leaves nothing behind.

use std::process::Command;

use env_qemu_integration::require_netns;

#[test]
fn the_demo_restores_its_lab_exactly_and_cleans_up() {
    require_netns!();
    let out = Command::new(env!("CARGO_BIN_EXE_env-qemu"))
        .arg("demo")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("UDP echo") && stdout.contains("20/20 replies"),
        "{stdout}"
    );
    let after = stdout
        .split("== 7.")
        .nth(1)
        .expect("the demo reaches its last step");
    assert!(after.contains("identical"), "{stdout}");
    // Its namespaces carry its PID: none may remain.
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    let left = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with("eqdemo-")),
        "left behind: {left}"
    );
}
