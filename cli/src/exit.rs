//! One failure type for the command line: a message naming the object and the fix, and a
//! documented exit code.

use std::fmt;

use env_qemu_core::commands::CommandError;
use env_qemu_core::store::StoreError;
use env_qemu_core::{ErrorKind, KernelError};

/// The exit codes `--help` documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Kernel = 1,
    Usage = 2,
    NotFound = 3,
    Conflict = 4,
    Permission = 5,
    State = 6,
    /// The command could not reach its goal nor go back to what it found: the network
    /// differs from both, and the differences were printed.
    Unfinished = 7,
    /// `confirm`, `revert`: no change is pending.
    NoPending = 8,
    /// `confirm`, `revert`: the pending change was reverted already (or just now).
    AlreadyReverted = 9,
    /// `confirm`: the proof that the bridged host is reachable did not hold.
    ProofFailed = 10,
}

#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Code::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn kernel_code(k: &KernelError) -> Code {
    match k.kind {
        ErrorKind::PermissionDenied => Code::Permission,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::Busy => Code::Conflict,
        _ => Code::Kernel,
    }
}

impl From<KernelError> for Failure {
    fn from(k: KernelError) -> Failure {
        Failure::new(kernel_code(&k), k.to_string())
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::Corrupt { .. } | StoreError::Version { .. } => Code::State,
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Code::Permission
        }
        _ => Code::Kernel,
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::new(store_code(&e), e.to_string())
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Failure {
        let code = match &e {
            CommandError::NotStarted => Code::NotFound,
            CommandError::AlreadyStarted { .. }
            | CommandError::Interrupted { .. }
            | CommandError::WrongNamespace { .. } => Code::Conflict,
            CommandError::Plan(p) if p.is_not_found() => Code::NotFound,
            CommandError::Plan(_) => Code::Conflict,
            CommandError::Observe(k) => kernel_code(k),
            CommandError::Unreached(u) if u.nothing_changed() => {
                u.kernel_error().map_or(Code::Kernel, kernel_code)
            }
            CommandError::Unreached(_) => Code::Unfinished,
            CommandError::Store(s) => store_code(s),
            CommandError::NoPending { .. } => Code::NoPending,
            CommandError::AlreadyReverted { .. } => Code::AlreadyReverted,
            CommandError::ProofFailed { .. } => Code::ProofFailed,
            CommandError::Unarmed { .. } => Code::Kernel,
            // A failure a later core adds: the generic failure code until it gets its own.
            _ => Code::Kernel,
        };
        Failure::new(code, e.to_string())
    }
}
