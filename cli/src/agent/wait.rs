//! The agent's sleep: a timerfd on CLOCK_BOOTTIME set to an absolute deadline (a step of
//! the wall clock moves nothing; suspend counts, so a deadline passed during a suspend
//! fires at resume), and a signalfd for SIGTERM (revert now) and SIGUSR1 (look again:
//! another command ended the change).

use std::io;
use std::os::fd::AsFd;

use env_qemu_core::commands::Wake;
use env_qemu_core::pending::BootTime;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

pub struct Waiter {
    timer: TimerFd,
    signals: SignalFd,
}

impl Waiter {
    /// SIGTERM and SIGUSR1 must be blocked in every thread ([`super::prepare_process`]).
    pub fn new() -> io::Result<Waiter> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGUSR1);
        Ok(Waiter {
            timer: TimerFd::new(ClockId::CLOCK_BOOTTIME, TimerFlags::TFD_CLOEXEC)?,
            signals: SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?,
        })
    }

    /// The signals that arrived, without waiting: `Some(Terminate)` if a SIGTERM did,
    /// `Some(Timer)` for a SIGUSR1 alone.
    pub fn arrived(&self) -> io::Result<Option<Wake>> {
        let mut woken = None;
        while let Some(info) = self.signals.read_signal()? {
            if info.ssi_signo == Signal::SIGTERM as u32 {
                woken = Some(Wake::Terminate);
            } else if woken.is_none() {
                woken = Some(Wake::Timer);
            }
        }
        Ok(woken)
    }

    /// Sleeps until CLOCK_BOOTTIME reaches `until`, or a signal comes.
    pub fn sleep_until(&self, until: BootTime) -> io::Result<Wake> {
        // 0 would disarm the timer: a deadline already passed fires at once.
        let at = until.as_duration().max(std::time::Duration::from_nanos(1));
        self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(at)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        )?;
        loop {
            if let Some(w) = self.arrived()? {
                return Ok(w);
            }
            let mut fds = [
                PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                self.timer.wait()?;
                return Ok(self.arrived()?.unwrap_or(Wake::Timer));
            }
        }
    }
}
