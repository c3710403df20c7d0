//! `env-qemu __agent`: the revert agent `start --confirm` starts. It answers once it holds
//! everything its revert needs (the namespace, the netlink socket, the state file), then
//! sleeps on CLOCK_BOOTTIME and, each time it wakes, asks the core under the state lock
//! what to do. Its revert needs no name lookup (DNS or NSS), no network and no terminal.
//! At the end it announces a revert on every terminal (`wall`) and removes its copy of the
//! binary.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use env_qemu_backend_netlink::{boot_id, process_start, SystemClock};
use env_qemu_core::commands::{self, AgentStep, Now, Reverted, Wake};
use env_qemu_core::pending::Clock;
use env_qemu_core::store::StateStore;

use crate::agent::wait::Waiter;
use crate::agent::{agent_dir, answer_line, error_line, find_program};
use crate::args::{AgentArgs, Global};
use crate::context::Ctx;
use crate::exit::{Code, Failure};
use crate::output::Out;

/// Reverts that fail (the kernel refuses, the disk is full) are tried again this often,
/// this many times, before the agent leaves the change to the next command.
const RETRY: Duration = Duration::from_secs(2);
const ATTEMPTS: u32 = 5;

/// The agent's life: its answer channel first (so that any failure before it is ready
/// reaches its starter at once), then what the revert needs, then the answer and the
/// watch. Its copy of the binary goes at the end, whatever happened.
pub async fn run(g: &Global, out: Out, a: &AgentArgs) -> Result<(), Failure> {
    // Non-blocking: a starter that gave up (no reader) is no one to answer.
    let fifo = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&a.ready)
        .map_err(|e| failed(&format!("answering on {}", a.ready.display()), &e))?;
    let mut fifo = Some(fifo);
    let result = match Ctx::open(g).await {
        Ok(ctx) => guard(&ctx, out, a, &mut fifo).await,
        Err(f) => Err(f),
    };
    if let (Err(f), Some(mut fifo)) = (&result, fifo) {
        // The starter still waits for the answer: it reports this instead.
        let _ = fifo.write_all(error_line(&f.message).as_bytes());
    }
    let _ = std::fs::remove_dir_all(agent_dir(&g.state_dir, &a.token));
    result
}

fn failed(what: &str, e: &std::io::Error) -> Failure {
    Failure::new(Code::Kernel, format!("{what}: {e}"))
}

async fn guard(ctx: &Ctx, out: Out, a: &AgentArgs, fifo: &mut Option<File>) -> Result<(), Failure> {
    let store = ctx.store(out).await?;
    // The starter saved the change before starting this agent (and holds the lock until
    // its plan ends): read without the lock, it is there, or there is nothing to guard.
    let mine = store
        .load()?
        .and_then(|s| s.pending)
        .is_some_and(|p| p.token == a.token);
    if !mine {
        return Err(Failure::new(
            Code::NotFound,
            format!(
                "no pending change {} in {}",
                a.token,
                store.path().display()
            ),
        ));
    }
    let waiter = Waiter::new().map_err(|e| failed("agent timer", &e))?;
    let boot = boot_id().map_err(|e| failed("boot id", &e))?;
    let me = std::process::id();
    let started = process_start(me)
        .ok_or_else(|| failed("own start time", &std::io::Error::other("unreadable")))?;
    if let Some(mut answer) = fifo.take() {
        answer
            .write_all(answer_line(me, started).as_bytes())
            .map_err(|e| failed(&format!("answering on {}", a.ready.display()), &e))?;
    }

    let clock = SystemClock;
    let now = Now {
        clock: &clock,
        boot_id: &boot,
    };
    let mut wake = Wake::Timer;
    let mut attempts = 0;
    loop {
        let step = {
            let _lock = store.lock()?;
            // A SIGTERM that came while the lock was awaited counts now.
            if waiter.arrived().map_err(|e| failed("signals", &e))? == Some(Wake::Terminate) {
                wake = Wake::Terminate;
            }
            let mut observer = |_: env_qemu_core::exec::Event<'_>| {};
            let mut env = ctx.env(&store, &mut observer);
            commands::agent_wake(&mut env, now, &a.token, wake).await
        };
        match step {
            Ok(AgentStep::Sleep { until }) => {
                wake = waiter
                    .sleep_until(until)
                    .map_err(|e| failed("sleeping", &e))?;
            }
            Ok(AgentStep::Reverted(r)) => {
                announce(ctx, &r);
                return Ok(());
            }
            Ok(AgentStep::Gone(_)) => return Ok(()),
            Err(e) => {
                attempts += 1;
                if attempts >= ATTEMPTS {
                    return Err(e.into());
                }
                // The same wake again: the state (and the pending change) are kept by a
                // revert that did not finish.
                let retry = clock.boottime().after(RETRY);
                if waiter
                    .sleep_until(retry)
                    .map_err(|ee| failed("sleeping", &ee))?
                    == Wake::Terminate
                {
                    wake = Wake::Terminate;
                }
            }
        }
    }
}

/// Tells every terminal (`wall`): the admin who lost the connection reads it on the next
/// login, others know why the network moved. Best effort, after the revert, never
/// waited on for long.
fn announce(ctx: &Ctx, r: &Reverted) {
    let Some(wall) = find_program("wall") else {
        return;
    };
    let msg = format!(
        "env-qemu: the change on bridge {} ({}) was not confirmed and is reverted: {}. The network is as before `env-qemu start --confirm` (verified by a dump); VMs keep running, their taps detached.",
        ctx.bridge, ctx.netns_label, r.cause
    );
    let child = Command::new(wall)
        .arg(msg)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stuck on a terminal: it is ours, ended by its PID.
    let _ = child.kill();
    let _ = child.wait();
}
