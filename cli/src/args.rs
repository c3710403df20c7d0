//! The command line, as data. `--help` is the manual: every option says what it does and
//! what the default is.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `--state-dir`'s default.
pub const DEFAULT_STATE_DIR: &str = "/run/env-qemu";
/// `--config`'s default.
pub const DEFAULT_CONFIG: &str = "/etc/env-qemu.toml";

const AFTER_HELP: &str = "\
The seed workflow:
  sudo env-qemu start              # bridge the interface that carries the default route
  qemu-system-x86_64 ... -netdev tap,id=n0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown
  sudo env-qemu stop               # the network exactly as it was before start

  sudo env-qemu run -- qemu-system-x86_64 ... -netdev tap,id=n0,fd={tapfd}
                                   # start, make a tap, run QEMU as you, stop when it exits
  env-qemu launcher NAME -- qemu-system-x86_64 ...   # the same from the desktop's menu

Over SSH on a machine you cannot walk to:
  sudo env-qemu start --confirm    # reverts by itself in 120 s unless confirmed
  ssh host sudo env-qemu confirm   # from a NEW connection: proves the bridged host is reachable

Exit codes: 0 ok (the result verified by a dump), 1 kernel error (went back: a dump shows
nothing changed; or the revert agent of --confirm did not start, nothing changed),
2 usage (malformed name or size), 3 not found, 4 conflict or refused object (already
started, not a tap, in another bridge…), 5 permission denied, 6 unreadable state file,
7 unfinished: a dump shows the network differs from both the goal and what the command
found (each difference is printed with the command that fixes it; `env-qemu stop`
finishes the job), 8 no pending change (confirm, revert: nothing armed, or confirmed
already), 9 already reverted (the deadline passed, the agent died, or someone reverted;
the network is as before), 10 proof failed (confirm: the change stays pending).";

/// Put QEMU/KVM guests directly on the host's LAN through a Linux bridge, and bring the
/// host's network back exactly as it was.
#[derive(Debug, Parser)]
#[command(name = "env-qemu", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Operate inside the network namespace /run/netns/NAME (like `ip -n NAME`)
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,
    /// Where env-qemu keeps its state, one file per network namespace and bridge
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = DEFAULT_STATE_DIR
    )]
    pub state_dir: PathBuf,
    /// Defaults for bridge, uplink and shm size (a missing file is fine)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = DEFAULT_CONFIG
    )]
    pub config: PathBuf,
    /// Name of the bridge [default: lepont, or `bridge` in the config file]
    #[arg(long, global = true, value_name = "NAME")]
    pub bridge: Option<String>,
    /// Print data as JSON (plans, status)
    #[arg(long, global = true)]
    pub json: bool,
    /// Number each operation as it runs (step N of M)
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bridge IFACE: its addresses and routes move to the bridge without a blackout
    Start(StartCmd),
    /// Attach a VM's tap to the bridge (what /etc/qemu-ifup runs)
    Add(TapArg),
    /// Detach a VM's tap from the bridge (what /etc/qemu-ifdown runs)
    Del(TapArg),
    /// Restore the network exactly as it was before start (also recovers a crashed start)
    Stop(StopArgs),
    /// Keep the change of `start --confirm`: run it from a new SSH connection, which proves the
    /// bridged host reachable
    Confirm(ConfirmArgs),
    /// Revert the change of `start --confirm` now (what its agent does at the deadline)
    Revert,
    /// Show the bridge, its uplink, attached taps, the saved state, any drift, a pending change
    /// and its countdown, and state files left by network namespaces that no longer exist
    Status,
    /// Start if needed, make a tap, run COMMAND (QEMU) as the calling user, stop when it exits unless other VMs still use the bridge
    Run(RunArgs),
    /// Write a desktop launcher (menu entry) that starts COMMAND through `sudo -n env-qemu run`
    Launcher(LauncherArgs),
    /// Persistent taps owned by a user, so QEMU runs unprivileged with `script=no`
    #[command(subcommand)]
    Tap(TapCommand),
    /// Check this host: /dev/net/tun, bridge support, privileges, the uplink, network managers, firewall
    Doctor(DoctorArgs),
    /// Print a sudoers rule letting a group attach and detach taps (and, with --allow-run, use `run`), and nothing else
    Sudoers(SudoersArgs),
    /// Build a throwaway lab in network namespaces and walk through start, add, stop (safe anywhere)
    Demo,
    /// Print shell completions (bash, zsh, fish, elvish, powershell) or the man page (man)
    Generate(GenerateArgs),
    /// The revert agent of `start --confirm` (started by it; not for people)
    #[command(name = "__agent", hide = true)]
    Agent(AgentArgs),
}

#[derive(Debug, Args, Clone)]
#[command(after_help = CONFIRM_HELP)]
pub struct StartCmd {
    #[command(flatten)]
    pub args: StartArgs,
    /// Revert by itself SECONDS after the change [default: 120] unless `env-qemu confirm`
    /// proves the bridged host reachable; see below
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "120"
    )]
    pub confirm: Option<String>,
}

const CONFIRM_HELP: &str = "\
--confirm: before the first change, a revert agent starts outside this session (a transient
systemd service, or a detached process where systemd is not PID 1: `env-qemu doctor` says
which) and waits on CLOCK_BOOTTIME. Unless `env-qemu confirm`, run from a NEW login
(an SSH connection opened after the change, whose route goes through the bridge, or a
console), keeps the change within SECONDS of the end of the plan, the agent restores the
host exactly as `stop --force` does (VM taps detached, VMs keep running). A lost SSH
session, a closed terminal or stdin at EOF neither confirm nor revert. On a terminal,
start stays in the foreground and takes `confirm` or `revert` typed there.";

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Accept the connection this command runs on even if it was opened before the change
    /// (it may survive a change that new connections do not)
    #[arg(long)]
    pub this_session: bool,
    /// Do not confirm yet: move the deadline to SECONDS from now (never earlier)
    #[arg(
        long,
        value_name = "SECONDS",
        require_equals = true,
        conflicts_with = "this_session"
    )]
    pub extend: Option<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The pending change this agent guards
    #[arg(long)]
    pub token: String,
    /// The FIFO the agent answers on once ready
    #[arg(long)]
    pub ready: PathBuf,
    /// Fork once more and leave the session leader (no systemd to supervise it)
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// The LAN interface to bridge [default: the one carrying the default route]
    pub iface: Option<String>,
    /// Grow the shm tmpfs to at least SIZE (512M, 2G…); never shrinks it. `off` leaves it alone
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// The tmpfs QEMU takes guest RAM from
    #[arg(long, value_name = "PATH", default_value = "/dev/shm")]
    pub shm_path: PathBuf,
    /// Bridge IFACE even if a program env-qemu cannot hand over manages it
    /// (NetworkManager, systemd-networkd, an unknown DHCP client): its lease is then not
    /// renewed on the bridge, and the host loses the address when it ends. dhcpcd and
    /// dhclient are handed over to the bridge and back without it
    #[arg(long)]
    pub force: bool,
    /// Print the plan as `ip` commands and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct TapArg {
    /// The tap device (QEMU passes it as the first argument of its ifup/ifdown script)
    pub tap: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Detach VM taps still on the bridge instead of refusing
    #[arg(long, conflicts_with = "stale")]
    pub force: bool,
    /// Only remove the state files (of every bridge) left by network namespaces that no
    /// longer exist, as `status` lists them; changes no network. With --dry-run, print them
    /// as `rm` commands
    #[arg(long)]
    pub stale: bool,
    /// Print the plan as `ip` commands and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub start: StartArgs,
    /// Run COMMAND as this user (name or uid), with their groups [default: the user who ran sudo]
    #[arg(long, value_name = "USER", conflicts_with = "as_root")]
    pub user: Option<String>,
    /// Run COMMAND as root (only on purpose: QEMU parses what the guest sends)
    #[arg(long)]
    pub as_root: bool,
    /// Make no tap (for QEMU's own script=/etc/qemu-ifup, or user networking)
    #[arg(long)]
    pub no_tap: bool,
    /// Pass the tap open as fd 3 (ENV_QEMU_TAP_FD) [default: when COMMAND contains {tapfd}]
    #[arg(long, conflicts_with = "no_tap")]
    pub tap_fd: bool,
    /// The command to run, usually qemu-system-x86_64 with a tap netdev
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

const RUN_HELP: &str = "\
COMMAND runs as the user who ran sudo (SUDO_UID), or --user, with that user's groups (so
/dev/kvm through group kvm works), no new privileges, its own process group and a clean
environment (like sudo's env_reset: display, audio and locale variables kept). env-qemu
keeps root only for the bridge and the tap. With --netns NAME, COMMAND runs in that
namespace (like `ip netns exec NAME`), where its tap is.

The tap: a persistent tap made for that user and attached to the bridge, deleted at exit.
COMMAND gets its name in ENV_QEMU_TAP and in place of {tap}, and with {tapfd} (or
--tap-fd) a descriptor of it opened by env-qemu, so QEMU needs no access to /dev/net/tun:
  sudo env-qemu run -- qemu-system-x86_64 -enable-kvm -m 2G disk.qcow2 \\
      -netdev tap,id=n0,fd={tapfd} -device virtio-net,netdev=n0";

#[derive(Debug, Args)]
pub struct LauncherArgs {
    /// The launcher's name: the menu shows it, the file is env-qemu-NAME.desktop
    pub name: String,
    /// Remove the launcher NAME instead of writing it
    #[arg(long, conflicts_with_all = ["terminal", "icon"])]
    pub remove: bool,
    /// For every user: /usr/local/share/applications (needs root) [default: the calling user's ~/.local/share/applications]
    #[arg(long)]
    pub system: bool,
    /// Open a terminal for COMMAND [default: only when COMMAND uses one: -nographic, -curses, -display curses, a stdio serial or monitor]
    #[arg(long)]
    pub terminal: bool,
    /// Icon name or path [default: qemu if its icon is installed, else computer]
    #[arg(long)]
    pub icon: Option<String>,
    /// The command the launcher runs through `sudo -n env-qemu run --`
    #[arg(
        last = true,
        value_name = "COMMAND",
        required_unless_present = "remove"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TapCommand {
    /// Create a persistent tap owned by USER/GROUP and attach it to the bridge
    Create {
        /// Tap name [default: the first free eqtapN]
        name: Option<String>,
        /// Owner allowed to open it (name or uid) [default: the sudo caller]
        #[arg(long)]
        user: Option<String>,
        /// Group allowed to open it (name or gid)
        #[arg(long)]
        group: Option<String>,
    },
    /// Detach and delete a tap made by `tap create`
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The uplink to check [default: `uplink` in the config file, or the one carrying the
    /// default route]
    pub iface: Option<String>,
}

#[derive(Debug, Args)]
pub struct SudoersArgs {
    /// The group allowed to attach/detach taps
    #[arg(long, default_value = "qemu")]
    pub group: String,
    /// Also allow `env-qemu run -- COMMAND` (uplink and bridge from the config file, COMMAND as the caller)
    #[arg(long)]
    pub allow_run: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// bash, zsh, fish, elvish, powershell, or man
    pub what: String,
}
