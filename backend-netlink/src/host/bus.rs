//! The D-Bus plumbing `nm` and `networkd` share: one way to word a bus failure, and a
//! connection to the system bus checked to reach the daemon of the target namespace.

use env_qemu_core::ErrorKind;
use zbus::blocking::Connection;

use super::error::HostFailure;

/// `what` failed on the bus: a method error is worded as `daemon`'s answer, an I/O
/// error keeps its errno; `fix` says what to do.
pub(super) fn failure(e: &zbus::Error, daemon: &str, what: &str, fix: &str) -> HostFailure {
    let detail = match e {
        zbus::Error::MethodError(name, msg, _) => format!(
            "{what}: {daemon} answered {}{}",
            name.as_str(),
            msg.as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        zbus::Error::InputOutput(io) => return HostFailure::io(io, what, fix),
        other => format!("{what}: {other}"),
    };
    HostFailure::new(ErrorKind::Other, detail, fix)
}

/// Connects to the bus at `address` and checks that the owner of `service` there is
/// process `pid` — `daemon` (named `shown` where it is looked for) of this network
/// namespace, not one of another; `fix` goes with every failure.
pub(super) fn connect_to(
    address: &str,
    service: &str,
    pid: u32,
    daemon: &str,
    shown: &str,
    fix: &str,
) -> Result<Connection, HostFailure> {
    let conn = zbus::blocking::connection::Builder::address(address)
        .and_then(|b| b.build())
        .map_err(|e| {
            failure(
                &e,
                daemon,
                &format!("connect to the system bus {address}"),
                fix,
            )
        })?;
    let owner: u32 = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixProcessID",
            &(service,),
        )
        .and_then(|m| m.body().deserialize())
        .map_err(|e| {
            failure(
                &e,
                daemon,
                &format!("find {shown} on the system bus {address}"),
                fix,
            )
        })?;
    if owner != pid {
        return Err(HostFailure::new(
            ErrorKind::Other,
            format!(
                "the system bus {address} reaches the {daemon} of process {owner}, not process {pid} of this network namespace"
            ),
            fix,
        ));
    }
    Ok(conn)
}
