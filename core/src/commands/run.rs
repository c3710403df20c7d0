//! `run`'s bookkeeping: the processes holding the bridge ([`State::holders`]). The first
//! `run` starts the bridge and registers itself; later ones register; each one leaving
//! deletes its taps, and the last one out stops the bridge unless a VM tap is still on
//! it. A bridge started by hand (no holders) is never stopped by a `run`.

use super::made::delete_tap;
use super::uplink::choose_uplink;
use super::{load_started, require_running, start, stop, CommandError, Env, Report};
use crate::model::{DumpFilter, IfName};
use crate::plan::{ForeignManager, ShmRequest, StartRequest};
use crate::state::State;

/// What `run` starts if nothing is started yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The uplink; `None` chooses the interface carrying the default route, and only if
    /// `run` starts the bridge.
    pub uplink: Option<IfName>,
    /// The bridge's name.
    pub bridge: IfName,
    /// The tmpfs to grow, if any (see [`StartRequest::shm`]).
    pub shm: Option<ShmRequest>,
    /// See [`StartRequest::foreign_manager`].
    pub foreign_manager: ForeignManager,
}

/// How a `run` joined the bridge.
#[derive(Debug)]
pub enum Joined {
    /// It started the bridge, and holds it.
    Started {
        /// The request it started the bridge with.
        req: StartRequest,
        /// What `start` did.
        report: Report,
    },
    /// Other runs hold the bridge; this one too now (`holders` of them in all).
    Held {
        /// The request the bridge was started with.
        req: StartRequest,
        /// How many runs hold it, this one included.
        holders: usize,
    },
    /// The bridge was started by hand: it stays up after this run.
    ByHand {
        /// The request the bridge was started with.
        req: StartRequest,
    },
}

impl Joined {
    /// The request the bridge runs with, whoever started it.
    pub fn request(&self) -> &StartRequest {
        match self {
            Joined::Started { req, .. } | Joined::Held { req, .. } | Joined::ByHand { req } => req,
        }
    }
}

/// Starts the bridge unless it is started, and registers `pid` as a holder (not when the
/// bridge was started by hand).
pub async fn join(env: &mut Env<'_>, req: &RunRequest, pid: u32) -> Result<Joined, CommandError> {
    if env.store.load()?.is_none() {
        let uplink = match &req.uplink {
            Some(u) => u.clone(),
            None => choose_uplink(env).await?,
        };
        let start_req = StartRequest {
            uplink,
            bridge: req.bridge.clone(),
            shm: req.shm.clone(),
            foreign_manager: req.foreign_manager,
        };
        let report = start(env, &start_req).await?;
        let mut state = load_started(env)?;
        state.holders = vec![pid];
        env.store.save(&state)?;
        return Ok(Joined::Started {
            req: start_req,
            report,
        });
    }
    let mut state = load_started(env)?;
    require_running(&state)?;
    let req = state.request.clone();
    if state.holders.is_empty() {
        return Ok(Joined::ByHand { req });
    }
    if !state.holders.contains(&pid) {
        state.holders.push(pid);
        state.journal.clear();
        env.store.save(&state)?;
    }
    Ok(Joined::Held {
        req,
        holders: state.holders.len(),
    })
}

/// How a `run` left.
#[derive(Debug)]
pub enum Left {
    /// It was the last one out: the bridge is stopped, the network restored.
    Stopped {
        /// Taps deleted: this run's, and those of runs that died.
        deleted: Vec<IfName>,
        /// How `stop` converged.
        report: Report,
    },
    /// The bridge stays: other runs hold it (`holders`), VM taps are on it (`taps`), or it
    /// was started by hand (both empty).
    Stays {
        /// Taps deleted: this run's, and those of runs that died.
        deleted: Vec<IfName>,
        /// How many runs still hold the bridge.
        holders: usize,
        /// VM taps still attached.
        taps: Vec<IfName>,
    },
    /// Nothing is started any more (someone ran `stop`).
    Gone,
}

/// Unregisters `pid` and the holders `alive` says are gone, deletes the taps made for
/// them, and stops the bridge if that leaves no holder and no VM tap on it (never a
/// bridge started by hand).
pub async fn leave(
    env: &mut Env<'_>,
    pid: u32,
    alive: &dyn Fn(u32) -> bool,
) -> Result<Left, CommandError> {
    if env.store.load()?.is_none() {
        return Ok(Left::Gone);
    }
    let mut state = load_started(env)?;
    let held = !state.holders.is_empty();
    state.holders.retain(|&p| p != pid && alive(p));
    state.journal.clear();
    env.store.save(&state)?;
    let orphans: Vec<IfName> = state
        .made
        .iter()
        .filter(|m| m.holder.is_some_and(|h| h == pid || !alive(h)))
        .map(|m| m.name.clone())
        .collect();
    let mut deleted = Vec::new();
    for name in orphans {
        delete_tap(env, &name).await?;
        deleted.push(name);
    }
    let state = load_started(env)?;
    let taps = vm_taps(env, &state).await?;
    if !held || !state.holders.is_empty() || !taps.is_empty() {
        return Ok(Left::Stays {
            deleted,
            holders: state.holders.len(),
            taps,
        });
    }
    let report = stop(env, crate::plan::VmTaps::Refuse).await?;
    Ok(Left::Stopped { deleted, report })
}

/// The bridge's ports but its uplink: the VMs still on it.
async fn vm_taps(env: &Env<'_>, state: &State) -> Result<Vec<IfName>, CommandError> {
    let br = &state.request.bridge;
    let filter = DumpFilter {
        ports_of: Some(br.clone()),
        ..DumpFilter::default()
    };
    let live = env.kernel.dump_filtered(&filter).await?;
    Ok(live
        .ports_of(br)
        .filter(|l| l.name != state.request.uplink)
        .map(|l| l.name.clone())
        .collect())
}
