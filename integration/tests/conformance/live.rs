//! Which devices a step names: mostly one that earlier steps probably created.

use env_qemu_core::Op;
use proptest::prelude::*;

use super::values::dev;

/// A device as a step refers to it: one of those that probably exist at that point
/// (created by an earlier step and not deleted since; the k-th, cyclically), or a name
/// of the universe, which may well not exist.
#[derive(Debug, Clone, Copy)]
pub enum DevRef {
    Live(usize),
    Named(&'static str),
}

pub fn dev_ref() -> impl Strategy<Value = DevRef> {
    prop_oneof![
        6 => (0usize..8).prop_map(DevRef::Live),
        1 => dev().prop_map(DevRef::Named),
    ]
}

/// The names earlier steps probably created and did not delete, in creation order.
/// Only steers which names steps use; verdicts come from the kernels.
#[derive(Default)]
pub struct Live {
    devs: Vec<&'static str>,
    peers: Vec<(&'static str, &'static str)>,
}

const UNIVERSE: [&str; 8] = ["v0", "v1", "v2", "v3", "br0", "br1", "tap0", "lo"];

fn stat(name: &str) -> &'static str {
    UNIVERSE
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("lo")
}

impl Live {
    /// Every live device, in creation order.
    pub fn all(&self) -> &[&'static str] {
        &self.devs
    }

    pub fn has(&self, n: &str) -> bool {
        self.devs.contains(&n)
    }

    pub fn note(&mut self, op: &Op) {
        match op {
            Op::LinkAdd { spec } => {
                let name = stat(spec.name().as_str());
                if let env_qemu_core::LinkSpec::Veth { peer, .. } = spec {
                    let peer = stat(peer.as_str());
                    if name != peer && !self.has(name) && !self.has(peer) {
                        self.devs.extend([name, peer]);
                        self.peers.push((name, peer));
                    }
                } else if !self.has(name) {
                    self.devs.push(name);
                }
            }
            Op::LinkDel { name } => {
                let name = stat(name.as_str());
                let peer = self
                    .peers
                    .iter()
                    .find_map(|&(a, b)| (a == name).then_some(b).or((b == name).then_some(a)));
                self.devs.retain(|d| *d != name && Some(*d) != peer);
                self.peers.retain(|&(a, b)| a != name && b != name);
            }
            _ => {}
        }
    }

    pub fn pick(&self, r: DevRef) -> &'static str {
        match r {
            DevRef::Live(k) if !self.devs.is_empty() => self.devs[k % self.devs.len()],
            DevRef::Live(_) => "v0",
            DevRef::Named(n) => n,
        }
    }

    pub fn can_enslave(&self) -> bool {
        let bridge = self.devs.iter().any(|d| d.starts_with("br"));
        let port = self.devs.iter().any(|d| !d.starts_with("br") && *d != "lo");
        bridge && port
    }

    /// A live device that can be a bridge port (not a bridge, not lo).
    pub fn port(&self, k: usize) -> &'static str {
        let ports: Vec<_> = self
            .devs
            .iter()
            .filter(|d| !d.starts_with("br") && **d != "lo")
            .collect();
        match ports.len() {
            0 => ["v0", "tap0", "br1"][k % 3],
            n => ports[k % n],
        }
    }

    pub fn bridge(&self, k: usize) -> &'static str {
        let bridges: Vec<_> = self.devs.iter().filter(|d| d.starts_with("br")).collect();
        match bridges.len() {
            0 => ["br0", "br1", "v0"][k % 3],
            n => bridges[k % n],
        }
    }
}
