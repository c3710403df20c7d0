//! env-qemu's real-kernel backend: [`NetlinkKernel`] implements [`env_qemu_core::Kernel`]
//! with rtnetlink (links, addresses, routes), the tun ioctls (taps), mount(2) (tmpfs)
//! and /proc/sys (sysctls), all inside one chosen network namespace.

mod addresses;
mod dump;
mod errors;
mod identity;
mod kernel;
mod links;
mod neighbours;
mod netns;
mod request;
mod routes;
mod sysctl;
mod sysfs;
mod tap;
mod tmpfs;

pub use identity::{identity_at, LiveNamespaces, Liveness};
pub use kernel::NetlinkKernel;
