//! `env-qemu status [--json]`: what is bridged, what is attached, what was saved, what drifted.

use serde::Serialize;

use env_qemu_backend_netlink::{agent_alive, boot_id, SystemClock};
use env_qemu_core::commands;
use env_qemu_core::model::{format_size, IfName, NetState};
use env_qemu_core::pending::{Clock, Pending};
use env_qemu_core::state::{Phase, State};
use env_qemu_core::store::StateStore;
use env_qemu_core::Kernel;

use crate::context::{ifname, Ctx};
use crate::exit::Failure;
use crate::managers::{self, ManagerLine, ProblemLine, Report};
use crate::output::Out;
use crate::statedir::StaleFile;
use env_qemu_core::plan::default_uplink;

#[derive(Debug, Serialize)]
pub struct Status {
    pub netns: String,
    /// The namespace's inode and cookie (`null` on kernels before 5.14).
    pub netns_inode: u64,
    pub netns_cookie: Option<u64>,
    pub bridge: String,
    pub state_file: String,
    pub started: bool,
    pub phase: Option<Phase>,
    pub uplink: Option<IfName>,
    pub bridge_present: bool,
    pub ports: Vec<IfName>,
    pub taps: Vec<IfName>,
    pub shm: Option<ShmStatus>,
    pub drift: Vec<String>,
    /// The interrupted command's journal, when a command did not finish.
    pub interrupted_at: Option<String>,
    /// State files of network namespaces that no longer exist (every bridge).
    pub stale: Vec<StaleFile>,
    /// Who manages the uplink (the configured one, or the one carrying the default
    /// route) and, once started, the bridge; what start does with each.
    pub managers: Vec<ManagerLine>,
    /// What keeps one of them from being handed over.
    pub manager_problems: Vec<ProblemLine>,
    /// A change of `start --confirm` not yet confirmed (absent when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingStatus>,
}

/// The countdown of a pending change.
#[derive(Debug, Serialize)]
pub struct PendingStatus {
    /// Milliseconds until the agent reverts it (0: due).
    pub reverts_in_ms: u64,
    /// The deadline, on CLOCK_BOOTTIME (milliseconds since boot).
    pub deadline_boottime_ms: Option<u64>,
    pub plan_ended_boottime_ms: Option<u64>,
    pub window_ms: u64,
    pub agent_pid: Option<u32>,
    /// `detached process`, `transient systemd service UNIT`.
    pub agent: Option<String>,
    pub agent_alive: bool,
}

fn pending_status(p: &Pending) -> PendingStatus {
    let now = SystemClock.boottime();
    PendingStatus {
        reverts_in_ms: p.deadline.map_or(0, |d| {
            u64::try_from(now.until(d).as_millis()).unwrap_or(u64::MAX)
        }),
        deadline_boottime_ms: p.deadline.map(|d| d.0),
        plan_ended_boottime_ms: p.plan_ended.map(|d| d.0),
        window_ms: p.window_ms,
        agent_pid: p.agent.as_ref().map(|a| a.pid),
        agent: p.agent.as_ref().map(|a| a.path.to_string()),
        agent_alive: agent_alive(p),
    }
}

#[derive(Debug, Serialize)]
pub struct ShmStatus {
    pub path: String,
    pub size_before: String,
}

pub fn status(
    ctx: &Ctx,
    path: String,
    state: Option<&State>,
    live: &NetState,
    (stale, report, drift): (Vec<StaleFile>, Report, Vec<String>),
) -> Status {
    let br = &ctx.bridge;
    let ports: Vec<IfName> = live.ports_of(br).map(|l| l.name.clone()).collect();
    let uplink = state.map(|s| s.request.uplink.clone());
    Status {
        netns: ctx.netns_label.clone(),
        netns_inode: ctx.netns.inode,
        netns_cookie: ctx.netns.cookie,
        bridge: br.to_string(),
        state_file: path,
        started: state.is_some(),
        phase: state.map(|s| s.phase),
        bridge_present: live.link(br).is_some(),
        taps: ports
            .iter()
            .filter(|p| Some(*p) != uplink.as_ref())
            .cloned()
            .collect(),
        ports,
        uplink,
        shm: state.and_then(|s| {
            s.pre.tmpfs.as_ref().map(|t| ShmStatus {
                path: t.path.display().to_string(),
                size_before: format_size(t.size_bytes),
            })
        }),
        drift,
        interrupted_at: state
            .and_then(|s| s.journal.last())
            .map(|j| format!("{} step {}/{}: {}", j.command, j.step, j.of, j.op)),
        stale,
        managers: report.managers,
        manager_problems: report.problems,
        pending: state
            .and_then(|s| s.pending.as_ref())
            .filter(|p| boot_id().is_ok_and(|b| p.this_boot(&b)))
            .map(pending_status),
    }
}

/// The devices whose managers status shows: the uplink and the bridge once started;
/// before, the configured uplink or the one carrying the default route (none if that is
/// ambiguous: start would ask for a name).
fn managed_devices(ctx: &Ctx, state: Option<&State>, live: &NetState) -> Vec<IfName> {
    if let Some(s) = state {
        return vec![s.request.uplink.clone(), ctx.bridge.clone()];
    }
    match ctx.config.uplink.as_deref() {
        Some(u) => ifname(u).into_iter().collect(),
        None => default_uplink(live).into_iter().collect(),
    }
}

pub async fn run(ctx: &Ctx, out: Out) -> Result<(), Failure> {
    let found = ctx.find_store().await?;
    let state = match found.store.load()? {
        _ if found.stale_at_key => None,
        Some(s) if s.netns != found.netns_id => {
            return Err(commands::CommandError::WrongNamespace {
                saved: s.netns,
                here: ctx.netns_id.clone(),
            }
            .into())
        }
        state => state,
    };
    let stale = ctx.stale_files().await?;
    let live = ctx.kernel.dump().await?;
    let devs = managed_devices(ctx, state.as_ref(), &live);
    let report = managers::report(ctx, &devs).await?;
    // What differs from the bridged state, from a look at the objects env-qemu set up
    // (the same comparison start verified with).
    let drift = match &state {
        Some(st) if st.phase == Phase::Running => {
            let mut observer = |_: env_qemu_core::exec::Event<'_>| {};
            let env = ctx.env(&found.store, &mut observer);
            commands::drift(&env, st)
                .await?
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        _ => Vec::new(),
    };
    let s = status(
        ctx,
        found.store.path().display().to_string(),
        state.as_ref(),
        &live,
        (stale, report, drift),
    );
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("status serialises")
        );
        return Ok(());
    }
    if !s.started {
        println!("env-qemu is not started on {} ({}).", s.bridge, s.netns);
        print_managers(&s);
        print_stale(&s.stale);
        return Ok(());
    }
    let phase = match s.phase {
        Some(Phase::Running) => "running",
        Some(Phase::Starting) => "INTERRUPTED while starting: run `env-qemu stop` to recover",
        Some(Phase::Stopping) => "INTERRUPTED while stopping: run `env-qemu stop` again",
        None => "unknown",
    };
    println!("bridge   {} ({}), {phase}", s.bridge, s.netns);
    if let Some(u) = &s.uplink {
        println!("uplink   {u}");
    }
    let taps: Vec<&str> = s.taps.iter().map(|t| t.as_str()).collect();
    println!(
        "taps     {}",
        if taps.is_empty() {
            "none".to_string()
        } else {
            taps.join(" ")
        }
    );
    if let Some(shm) = &s.shm {
        println!(
            "shm      {} (was {} before start)",
            shm.path, shm.size_before
        );
    }
    if let Some(p) = &s.pending {
        println!(
            "pending  reverted in {:.0} s unless `env-qemu confirm` runs from a new login; agent: {} (PID {}){}",
            (p.reverts_in_ms as f64 / 1000.0).ceil(),
            p.agent.as_deref().unwrap_or("none"),
            p.agent_pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            if p.agent_alive { "" } else { ", GONE" }
        );
    }
    println!("state    {}", s.state_file);
    if let Some(j) = &s.interrupted_at {
        println!("stopped at  {j}");
    }
    if s.drift.is_empty() {
        println!("drift    none");
    } else {
        println!("drift    (stop repairs all of it)");
        for d in &s.drift {
            println!("  - {d}");
        }
    }
    print_managers(&s);
    print_stale(&s.stale);
    Ok(())
}

fn print_managers(s: &Status) {
    for m in &s.managers {
        println!("manager  {}", m.manages);
        println!("         start: {}", m.start);
    }
    for p in &s.manager_problems {
        println!("problem  {}", p.message);
    }
}

fn print_stale(stale: &[StaleFile]) {
    for f in stale {
        println!("stale    {}", f.describe());
    }
}
