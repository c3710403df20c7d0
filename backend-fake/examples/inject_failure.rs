//! Makes each step of `env-qemu start` fail in turn, and checks that the rollback puts
//! the host back exactly as it was.
//!
//! ```text
//! cargo run -p env-qemu-backend-fake --example inject_failure            # the seed host
//! cargo run -p env-qemu-backend-fake --example inject_failure -- 7       # world of seed 7
//! ```
//!
//! For each step of start's plan, on a fresh copy of the simulated host, the kernel
//! refuses that step (EBUSY, every time it is tried): start must give up and undo what
//! it did. The example reads the whole state before and after and prints any
//! difference. Exit status: 0 every rollback restored the host, 1 one did not, 2 bad
//! arguments.

use std::process::ExitCode;

use env_qemu_backend_fake::testkit::world::{self, WorldSpec};
use env_qemu_backend_fake::testkit::{self, Delta};
use env_qemu_core::store::MemoryStore;

fn main() -> ExitCode {
    let spec = match std::env::args().nth(1).as_deref() {
        None => WorldSpec::seed(),
        Some(seed) => match seed.parse() {
            Ok(seed) => WorldSpec::generate(seed),
            Err(_) => {
                eprintln!("usage: inject_failure [SEED]  (SEED: a number choosing a world)");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let all_restored = runtime.block_on(run(&spec));
    ExitCode::from(u8::from(!all_restored))
}

async fn run(spec: &WorldSpec) -> bool {
    let req = testkit::start_request("eth0", Some(256));
    // The steps, from a run without faults on the same world.
    let steps = match testkit::start(&world::build(spec), &MemoryStore::new(), &req).await {
        Ok(report) => report.plan.steps,
        Err(e) => {
            println!("start refuses this world, so there is nothing to roll back: {e}");
            return true;
        }
    };
    let (mut restored, mut not_restored) = (0, 0);
    for (i, op) in steps.iter().enumerate() {
        let sim = world::build(spec);
        let before = testkit::full_state(&sim).await;
        sim.refuse(op, libc::EBUSY);
        let result = testkit::start(&sim, &MemoryStore::new(), &req).await;
        sim.clear_faults();
        println!("step {}/{}: {op}", i + 1, steps.len());
        let Err(error) = result else {
            println!(
                "    refused (EBUSY) every time, yet start reached its goal: a dump showed the \
                 step's purpose held already"
            );
            continue;
        };
        let diff: Vec<Delta> = testkit::differences(&before, &testkit::full_state(&sim).await);
        let message = error.to_string();
        println!("    {}", message.lines().next().unwrap_or_default());
        if diff.is_empty() {
            restored += 1;
            println!("    rolled back: the host is exactly as before");
        } else {
            not_restored += 1;
            println!("    NOT RESTORED:");
            for d in &diff {
                println!("      {d}");
            }
        }
    }
    println!(
        "\n{restored} of {} steps failed and were rolled back exactly; {not_restored} left \
         the host changed",
        steps.len()
    );
    not_restored == 0
}
