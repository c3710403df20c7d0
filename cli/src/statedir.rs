//! The state directory seen from one network namespace: which file is this namespace's
//! (moving an older version's inode-keyed file under the cookie key), and which files
//! belong to namespaces that no longer exist.
//!
//! A namespace is named by its cookie where the kernel has one (Linux 5.14 and later):
//! see [`env_qemu_core::store::key`]. A file keyed by the inode alone (written by an
//! env-qemu before cookies, or on a kernel without them) is this namespace's only if the
//! inode is this namespace's **and** the devices it names are still the same ones
//! ([`devices_match`]): the uplink with the ifindex and MAC saved before start, and the
//! bridge, if present, a bridge with the uplink's MAC (start gives it that MAC; its
//! ifindex is not known before start makes it, so it is not saved). A namespace created
//! after the one that wrote the file, and given its inode number, has other devices: a
//! veth's MAC is random, and ifindexes count from 1 in every namespace. What the check
//! cannot tell apart: the same physical NIC, keeping its ifindex, moved into a new
//! namespace that got the same inode; that state then is that NIC's, and `stop` restores
//! it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use env_qemu_backend_netlink::{identity_at, LiveNamespaces, Liveness};
use env_qemu_core::model::{DumpFilter, LinkKind, NetState};
use env_qemu_core::state::{NetnsId, State};
use env_qemu_core::store::key::{inode_file_name, parse_file_name, state_file_name};
use env_qemu_core::store::{FileStore, StateStore};
use env_qemu_core::Kernel;
use serde::Serialize;

use crate::context::Ctx;
use crate::exit::{Code, Failure};
use crate::output::Out;

/// Whether `state` (keyed by inode) names the devices this namespace has: `Err` says
/// which one differs and how.
pub fn devices_match(state: &State, live: &NetState) -> Result<(), String> {
    let (up, br) = (&state.request.uplink, &state.request.bridge);
    let Some(saved) = state.pre.net.link(up) else {
        return Err(format!("it saved nothing of its uplink {up}"));
    };
    match live.link(up) {
        None => {
            return Err(format!(
                "its uplink {up} (ifindex {}, {}) is not here",
                saved.index, saved.mac
            ))
        }
        Some(l) if l.index != saved.index || l.mac != saved.mac => {
            return Err(format!(
                "its uplink {up} was ifindex {}, {}; here {up} is ifindex {}, {}",
                saved.index, saved.mac, l.index, l.mac
            ))
        }
        Some(_) => {}
    }
    match live.link(br) {
        Some(b) if !matches!(b.kind, LinkKind::Bridge(_)) || b.mac != saved.mac => Err(format!(
            "its bridge {br} had the uplink's MAC {}; here {br} is a {} with {}",
            saved.mac,
            b.kind.name(),
            b.mac
        )),
        // Absent: a start that crashed before making it, or deleted by hand.
        _ => Ok(()),
    }
}

/// A state file whose namespace no longer exists.
#[derive(Debug, Clone, Serialize)]
pub struct StaleFile {
    pub file: PathBuf,
    /// The namespace it was saved in (`net:[INODE] cookie COOKIE`).
    pub netns: String,
    pub bridge: String,
    pub uplink: String,
    /// Why it is stale.
    pub reason: String,
    /// True when no namespace alive has its identity, which `stop --stale` removes;
    /// false when only the device check (no cookie to compare) says it is not this
    /// namespace's: then it is left to the admin.
    pub certain: bool,
    /// The state as judged: `stop --stale` removes the file only if it still holds this.
    #[serde(skip)]
    pub state: Option<State>,
}

impl StaleFile {
    /// One line for `status` and `stop --stale`: the file, what it recorded, why it is
    /// stale, how to remove it.
    pub fn describe(&self) -> String {
        let fix = if self.certain {
            "remove it with `env-qemu stop --stale`".to_string()
        } else {
            format!("if so, remove it with `rm {}`", self.file.display())
        };
        format!(
            "{}: bridge {} on {} in network namespace {}, {}; {fix}",
            self.file.display(),
            self.bridge,
            self.uplink,
            self.netns,
            self.reason
        )
    }
}

impl StaleFile {
    /// What `stop --stale` says it removed.
    pub fn describe_removed(&self) -> String {
        format!(
            "{} (bridge {} on {} in network namespace {}, {})",
            self.file.display(),
            self.bridge,
            self.uplink,
            self.netns,
            self.reason
        )
    }
}

/// The files a state directory holds that may be states: `netns-….json` and the
/// `stale-…-netns-….json` that a start on a kernel without cookies set aside.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            parse_file_name(name).is_some()
                || (name.starts_with("stale-") && name.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
}

/// What the directory holds for this namespace and bridge.
#[derive(Debug)]
pub struct Resolved {
    /// The store to read and write: the key file, or an older version's inode-keyed file
    /// that is this namespace's (read only: a change moves it to the key first).
    pub store: FileStore,
    /// On a kernel without cookies, the key file (the inode's) is another namespace's,
    /// one that had this inode: there is no state here.
    pub stale_at_key: bool,
    /// The namespace identity the state in `store` carries when it is this namespace's:
    /// [`Ctx::netns_id`], or the inode alone in an older version's file.
    pub netns_id: String,
}

impl Ctx {
    fn key_store(&self) -> FileStore {
        FileStore::new(
            self.state_dir
                .join(state_file_name(&self.netns, &self.bridge)),
        )
    }

    /// With a cookie, where an env-qemu before cookies kept this bridge's state.
    fn inode_keyed(&self) -> Option<FileStore> {
        self.netns.cookie?;
        let path = self
            .state_dir
            .join(inode_file_name(self.netns.inode, &self.bridge));
        path.exists().then(|| FileStore::new(path))
    }

    /// Whether an inode-keyed state is this namespace's: same inode, no cookie, and the
    /// same devices. `Err` is why not.
    async fn owns_inode_keyed(&self, state: &State) -> Result<bool, Failure> {
        let Some(id) = NetnsId::parse(&state.netns) else {
            return Ok(false);
        };
        if id.inode != self.netns.inode || id.cookie.is_some() {
            return Ok(false);
        }
        Ok(self.devices_here(state).await?.is_ok())
    }

    /// [`devices_match`] against this namespace's uplink and bridge.
    async fn devices_here(&self, state: &State) -> Result<Result<(), String>, Failure> {
        let (up, br) = (&state.request.uplink, &state.request.bridge);
        let live = self
            .kernel
            .dump_filtered(&DumpFilter::links(&[up, br]))
            .await?;
        Ok(devices_match(state, &live))
    }

    /// This namespace's state file for the bridge, without changing anything (`status`,
    /// dry runs).
    pub async fn find_store(&self) -> Result<Resolved, Failure> {
        let key = self.key_store();
        if let Some(old) = self.inode_keyed() {
            // Unreadable, it cannot be told to be this namespace's: it is left alone (a
            // namespace that got the inode of the one that wrote it must not be blocked).
            if let Ok(Some(st)) = old.load() {
                if self.owns_inode_keyed(&st).await? && key.load()?.is_none() {
                    return Ok(Resolved {
                        store: old,
                        stale_at_key: false,
                        netns_id: st.netns,
                    });
                }
            }
        }
        let stale_at_key = match (self.netns.cookie, key.load()?) {
            (None, Some(st)) => {
                NetnsId::parse(&st.netns) == Some(self.netns)
                    && self.devices_here(&st).await?.is_err()
            }
            _ => false,
        };
        Ok(Resolved {
            store: key,
            stale_at_key,
            netns_id: self.netns_id.clone(),
        })
    }

    /// This namespace's state file for the bridge, for a command that changes it: an
    /// older version's inode-keyed file that is this namespace's is moved to the cookie
    /// key first; on a kernel without cookies, a file at the key that is another (gone)
    /// namespace's is set aside as `stale-SECONDS-NAME`, where `status` reports it.
    pub async fn store(&self, out: Out) -> Result<FileStore, Failure> {
        let key = self.key_store();
        if let Some(old) = self.inode_keyed() {
            let _key_lock = key.lock()?;
            let _old_lock = old.lock()?;
            if let Ok(Some(mut st)) = old.load() {
                if self.owns_inode_keyed(&st).await? {
                    if key.load()?.is_some() {
                        return Err(Failure::new(
                            Code::Conflict,
                            format!(
                                "two state files for bridge {} in this namespace: {} and {} (from an env-qemu before cookies); compare them, keep the newer, and delete the other",
                                self.bridge,
                                key.path().display(),
                                old.path().display()
                            ),
                        ));
                    }
                    // The journal of an interrupted command is part of what load returned;
                    // save writes it into the new file.
                    st.netns = self.netns_id.clone();
                    key.save(&st)?;
                    old.remove()?;
                    let _ = std::fs::remove_file(lock_path(old.path()));
                    out.say(format!(
                        "note: state file {} moved to {} (keyed by the namespace's cookie, which the kernel never reuses)",
                        old.path().display(),
                        key.path().display()
                    ));
                }
            }
        } else if self.netns.cookie.is_none() && key.path().exists() {
            let _lock = key.lock()?;
            if let Some(st) = key.load()? {
                if NetnsId::parse(&st.netns) == Some(self.netns) {
                    if let Err(why) = self.devices_here(&st).await? {
                        let aside = set_aside(key.path()).map_err(|e| {
                            Failure::new(
                                Code::Permission,
                                format!("setting aside state file {}: {e}", key.path().display()),
                            )
                        })?;
                        out.say(format!(
                            "note: state file {} is not this namespace's ({why}): it belongs to a namespace that had this inode before; moved to {}",
                            key.path().display(),
                            aside.display()
                        ));
                    }
                }
            }
        }
        Ok(key)
    }

    /// The state files of namespaces that no longer exist (every bridge), for `status` and
    /// `stop --stale`. Files that cannot be read, or that are this namespace's or a live
    /// one's, are not listed.
    pub async fn stale_files(&self) -> Result<Vec<StaleFile>, Failure> {
        let mine = self.find_store().await?;
        let mut live: Option<LiveNamespaces> = None;
        let mut stale = Vec::new();
        for file in state_files(&self.state_dir) {
            if file == mine.store.path() && !mine.stale_at_key {
                continue;
            }
            let Ok(Some(st)) = FileStore::new(&file).load() else {
                continue;
            };
            let Some(id) = NetnsId::parse(&st.netns) else {
                continue;
            };
            let verdict = if id.inode == self.netns.inode {
                match (id.cookie, self.netns.cookie) {
                    // This namespace holds the inode, and is not the one with that cookie.
                    (Some(saved), Some(here)) if saved != here => Some((
                        "which no longer exists: this namespace has its inode number now"
                            .to_string(),
                        true,
                    )),
                    (Some(_), Some(_)) => None,
                    // No cookie to compare: the devices tell.
                    _ => self.devices_here(&st).await?.err().map(|why| {
                        (
                            format!("not this namespace's, although it has its inode number ({why}): presumably saved in a namespace that no longer exists"),
                            false,
                        )
                    }),
                }
            } else {
                let live = live.get_or_insert_with(LiveNamespaces::scan);
                match live.liveness(&id, identity_at) {
                    Liveness::Gone if live.has_inode(id.inode) => Some((
                        "which no longer exists: a newer namespace has its inode number"
                            .to_string(),
                        true,
                    )),
                    Liveness::Gone => Some(("which no longer exists".to_string(), true)),
                    Liveness::Alive | Liveness::Unknown => None,
                }
            };
            if let Some((reason, certain)) = verdict {
                stale.push(StaleFile {
                    file,
                    netns: st.netns.clone(),
                    bridge: st.request.bridge.to_string(),
                    uplink: st.request.uplink.to_string(),
                    reason,
                    certain,
                    state: Some(st),
                });
            }
        }
        Ok(stale)
    }
}

fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

fn journal_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_os_string();
    name.push(".journal");
    PathBuf::from(name)
}

/// Renames `path` (and its journal) to `stale-SECONDS-NAME` beside it.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let aside = path.with_file_name(format!("stale-{secs}-{name}"));
    std::fs::rename(path, &aside)?;
    match std::fs::rename(journal_path(path), journal_path(&aside)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(aside)
}

/// Removes a stale state file with its journal and lock, under its lock, if it still
/// holds the state that was judged stale; returns whether it did. A file that went away
/// meanwhile is fine; one that changed (on a kernel without cookies, a namespace that got
/// the inode meanwhile and started there) is left.
pub fn remove_stale(file: &StaleFile) -> Result<bool, Failure> {
    let store = FileStore::new(&file.file);
    let _lock = store.lock()?;
    match store.load() {
        Ok(None) => return Ok(true),
        Ok(now) if now == file.state => {}
        _ => return Ok(false),
    }
    store.remove()?;
    match std::fs::remove_file(lock_path(&file.file)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Failure::new(
            Code::Permission,
            format!("removing {}: {e}", lock_path(&file.file).display()),
        )),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use env_qemu_core::model::{BridgeInfo, IfName, Link, MacAddr, Snapshot};
    use env_qemu_core::plan::StartRequest;

    fn name(s: &str) -> IfName {
        IfName::new(s).expect("name")
    }

    fn link(index: u32, n: &str, kind: LinkKind, mac: [u8; 6]) -> Link {
        Link {
            index,
            name: name(n),
            kind,
            mac: MacAddr(mac),
            mtu: 1500,
            up: true,
            carrier: true,
            master: None,
        }
    }

    const NIC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const OTHER: [u8; 6] = [0x52, 0x54, 0, 0xab, 0xcd, 0xef];

    fn state() -> State {
        let pre = Snapshot {
            net: NetState {
                links: vec![link(2, "eth0", LinkKind::Veth, NIC)],
                ..NetState::default()
            },
            ..Snapshot::default()
        };
        let req = StartRequest {
            uplink: name("eth0"),
            bridge: name("lepont"),
            shm: None,
            foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
        };
        State::new("net:[4026532840]".into(), req, pre)
    }

    fn bridge(mac: [u8; 6]) -> Link {
        link(
            7,
            "lepont",
            LinkKind::Bridge(BridgeInfo {
                stp: false,
                forward_delay: 0,
                mac_fixed: true,
            }),
            mac,
        )
    }

    fn here(links: Vec<Link>) -> NetState {
        NetState {
            links,
            ..NetState::default()
        }
    }

    #[test]
    fn the_same_uplink_and_a_bridge_with_its_mac_match() {
        let st = state();
        let up = link(2, "eth0", LinkKind::Veth, NIC);
        assert_eq!(
            devices_match(&st, &here(vec![up.clone(), bridge(NIC)])),
            Ok(())
        );
        // The bridge gone (deleted by hand, or a start that crashed before making it).
        assert_eq!(devices_match(&st, &here(vec![up])), Ok(()));
    }

    #[test]
    fn another_uplink_or_bridge_does_not_match() {
        let st = state();
        let cases = [
            (here(vec![]), "its uplink eth0 (ifindex 2, 52:54:00:12:34:56) is not here"),
            (
                here(vec![link(2, "eth0", LinkKind::Veth, OTHER)]),
                "its uplink eth0 was ifindex 2, 52:54:00:12:34:56; here eth0 is ifindex 2, 52:54:00:ab:cd:ef",
            ),
            (
                here(vec![link(5, "eth0", LinkKind::Veth, NIC)]),
                "its uplink eth0 was ifindex 2, 52:54:00:12:34:56; here eth0 is ifindex 5, 52:54:00:12:34:56",
            ),
            (
                here(vec![link(2, "eth0", LinkKind::Veth, NIC), bridge(OTHER)]),
                "its bridge lepont had the uplink's MAC 52:54:00:12:34:56; here lepont is a bridge with 52:54:00:ab:cd:ef",
            ),
            (
                here(vec![
                    link(2, "eth0", LinkKind::Veth, NIC),
                    link(7, "lepont", LinkKind::Veth, NIC),
                ]),
                "its bridge lepont had the uplink's MAC 52:54:00:12:34:56; here lepont is a veth with 52:54:00:12:34:56",
            ),
        ];
        for (live, why) in cases {
            assert_eq!(devices_match(&st, &live), Err(why.to_string()));
        }
    }

    #[test]
    fn a_state_without_its_uplink_matches_nothing() {
        let mut st = state();
        st.pre.net.links.clear();
        let live = here(vec![link(2, "eth0", LinkKind::Veth, NIC)]);
        assert!(devices_match(&st, &live).is_err());
    }

    #[test]
    fn stale_lines_name_the_file_what_it_recorded_and_the_fix() {
        let mut f = StaleFile {
            file: PathBuf::from("/run/env-qemu/netns-cookie-9-lepont.json"),
            netns: "net:[4026532840] cookie 9".into(),
            bridge: "lepont".into(),
            uplink: "eth0".into(),
            reason: "which no longer exists".into(),
            certain: true,
            state: None,
        };
        assert_eq!(
            f.describe(),
            "/run/env-qemu/netns-cookie-9-lepont.json: bridge lepont on eth0 in network namespace net:[4026532840] cookie 9, which no longer exists; remove it with `env-qemu stop --stale`"
        );
        f.certain = false;
        assert!(f
            .describe()
            .ends_with("; if so, remove it with `rm /run/env-qemu/netns-cookie-9-lepont.json`"));
    }
}
