//! What each command of a script does to the simulated kernel, beyond what it says: the
//! side effects Linux has (routes that go with an address, a port's link-local, …).
//!
//! ```text
//! cargo run -p env-qemu-backend-fake --example side_effects              # built-in script
//! cargo run -p env-qemu-backend-fake --example side_effects -- my.sh     # your own
//! ```
//!
//! On the seed host (eth0 with 192.0.2.10/26, 2001:db8:1::10/64, a DHCP default route
//! via 192.0.2.1), each command runs in turn and every object it changed is printed
//! (`-` gone, `+` new or changed). Exit status: 0 every command was accepted, 1 the
//! kernel refused one (the rest still run), 2 the script cannot be read or parsed.

use std::process::ExitCode;

use env_qemu_backend_fake::testkit;
use env_qemu_backend_fake::testkit::script::Script;
use env_qemu_backend_fake::testkit::world::{self, WorldSpec};

/// The seed recipe, done by hand.
const BUILTIN: &str = "\
ip link add lepont type bridge
ip link set dev lepont up
ip link set dev eth0 master lepont
ip addr del 192.0.2.10/26 dev eth0
ip addr add 192.0.2.10/26 brd + dev lepont
ip route add default via 192.0.2.1 dev lepont
ip link del dev lepont
";

fn main() -> ExitCode {
    let text = match std::env::args().nth(1) {
        None => BUILTIN.to_string(),
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("side_effects: cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let script = match Script::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("side_effects: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let refused = runtime.block_on(async {
        let sim = world::build(&WorldSpec::seed());
        let mut refused = false;
        for c in &script.commands {
            let before = testkit::full_state(&sim).await;
            let mut one = Script::default();
            one.commands.push(c.clone());
            println!("$ {}", c.text);
            if let Err(e) = one.apply(&sim) {
                println!("  REFUSED: {}", e.error);
                refused = true;
            }
            for d in testkit::differences(&before, &testkit::full_state(&sim).await) {
                println!("  {d}");
            }
        }
        refused
    });
    ExitCode::from(u8::from(refused))
}
