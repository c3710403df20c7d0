//! Mounted tmpfs instances and `mount -o remount,size=`.

use std::path::Path;

use env_qemu_core::model::Tmpfs;

use crate::error::{Fail, Res};
use crate::state::Ns;

pub(crate) fn read(ns: &Ns, path: &Path) -> Res<Tmpfs> {
    match ns.tmpfs.get(path) {
        Some(m) => Ok(Tmpfs {
            path: path.to_path_buf(),
            size_bytes: m.size,
        }),
        None => Err(Fail::new(libc::ENOENT, "no tmpfs mounted there")),
    }
}

/// A remount of something that is not a mount point fails in mount(2) with EINVAL,
/// which is what the real backend gets for, say, a /dev/shm that is a plain directory:
/// the simulator gives the same. Shrinking below what is in use is refused too.
pub(crate) fn resize(ns: &mut Ns, path: &Path, size: u64) -> Res {
    let Some(m) = ns.tmpfs.get_mut(path) else {
        return Err(Fail::new(libc::EINVAL, "not mounted"));
    };
    // size=0 means unlimited.
    if size != 0 && size < m.used {
        return Err(Fail::new(libc::EINVAL, "Too small a size for current use"));
    }
    m.size = size;
    Ok(())
}
