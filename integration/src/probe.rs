//! Connectivity probes between test namespaces, without external tools (no `ping` needed):
//! a UDP echo server on a thread inside one namespace, a client on a thread inside
//! another. The threads are dedicated OS threads that `setns` and then end; no shared
//! thread ever changes namespace.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use crate::TestNs;

const PORT: u16 = 7;

fn enter(ns: &TestNs) {
    let f = File::open(ns.path()).expect("open netns");
    setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Whether a UDP datagram from `from` reaches `addr` (an address inside `to`) and its
/// echo comes back, within `attempts` tries of 500 ms (the first tries may be lost to
/// neighbour resolution).
pub fn udp_echo(from: &TestNs, to: &TestNs, addr: IpAddr, attempts: u32) -> bool {
    let target = SocketAddr::new(addr, PORT);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let done = AtomicBool::new(false);
    let server = std::thread::scope(|scope| {
        scope.spawn(|| {
            enter(to);
            let sock = UdpSocket::bind(target).expect("bind echo server");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 64];
            while !done.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], peer);
                }
            }
        });
        ready_rx.recv().expect("server started");
        scope
            .spawn(|| {
                enter(from);
                let any: SocketAddr = match addr {
                    IpAddr::V4(_) => "0.0.0.0:0".parse().expect("any v4"),
                    IpAddr::V6(_) => "[::]:0".parse().expect("any v6"),
                };
                let sock = UdpSocket::bind(any).expect("bind client");
                sock.set_read_timeout(Some(Duration::from_millis(500)))
                    .expect("timeout");
                let mut buf = [0u8; 64];
                let echoed = (0..attempts).any(|_| {
                    sock.send_to(b"env-qemu", target).is_ok()
                        && matches!(sock.recv_from(&mut buf), Ok((8, _)))
                });
                done.store(true, Ordering::Relaxed);
                echoed
            })
            .join()
            .expect("client thread")
    });
    server
}
