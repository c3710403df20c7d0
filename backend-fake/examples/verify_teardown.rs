//! Does a teardown script give the host back exactly as it was before `env-qemu start`?
//!
//! ```text
//! cargo run -p env-qemu-backend-fake --example verify_teardown               # both built-ins
//! cargo run -p env-qemu-backend-fake --example verify_teardown -- --passing  # one built-in
//! cargo run -p env-qemu-backend-fake --example verify_teardown -- --failing
//! cargo run -p env-qemu-backend-fake --example verify_teardown -- my-teardown.sh
//! ```
//!
//! On a simulated host (eth0 with 192.0.2.10/26, 2001:db8:1::10/64 and a DHCP default
//! route via 192.0.2.1; nothing real is touched, no privilege needed), it reads the
//! whole state, runs `env-qemu start eth0`, runs the teardown script (`ip` commands, see
//! `testkit::script`), lets the kernel's timers run out (duplicate address detection),
//! reads again and prints every difference.
//!
//! Exit status: 0 restored exactly (with no argument: the passing built-in passed and the
//! failing one failed); 1 not restored, or a command of the script was refused; 2 the
//! script cannot be read or parsed, or the arguments are wrong.

use std::process::ExitCode;

use env_qemu_backend_fake::testkit::script::Script;
use env_qemu_backend_fake::testkit::world::{self, WorldSpec};
use env_qemu_backend_fake::testkit::{self, Delta};
use env_qemu_core::model::Snapshot;
use env_qemu_core::store::MemoryStore;

/// Undoes everything `start` did, in an order the kernel accepts.
const PASSING: &str = "\
# The bridge goes first: deleting it releases eth0 and takes the bridge's routes along.
ip link del dev lepont
ip addr add 192.0.2.10/26 brd 192.0.2.63 dev eth0
ip -6 addr add 2001:db8:1::10/64 dev eth0 nodad
# start moved eth0's link-local address to the bridge: it comes back too.
ip -6 addr add fe80::5054:ff:fe10:2030/64 dev eth0
ip route add default via 192.0.2.1 dev eth0 proto dhcp metric 100
# start switched IPv6 autoconfiguration off on the port.
sysctl -w net.ipv6.conf.eth0.accept_ra=1
sysctl -w net.ipv6.conf.eth0.autoconf=1
";

/// The teardown many hand-written scripts have: delete the bridge and hope.
const FAILING: &str = "\
ip link del dev lepont
";

enum Pick {
    Both,
    Builtin(&'static str, &'static str),
    File(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pick = match args.as_slice() {
        [] => Pick::Both,
        [a] if a == "--passing" => Pick::Builtin("the passing built-in script", PASSING),
        [a] if a == "--failing" => Pick::Builtin("the failing built-in script", FAILING),
        [a] if !a.starts_with('-') => Pick::File(a.clone()),
        _ => {
            eprintln!("usage: verify_teardown [--passing | --failing | SCRIPT]");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        match pick {
            Pick::Both => {
                let passed = verify("the passing built-in script", PASSING).await;
                let failed = verify("the failing built-in script", FAILING).await;
                let as_expected = passed == Verdict::Restored && failed == Verdict::NotRestored;
                println!(
                    "\n{}",
                    if as_expected {
                        "As expected: the first script restores the host, the second does not."
                    } else {
                        "UNEXPECTED: the built-in scripts did not get their expected verdicts."
                    }
                );
                ExitCode::from(u8::from(!as_expected))
            }
            Pick::Builtin(what, text) => verify(what, text).await.code(),
            Pick::File(path) => match std::fs::read_to_string(&path) {
                Ok(text) => verify(&path, &text).await.code(),
                Err(e) => {
                    eprintln!("verify_teardown: cannot read {path}: {e}");
                    ExitCode::from(2)
                }
            },
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Restored,
    NotRestored,
    Unreadable,
}

impl Verdict {
    fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Verdict::Restored => 0,
            Verdict::NotRestored => 1,
            Verdict::Unreadable => 2,
        })
    }
}

async fn verify(what: &str, text: &str) -> Verdict {
    println!("== {what}");
    let script = match Script::parse(text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("verify_teardown: {what}: {e}");
            return Verdict::Unreadable;
        }
    };
    let sim = world::build(&WorldSpec::seed());
    let before = testkit::full_state(&sim).await;
    let store = MemoryStore::new();
    let report = testkit::start(&sim, &store, &testkit::start_request("eth0", None))
        .await
        .expect("env-qemu start succeeds on the seed host");
    println!("env-qemu start eth0 did:");
    for op in report.plan.ops() {
        println!("  {op}");
    }
    println!("the teardown script:");
    for c in &script.commands {
        println!("  {}", c.text);
    }
    let refused = script.apply(&sim).err();
    if let Some(e) = &refused {
        println!("REFUSED at {e}");
    }
    // Read once the kernel's timers have run out: duplicate address detection of a
    // re-added address is over, as it is a second later on a real host.
    sim.advance_time();
    let diff = testkit::differences(&before, &testkit::full_state(&sim).await);
    report_differences(&before, &diff);
    match (&refused, diff.is_empty()) {
        (None, true) => Verdict::Restored,
        _ => Verdict::NotRestored,
    }
}

fn report_differences(before: &Snapshot, diff: &[Delta]) {
    if diff.is_empty() {
        println!(
            "RESTORED: all {} links, addresses and routes, and every IPv6 knob and the tmpfs, \
             are as before start.",
            before.net.links.len() + before.net.addresses.len() + before.net.routes.len()
        );
        return;
    }
    println!("NOT RESTORED: (- lost since before start, + new or changed)");
    for d in diff {
        println!("  {d}");
    }
}
