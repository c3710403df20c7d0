//! The life of a pending change after `start --confirm`: `confirm` (with its proof),
//! `confirm --extend`, `revert`, the revert agent waking up, and any later command
//! settling a change that is due. Each is one transaction: the caller holds the state
//! lock, the verdict comes from [`Pending::judge`], so exactly one of them wins.
//!
//! The revert is `stop`'s convergent restore with VM taps detached (the VMs keep running),
//! verified by a dump, and logged beside the state ([`StateStore::log`]).

use std::time::Duration;

use super::{drift, stop, CommandError, Env, Report};
use crate::pending::{
    judge_proof, unix_seconds, BootTime, Clock, Happened, Origin, Pending, PendingEvent, Proof,
    RevertCause, Verdict,
};
use crate::plan::VmTaps;
use crate::state::State;
use crate::store::StateStore;

/// The clock and the boot a decision is taken in.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    /// The clock decisions are taken by (CLOCK_BOOTTIME).
    pub clock: &'a dyn Clock,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: &'a str,
}

impl Now<'_> {
    fn event(&self, p: &Pending, event: Happened) -> PendingEvent {
        PendingEvent {
            token: p.token.clone(),
            boot_id: p.boot_id.clone(),
            at: self.clock.boottime(),
            wall: unix_seconds(self.clock.wall()),
            event,
        }
    }

    /// Logs `event`. The state is the record; a log line that cannot be written does
    /// not undo what was done.
    fn log(&self, store: &dyn StateStore, p: &Pending, event: Happened) {
        let _ = store.log(&self.event(p, event));
    }
}

/// Whether the revert agent of a pending change is alive: its PID still runs the agent
/// that answered, guarding that change. `false` when it never answered.
pub type AgentAlive<'a> = &'a dyn Fn(&Pending) -> bool;

/// A pending change brought back to the saved state.
#[derive(Debug)]
pub struct Reverted {
    /// Why: its deadline passed, `revert` was asked, or the agent found it due.
    pub cause: RevertCause,
    /// The change as it was saved, now reverted.
    pub pending: Pending,
    /// How the host was brought back, verified by a dump.
    pub report: Report,
}

/// The pending change of this boot in the saved state, if any, without taking the lock:
/// for a command to decide whether to settle it ([`settle`], under the lock).
pub fn peek(store: &dyn StateStore, boot_id: &str) -> Result<Option<Pending>, CommandError> {
    Ok(store
        .load()?
        .and_then(|s| s.pending)
        .filter(|p| p.this_boot(boot_id)))
}

/// Reverts the pending change if it is due: its deadline passed, its agent is gone, or
/// the `start` that armed it died. Every command runs this first (holding the lock), so a
/// change whose agent was killed, or that outlived its deadline, is never left bridged.
/// `by` names the command in the log.
pub async fn settle(
    env: &mut Env<'_>,
    now: Now<'_>,
    alive: AgentAlive<'_>,
    by: &str,
) -> Result<Option<Reverted>, CommandError> {
    let Some(state) = env.store.load()? else {
        return Ok(None);
    };
    if state.netns != env.netns {
        return Ok(None);
    }
    let Some(p) = state.pending else {
        return Ok(None);
    };
    let alive = alive(&p);
    match p.judge(now.clock.boottime(), now.boot_id, alive) {
        Verdict::Due(cause) => revert_now(env, now, p, cause, by).await.map(Some),
        Verdict::Waiting { .. } | Verdict::OtherBoot => Ok(None),
    }
}

/// What a `confirm` accepted.
#[derive(Debug)]
pub struct Confirmed {
    /// The change, now confirmed: it stays.
    pub pending: Pending,
    /// What was accepted with a reservation (`--this-session`, a console).
    pub warnings: Vec<String>,
}

/// `confirm`: if `proof` holds, the change is kept and nothing is pending any more. A
/// change that is due is reverted instead ([`CommandError::AlreadyReverted`]); a proof
/// that does not hold changes nothing ([`CommandError::ProofFailed`]).
pub async fn confirm(
    env: &mut Env<'_>,
    now: Now<'_>,
    alive: AgentAlive<'_>,
    proof: &Proof,
) -> Result<Confirmed, CommandError> {
    let (mut state, p, deadline) = waiting(env, now, alive, "env-qemu confirm").await?;
    let drift = drift(env, &state).await?;
    let judged = judge_proof(&p, &state.request.bridge, &drift, proof);
    if !judged.failures.is_empty() {
        now.log(
            env.store,
            &p,
            Happened::Refused {
                reasons: judged.failures.clone(),
            },
        );
        return Err(CommandError::ProofFailed {
            bridge: state.request.bridge,
            reasons: judged.failures,
            left: now.clock.boottime().until(deadline),
        });
    }
    state.pending = None;
    state.journal.clear();
    env.store.save(&state)?;
    let origin = match &proof.origin {
        Origin::Console(why) => format!("a console ({why})"),
        Origin::Remote(c) => c.to_string(),
    };
    now.log(
        env.store,
        &p,
        Happened::Confirmed {
            origin,
            warnings: judged.warnings.clone(),
        },
    );
    Ok(Confirmed {
        pending: p,
        warnings: judged.warnings,
    })
}

/// `confirm --extend`: the deadline becomes `by` from now (never earlier than it was).
pub async fn extend(
    env: &mut Env<'_>,
    now: Now<'_>,
    alive: AgentAlive<'_>,
    by: Duration,
) -> Result<BootTime, CommandError> {
    let (mut state, mut p, _) = waiting(env, now, alive, "env-qemu confirm --extend").await?;
    let deadline = p.extend(now.clock.boottime(), by);
    state.pending = Some(p.clone());
    state.journal.clear();
    env.store.save(&state)?;
    now.log(env.store, &p, Happened::Extended { deadline });
    Ok(deadline)
}

/// `revert`: the pending change back to the saved state, now.
pub async fn revert(
    env: &mut Env<'_>,
    now: Now<'_>,
    alive: AgentAlive<'_>,
) -> Result<Reverted, CommandError> {
    let (_, p) = pending_here(env, now)?;
    let cause = match p.judge(now.clock.boottime(), now.boot_id, alive(&p)) {
        Verdict::Due(cause) => cause,
        Verdict::Waiting { .. } | Verdict::OtherBoot => RevertCause::Requested,
    };
    revert_now(env, now, p, cause, "env-qemu revert").await
}

/// Why the revert agent woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Its timer: the deadline it slept until, or its first look once it got the lock.
    Timer,
    /// SIGTERM: revert now.
    Terminate,
}

/// What the agent does next.
#[derive(Debug)]
pub enum AgentStep {
    /// Sleep until then, and look again (the deadline may have been extended).
    Sleep {
        /// When to look again.
        until: BootTime,
    },
    /// Its change is reverted; the agent's work is done.
    Reverted(Reverted),
    /// Nothing of its change is pending (confirmed, reverted or stopped by another
    /// command, or saved in another boot): says what the log knows.
    Gone(String),
}

/// The revert agent of the change `token`, holding the lock: reverts it if due (or if
/// told to), else says until when to sleep.
pub async fn agent_wake(
    env: &mut Env<'_>,
    now: Now<'_>,
    token: &str,
    wake: Wake,
) -> Result<AgentStep, CommandError> {
    let state = env.store.load()?;
    let p = state
        .filter(|s| s.netns == env.netns)
        .and_then(|s| s.pending)
        .filter(|p| p.token == token);
    let Some(p) = p else {
        let last = last_word(env.store, now, Some(token))?;
        return Ok(AgentStep::Gone(last.unwrap_or_else(|| {
            "its change is no longer pending (stopped)".to_string()
        })));
    };
    let by = "the revert agent";
    match (wake, p.judge(now.clock.boottime(), now.boot_id, true)) {
        (_, Verdict::OtherBoot) => Ok(AgentStep::Gone(
            "its change was armed during another boot".to_string(),
        )),
        (Wake::Terminate, _) => revert_now(env, now, p, RevertCause::Terminated, by)
            .await
            .map(AgentStep::Reverted),
        (Wake::Timer, Verdict::Due(cause)) => revert_now(env, now, p, cause, by)
            .await
            .map(AgentStep::Reverted),
        (Wake::Timer, Verdict::Waiting { deadline }) => Ok(AgentStep::Sleep { until: deadline }),
    }
}

/// Logs that `stop` ended the pending change `p` (an admin's way back, like `revert`).
pub fn log_stopped(store: &dyn StateStore, now: Now<'_>, p: &Pending, reached: bool) {
    now.log(
        store,
        p,
        Happened::Reverted {
            cause: RevertCause::Stopped,
            by: "env-qemu stop".into(),
            reached,
        },
    );
}

/// The saved state and its pending change of this boot, or why there is none.
fn pending_here(env: &Env<'_>, now: Now<'_>) -> Result<(State, Pending), CommandError> {
    let Some(state) = env.store.load()? else {
        return Err(nothing_pending(env, now, None)?);
    };
    if state.netns != env.netns {
        return Err(CommandError::WrongNamespace {
            saved: state.netns,
            here: env.netns.clone(),
        });
    }
    match state.pending.clone().filter(|p| p.this_boot(now.boot_id)) {
        Some(p) => Ok((state, p)),
        None => Err(CommandError::NoPending {
            bridge: Some(state.request.bridge),
            last: last_word(env.store, now, None)?
                .or_else(|| Some("started without --confirm".to_string())),
        }),
    }
}

/// The pending change, still waiting: a due one is reverted first, and reported as such.
async fn waiting(
    env: &mut Env<'_>,
    now: Now<'_>,
    alive: AgentAlive<'_>,
    by: &str,
) -> Result<(State, Pending, BootTime), CommandError> {
    let (state, p) = pending_here(env, now)?;
    let alive = alive(&p);
    match p.judge(now.clock.boottime(), now.boot_id, alive) {
        Verdict::Waiting { deadline } => Ok((state, p, deadline)),
        Verdict::Due(cause) => {
            let bridge = format!(" on bridge {}", state.request.bridge);
            revert_now(env, now, p, cause, by).await?;
            Err(CommandError::AlreadyReverted {
                bridge,
                how: format!("reverted just now, before this command, because {cause}"),
            })
        }
        Verdict::OtherBoot => Err(nothing_pending(env, now, Some(state))?),
    }
}

/// [`CommandError::AlreadyReverted`] if the log's last word on this boot is a revert,
/// else [`CommandError::NoPending`].
fn nothing_pending(
    env: &Env<'_>,
    now: Now<'_>,
    state: Option<State>,
) -> Result<CommandError, CommandError> {
    let bridge = state.map(|s| s.request.bridge);
    let events = env.store.logged()?;
    let t = now.clock.boottime();
    let last = events
        .iter()
        .rev()
        .filter(|e| e.boot_id == now.boot_id)
        .find(|e| {
            matches!(
                e.event,
                Happened::Armed { .. } | Happened::Confirmed { .. } | Happened::Reverted { .. }
            )
        });
    Ok(match last.map(|e| (e, &e.event)) {
        Some((
            e,
            Happened::Reverted {
                cause,
                by,
                reached: true,
            },
        )) => CommandError::AlreadyReverted {
            bridge: bridge
                .map(|b| format!(" on bridge {b}"))
                .unwrap_or_default(),
            how: format!(
                "{by} reverted it {} s ago, because {cause}",
                e.at.until(t).as_secs()
            ),
        },
        Some((e, _)) => CommandError::NoPending {
            bridge,
            last: describe(e, t),
        },
        None => CommandError::NoPending { bridge, last: None },
    })
}

/// The log's last word on this boot's changes (of `token`, if given), in words.
fn last_word(
    store: &dyn StateStore,
    now: Now<'_>,
    token: Option<&str>,
) -> Result<Option<String>, CommandError> {
    let (boot_id, t) = (now.boot_id, now.clock.boottime());
    let events = store.logged()?;
    Ok(events
        .iter()
        .rev()
        .filter(|e| e.boot_id == boot_id && token.is_none_or(|t| e.token == t))
        .find(|e| {
            matches!(
                e.event,
                Happened::Confirmed { .. } | Happened::Reverted { .. }
            )
        })
        .and_then(|e| describe(e, t)))
}

fn describe(e: &PendingEvent, now: BootTime) -> Option<String> {
    let ago = e.at.until(now).as_secs();
    match &e.event {
        Happened::Confirmed { origin, .. } => Some(format!(
            "the last change was confirmed {ago} s ago, from {origin}"
        )),
        Happened::Reverted { by, cause, .. } => Some(format!(
            "the last change was reverted {ago} s ago by {by}, because {cause}"
        )),
        _ => None,
    }
}

/// Reverts `p`: stop's restore with VM taps detached, verified by a dump; logged.
async fn revert_now(
    env: &mut Env<'_>,
    now: Now<'_>,
    p: Pending,
    cause: RevertCause,
    by: &str,
) -> Result<Reverted, CommandError> {
    let result = stop(env, VmTaps::Detach).await;
    now.log(
        env.store,
        &p,
        Happened::Reverted {
            cause,
            by: by.to_string(),
            reached: result.is_ok(),
        },
    );
    result.map(|report| Reverted {
        cause,
        pending: p,
        report,
    })
}
