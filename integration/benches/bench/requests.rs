//! What each method asks of the kernel and the machine, counted by strace (not modelled):
//! netlink messages sent, processes run, fsyncs, per command, one cycle each.

use std::process::Command;

use env_qemu_integration::session::TestDir;

use crate::drivers::{prepare_batch, Binary, Cmd, Script};
use crate::lab::Lab;
use crate::timing::CMDS;
use crate::Ctx;

/// What strace saw during one command.
#[derive(Debug, Clone, Copy, Default)]
struct Trace {
    netlink_sends: u32,
    processes: u32,
    fsyncs: u32,
}

fn strace(c: &Command, log: &std::path::Path) -> Trace {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-o"])
        .arg(log)
        .args(["-e", "trace=sendto,sendmsg,fsync,fdatasync,execve"])
        .arg(c.get_program())
        .args(c.get_args())
        .output()
        .expect("spawn strace");
    assert!(
        out.status.success(),
        "strace {:?}: {}",
        c.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = Trace::default();
    for line in std::fs::read_to_string(log).expect("strace output").lines() {
        if line.contains("execve(") && !line.contains("= -1") {
            t.processes += 1;
        } else if (line.contains("sendto(") || line.contains("sendmsg("))
            && line.contains("NETLINK")
        {
            t.netlink_sends += 1;
        } else if line.contains("fsync(") || line.contains("fdatasync(") {
            t.fsyncs += 1;
        }
    }
    t
}

pub fn run(ctx: &Ctx) {
    ctx.section("what each command asks (strace: netlink messages sent / processes / fsyncs)");
    if !Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("strace is not installed: nothing counted");
        return;
    }
    progress!("requests: one cycle of each method under strace");
    let lab = Lab::new(false);
    let host = lab.host();
    let dir = TestDir::new();
    let bin = Binary::new(&ctx.bin, host, dir.path());
    let script = Script::new(ctx, host, dir.path());
    let batch = prepare_batch(ctx, host, dir.path());
    let log = dir.path().join("strace.log");
    println!(
        "{:<20} {:>14} {:>14} {:>14} {:>14}",
        "method", "start", "add", "del", "stop"
    );
    for label in ["env-qemu binary", "iproute2 script", "ip -batch"] {
        let command = |c: Cmd<'_>| match label {
            "env-qemu binary" => bin.command(&[Binary::args(c), vec!["--quiet"]].concat()),
            "iproute2 script" => script.command(c, &[]),
            _ => batch.command(c),
        };
        let mut row = format!("{label:<20}");
        for c in CMDS {
            let t = strace(&command(c), &log);
            row.push_str(&format!(
                " {:>14}",
                format!("{} / {} / {}", t.netlink_sends, t.processes, t.fsyncs)
            ));
        }
        println!("{row}");
    }
}
