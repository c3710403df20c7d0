//! Refusals inside the simulator, turned into `KernelError` once, at the `apply` boundary.

use env_qemu_core::KernelError;

/// A refusal: the errno the real kernel gives and its extended-ack text.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub errno: i32,
    pub msg: String,
    /// The kernel had already changed something before refusing (`master` moves a port
    /// out of its old bridge before finding out the new master cannot take it). The
    /// simulator then keeps that partial change, as the real kernel does.
    pub partial: bool,
}

impl Fail {
    pub fn new(errno: i32, msg: impl Into<String>) -> Fail {
        Fail {
            errno,
            msg: msg.into(),
            partial: false,
        }
    }

    pub fn kept_partial(mut self, partial: bool) -> Fail {
        self.partial = partial;
        self
    }

    pub fn into_error(self, object: impl Into<String>) -> KernelError {
        KernelError::from_errno(self.errno, object, Some(self.msg))
    }
}

pub(crate) type Res<T = ()> = Result<T, Fail>;

pub(crate) fn no_device() -> Fail {
    Fail::new(libc::ENODEV, "No such device")
}

pub(crate) fn exists() -> Fail {
    Fail::new(libc::EEXIST, "File exists")
}
