//! A UDP echo across the lab: proves the LAN still reaches the host. Sockets belong to the
//! namespace current when they are created, so each side is made on a thread that entered
//! its namespace first (never on a runtime worker).

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path)?;
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Sends `count` datagrams from `from_ns` to `to` (an address of `to_ns`) and returns how
/// many came back.
pub fn echo(from_ns: &str, to_ns: &str, to: SocketAddr, count: usize) -> std::io::Result<usize> {
    let server = in_netns(to_ns, move || UdpSocket::bind(to))?;
    server.set_read_timeout(Some(Duration::from_millis(500)))?;
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..count {
            match server.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    let _ = server.send_to(&buf[..n], peer);
                }
                Err(_) => break,
            }
        }
    });
    let bind = SocketAddr::new(
        match to {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        },
        0,
    );
    let client = in_netns(from_ns, move || UdpSocket::bind(bind))?;
    client.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut got = 0;
    let mut buf = [0u8; 64];
    for i in 0..count {
        client.send_to(&(i as u32).to_be_bytes(), to)?;
        if client.recv_from(&mut buf).is_ok() {
            got += 1;
        }
    }
    let _ = responder.join();
    Ok(got)
}
