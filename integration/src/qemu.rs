//! A real QEMU guest on a test namespace's bridge: what QEMU needs ([`qemu_unavailable`],
//! [`crate::require_qemu!`]), its `qemu-ifup`/`qemu-ifdown` scripts ([`IfScripts`]) and the VM
//! itself ([`Qemu`]), started inside the namespace and ended by PID.
//!
//! QEMU runs under TCG (no KVM needed; on the CI machine /dev/kvm exists, but a guest
//! kernel printed nothing there in 30 s), with no disk: either the e1000's iPXE boot ROM
//! (`-boot n`, which DHCPs by itself) or a Linux kernel and initramfs ([`crate::guest`]).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::guard::ChildGuard;
use crate::skip::tun_unavailable;
use crate::TestNs;

pub const QEMU: &str = "qemu-system-x86_64";
/// Where Debian's ipxe-qemu puts the e1000's boot ROM (QEMU looks there).
pub const IPXE_E1000_ROMS: [&str; 2] = [
    "/usr/lib/ipxe/qemu/efi-e1000.rom",
    "/usr/share/qemu/efi-e1000.rom",
];
/// QEMU's guest RAM, in MiB.
pub const GUEST_MEM_MB: u32 = 128;

/// `name` on `$PATH`, or in the sbin directories a non-login root `$PATH` may lack.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Why a QEMU guest cannot be put on a test bridge here, if it cannot: root, namespaces
/// and tun, plus QEMU, the e1000 iPXE ROM and dnsmasq (`bash ci/install-deps` installs
/// them).
pub fn qemu_unavailable() -> Option<String> {
    if let Some(reason) = tun_unavailable() {
        return Some(reason);
    }
    let mut missing = Vec::new();
    if find_program(QEMU).is_none() {
        missing.push(format!("{QEMU} (Debian: qemu-system-x86)"));
    }
    if !IPXE_E1000_ROMS.iter().any(|r| Path::new(r).exists()) {
        missing.push("the e1000 iPXE boot ROM (Debian: ipxe-qemu)".to_string());
    }
    if find_program("dnsmasq").is_none() {
        missing.push("dnsmasq (Debian: dnsmasq-base)".to_string());
    }
    (!missing.is_empty()).then(|| {
        format!(
            "missing {}; `bash ci/install-deps` installs them",
            missing.join(", ")
        )
    })
}

/// Returns from the calling test (after printing `SKIPPED: …`, or failing under
/// `ENV_QEMU_REQUIRE_NETNS=1`) unless a QEMU guest can run on a test bridge.
#[macro_export]
macro_rules! require_qemu {
    () => {
        if let Some(reason) = $crate::qemu::qemu_unavailable() {
            $crate::skip::skip(&reason);
            return;
        }
    };
}

/// Like [`crate::require_qemu!`], and also needs the Linux guest's parts (kernel, e1000 module,
/// static busybox, cpio, gzip); evaluates to the [`crate::guest::GuestKit`].
#[macro_export]
macro_rules! require_linux_guest {
    () => {
        match $crate::qemu::qemu_unavailable().map_or_else($crate::guest::GuestKit::find, Err) {
            Ok(kit) => kit,
            Err(reason) => {
                $crate::skip::skip(&reason);
                return;
            }
        }
    };
}

/// QEMU's `script=`/`downscript=`: shell wrappers that run env-qemu under the names
/// `qemu-ifup`/`qemu-ifdown` (a symlink, so `argv[0]` picks `add`/`del`) with the test's
/// confinement options, since QEMU passes only the tap name. Each call and its exit
/// status land in [`IfScripts::log`].
#[derive(Debug, Clone)]
pub struct IfScripts {
    pub up: PathBuf,
    pub down: PathBuf,
    pub log: PathBuf,
}

impl IfScripts {
    /// Writes the wrappers into `dir`; `options` go before the tap name
    /// (`--netns NS --state-dir DIR …`).
    pub fn write(dir: &Path, env_qemu: &Path, options: &[String]) -> IfScripts {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("create bin dir");
        let log = dir.join("ifscripts.log");
        let mut paths = Vec::new();
        for name in ["qemu-ifup", "qemu-ifdown"] {
            let link = bin.join(name);
            std::os::unix::fs::symlink(env_qemu, &link).expect("symlink env-qemu");
            let script = dir.join(format!("{name}.sh"));
            let text = format!(
                "#!/bin/sh\n\
                 # QEMU runs this as `{name}.sh TAP`: env-qemu by argv[0], confined to the test.\n\
                 {} {} \"$1\" >>{} 2>&1\n\
                 rc=$?\n\
                 echo \"{name} $1 exit $rc\" >>{}\n\
                 exit $rc\n",
                sh_quote(&link.display().to_string()),
                options
                    .iter()
                    .map(|o| sh_quote(o))
                    .collect::<Vec<_>>()
                    .join(" "),
                sh_quote(&log.display().to_string()),
                sh_quote(&log.display().to_string()),
            );
            crate::cmd::write_executable(&script, &text);
            paths.push(script);
        }
        let down = paths.pop().expect("two scripts");
        let up = paths.pop().expect("two scripts");
        IfScripts { up, down, log }
    }

    /// `-netdev` for a tap named `ifname` that QEMU creates and these scripts attach.
    pub fn netdev(&self, ifname: &str) -> String {
        format!(
            "tap,id=n0,ifname={ifname},script={},downscript={}",
            qemu_path(&self.up),
            qemu_path(&self.down)
        )
    }

    /// What the scripts did so far: env-qemu's output and `qemu-ifup TAP exit N` lines.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `-netdev` for an existing (persistent) tap, no scripts: `env-qemu tap create`'s way.
pub fn netdev_existing_tap(ifname: &str) -> String {
    format!("tap,id=n0,ifname={ifname},script=no,downscript=no")
}

/// A path inside a QEMU option: commas would split it.
fn qemu_path(p: &Path) -> String {
    let s = p.display().to_string();
    assert!(
        !s.contains(','),
        "QEMU option paths cannot hold a comma: {s}"
    );
    s
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the guest boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// The NIC's iPXE ROM (`-boot n`): it DHCPs, finds no boot file and gives up.
    Pxe,
    /// `-kernel`, `-initrd`, `-append`.
    Linux {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
}

/// `qemu-system-x86_64 …` for a 128 MiB TCG guest with one e1000 NIC (`mac`) on
/// `netdev`, booting `boot`, its serial console written to `serial`.
pub fn command_line(netdev: &str, mac: &str, boot: &Boot, serial: &Path) -> Vec<OsString> {
    let qemu = find_program(QEMU).expect("qemu-system-x86_64 is installed");
    let mut args: Vec<OsString> = vec![qemu.into()];
    let mut push = |a: &[&str]| args.extend(a.iter().map(OsString::from));
    push(&["-accel", "tcg", "-cpu", "max", "-smp", "1"]);
    push(&["-m", &GUEST_MEM_MB.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-serial", &format!("file:{}", qemu_path(serial))]);
    push(&["-no-reboot", "-netdev", netdev]);
    push(&["-device", &format!("e1000,netdev=n0,mac={mac}")]);
    match boot {
        Boot::Pxe => push(&["-boot", "n"]),
        Boot::Linux {
            kernel,
            initrd,
            append,
        } => {
            push(&["-kernel"]);
            args.push(kernel.into());
            args.push("-initrd".into());
            args.push(initrd.into());
            args.push("-append".into());
            args.push(append.into());
        }
    }
    args
}

/// A QEMU process started with `ip netns exec NS qemu-system-x86_64 …` (`ip` execs QEMU,
/// so the spawned PID is QEMU's), SIGTERMed (so its downscript runs), then SIGKILLed, on
/// drop.
#[derive(Debug)]
pub struct Qemu {
    process: ChildGuard,
    serial: PathBuf,
    output: PathBuf,
}

impl Qemu {
    /// Starts a 128 MiB TCG guest in `ns` with one e1000 NIC (`mac`) on `netdev`; its
    /// serial console goes to `DIR/serial.log`, QEMU's own output (and its scripts') to
    /// `DIR/qemu.out`.
    pub fn spawn(ns: &TestNs, netdev: &str, mac: &str, boot: &Boot, dir: &Path) -> Qemu {
        let serial = dir.join("serial.log");
        let output = dir.join("qemu.out");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name()])
            .args(command_line(netdev, mac, boot, &serial));
        let out = std::fs::File::create(&output).expect("create qemu.out");
        let err = out.try_clone().expect("dup qemu.out");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        Qemu {
            process: ChildGuard::spawn("qemu", &mut cmd),
            serial,
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The guest's serial console so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// QEMU's stdout and stderr so far (its scripts' too).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Serial console and QEMU output, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- serial console\n{}\n--- qemu output\n{}",
            self.serial(),
            self.output()
        )
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(timeout)
    }

    /// Ends QEMU the way a user would (SIGTERM: it runs its downscript and exits), with
    /// SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.process.terminate(grace)
    }
}
