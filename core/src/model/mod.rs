//! The state model: plain serde data, no behaviour beyond naming and comparing.

mod address;
mod filter;
mod link;
mod mac;
mod name;
mod neigh;
mod prefix;
mod route;
mod snapshot;
mod sysctl;
mod tmpfs;

pub use address::{AddrFlag, AddrScope, Address};
pub use filter::DumpFilter;
pub use link::{BridgeInfo, Link, LinkKind, TapInfo};
pub use mac::{MacAddr, MacParseError};
pub use name::{IfName, NameError};
pub use neigh::{Neighbour, NudState};
pub use prefix::{Family, Prefix, PrefixParseError};
pub use route::{
    rtax, Route, RouteKey, RouteMetrics, RoutePref, RouteProtocol, RouteScope, RouteType,
    TABLE_DEFAULT, TABLE_LOCAL, TABLE_MAIN,
};
pub use snapshot::{NetState, Snapshot};
pub use sysctl::{Knob, SysctlKey, SysctlValue};
pub use tmpfs::{format_duration, format_size, parse_size, Tmpfs};
