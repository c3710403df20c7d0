//! [`TestTmpfs`]: a tmpfs of the test's own, for shared-memory tests.
//!
//! Never the machine's /dev/shm: a remount changes the tmpfs superblock, shared by every
//! mount of it in every mount namespace.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const PREFIX: &str = "eqt-tmpfs-";
static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEANUP: Once = Once::new();

/// A tmpfs mounted on a fresh directory under the temp dir, unmounted and removed on drop.
#[derive(Debug)]
pub struct TestTmpfs {
    path: PathBuf,
}

impl TestTmpfs {
    /// `mount -t tmpfs -o FLAGS,size=SIZE,mode=1777 tmpfs DIR` (like /dev/shm). `flags`
    /// are per-mount flags (`nosuid`, `nodev`, `noexec`), `size` a tmpfs size (`16M`).
    pub fn mount(size: &str, flags: MsFlags) -> TestTmpfs {
        TestTmpfs::mount_with(&format!("size={size},mode=1777"), flags)
    }

    /// `mount -t tmpfs -o FLAGS,DATA tmpfs DIR`, `data` being tmpfs options
    /// (`size=16M,mode=0700,nr_inodes=1000`).
    pub fn mount_with(data: &str, flags: MsFlags) -> TestTmpfs {
        CLEANUP.call_once(remove_stale);
        let path = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create tmpfs mount point");
        mount(Some("tmpfs"), &path, Some("tmpfs"), flags, Some(data))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        TestTmpfs { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This mount's line of /proc/self/mountinfo (per-mount and superblock options).
    pub fn mountinfo(&self) -> String {
        let p = self.path.to_string_lossy();
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(&p))
            .map(str::to_string)
            .expect("the test tmpfs is mounted")
    }
}

impl Drop for TestTmpfs {
    fn drop(&mut self) {
        unmount_and_remove(&self.path);
    }
}

fn unmount_and_remove(path: &Path) {
    if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
        eprintln!("warning: umount {}: {e}", path.display());
    }
    let _ = std::fs::remove_dir(path);
}

/// Unmounts test tmpfs left behind by dead test processes.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::netns::owner_is_dead(&name, PREFIX) {
            unmount_and_remove(&entry.path());
        }
    }
}
