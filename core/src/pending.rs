//! A pending change: `start --confirm` bridged the host, and a revert agent brings it back
//! unless `confirm` proves the bridged host reachable before the deadline.
//!
//! The record ([`Pending`]) is saved with the state before the first change; every
//! decision about it is taken under the state lock by whoever holds it (the agent on its
//! timer, `confirm`, `revert`, any later command), from [`Pending::judge`]: exactly one of
//! them wins, and it is the same verdict whoever asks.
//!
//! Time is CLOCK_BOOTTIME ([`BootTime`]): it counts suspend, and nothing steps it (NTP,
//! `date -s` and the RTC move the wall clock only). The wall clock is read for messages
//! and the log, never for a decision.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::IfName;
use crate::verify::Difference;

/// A reading of CLOCK_BOOTTIME, in milliseconds since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BootTime(pub u64);

impl BootTime {
    /// The reading `d` after boot, saturated at `u64::MAX` milliseconds.
    pub fn from_duration(d: Duration) -> BootTime {
        BootTime(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The reading as the time since boot.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> BootTime {
        BootTime(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long from `self` until `later` (zero if `later` is not later).
    pub fn until(self, later: BootTime) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

impl fmt::Display for BootTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} s after boot", self.0 / 1000, self.0 % 1000)
    }
}

/// Where time comes from. Production reads CLOCK_BOOTTIME; tests step a clock of their
/// own (never the machine's).
pub trait Clock: Send + Sync {
    /// CLOCK_BOOTTIME: what every deadline is counted on.
    fn boottime(&self) -> BootTime;
    /// The wall clock, for messages and the log only: a step of it changes no decision.
    fn wall(&self) -> SystemTime;
}

/// Seconds since 1970 of a wall-clock reading (0 before 1970), for the log.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How the revert agent runs, outside the session that armed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentPath {
    /// A transient systemd service (`systemd-run --unit=UNIT --collect`).
    Systemd {
        /// The unit's name (`env-qemu-revert-` and the start of the change's token).
        unit: String,
    },
    /// A double-forked process in a session of its own (no systemd as PID 1).
    Detached,
}

impl fmt::Display for AgentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentPath::Systemd { unit } => write!(f, "transient systemd service {unit}"),
            AgentPath::Detached => f.write_str("detached process"),
        }
    }
}

/// The revert agent of a pending change: a process, told apart from a later one with
/// its PID by its start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentId {
    /// Its process ID.
    pub pid: u32,
    /// `/proc/PID/stat`'s starttime (clock ticks since boot).
    pub started: u64,
    /// How it was started.
    pub path: AgentPath,
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (PID {})", self.path, self.pid)
    }
}

/// A change made by `start --confirm` and not yet confirmed: saved with the state before
/// the first change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Random: tells this change from any later one (an agent of an older change that
    /// wakes up late must not revert a newer one).
    pub token: String,
    /// `/proc/sys/kernel/random/boot_id` when armed. Every change of env-qemu is
    /// runtime-only: after a reboot nothing is pending and nothing is done.
    pub boot_id: String,
    /// How long after the end of the plan the change is reverted unless confirmed.
    pub window_ms: u64,
    /// When `start --confirm` armed it, before the first change.
    pub armed_at: BootTime,
    /// Once it answered (before the first change).
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// When the plan ended, verified: a confirming connection must be newer.
    #[serde(default)]
    pub plan_ended: Option<BootTime>,
    /// `plan_ended + window`, or later once extended. `None` while the plan runs.
    #[serde(default)]
    pub deadline: Option<BootTime>,
}

/// Why a pending change is (to be) reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevertCause {
    /// The deadline passed without a confirm.
    Deadline,
    /// Its agent is gone (killed, or its PID namespace died): nothing would revert it.
    AgentGone,
    /// The `start` that armed it died before its plan ended.
    StartDied,
    /// `env-qemu revert`.
    Requested,
    /// `env-qemu stop`, which restores whatever is pending.
    Stopped,
    /// SIGTERM to the agent.
    Terminated,
}

impl fmt::Display for RevertCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RevertCause::Deadline => "the deadline passed without a confirm",
            RevertCause::AgentGone => "its revert agent is gone",
            RevertCause::StartDied => "the start that armed it died before its plan ended",
            RevertCause::Requested => "`env-qemu revert` asked for it",
            RevertCause::Stopped => "`env-qemu stop` was run",
            RevertCause::Terminated => "its revert agent was told to (SIGTERM)",
        })
    }
}

/// What a pending change calls for now, judged under the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Saved during another boot: its changes died with it. Nothing is pending.
    OtherBoot,
    /// Waiting for a confirm until `deadline`.
    Waiting {
        /// When the change is reverted unless confirmed before.
        deadline: BootTime,
    },
    /// To be reverted now.
    Due(RevertCause),
}

impl Pending {
    /// A change armed at `now` (no agent yet, the window not started: it starts when the plan
    /// ends).
    pub fn new(token: String, boot_id: String, window: Duration, now: BootTime) -> Pending {
        Pending {
            token,
            boot_id,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            armed_at: now,
            agent: None,
            plan_ended: None,
            deadline: None,
        }
    }

    /// How long after the end of the plan the change is reverted unless confirmed.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// The plan ended at `now`: the window starts.
    pub fn plan_ended(&mut self, now: BootTime) {
        self.plan_ended = Some(now);
        self.deadline = Some(now.after(self.window()));
    }

    /// Whether it belongs to this boot.
    pub fn this_boot(&self, boot_id: &str) -> bool {
        self.boot_id == boot_id
    }

    /// The verdict at `now`, for a caller holding the state lock. `start` holds that lock
    /// from before arming until it has set the deadline, so a pending change without a
    /// deadline, seen under the lock, is one whose `start` died.
    pub fn judge(&self, now: BootTime, boot_id: &str, agent_alive: bool) -> Verdict {
        if !self.this_boot(boot_id) {
            return Verdict::OtherBoot;
        }
        let Some(deadline) = self.deadline else {
            return Verdict::Due(RevertCause::StartDied);
        };
        if now >= deadline {
            return Verdict::Due(RevertCause::Deadline);
        }
        if !agent_alive || self.agent.is_none() {
            return Verdict::Due(RevertCause::AgentGone);
        }
        Verdict::Waiting { deadline }
    }

    /// `confirm --extend`: the deadline becomes `by` from `now`, never earlier than it
    /// was (the agent, asleep until the old deadline, then sleeps on).
    pub fn extend(&mut self, now: BootTime, by: Duration) -> BootTime {
        let new = now.after(by).max(self.deadline.unwrap_or(now));
        self.deadline = Some(new);
        new
    }
}

/// The SSH connection a `confirm` arrives on, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The SSH client's address.
    pub client: IpAddr,
    /// The SSH client's port.
    pub client_port: u16,
    /// The address of this host the client connected to.
    pub server: IpAddr,
    /// The port of this host the client connected to (22 usually).
    pub server_port: u16,
    /// How it was found: `$SSH_CONNECTION`, `the socket of sshd (PID 812)`.
    pub found_by: String,
    /// When the oldest process holding its server end started (the per-connection sshd
    /// forked at accept): when the connection was opened. `None`: not found.
    pub opened: Option<BootTime>,
    /// The device the kernel routes packets to the client through (`ip route get
    /// CLIENT`), or why that could not be read.
    pub route_dev: Result<IfName, String>,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ep = |ip: &IpAddr, port: u16| match ip {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "the connection from {} to {} ({})",
            ep(&self.client, self.client_port),
            ep(&self.server, self.server_port),
            self.found_by
        )
    }
}

/// Where a `confirm` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No SSH connection through this namespace leads to it: a console, or a session
    /// that does not depend on this namespace's network. Says which.
    Console(String),
    /// Over this SSH connection, which leads through this namespace.
    Remote(Connection),
}

/// What `confirm` offers as proof that the bridged host is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Where the `confirm` comes from.
    pub origin: Origin,
    /// `--this-session`: a connection opened before the change is accepted.
    pub this_session: bool,
}

/// Why a proof was accepted anyway, or rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    /// What stands against the proof: empty when it holds.
    pub failures: Vec<String>,
    /// What was accepted with a reservation.
    pub warnings: Vec<String>,
}

/// Judges `proof` for `pending` on `bridge`, given what still differs from the bridged
/// state (`drift`). A confirm holds when the live state is the bridged one, and, over SSH,
/// the route back to the client goes through the bridge and the connection was opened
/// after the plan ended (or `--this-session` accepts an older one).
pub fn judge_proof(
    pending: &Pending,
    bridge: &IfName,
    drift: &[Difference],
    proof: &Proof,
) -> Judged {
    let mut j = Judged::default();
    if !drift.is_empty() {
        let list: Vec<String> = drift.iter().map(ToString::to_string).collect();
        j.failures.push(format!(
            "the live state is not the bridged one ({}); `env-qemu status` shows it",
            list.join("; ")
        ));
    }
    let conn = match &proof.origin {
        Origin::Console(why) => {
            j.warnings.push(format!(
                "confirmed without an SSH connection to check: {why}"
            ));
            return j;
        }
        Origin::Remote(c) => c,
    };
    match &conn.route_dev {
        Ok(dev) if dev == bridge => {}
        Ok(dev) => j.failures.push(format!(
            "the route to the SSH client {} goes through {dev}, not {bridge}: replies to a new connection would not cross the bridge",
            conn.client
        )),
        Err(why) => j.failures.push(format!(
            "the route to the SSH client {} cannot be read: {why}",
            conn.client
        )),
    }
    let ended = pending.plan_ended.unwrap_or(pending.armed_at);
    let newer = conn.opened.is_some_and(|o| o >= ended);
    if !newer {
        let when = match conn.opened {
            Some(o) => format!(
                "was opened {:.1} s before the change ended",
                o.until(ended).as_secs_f64()
            ),
            None => "cannot be dated (no process of this host holds its socket)".to_string(),
        };
        let what = format!("{conn} {when}");
        if proof.this_session {
            j.warnings.push(format!(
                "{what}: accepted (--this-session), but new connections were not proven to work"
            ));
        } else {
            j.failures.push(format!(
                "{what}: an old connection can survive a change that new ones do not; open a new SSH connection and run `env-qemu confirm` from it, or accept this one with `env-qemu confirm --this-session`"
            ));
        }
    }
    j
}

/// One line of the log of pending changes, kept beside the state file (and after it is
/// removed): what happened to each change, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvent {
    /// The change's token (see [`Pending::token`]).
    pub token: String,
    /// The boot the change was made in (see [`Pending::boot_id`]).
    pub boot_id: String,
    /// CLOCK_BOOTTIME when it happened.
    pub at: BootTime,
    /// Seconds since 1970, for people reading the log.
    pub wall: u64,
    /// What happened.
    pub event: Happened,
}

/// What happened to a pending change: one line of the log of pending changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Happened {
    /// The plan ended: the window runs until `deadline`.
    Armed {
        /// When the change is reverted unless confirmed.
        deadline: BootTime,
        /// The revert agent, once it answered.
        agent: Option<AgentId>,
    },
    /// `confirm --extend`: the window was extended to `deadline`.
    Extended {
        /// The new deadline.
        deadline: BootTime,
    },
    /// `confirm` accepted: the change stays.
    Confirmed {
        /// Where the confirm came from, as the user reads it.
        origin: String,
        /// Why the proof was accepted despite a doubt, if it was.
        warnings: Vec<String>,
    },
    /// `confirm` refused: the change stays pending.
    Refused {
        /// Why the proof was rejected.
        reasons: Vec<String>,
    },
    /// Reverted (`reached`: verified by a dump), by `by` (the agent, `revert`, `status`…).
    Reverted {
        /// Why it was reverted (the deadline passed, `revert` was asked…).
        cause: RevertCause,
        /// Who reverted it.
        by: String,
        /// Whether a dump verified the host is back to its pre-start state.
        reached: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOOT: &str = "b00t";

    fn armed(window: u64, ended: u64) -> Pending {
        let mut p = Pending::new(
            "t".into(),
            BOOT.into(),
            Duration::from_millis(window),
            BootTime(0),
        );
        p.agent = Some(AgentId {
            pid: 7,
            started: 1,
            path: AgentPath::Detached,
        });
        p.plan_ended(BootTime(ended));
        p
    }

    #[test]
    fn the_window_starts_when_the_plan_ends() {
        let p = armed(5000, 1200);
        assert_eq!(p.deadline, Some(BootTime(6200)));
        assert_eq!(
            p.judge(BootTime(6199), BOOT, true),
            Verdict::Waiting {
                deadline: BootTime(6200)
            }
        );
        assert_eq!(
            p.judge(BootTime(6200), BOOT, true),
            Verdict::Due(RevertCause::Deadline)
        );
    }

    #[test]
    fn another_boot_has_nothing_pending() {
        let p = armed(5000, 0);
        for now in [0, 10, 1_000_000] {
            assert_eq!(p.judge(BootTime(now), "other", false), Verdict::OtherBoot);
        }
    }

    #[test]
    fn a_plan_without_end_seen_under_the_lock_is_a_dead_start() {
        let p = Pending::new("t".into(), BOOT.into(), Duration::from_secs(5), BootTime(0));
        assert_eq!(
            p.judge(BootTime(1), BOOT, true),
            Verdict::Due(RevertCause::StartDied)
        );
    }

    #[test]
    fn extending_never_brings_the_deadline_closer() {
        let mut p = armed(60_000, 0);
        assert_eq!(
            p.extend(BootTime(1000), Duration::from_secs(1)),
            BootTime(60_000)
        );
        assert_eq!(
            p.extend(BootTime(59_000), Duration::from_secs(300)),
            BootTime(359_000)
        );
    }

    proptest! {
        /// Whatever the order of the events, a change is reverted exactly when the deadline
        /// passed or its agent died, and only on this boot; nothing else matters.
        #[test]
        fn the_verdict_depends_on_the_deadline_and_the_agent_only(
            window in 1u64..100_000,
            ended in 0u64..100_000,
            extensions in proptest::collection::vec((0u64..200_000, 0u64..100_000), 0..4),
            now in 0u64..400_000,
            alive in any::<bool>(),
        ) {
            let mut p = armed(window, ended);
            let mut deadline = ended + window;
            for (at, by) in extensions {
                let at = at.min(now);
                p.extend(BootTime(at), Duration::from_millis(by));
                deadline = deadline.max(at + by);
            }
            let v = p.judge(BootTime(now), BOOT, alive);
            let expect = if now >= deadline {
                Verdict::Due(RevertCause::Deadline)
            } else if !alive {
                Verdict::Due(RevertCause::AgentGone)
            } else {
                Verdict::Waiting { deadline: BootTime(deadline) }
            };
            prop_assert_eq!(v, expect);
            prop_assert_eq!(p.judge(BootTime(now), "another boot", alive), Verdict::OtherBoot);
        }
    }

    fn conn(opened: Option<u64>, dev: &str) -> Connection {
        Connection {
            client: "198.51.100.2".parse().unwrap(),
            client_port: 40000,
            server: "192.0.2.10".parse().unwrap(),
            server_port: 22,
            found_by: "$SSH_CONNECTION".into(),
            opened: opened.map(BootTime),
            route_dev: Ok(IfName::new(dev).unwrap()),
        }
    }

    fn proof(origin: Origin, this_session: bool) -> Proof {
        Proof {
            origin,
            this_session,
        }
    }

    #[test]
    fn a_new_connection_through_the_bridge_proves_it() {
        let p = armed(5000, 1000);
        let br = IfName::new("lepont").unwrap();
        let j = judge_proof(
            &p,
            &br,
            &[],
            &proof(Origin::Remote(conn(Some(1000), "lepont")), false),
        );
        assert_eq!(j, Judged::default());
    }

    #[test]
    fn an_old_connection_is_refused_unless_this_session() {
        let p = armed(5000, 1000);
        let br = IfName::new("lepont").unwrap();
        let old = Origin::Remote(conn(Some(400), "lepont"));
        let j = judge_proof(&p, &br, &[], &proof(old.clone(), false));
        assert_eq!(j.failures.len(), 1, "{j:?}");
        assert!(j.failures[0].contains("--this-session"), "{j:?}");
        assert!(j.failures[0].contains("0.6 s before"), "{j:?}");
        let j = judge_proof(&p, &br, &[], &proof(old, true));
        assert!(j.failures.is_empty(), "{j:?}");
        assert_eq!(j.warnings.len(), 1);
        // Undated: refused the same way.
        let j = judge_proof(
            &p,
            &br,
            &[],
            &proof(Origin::Remote(conn(None, "lepont")), false),
        );
        assert!(j.failures[0].contains("cannot be dated"), "{j:?}");
    }

    #[test]
    fn a_route_around_the_bridge_is_refused_even_for_this_session() {
        let p = armed(5000, 1000);
        let br = IfName::new("lepont").unwrap();
        let j = judge_proof(
            &p,
            &br,
            &[],
            &proof(Origin::Remote(conn(Some(2000), "eth1")), true),
        );
        assert_eq!(j.failures.len(), 1, "{j:?}");
        assert!(
            j.failures[0].contains("goes through eth1, not lepont"),
            "{j:?}"
        );
    }

    #[test]
    fn a_console_is_accepted_with_a_warning() {
        let p = armed(5000, 1000);
        let br = IfName::new("lepont").unwrap();
        let j = judge_proof(
            &p,
            &br,
            &[],
            &proof(Origin::Console("no SSH".into()), false),
        );
        assert!(j.failures.is_empty());
        assert_eq!(j.warnings.len(), 1);
    }
}
