//! A minimal Linux guest: Debian's kernel (`vmlinuz` and the e1000 module from a
//! `linux-image-*-amd64` package that `ci/install-deps` downloads and unpacks under
//! `target/qemu-guest/kernel`, never installs) and an initramfs built here from a static
//! busybox. Its `/init` loads e1000, takes a DHCP lease with `udhcpc`, pings the LAN router
//! and powers off, printing markers on the serial console.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu::find_program;

/// Printed by the guest with its address once udhcpc has bound a lease: `E2E-LEASE 192.0.2.x`.
pub const LEASE_MARK: &str = "E2E-LEASE";
/// Printed by the guest once the router answered its pings.
pub const PING_OK_MARK: &str = "E2E-PING-OK";
/// Printed by the guest, with what failed, before it powers off early.
pub const FAIL_MARK: &str = "E2E-FAIL";
/// The kernel command line: serial console, no boot chatter, a panic ends QEMU at once
/// (with `-no-reboot`).
pub const APPEND: &str = "console=ttyS0 quiet panic=-1";
/// Overrides where the unpacked kernel package is (default `<workspace>/target/qemu-guest/kernel`).
pub const KERNEL_DIR_ENV: &str = "ENV_QEMU_GUEST_KERNEL_DIR";

const E1000_DIR: &str = "kernel/drivers/net/ethernet/intel/e1000";
const APPLETS: [&str; 8] = [
    "sh", "mount", "insmod", "ip", "udhcpc", "ping", "poweroff", "sleep",
];

/// Where `ci/install-deps` unpacks the kernel package.
pub fn kernel_dir() -> PathBuf {
    match std::env::var_os(KERNEL_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/qemu-guest/kernel"),
    }
}

/// What the Linux guest is made of, all found on this machine.
#[derive(Debug, Clone)]
pub struct GuestKit {
    /// `boot/vmlinuz-VERSION`.
    pub vmlinuz: PathBuf,
    /// `VERSION`, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// `lib/modules/VERSION/kernel/drivers/net/ethernet/intel/e1000/e1000.ko[.xz|.zst|.gz]`.
    pub e1000: PathBuf,
    /// A statically linked busybox with the applets `/init` uses.
    pub busybox: PathBuf,
}

impl GuestKit {
    /// Finds the kernel, the module, busybox, cpio and gzip, or says what is missing.
    pub fn find() -> Result<GuestKit, String> {
        let dir = kernel_dir();
        let install = "`bash ci/install-deps` fetches and unpacks it";
        let mut kernels: Vec<PathBuf> = std::fs::read_dir(dir.join("boot"))
            .map_err(|e| format!("no guest kernel in {}/boot ({e}); {install}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| file_name(p).starts_with("vmlinuz-"))
            .collect();
        kernels.sort();
        let vmlinuz = kernels
            .pop()
            .ok_or_else(|| format!("no vmlinuz-* in {}/boot; {install}", dir.display()))?;
        let version = file_name(&vmlinuz)["vmlinuz-".len()..].to_string();
        let e1000 = ["lib/modules", "usr/lib/modules"]
            .iter()
            .flat_map(|m| {
                ["e1000.ko", "e1000.ko.xz", "e1000.ko.zst", "e1000.ko.gz"]
                    .map(|f| dir.join(m).join(&version).join(E1000_DIR).join(f))
            })
            .find(|p| p.exists())
            .ok_or_else(|| format!("no e1000 module for {version} in {}", dir.display()))?;
        let busybox =
            find_program("busybox").ok_or("busybox is not installed (Debian: busybox-static)")?;
        if !is_static_elf(&busybox)? {
            return Err(format!(
                "{} is dynamically linked; the initramfs needs busybox-static",
                busybox.display()
            ));
        }
        let list = Command::new(&busybox)
            .arg("--list")
            .output()
            .map_err(|e| format!("{} --list: {e}", busybox.display()))?;
        let list = String::from_utf8_lossy(&list.stdout);
        let missing: Vec<&str> = APPLETS
            .into_iter()
            .filter(|a| !list.lines().any(|l| l == *a))
            .collect();
        if !missing.is_empty() {
            return Err(format!("busybox lacks the applets {missing:?}"));
        }
        for (tool, package) in [("cpio", "cpio"), ("gzip", "gzip")] {
            if find_program(tool).is_none() {
                return Err(format!("{tool} is not installed (Debian: {package})"));
            }
        }
        if let Some(tool) = decompressor(&e1000) {
            if find_program(tool).is_none() {
                return Err(format!(
                    "{tool} is needed to decompress {}",
                    e1000.display()
                ));
            }
        }
        Ok(GuestKit {
            vmlinuz,
            version,
            e1000,
            busybox,
        })
    }

    /// Builds `DIR/initramfs.cpio.gz` (cpio newc, gzip): busybox, `/init` for `router`,
    /// the udhcpc script, e1000.ko (decompressed if the package compressed it) and
    /// `/dev/console`. Returns its path.
    pub fn build_initramfs(&self, dir: &Path, router: &str) -> PathBuf {
        let root = dir.join("initramfs");
        for d in ["bin", "dev", "proc", "sys"] {
            std::fs::create_dir_all(root.join(d)).expect("create initramfs dirs");
        }
        std::fs::copy(&self.busybox, root.join("bin/busybox")).expect("copy busybox");
        write_exec(&root.join("init"), &init_script(router));
        write_exec(&root.join("udhcpc.sh"), UDHCPC_SCRIPT);
        let module = root.join("e1000.ko");
        match decompressor(&self.e1000) {
            None => {
                std::fs::copy(&self.e1000, &module).expect("copy e1000.ko");
            }
            Some(tool) => {
                let out = Command::new(tool)
                    .arg("-dc")
                    .arg(&self.e1000)
                    .output()
                    .unwrap_or_else(|e| panic!("{tool} -dc: {e}"));
                assert!(out.status.success(), "{tool} -dc {}", self.e1000.display());
                std::fs::write(&module, out.stdout).expect("write e1000.ko");
            }
        }
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        nix::sys::stat::mknod(
            &root.join("dev/console"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(5, 1),
        )
        .expect("mknod dev/console");
        let files = [
            ".",
            "bin",
            "bin/busybox",
            "dev",
            "dev/console",
            "proc",
            "sys",
            "init",
            "udhcpc.sh",
            "e1000.ko",
        ];
        let image = dir.join("initramfs.cpio.gz");
        cpio_gzip(&root, &files, &image);
        image
    }
}

/// `/init`: PID 1 of the guest. Every step that fails prints [`FAIL_MARK`] and powers off.
pub fn init_script(router: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() {{ echo "{FAIL_MARK} $*"; poweroff -f; }}
echo "E2E-INIT $(cat /proc/uptime)"
insmod /e1000.ko || fail insmod e1000
ip link set lo up
ip link set eth0 up || fail no eth0
i=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do
  sleep 0.1; i=$((i + 1))
done
udhcpc -i eth0 -f -q -n -t 10 -T 2 -s /udhcpc.sh || fail udhcpc
ping -c 3 -W 5 {router} && echo "{PING_OK_MARK}" || fail ping {router}
echo "E2E-DONE $(cat /proc/uptime)"
poweroff -f
"#
    )
}

/// udhcpc's event script: on `bound`, configure the address (busybox gives `$mask` in
/// bits) and print [`LEASE_MARK`].
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
  ip addr flush dev "$interface"
  ip link set "$interface" up
  ;;
bound|renew)
  ip addr add "$ip/$mask" dev "$interface"
  echo "E2E-LEASE $ip"
  ;;
esac
"#;

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `(cd ROOT && printf FILES | cpio -o -H newc -R 0:0) | gzip -1 > IMAGE`.
fn cpio_gzip(root: &Path, files: &[&str], image: &Path) {
    let out = std::fs::File::create(image).expect("create initramfs image");
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cpio");
    let archive = cpio.stdout.take().expect("cpio stdout");
    let mut gzip = Command::new("gzip")
        .arg("-1")
        .stdin(archive)
        .stdout(out)
        .spawn()
        .expect("spawn gzip");
    {
        let mut list = cpio.stdin.take().expect("cpio stdin");
        list.write_all(files.join("\n").as_bytes())
            .and_then(|()| list.write_all(b"\n"))
            .expect("write cpio file list");
    }
    let c = cpio.wait().expect("wait cpio");
    let g = gzip.wait().expect("wait gzip");
    assert!(c.success() && g.success(), "cpio ({c}) | gzip ({g}) failed");
}

fn decompressor(module: &Path) -> Option<&'static str> {
    match module.extension()?.to_str()? {
        "xz" => Some("xz"),
        "zst" => Some("zstd"),
        "gz" => Some("gzip"),
        _ => None,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `path` is a 64-bit little-endian ELF without a `PT_INTERP` program header
/// (statically linked: it runs in an initramfs with no libc).
pub fn is_static_elf(path: &Path) -> Result<bool, String> {
    let data = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let bad = || format!("{} is not a 64-bit little-endian ELF", path.display());
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
    let phoff = usize::try_from(u64_at(0x20)).map_err(|_| bad())?;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 4 > data.len() {
            return Err(bad());
        }
        if u32_at(at) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_or_static_but_an_elf() {
        let me = std::env::current_exe().expect("current exe");
        assert!(is_static_elf(&me).is_ok());
    }

    #[test]
    fn a_script_is_not_an_elf() {
        let dir = std::env::temp_dir().join(format!("eqt-elf-{}", std::process::id()));
        std::fs::write(&dir, "#!/bin/sh\n").expect("write");
        assert!(is_static_elf(&dir).is_err());
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn init_prints_the_markers() {
        let init = init_script("192.0.2.1");
        assert!(init.contains("ping -c 3 -W 5 192.0.2.1 && echo \"E2E-PING-OK\""));
        assert!(UDHCPC_SCRIPT.contains(LEASE_MARK));
    }
}
