//! `env-qemu start [IFACE]`.

use env_qemu_core::commands::{self, Env};
use env_qemu_core::model::IfName;
use env_qemu_core::plan::{ShmRequest, StartRequest};

use std::ffi::OsString;
use std::time::Duration;

use env_qemu_backend_netlink::SystemClock;
use env_qemu_core::commands::Arming;
use env_qemu_core::pending::Pending;
use env_qemu_core::store::{FileStore, StateStore};

use crate::agent::{self, HostFacts, Spawner};
use crate::args::{Global, StartArgs, StartCmd};
use crate::context::{ifname, size, Ctx, DEFAULT_SHM};
use crate::exit::{Code, Failure};
use crate::output::Out;

/// The uplink named by the arguments, else by the config file; `None`: the core chooses
/// the interface carrying the default route.
pub fn named_uplink(ctx: &Ctx, a: &StartArgs) -> Result<Option<IfName>, Failure> {
    a.iface
        .as_deref()
        .or(ctx.config.uplink.as_deref())
        .map(ifname)
        .transpose()
}

/// The shm request from the arguments, then the config file, then the default.
pub fn shm(ctx: &Ctx, a: &StartArgs) -> Result<Option<ShmRequest>, Failure> {
    let shm_size = a
        .shm_size
        .as_deref()
        .or(ctx.config.shm_size.as_deref())
        .unwrap_or(DEFAULT_SHM);
    Ok(match shm_size {
        "off" => None,
        s => Some(ShmRequest {
            path: a.shm_path.clone(),
            size_bytes: size(s)?,
        }),
    })
}

/// The request from arguments, then the config file, then the defaults.
pub async fn request(ctx: &Ctx, env: &Env<'_>, a: &StartArgs) -> Result<StartRequest, Failure> {
    let uplink = match named_uplink(ctx, a)? {
        Some(name) => name,
        None => commands::choose_uplink(env).await?,
    };
    Ok(StartRequest {
        uplink,
        bridge: ctx.bridge.clone(),
        shm: shm(ctx, a)?,
        foreign_manager: env_qemu_core::plan::ForeignManager::from(a.force),
    })
}

pub async fn run(ctx: &Ctx, out: Out, g: &Global, cmd: &StartCmd) -> Result<(), Failure> {
    let a = &cmd.args;
    let window = cmd
        .confirm
        .as_deref()
        .map(|s| super::confirm::seconds(s, "--confirm"))
        .transpose()?;
    // A dry run changes nothing, so it needs no lock (nor root to create one).
    let (store, lock) = if a.dry_run {
        let found = ctx.find_store().await?;
        if !found.stale_at_key {
            commands::ensure_not_started(&found.store, &found.netns_id)?;
        }
        (found.store, None)
    } else {
        let store = ctx.store(out).await?;
        let lock = store.lock()?;
        commands::ensure_not_started(&store, &ctx.netns_id)?;
        (store, Some(lock))
    };
    let mut observer = out.observer();
    let mut env = ctx.env(&store, &mut observer);
    let req = request(ctx, &env, a).await?;
    if a.dry_run {
        out.plan(&commands::plan_start(&env, &req).await?);
        return Ok(());
    }
    if let Some(window) = window {
        let armed = armed_start(ctx, out, g, &mut env, &req, window).await?;
        drop(env);
        // The change is made and guarded: other commands (confirm from a new login)
        // may take the lock now.
        drop(lock);
        return armed.follow(ctx, out, &store).await;
    }
    let report = commands::start(&mut env, &req).await?;
    notes(out, &report);
    out.say(format!(
        "env-qemu: {} bridged on {} in {} ({} operations); verified by a dump of {}; attach VMs with `env-qemu add TAP` or QEMU's script=/etc/qemu-ifup",
        req.uplink,
        req.bridge,
        ctx.netns_label,
        report.progress.applied,
        checked(&req),
    ));
    Ok(())
}

/// What the verifying dump read: the objects the result is claimed for.
pub fn checked(req: &StartRequest) -> String {
    let mut s = format!("{} and {}", req.uplink, req.bridge);
    if let Some(shm) = &req.shm {
        s.push_str(&format!(" and {}", shm.path.display()));
    }
    s
}

/// The plan's notes, and the surprises met on the way to a verified result.
pub fn notes(out: Out, report: &commands::Report) {
    for n in &report.plan.notes {
        out.say(format!("note: {n}"));
    }
    let p = &report.progress;
    if !p.failures.is_empty() {
        out.say(format!(
            "note: {} step(s) were refused on the way (the host changed under env-qemu); re-planned from fresh dumps in {} rounds",
            p.failures.len(),
            p.rounds
        ));
    }
}

/// A change made by `start --confirm`, pending.
struct Armed {
    pending: Pending,
}

/// `start --confirm`: the agent started and answering before the first change, then the
/// plan; the deadline counted from its end.
async fn armed_start(
    ctx: &Ctx,
    out: Out,
    g: &Global,
    env: &mut Env<'_>,
    req: &StartRequest,
    window: Duration,
) -> Result<Armed, Failure> {
    let io = |what: &str, e: std::io::Error| Failure::new(Code::Kernel, format!("{what}: {e}"));
    let runner = HostFacts::read(g.netns.is_some()).runner();
    for h in agent::hazards(&runner) {
        out.say(format!("warning: {h}"));
    }
    let state_dir =
        std::path::absolute(&ctx.state_dir).map_err(|e| io("the state directory", e))?;
    let mut global: Vec<OsString> = vec![
        "--state-dir".into(),
        state_dir.clone().into_os_string(),
        "--config".into(),
        std::path::absolute(&g.config)
            .map_err(|e| io("the config file", e))?
            .into_os_string(),
        "--bridge".into(),
        ctx.bridge.as_str().into(),
    ];
    if let Some(ns) = &g.netns {
        global.extend(["--netns".into(), ns.into()]);
    }
    let mut guard = Spawner {
        runner,
        state_dir,
        global,
    };
    let clock = SystemClock;
    let arming = Arming {
        token: agent::token().map_err(|e| io("reading /dev/urandom", e))?,
        boot_id: super::confirm::this_boot()?,
        window,
        clock: &clock,
        guard: &mut guard,
    };
    let (report, pending) = commands::start_confirmed(env, req, arming).await?;
    notes(out, &report);
    let agent = pending
        .agent
        .as_ref()
        .map_or_else(|| "none".to_string(), ToString::to_string);
    out.say(format!(
        "env-qemu: {} bridged on {} in {} ({} operations); verified by a dump of {}",
        req.uplink,
        req.bridge,
        ctx.netns_label,
        report.progress.applied,
        checked(req),
    ));
    out.say(format!(
        "env-qemu: PENDING: reverted {} unless confirmed: from a NEW login (an SSH connection opened now, or a console) run `env-qemu confirm`; `env-qemu revert` undoes it now; revert agent: {agent}",
        pending
            .deadline
            .map_or_else(String::new, |d| super::confirm::countdown(&clock, d)),
    ));
    Ok(Armed { pending })
}

impl Armed {
    /// On a terminal, a foreground prompt (a convenience: its end of file, EIO or SIGHUP
    /// neither confirm nor revert); otherwise nothing more.
    async fn follow(self, ctx: &Ctx, out: Out, store: &FileStore) -> Result<(), Failure> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Ok(());
        }
        prompt(ctx, out, store, &self.pending).await
    }
}

/// Reads `confirm`, `confirm --this-session` or `revert` from the terminal until the
/// change is no longer pending (confirmed or reverted, here or elsewhere). Ctrl-C, the
/// terminal closing or its end of file leave it pending: the agent decides.
async fn prompt(ctx: &Ctx, out: Out, store: &FileStore, pending: &Pending) -> Result<(), Failure> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::{signal, SigHandler, Signal};
    use std::os::fd::AsFd;
    // The plan is over: leaving the prompt any way is fine now.
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigDfl) };
    }
    out.say("env-qemu: type `confirm` (accepted from a console; over SSH open a new connection instead, or type `confirm --this-session`) or `revert`; closing this terminal or Ctrl-C leaves the change pending");
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    loop {
        if gone(store, pending) {
            let last = store
                .logged()
                .ok()
                .and_then(|l| l.into_iter().rev().find(|e| e.token == pending.token));
            out.say(match last.map(|e| e.event) {
                Some(env_qemu_core::pending::Happened::Confirmed { .. }) => {
                    "env-qemu: confirmed from another session".to_string()
                }
                Some(env_qemu_core::pending::Happened::Reverted { by, cause, .. }) => {
                    format!("env-qemu: reverted by {by}, because {cause}")
                }
                _ => "env-qemu: the change is no longer pending".to_string(),
            });
            return Ok(());
        }
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
        let mut buf = [0u8; 256];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => {
                out.say("env-qemu: end of input: the change stays pending; confirm it from a new login, or its agent reverts it");
                return Ok(());
            }
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            // EIO: the terminal hung up. Never an answer.
            Err(_) => return Ok(()),
        }
        while let Some(end) = line.iter().position(|b| *b == b'\n') {
            let word: Vec<u8> = line.drain(..=end).collect();
            let word = String::from_utf8_lossy(&word).trim().to_string();
            let answer = match word.as_str() {
                "confirm" => super::confirm::confirm(ctx, out, store, false).await,
                "confirm --this-session" => super::confirm::confirm(ctx, out, store, true).await,
                "revert" => super::confirm::revert(ctx, out, store).await,
                "" => continue,
                other => {
                    out.say(format!(
                        "env-qemu: {other:?}: type `confirm`, `confirm --this-session` or `revert`"
                    ));
                    continue;
                }
            };
            match answer {
                Ok(()) => return Ok(()),
                // Refused proof: the change stays pending, the prompt too.
                Err(f) if f.code == Code::ProofFailed => {
                    out.say(format!("env-qemu: {}", f.message));
                }
                Err(f) => return Err(f),
            }
        }
    }
}

/// Whether `pending` is over: the state gone, or no longer holding it.
fn gone(store: &FileStore, pending: &Pending) -> bool {
    match store.load() {
        Ok(Some(s)) => s.pending.is_none_or(|p| p.token != pending.token),
        Ok(None) => true,
        Err(_) => false,
    }
}
