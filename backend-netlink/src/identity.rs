//! Telling network namespaces apart, and whether the one a state was saved in still exists.
//!
//! A namespace's inode (`net:[4026532840]`) is unique among the namespaces alive, but the
//! kernel reuses a freed inode number for the next nsfs object it creates. Its cookie
//! (`getsockopt(SOL_SOCKET, SO_NETNS_COOKIE)`, Linux 5.14 and later) is a 64-bit counter
//! never handed out twice while the machine runs. Both are read from a socket and from
//! `/proc/thread-self/ns/net` on a thread that is inside the namespace: the backend's
//! namespace worker ([`crate::NetlinkKernel::identity`]) or, for a namespace reached by
//! path, a short-lived thread that enters it ([`identity_at`]). `setns(2)` is per thread
//! and is never called on a caller's (tokio) thread.
//!
//! Why not the netns-rs crate, which the design card names for entering a namespace by
//! path: what this module needs from it is `File::open` and `setns`, which nix (already a
//! dependency, 0.30) does in the same two calls, while netns-rs 0.2 would bring a third
//! nix (0.29) and a second thiserror (1.x) into the build. Its `NetNs::run` switches the
//! *calling* thread and back, without restoring it when the closure panics, and its
//! equality compares device and inode: the reusable identity this module replaces. The one
//! thread here enters and ends, so there is nothing to restore. The panic case is a test:
//! `integration/tests/namespaces.rs`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use env_qemu_core::state::NetnsId;
use nix::sched::{setns, CloneFlags};

/// The identity of the calling thread's network namespace.
pub(crate) fn current_thread() -> io::Result<NetnsId> {
    let inode = fs::metadata("/proc/thread-self/ns/net")?.ino();
    Ok(NetnsId {
        inode,
        cookie: current_cookie()?,
    })
}

/// `SO_NETNS_COOKIE` of a socket opened on this thread; `None` on kernels before 5.14,
/// which do not know the option.
fn current_cookie() -> io::Result<Option<u64>> {
    // Any socket will do; a Unix one needs no protocol module.
    // SAFETY: socket(2) takes no pointers; the descriptor it returns is ours to own.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cookie`, which lives across the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        return Ok(Some(cookie));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOPROTOOPT) => Ok(None),
        _ => Err(e),
    }
}

/// The identity of the namespace bound at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`,
/// `/proc/PID/fd/N`). Entering another namespace takes `CAP_SYS_ADMIN`: a short-lived
/// thread enters it, reads, and ends. The caller's own namespace needs no thread.
pub fn identity_at(path: &Path) -> io::Result<NetnsId> {
    let file = File::open(path)?;
    let here = current_thread()?;
    if file.metadata()?.ino() == here.inode {
        return Ok(here);
    }
    std::thread::Builder::new()
        .name("env-qemu-netns-id".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            current_thread()
        })?
        .join()
        .map_err(|_| io::Error::other("the thread reading a namespace's identity panicked"))?
}

/// The network namespaces alive on this machine, by inode, each with paths it can be
/// entered by.
///
/// Where they are seen: `/run/netns/*` (`ip netns`), every thread's `/proc/PID/task/TID/
/// ns/net`, every open descriptor of a namespace (`/proc/PID/fd/N`), and the nsfs mounts
/// of every mount namespace (`/proc/PID/mountinfo`, entered through `/proc/PID/root`).
/// Not seen: a namespace kept alive only by a socket or by a mount no process can reach;
/// no `--netns` can name such a namespace either, so nothing could ever stop a bridge there.
#[derive(Debug, Clone, Default)]
pub struct LiveNamespaces {
    paths: BTreeMap<u64, Vec<PathBuf>>,
}

/// Whether the namespace a state was saved in still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A live namespace has its inode and its cookie.
    Alive,
    /// No live namespace has its inode, or the one that has it has another cookie (the
    /// kernel gave the inode number to a newer namespace).
    Gone,
    /// A live namespace has its inode, and no cookie tells whether it is the same one: the
    /// state has none (written before cookies, or by a kernel without them), or the live
    /// one's could not be read (no privilege to enter it, or it went away meanwhile).
    Unknown,
}

impl LiveNamespaces {
    /// Reads `/run/netns` and `/proc`. Processes that end meanwhile are skipped.
    pub fn scan() -> LiveNamespaces {
        let mut live = LiveNamespaces::default();
        // Only nsfs files: /run/netns may hold a plain file whose mount went away.
        let Ok(nsfs) = fs::metadata("/proc/thread-self/ns/net").map(|m| m.dev()) else {
            return live;
        };
        let mut add = |path: PathBuf| {
            if let Ok(m) = fs::metadata(&path) {
                if m.dev() == nsfs {
                    live.add(m.ino(), path);
                }
            }
        };
        for entry in read_dir("/run/netns") {
            add(entry);
        }
        let mut mount_namespaces = std::collections::BTreeSet::new();
        for proc_dir in read_dir("/proc") {
            let is_pid = proc_dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            for task in read_dir(proc_dir.join("task")) {
                add(task.join("ns/net"));
            }
            for fd in read_dir(proc_dir.join("fd")) {
                let is_netns =
                    fs::read_link(&fd).is_ok_and(|t| t.to_string_lossy().starts_with("net:["));
                if is_netns {
                    add(fd);
                }
            }
            // One mountinfo per mount namespace.
            let mnt = fs::metadata(proc_dir.join("ns/mnt")).map(|m| m.ino());
            if mnt.is_ok_and(|ino| mount_namespaces.insert(ino)) {
                let Ok(text) = fs::read_to_string(proc_dir.join("mountinfo")) else {
                    continue;
                };
                for mount_point in nsfs_net_mounts(&text) {
                    add(proc_dir
                        .join("root")
                        .join(mount_point.trim_start_matches('/')));
                }
            }
        }
        live
    }

    fn add(&mut self, inode: u64, path: PathBuf) {
        let paths = self.paths.entry(inode).or_default();
        // A few ways in are plenty: the first one that opens decides.
        if paths.len() < 4 {
            paths.push(path);
        }
    }

    /// Whether a namespace with this inode is alive.
    pub fn has_inode(&self, inode: u64) -> bool {
        self.paths.contains_key(&inode)
    }

    /// Whether the namespace `saved` is still alive, reading the cookie of the live
    /// namespace with its inode through `identity_of` (normally [`identity_at`]).
    pub fn liveness(
        &self,
        saved: &NetnsId,
        mut identity_of: impl FnMut(&Path) -> io::Result<NetnsId>,
    ) -> Liveness {
        let Some(paths) = self.paths.get(&saved.inode) else {
            return Liveness::Gone;
        };
        let Some(cookie) = saved.cookie else {
            return Liveness::Unknown;
        };
        for path in paths {
            // A path whose holder ended, or that another namespace took meanwhile, says
            // nothing about this inode.
            match identity_of(path) {
                Ok(id) if id.inode == saved.inode => {
                    return match id.cookie {
                        Some(c) if c == cookie => Liveness::Alive,
                        Some(_) => Liveness::Gone,
                        None => Liveness::Unknown,
                    };
                }
                _ => continue,
            }
        }
        Liveness::Unknown
    }
}

impl FromIterator<(u64, PathBuf)> for LiveNamespaces {
    fn from_iter<I: IntoIterator<Item = (u64, PathBuf)>>(iter: I) -> Self {
        let mut live = LiveNamespaces::default();
        for (inode, path) in iter {
            live.add(inode, path);
        }
        live
    }
}

fn read_dir(dir: impl AsRef<Path>) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
}

/// The mount points of network namespaces in a `mountinfo` text: lines whose file system
/// type is nsfs and whose root is `net:[N]` (`ip netns add` bind mounts, container
/// runtimes' own directories).
fn nsfs_net_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
            let (fields, fs) = line.split_once(" - ")?;
            if fs.split(' ').next()? != "nsfs" {
                return None;
            }
            let mut f = fields.split(' ');
            let root = f.nth(3)?;
            let mount_point = f.next()?;
            root.starts_with("net:[")
                .then(|| unescape_octal(mount_point))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040`, `\011`, `\012`,
/// `\134`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(inode: u64, cookie: Option<u64>) -> NetnsId {
        NetnsId { inode, cookie }
    }

    fn live(entries: &[(u64, &str)]) -> LiveNamespaces {
        entries
            .iter()
            .map(|(i, p)| (*i, PathBuf::from(p)))
            .collect()
    }

    /// Answers as if `/ns/N` were a namespace with inode 10 and cookie N.
    fn fake_identity(path: &Path) -> io::Result<NetnsId> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match name.parse() {
            Ok(cookie) => Ok(id(10, Some(cookie))),
            Err(_) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    #[test]
    fn a_state_whose_inode_no_namespace_has_is_gone() {
        let l = live(&[(10, "/ns/5")]);
        assert_eq!(l.liveness(&id(11, Some(5)), fake_identity), Liveness::Gone);
        assert_eq!(l.liveness(&id(11, None), fake_identity), Liveness::Gone);
    }

    #[test]
    fn the_cookie_decides_between_the_saved_namespace_and_a_reuse_of_its_inode() {
        let l = live(&[(10, "/ns/5")]);
        assert_eq!(l.liveness(&id(10, Some(5)), fake_identity), Liveness::Alive);
        assert_eq!(l.liveness(&id(10, Some(4)), fake_identity), Liveness::Gone);
    }

    #[test]
    fn without_a_cookie_to_compare_a_live_inode_is_unknown() {
        let l = live(&[(10, "/ns/5")]);
        // A state written before cookies.
        assert_eq!(l.liveness(&id(10, None), fake_identity), Liveness::Unknown);
        // The live one cannot be entered (no privilege), or its holder ended.
        assert_eq!(
            l.liveness(&id(10, Some(5)), |_| Err(io::Error::from_raw_os_error(
                libc::EPERM
            ))),
            Liveness::Unknown
        );
        // A kernel without cookies.
        assert_eq!(
            l.liveness(&id(10, Some(5)), |_| Ok(id(10, None))),
            Liveness::Unknown
        );
    }

    #[test]
    fn paths_that_fail_or_moved_on_are_skipped_for_the_next() {
        // The first path's process ended; the second now holds another namespace; the
        // third is the one.
        let l = live(&[(10, "/ns/gone"), (10, "/ns/other"), (10, "/ns/5")]);
        let identity = |p: &Path| match p.to_str() {
            Some("/ns/other") => Ok(id(12, Some(9))),
            _ => fake_identity(p),
        };
        assert_eq!(l.liveness(&id(10, Some(5)), identity), Liveness::Alive);
        assert_eq!(l.liveness(&id(10, Some(6)), identity), Liveness::Gone);
    }

    #[test]
    fn nsfs_mounts_of_network_namespaces_are_read_from_mountinfo() {
        let text = "\
24 1 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
610 24 0:4 net:[4026532840] /run/netns/lab rw shared:5 - nsfs nsfs rw
611 24 0:4 net:[4026532999] /run/docker/netns/with\\040space rw - nsfs nsfs rw
612 24 0:4 mnt:[4026532841] /run/mnt-holder rw - nsfs nsfs rw
613 24 0:4 net:[1] /fake rw - tmpfs tmpfs rw";
        assert_eq!(
            nsfs_net_mounts(text),
            vec!["/run/netns/lab", "/run/docker/netns/with space"]
        );
        assert_eq!(unescape_octal("a\\134b\\011c\\9"), "a\\b\tc\\9");
    }

    fn require_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        let required = std::env::var("ENV_QEMU_REQUIRE_NETNS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "needs root and ENV_QEMU_REQUIRE_NETNS=1 forbids skipping"
        );
        eprintln!("SKIPPED: needs root to create network namespaces");
        false
    }

    /// Runs `f` on a thread inside a new network namespace of its own, which ends with it.
    fn in_new_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
                f()
            })
            .join()
            .expect("thread")
        })
    }

    #[test]
    fn this_kernel_gives_cookies_and_a_new_namespace_another_one() {
        let here = current_thread().expect("identity");
        assert_eq!(here.cookie.is_some(), kernel_has_cookies(), "cookie {here}");
        assert_eq!(identity_at(Path::new("/proc/self/ns/net")).ok(), Some(here));
        if !require_root() {
            return;
        }
        let other = in_new_namespace(|| current_thread().expect("identity"));
        assert_ne!(other.inode, here.inode);
        if here.cookie.is_some() {
            assert_ne!(other.cookie, here.cookie);
        }
    }

    #[test]
    fn a_namespace_is_alive_while_held_and_gone_after() {
        if !require_root() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
            tx.send(current_thread().expect("identity")).expect("send");
            let _ = done_rx.recv();
        });
        let id = rx.recv().expect("identity of the holder");
        let scan = LiveNamespaces::scan();
        assert!(scan.has_inode(id.inode), "the holder thread's {id} is seen");
        let expected = if id.cookie.is_some() {
            Liveness::Alive
        } else {
            Liveness::Unknown
        };
        assert_eq!(scan.liveness(&id, identity_at), expected);
        drop(done_tx);
        holder.join().expect("holder");
        // The kernel frees a namespace asynchronously; its inode goes from /proc at once.
        assert_eq!(
            LiveNamespaces::scan().liveness(&id, identity_at),
            Liveness::Gone
        );
    }

    /// Linux 5.14 and later.
    fn kernel_has_cookies() -> bool {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (5, 14)
    }
}
