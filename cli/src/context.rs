//! Everything a subcommand needs: the kernel of the target namespace, the programs that
//! manage its interfaces, its identity, the state file, the configured defaults.

use std::path::{Path, PathBuf};

use env_qemu_backend_netlink::{NetlinkKernel, SystemHost};
use env_qemu_core::commands::Env;
use env_qemu_core::exec::Event;
use env_qemu_core::model::{parse_size, IfName};
use env_qemu_core::state::NetnsId;
use env_qemu_core::store::FileStore;
use serde::Deserialize;

use crate::args::Global;
use crate::exit::{Code, Failure};

pub const DEFAULT_BRIDGE: &str = "lepont";
pub const DEFAULT_SHM: &str = "512M";

/// `/etc/env-qemu.toml`: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bridge: Option<String>,
    pub uplink: Option<String>,
    pub shm_size: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Failure> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Failure::usage(format!("config file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Failure::new(
                Code::Permission,
                format!("config file {}: {e}", path.display()),
            )),
        }
    }
}

pub struct Ctx {
    pub kernel: NetlinkKernel,
    /// The programs of the same namespace (dhcpcd, dhclient…), seen from env-qemu's own
    /// mount namespace: with `--netns NAME` a daemon confined to another mount namespace
    /// is reported as out of sight, not taken for absent.
    pub host: SystemHost,
    /// The namespace's inode and cookie, read inside it (see [`NetnsId`]).
    pub netns: NetnsId,
    /// Its text, `net:[4026532840] cookie 4097`: what a state records and commands compare.
    pub netns_id: String,
    /// How messages name the namespace: `this host` or `netns NAME`.
    pub netns_label: String,
    /// `--netns NAME`, if given.
    pub netns_name: Option<String>,
    pub bridge: IfName,
    pub config: Config,
    pub state_dir: PathBuf,
}

pub fn ifname(s: &str) -> Result<IfName, Failure> {
    IfName::new(s).map_err(|e| Failure::usage(e.to_string()))
}

pub fn size(s: &str) -> Result<u64, Failure> {
    parse_size(s).ok_or_else(|| {
        Failure::usage(format!(
            "shm size {s:?} is not a size; write it like 512M, 2G or 1048576, or `off`"
        ))
    })
}

impl Ctx {
    pub async fn open(g: &Global) -> Result<Ctx, Failure> {
        let config = Config::load(&g.config)?;
        let bridge = ifname(
            g.bridge
                .as_deref()
                .or(config.bridge.as_deref())
                .unwrap_or(DEFAULT_BRIDGE),
        )?;
        let (ns_path, netns_label) = match &g.netns {
            Some(name) => {
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(Failure::usage(format!(
                        "netns name {name:?} is not a name under /run/netns"
                    )));
                }
                (
                    PathBuf::from("/run/netns").join(name),
                    format!("netns {name}"),
                )
            }
            None => (PathBuf::from("/proc/self/ns/net"), "this host".to_string()),
        };
        if let Err(e) = std::fs::metadata(&ns_path) {
            return Err(Failure::new(
                Code::NotFound,
                format!(
                    "network namespace {}: {e}; list them with `ip netns list`",
                    ns_path.display()
                ),
            ));
        }
        let (kernel, host) = match &g.netns {
            Some(_) => (
                NetlinkKernel::in_netns_path(&ns_path)?,
                SystemHost::in_netns_path(&ns_path)?,
            ),
            None => (NetlinkKernel::current()?, SystemHost::current()?),
        };
        // Read by the thread that lives in the namespace: the one the kernel acts on, even
        // if /run/netns/NAME was bound to another since it was opened.
        let netns = kernel.identity().await?;
        let netns_id = netns.to_string();
        Ok(Ctx {
            kernel,
            host,
            netns,
            netns_id,
            netns_label,
            netns_name: g.netns.clone(),
            bridge,
            config,
            state_dir: g.state_dir.clone(),
        })
    }

    /// The core's command environment on this namespace.
    pub fn env<'a>(
        &'a self,
        store: &'a FileStore,
        observer: &'a mut (dyn FnMut(Event<'_>) + Send),
    ) -> Env<'a> {
        Env {
            kernel: &self.kernel,
            host: &self.host,
            store,
            netns: self.netns_id.clone(),
            observer,
        }
    }
}
