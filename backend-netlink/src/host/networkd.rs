//! systemd-networkd: what its state files say of a link, env-qemu's runtime `.network`
//! files, and its reload over D-Bus (zbus's blocking API, on the host backend's own
//! threads; docs/networkd.md, measured against systemd 252).
//!
//! Files: networkd's state under `/run/systemd/netif` (`links/INDEX`: `ADMIN_STATE`,
//! `NETWORK_FILE`; `leases/INDEX`: `ADDRESS`, `CLIENTID`), read as env-qemu's mount
//! namespace sees them (detection checks that networkd sees the same). env-qemu writes
//! only its own runtime files, `/run/systemd/network/00-env-qemu-*.network`: never the
//! host's configuration.
//!
//! The bus is the system bus named by `DBUS_SYSTEM_BUS_ADDRESS` when env-qemu started, or
//! the default path; before `Reload` is called, the bus daemon must say that
//! `org.freedesktop.network1` there is the networkd process of the target namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use env_qemu_core::model::IfName;
use env_qemu_core::networkd::{iaid_of_client_id, is_runtime_file, NetworkdLink, RUNTIME_DIR};
use env_qemu_core::ErrorKind;

use super::error::HostFailure;

const SERVICE: &str = "org.freedesktop.network1";
const PATH: &str = "/org/freedesktop/network1";
const I_MANAGER: &str = "org.freedesktop.network1.Manager";
/// networkd's per-link state files.
pub(crate) const LINKS: &str = "/run/systemd/netif/links";
const LEASES: &str = "/run/systemd/netif/leases";
/// How long networkd may take to apply a reloaded file to a link (measured: tens of
/// milliseconds).
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

const FIX_LOG: &str =
    "see networkd's log (`journalctl -u systemd-networkd`, `networkctl status`); `env-qemu stop` puts the host back";

/// `KEY=VALUE` lines of a networkd state file.
fn keys(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

/// What networkd's state files say of the link of index `index`, and env-qemu's runtime
/// files present. `None`: networkd has no state file for it.
pub(crate) fn link(index: u32) -> Option<NetworkdLink> {
    let state = fs::read_to_string(Path::new(LINKS).join(index.to_string())).ok()?;
    let k = keys(&state);
    let network_file = k
        .get("NETWORK_FILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    let lease = fs::read_to_string(Path::new(LEASES).join(index.to_string())).unwrap_or_default();
    let l = keys(&lease);
    Some(NetworkdLink {
        state: k.get("ADMIN_STATE").map(|s| s.to_string()),
        network: network_file
            .as_ref()
            .and_then(|f| fs::read_to_string(f).ok()),
        network_file,
        iaid: l.get("CLIENTID").and_then(|c| iaid_of_client_id(c)),
        lease: l.get("ADDRESS").and_then(|a| a.parse().ok()),
        runtime: runtime_files(),
    })
}

/// env-qemu's runtime files in networkd's runtime directory, with their text.
fn runtime_files() -> BTreeMap<PathBuf, String> {
    let Ok(dir) = fs::read_dir(RUNTIME_DIR) else {
        return BTreeMap::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| is_runtime_file(p))
        .filter_map(|p| Some((p.clone(), fs::read_to_string(&p).ok()?)))
        .collect()
}

fn not_ours(path: &Path) -> HostFailure {
    HostFailure::new(
        ErrorKind::Invalid,
        format!(
            "{} is not one of env-qemu's runtime files ({RUNTIME_DIR}/00-env-qemu-*.network)",
            path.display()
        ),
        "env-qemu never writes a host's own networkd configuration",
    )
}

/// Writes `text` to the runtime file `path`: a new file beside it, renamed over it (networkd
/// never reads half a file).
pub(crate) fn write(path: &Path, text: &str) -> Result<(), HostFailure> {
    if !is_runtime_file(path) {
        return Err(not_ours(path));
    }
    let fix = format!("check that {RUNTIME_DIR} is writable (env-qemu runs as root)");
    fs::create_dir_all(RUNTIME_DIR).map_err(|e| HostFailure::io(&e, "mkdir", fix.clone()))?;
    let tmp = path.with_extension("network.env-qemu-new");
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    written.map_err(|e| HostFailure::io(&e, "write", fix.clone()))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        HostFailure::io(&e, "rename", fix)
    })
}

/// Removes the runtime file `path`; absent already is done.
pub(crate) fn remove(path: &Path) -> Result<(), HostFailure> {
    if !is_runtime_file(path) {
        return Err(not_ours(path));
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HostFailure::io(
            &e,
            "unlink",
            format!(
                "remove {} by hand, then `networkctl reload`",
                path.display()
            ),
        )),
    }
}

fn failure(e: &zbus::Error, what: &str, fix: &str) -> HostFailure {
    super::bus::failure(e, "systemd-networkd", what, fix)
}

/// `Reload` on the bus at `address`, whose `org.freedesktop.network1` must be process
/// `pid`; then waits until networkd applies each file of `wait` to its device, and until
/// each device of `link_local` has an IPv6 link-local address past DAD.
pub(crate) fn reload(
    address: &str,
    pid: u32,
    wait: &[(IfName, PathBuf)],
    link_local: &[IfName],
) -> Result<(), HostFailure> {
    let fix = "run env-qemu where networkd's system bus is, or point DBUS_SYSTEM_BUS_ADDRESS at it";
    let conn = super::bus::connect_to(address, SERVICE, pid, "systemd-networkd", SERVICE, fix)?;
    conn.call_method(Some(SERVICE), PATH, Some(I_MANAGER), "Reload", &())
        .map_err(|e| failure(&e, "Reload", FIX_LOG))?;
    let t = Instant::now();
    for (dev, file) in wait {
        loop {
            let Some(index) = super::detect::if_index(dev) else {
                return Err(HostFailure::new(
                    ErrorKind::NotFound,
                    format!(
                        "{dev} is gone while networkd was to apply {}",
                        file.display()
                    ),
                    FIX_LOG,
                ));
            };
            let now = link(index);
            if now.as_ref().is_some_and(|l| l.runs(file)) {
                break;
            }
            if t.elapsed() > WAIT {
                let (state, applied) = now.map(|l| (l.state, l.network_file)).unwrap_or_default();
                return Err(HostFailure::new(
                    ErrorKind::Other,
                    format!(
                        "networkd did not apply {} to {dev} within {WAIT:?} after the reload (state {}, file {})",
                        file.display(),
                        state.as_deref().unwrap_or("none"),
                        applied.map_or_else(|| "none".into(), |f| f.display().to_string())
                    ),
                    FIX_LOG,
                ));
            }
            std::thread::sleep(POLL);
        }
    }
    for dev in link_local {
        while !has_link_local(dev) {
            if t.elapsed() > WAIT {
                return Err(HostFailure::new(
                    ErrorKind::Other,
                    format!(
                        "{dev} has no IPv6 link-local address past DAD {WAIT:?} after networkd's reload"
                    ),
                    FIX_LOG,
                ));
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// Whether `dev` has an IPv6 link-local address that is not tentative, as
/// `/proc/thread-self/net/if_inet6` shows (the calling thread's namespace): scope 0x20,
/// flags without IFA_F_TENTATIVE (0x40).
fn has_link_local(dev: &IfName) -> bool {
    let text = fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default();
    text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() == 6
            && w[5] == dev.as_str()
            && w[3] == "20"
            && u32::from_str_radix(w[4], 16).is_ok_and(|f| f & 0x40 == 0)
    })
}
