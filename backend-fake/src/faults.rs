//! Fault injection: scheduled failures and a simulated crash of the connection. Lives
//! only here, in test tooling; production code has no hooks for it.

use env_qemu_core::{KernelError, Op};

#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    /// Mutating `apply` calls that reached the kernel so far.
    calls: usize,
    /// (call number, errno) still to fire.
    scheduled: Vec<(usize, i32)>,
    crash_in: Option<usize>,
    crashed: bool,
    mutations: usize,
    /// Operations refused every time they come, with their errno, until cleared.
    refused: Vec<(Op, i32)>,
}

impl Faults {
    pub fn fail_nth(&mut self, n: usize, errno: i32) {
        assert!(n >= 1, "fail_nth counts from 1 (the next call)");
        self.scheduled.push((self.calls + n, errno));
    }

    pub fn crash_after(&mut self, n: usize) {
        if n == 0 {
            self.crashed = true;
            self.crash_in = None;
        } else {
            self.crash_in = Some(n);
        }
    }

    pub fn refuse(&mut self, op: Op, errno: i32) {
        self.refused.push((op, errno));
    }

    pub fn clear(&mut self) {
        self.scheduled.clear();
        self.refused.clear();
        self.crash_in = None;
    }

    pub fn revive(&mut self) {
        self.crashed = false;
        self.crash_in = None;
    }

    pub fn crashed(&self) -> bool {
        self.crashed
    }

    pub fn mutations(&self) -> usize {
        self.mutations
    }

    /// A crashed kernel answers nothing: the connection is gone.
    pub fn refuse_if_crashed(&self, object: impl Into<String>) -> Result<(), KernelError> {
        if self.crashed {
            return Err(KernelError::from_errno(
                libc::ECONNREFUSED,
                object,
                Some("simulated crash: the kernel connection is gone".into()),
            ));
        }
        Ok(())
    }

    /// Counts a mutating call; the errno to fail it with if one is scheduled for it, or if
    /// `op` is refused.
    pub fn next_call(&mut self, op: &Op) -> Option<i32> {
        self.calls += 1;
        if let Some((_, errno)) = self.refused.iter().find(|(o, _)| o == op) {
            return Some(*errno);
        }
        let at = self.scheduled.iter().position(|(n, _)| *n == self.calls)?;
        Some(self.scheduled.remove(at).1)
    }

    pub fn succeeded(&mut self) {
        self.mutations += 1;
        match self.crash_in {
            Some(n) if n <= 1 => {
                self.crash_in = None;
                self.crashed = true;
            }
            Some(n) => self.crash_in = Some(n - 1),
            None => {}
        }
    }
}
