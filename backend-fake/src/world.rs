//! World-building: what tests arrange that env-qemu itself never does — physical NICs
//! and their cables, QEMU opening taps, mounts, kernel settings, the passing of time.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use env_qemu_core::model::{AddrFlag, Address, IfName, MacAddr, TapInfo};
use env_qemu_core::KernelError;

use crate::error::{Fail, Res};
use crate::links::{check_mtu, mtu_range, unregister};
use crate::sim::{tmpfs_object, SimKernel};
use crate::state::{valid_ether, Kind, Mount, Ns, PortState};
use crate::{bridge, clock, ipv6, neigh};

fn object(name: &IfName) -> String {
    format!("interface {name}")
}

impl SimKernel {
    /// Runs a world-building change on the namespace and settles carriers after it.
    fn build<T>(&self, object: &str, f: impl FnOnce(&mut Ns) -> Res<T>) -> Result<T, KernelError> {
        let mut w = self.lock();
        let before = w.ns.clone();
        let r = f(&mut w.ns);
        bridge::settle(&mut w.ns);
        neigh::reconcile(&before, &mut w.ns);
        r.map_err(|e| e.into_error(object))
    }

    fn add_device(&self, name: &IfName, kind: Kind, mac: MacAddr, mtu: u32) -> u32 {
        let r = self.build(&object(name), |ns| {
            ns.ensure_free(name)?;
            check_mtu(mtu_range(&kind), mtu)?;
            if !valid_ether(&mac) {
                return Err(Fail::new(
                    libc::EADDRNOTAVAIL,
                    "Cannot assign requested address",
                ));
            }
            Ok(ns.insert_dev(name.clone(), kind, mac, mtu))
        });
        r.unwrap_or_else(|e| panic!("cannot build this world: {e}"))
    }

    /// A physical Ethernet NIC with its cable plugged in (carrier as soon as it is up).
    /// Created down, like any newly registered device. Returns its ifindex.
    ///
    /// # Panics
    /// On a name that is taken or invalid, an MTU outside 68..=9216 or an invalid MAC:
    /// the world under test would not be the one asked for.
    pub fn add_nic(&self, name: &IfName, mac: MacAddr, mtu: u32) -> u32 {
        self.add_device(name, Kind::Ethernet { plugged: true }, mac, mtu)
    }

    /// A wireless NIC, associated (carrier when up); bridges refuse it as a port.
    ///
    /// # Panics
    /// Like [`SimKernel::add_nic`].
    pub fn add_wireless(&self, name: &IfName, mac: MacAddr) -> u32 {
        self.add_device(name, Kind::Wireless { plugged: true }, mac, 1500)
    }

    /// Plugs or unplugs a NIC's cable (its carrier), rippling to bridge and IPv6 state.
    pub fn set_lower(&self, name: &IfName, plugged: bool) -> Result<(), KernelError> {
        self.build(&object(name), |ns| {
            let i = ns.require(name)?;
            match &mut ns.dev_mut(i).kind {
                Kind::Ethernet { plugged: p } | Kind::Wireless { plugged: p } => {
                    *p = plugged;
                    Ok(())
                }
                _ => Err(Fail::new(
                    libc::EOPNOTSUPP,
                    "only NICs have a cable: veth carrier follows the peer, taps their reader",
                )),
            }
        })
    }

    /// The device heard from a neighbour on its link (an ARP reply, a neighbour
    /// advertisement, `router` for an IPv6 router): the kernel now holds a reachable entry.
    /// Refused on a device without carrier, and on a bridge port, whose frames go to its
    /// bridge.
    pub fn learn_neighbour(
        &self,
        dev: &IfName,
        ip: std::net::IpAddr,
        lladdr: MacAddr,
        router: bool,
    ) -> Result<(), KernelError> {
        self.build(&format!("neighbour {ip} on {dev}"), |ns| {
            neigh::learn(ns, dev, ip, lladdr, router)
        })
    }

    /// A tap QEMU created and holds open itself: not persistent, carrier at once, and
    /// gone when QEMU closes it. Returns its ifindex.
    ///
    /// # Panics
    /// On a name that is taken or invalid.
    pub fn add_tap_with_reader(&self, name: &IfName) -> u32 {
        let info = TapInfo {
            owner: None,
            group: None,
            persist: false,
        };
        let mac = self.lock().ns.random_mac();
        self.add_device(name, Kind::Tap { info, reader: true }, mac, 1500)
    }

    /// A process (QEMU) opens the tap: it gets carrier.
    pub fn open_tap(&self, name: &IfName) -> Result<(), KernelError> {
        self.set_reader(name, true)
    }

    /// The reader closes the tap: carrier goes; a non-persistent tap is destroyed.
    pub fn close_tap(&self, name: &IfName) -> Result<(), KernelError> {
        self.set_reader(name, false)
    }

    fn set_reader(&self, name: &IfName, open: bool) -> Result<(), KernelError> {
        self.build(&object(name), |ns| {
            let i = ns.require(name)?;
            let Kind::Tap { info, reader } = &mut ns.dev_mut(i).kind else {
                return Err(Fail::new(libc::EINVAL, "not a tap"));
            };
            *reader = open;
            if !open && !info.persist {
                unregister(ns, i);
            }
            Ok(())
        })
    }

    /// A tmpfs mounted at `path` with `size_bytes` (0 = unlimited), nothing in use.
    pub fn mount_tmpfs(&self, path: impl Into<PathBuf>, size_bytes: u64) {
        let m = Mount {
            size: size_bytes,
            used: 0,
        };
        self.lock().ns.tmpfs.insert(path.into(), m);
    }

    /// How much of a mounted tmpfs is in use: remounting it smaller fails.
    pub fn set_tmpfs_used(&self, path: &Path, used_bytes: u64) -> Result<(), KernelError> {
        self.build(&tmpfs_object(path), |ns| match ns.tmpfs.get_mut(path) {
            Some(m) => {
                m.used = used_bytes;
                Ok(())
            }
            None => Err(Fail::new(libc::ENOENT, "no tmpfs mounted there")),
        })
    }

    /// How a race of real kernels ends (default: false). A tap without reader, or a
    /// veth whose peer is down, brought up as a port of an up, STP-off bridge: with
    /// `flash`, the bridge forwards for a moment and, if it was not IPv6-ready, becomes
    /// ready for good (link-local, fe80::/64). See `bridge::carrierless_port_up`.
    pub fn set_port_up_flash(&self, flash: bool) {
        self.lock().ns.port_up_flash = flash;
    }

    /// net.ipv4.conf.all.promote_secondaries (0 in a fresh namespace; many systemd
    /// distributions ship 1).
    pub fn set_promote_secondaries(&self, on: bool) {
        self.lock().ns.promote_secondaries = on;
    }

    /// Enough time passes for everything pending to finish: STP ports reach forwarding
    /// (carrier and link-locals follow), then DAD completes on every device that has
    /// been up with carrier. Lifetimes and expiries do not move: that is
    /// [`SimKernel::advance_clock`].
    pub fn advance_time(&self) {
        let mut w = self.lock();
        bridge::stp_timers(&mut w.ns);
        bridge::settle(&mut w.ns);
        ipv6::complete_dad(&mut w.ns);
    }

    /// A bridge's forward delay set as a program other than env-qemu sets it
    /// (NetworkManager's bridge profile: 2 s at least).
    pub fn set_forward_delay(&self, dev: &IfName, centiseconds: u32) {
        let _ = self.build("a bridge setting", |ns| {
            if let Some(b) = ns.idx(dev).and_then(|i| ns.bridge_mut(i)) {
                b.forward_delay = centiseconds;
            }
            Ok(())
        });
    }

    /// The clock moves on by `by`: remaining address lifetimes and IPv6 route expiries
    /// count down, and the kernel acts on what runs out, as it would in that time: a
    /// preferred lifetime at 0 makes the address `deprecated`, a valid lifetime at 0
    /// deletes the address with the side effects of `ip addr del`, an expiry at 0
    /// deletes the route. Whole seconds count; the rest carries over to the next call.
    /// DAD and STP timers are [`SimKernel::advance_time`]'s.
    pub fn advance_clock(&self, by: Duration) {
        // Cannot fail: expiring only deletes what is there.
        let _ = self.build("the clock", |ns| {
            clock::advance(ns, by);
            Ok(())
        });
    }

    /// The kernel's SLAAC privacy extension (use_tempaddr ≥ 1) made `temp`, a temporary
    /// address (RFC 8981), for the `mngtmpaddr` address `parent` on `dev`: same prefix,
    /// a random interface identifier (the caller picks it), flagged `temporary`, no
    /// prefix route of its own (the parent's serves), through DAD like any address.
    /// Lifetimes are the ones asked for, bounded by the parent's (temp_valid_lft and
    /// temp_prefered_lft minus a random desync factor on the real kernel). Deleting
    /// `parent` deletes it.
    ///
    /// Refused (EADDRNOTAVAIL) when `dev` has no `mngtmpaddr` address `parent`, and
    /// (EINVAL) when `temp` is outside its prefix; EEXIST when `temp` is taken.
    pub fn add_temporary_address(
        &self,
        dev: &IfName,
        parent: IpAddr,
        temp: IpAddr,
        valid_lft: u32,
        preferred_lft: u32,
    ) -> Result<(), KernelError> {
        let object = format!("temporary address {temp} on {dev}");
        self.build(&object, |ns| {
            let i = ns.require(dev)?;
            let addrs = ns.dev(i).v6.as_ref().map(|v| v.addrs.as_slice());
            let Some(p) = addrs
                .unwrap_or_default()
                .iter()
                .find(|a| a.ip == parent && a.has(AddrFlag::Mngtmpaddr))
                .cloned()
            else {
                return Err(Fail::new(
                    libc::EADDRNOTAVAIL,
                    format!(
                        "no mngtmpaddr address {parent} on {dev}: add it with the \
                         mngtmpaddr flag first, temporary addresses come from one"
                    ),
                ));
            };
            if !p.prefix().contains(&temp) || temp == parent {
                return Err(Fail::new(
                    libc::EINVAL,
                    format!("{temp} is not another address of {}", p.prefix()),
                ));
            }
            if addrs.unwrap_or_default().iter().any(|a| a.ip == temp) {
                return Err(Fail::new(libc::EEXIST, "address already assigned"));
            }
            let mut t = Address::new(dev.clone(), temp, p.prefix_len);
            t.flags.insert(AddrFlag::Temporary);
            t.valid_lft = Some(p.valid_lft.map_or(valid_lft, |v| v.min(valid_lft)));
            t.preferred_lft = Some(
                p.preferred_lft
                    .map_or(preferred_lft, |v| v.min(preferred_lft))
                    .min(t.valid_lft.unwrap_or(u32::MAX)),
            );
            if t.preferred_lft == Some(0) {
                t.flags.insert(AddrFlag::Deprecated);
            }
            if ipv6::dad_needed(ns, i, &t) {
                t.flags.insert(AddrFlag::Tentative);
            }
            ipv6::insert_addr(ns, i, t);
            if let Some(v6) = ns.dev_mut(i).v6.as_mut() {
                v6.temp_parent.insert(temp, parent);
            }
            Ok(())
        })
    }

    /// The STP state of a bridge port; `None` if `name` is not a port.
    pub fn port_state(&self, name: &IfName) -> Option<PortState> {
        let w = self.lock();
        let i = w.ns.idx(name)?;
        let d = w.ns.dev(i);
        d.master.map(|_| d.port)
    }
}
