//! env-qemu's real-kernel backend: [`NetlinkKernel`] implements [`env_qemu_core::Kernel`]
//! with rtnetlink (links, addresses, routes), the tun ioctls (taps), mount(2) (tmpfs)
//! and /proc/sys (sysctls), all inside one chosen network namespace; [`SystemHost`]
//! implements [`env_qemu_core::host::Host`] for the programs that manage its interfaces.

mod addresses;
mod dump;
mod errors;
mod host;
mod identity;
mod kernel;
mod links;
mod neighbours;
mod netns;
mod request;
mod routes;
mod session;
mod sysctl;
mod sysfs;
mod tap;
mod tmpfs;

pub use host::{Detected, Problem, ProblemKind, SystemHost};
pub use identity::{identity_at, LiveNamespaces, Liveness};
pub use kernel::NetlinkKernel;
pub use session::{
    agent_alive, boot_id, boottime, parse_ssh_connection, process_start, session_of, started_at,
    SystemClock,
};
