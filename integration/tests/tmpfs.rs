//! Tmpfs resize and read on the test's own tmpfs (never the machine's /dev/shm).

use env_qemu_core::{Kernel, Op};
use env_qemu_integration::{require_netns, TestNs, TestTmpfs};
use nix::mount::MsFlags;

#[tokio::test]
async fn resize_keeps_flags_and_options() {
    require_netns!();
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let shm = TestTmpfs::mount_with("size=16M,mode=0710,nr_inodes=4321", flags);
    // The worker lives in another network namespace but the caller's mount namespace.
    let ns = TestNs::new();
    let k = ns.kernel();

    let before = k.read_tmpfs(shm.path()).await.unwrap();
    assert_eq!(
        (before.path.as_path(), before.size_bytes),
        (shm.path(), 16 << 20)
    );

    let op = Op::TmpfsResize {
        path: shm.path().to_path_buf(),
        size_bytes: 48 << 20,
    };
    k.apply(&op).await.unwrap();
    assert_eq!(k.read_tmpfs(shm.path()).await.unwrap().size_bytes, 48 << 20);

    let line = shm.mountinfo();
    let (mount_opts, super_opts) = {
        let (left, right) = line.split_once(" - ").unwrap();
        (
            left.split(' ').nth(5).unwrap().to_string(),
            right.to_string(),
        )
    };
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(mount_opts.split(',').any(|o| o == f), "{f} lost: {line}");
    }
    assert!(super_opts.contains("size=49152k"), "{line}");
    // tmpfs keeps the options the remount does not mention.
    for o in ["mode=710", "nr_inodes=4321"] {
        assert!(super_opts.contains(o), "tmpfs option {o} lost: {line}");
    }
}

#[tokio::test]
async fn shrink_and_read_unaligned() {
    require_netns!();
    let shm = TestTmpfs::mount("8M", MsFlags::empty());
    let k = TestNs::new().kernel();
    let op = Op::TmpfsResize {
        path: shm.path().to_path_buf(),
        size_bytes: (1 << 20) + 1,
    };
    k.apply(&op).await.unwrap();
    // tmpfs counts in pages: the size reads back rounded up to a page.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap() as u64;
    assert_eq!(
        k.read_tmpfs(shm.path()).await.unwrap().size_bytes,
        (1 << 20) + page
    );
}
