//! `env-qemu demo`: the seed workflow in a throwaway lab, step by step, on any Linux box
//! with root. It never touches the real network: everything happens in two network
//! namespaces and a private tmpfs that it removes at the end, also on error or Ctrl-C.

mod echo;
mod lab;

use std::net::SocketAddr;
use std::path::Path;

use env_qemu_backend_netlink::NetlinkKernel;
use env_qemu_core::commands::{self, Env};
use env_qemu_core::model::{parse_size, IfName, NetState};
use env_qemu_core::op::{LinkSpec, Op};
use env_qemu_core::plan::{ShmRequest, StartRequest};
use env_qemu_core::store::FileStore;
use env_qemu_core::Kernel;

use crate::exit::{Code, Failure};
use crate::output::Out;
use lab::{ip, Lab, HOST_V4, HOST_V6};

fn section(title: &str) {
    println!("\n== {title}");
}

fn name(s: &str) -> IfName {
    IfName::new(s).expect("literal interface names are valid")
}

pub async fn run(out: Out) -> Result<(), Failure> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            Code::Permission,
            "the demo creates network namespaces: run it as root (sudo env-qemu demo)",
        ));
    }
    let lab = Lab::build()?;
    let result = tokio::select! {
        r = walk(&lab, out) => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::new(Code::Kernel, "interrupted")),
    };
    drop(lab);
    println!("\n== The lab is gone: namespaces and tmpfs removed.");
    result
}

async fn walk(lab: &Lab, out: Out) -> Result<(), Failure> {
    let host = &lab.host;
    section(&format!(
        "1. The lab: namespace {host} (eth0 {HOST_V4}/24, default via the router in {})",
        lab.lan
    ));
    print!("{}", ip(&["-n", host, "-br", "addr"])?);
    print!(
        "{}",
        ip(&["-n", host, "route", "show", "table", "all", "type", "unicast"])?
    );

    let kernel = NetlinkKernel::in_netns_path(&Path::new("/run/netns").join(host))?;
    let before = kernel.dump().await?.normalized();
    let state_dir = lab.shm.with_extension("state");
    let store = FileStore::new(state_dir.join("state.json"));
    let req = StartRequest {
        uplink: name("eth0"),
        bridge: name("lepont"),
        shm: Some(ShmRequest {
            path: lab.shm.clone(),
            size_bytes: parse_size("128M").expect("literal size"),
        }),
        foreign_manager: env_qemu_core::plan::ForeignManager::Refuse,
    };
    let mut observer = out.observer();
    let mut env = Env {
        kernel: &kernel,
        host: &env_qemu_core::host::NoHost,
        store: &store,
        netns: host.clone(),
        observer: &mut observer,
    };

    section(
        "2. The plan: `env-qemu start eth0 --dry-run` prints what start will do, as ip commands",
    );
    print!("{}", commands::plan_start(&env, &req).await?);

    section("3. `env-qemu start eth0`: the same, applied, each step journalled first");
    commands::start(&mut env, &req).await?;
    print!("{}", ip(&["-n", host, "-br", "addr"])?);

    section("4. QEMU creates tap vm0 and its ifup script runs `env-qemu add vm0`");
    let tap = name("vm0");
    kernel
        .apply(&Op::LinkAdd {
            spec: LinkSpec::Tap {
                name: tap.clone(),
                owner: None,
                group: None,
            },
        })
        .await?;
    commands::add(&mut env, &tap).await?;
    print!(
        "{}",
        ip(&["-n", host, "-br", "link", "show", "master", "lepont"])?
    );

    section("5. The LAN still reaches the host, now through the bridge");
    let mut reached = true;
    for addr in [format!("{HOST_V4}:7"), format!("[{HOST_V6}]:7")] {
        let to: SocketAddr = addr.parse().expect("literal socket address");
        let got = echo::echo(&lab.lan, host, to, 20)
            .map_err(|e| Failure::new(Code::Kernel, format!("UDP echo to {to}: {e}")))?;
        println!("UDP echo {} → {to}: {got}/20 replies", lab.lan);
        reached &= got == 20;
    }

    section("6. QEMU exits: `env-qemu del vm0`, then `env-qemu stop`");
    commands::del(&mut env, &tap).await?;
    kernel.apply(&Op::LinkDel { name: tap }).await?;
    commands::stop(&mut env, env_qemu_core::plan::VmTaps::Refuse).await?;
    let _ = std::fs::remove_dir_all(&state_dir);

    section("7. Before and after start/add/del/stop: links, addresses, routes of every table");
    let after = kernel.dump().await?.normalized();
    let diff = difference(&before, &after);
    if diff.is_empty() {
        println!("identical");
    } else {
        for d in &diff {
            println!("{d}");
        }
    }
    match (diff.is_empty(), reached) {
        (true, true) => Ok(()),
        (false, _) => Err(Failure::new(
            Code::Kernel,
            "the network was not restored exactly (see above)",
        )),
        (true, false) => Err(Failure::new(
            Code::Kernel,
            "the LAN lost the host while bridged (see above)",
        )),
    }
}

/// Lines only in `a` (`-`) or only in `b` (`+`).
fn difference(a: &NetState, b: &NetState) -> Vec<String> {
    fn lines(s: &NetState) -> Vec<String> {
        let mut v: Vec<String> = s.links.iter().map(|l| format!("{l:?}")).collect();
        v.extend(s.addresses.iter().map(|x| format!("{x:?}")));
        v.extend(s.routes.iter().map(|x| format!("{x:?}")));
        v
    }
    let (la, lb) = (lines(a), lines(b));
    let mut out: Vec<String> = la
        .iter()
        .filter(|l| !lb.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        lb.iter()
            .filter(|l| !la.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}
