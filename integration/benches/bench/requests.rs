//! Netlink requests per command: what env-qemu sends (its plan's operations as the
//! backend sends them, plus its dumps), the minimum the job needs, and — counted with
//! strace where it is installed — what each method really sent, how many processes it
//! ran and how many fsyncs it made.

use std::process::Command;

use env_qemu_core::plan::Plan;
use env_qemu_integration::session::TestDir;
use serde_json::{json, Value};

use crate::drivers::{index, prepare_batch, Binary, Cmd, InProc, Script, Store};
use crate::lab::{Lab, TAP};
use crate::meter::{minimum_requests, requests};
use crate::timing::{Series, CMDS};
use crate::Ctx;

/// What strace saw during one command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trace {
    pub netlink_sends: u32,
    pub processes: u32,
    pub fsyncs: u32,
}

/// Reads the minimum needs that are not changes: start reads the uplink (one
/// RTM_GETLINK), its addresses and its routes (dumps the kernel filters by ifindex with
/// NETLINK_GET_STRICT_CHK, both families at once); stop the same of the bridge; add the
/// tap and the bridge (two RTM_GETLINK); del the tap.
pub fn minimum_reads(cmd: Cmd<'_>) -> u32 {
    match cmd {
        Cmd::Start | Cmd::Stop => 3,
        Cmd::Add(_) => 2,
        Cmd::Del(_) => 1,
    }
}

pub fn minimum(cmd: Cmd<'_>, plan: &Plan) -> u32 {
    minimum_reads(cmd) + plan.ops().map(minimum_requests).sum::<u32>()
}

/// What env-qemu's backend sends for `plan`, plus the `dump_requests` its reads sent.
pub fn sent(plan: &Plan, dump_requests: u32) -> u32 {
    plan.ops().map(requests).sum::<u32>() + dump_requests
}

pub struct Row {
    pub cmd: &'static str,
    pub ops: usize,
    pub sysctls: usize,
    pub env_qemu: u32,
    pub dumps: u32,
    pub minimum: u32,
    /// strace counts: binary, script, batch.
    pub traced: Option<[Trace; 3]>,
}

impl Row {
    pub fn json(&self) -> Value {
        let t = |i: usize| {
            self.traced.map(|t| {
                json!({
                    "netlink_sends": t[i].netlink_sends,
                    "processes": t[i].processes,
                    "fsyncs": t[i].fsyncs,
                })
            })
        };
        json!({
            "plan_netlink_ops": self.ops,
            "plan_sysctl_writes": self.sysctls,
            "env_qemu_requests": self.env_qemu,
            "env_qemu_dumps": self.dumps,
            "minimum_requests": self.minimum,
            "strace_binary": t(0),
            "strace_script": t(1),
            "strace_batch": t(2),
        })
    }
}

fn strace(c: &Command, out: &std::path::Path) -> Trace {
    let status = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-o"])
        .arg(out)
        .args(["-e", "trace=sendto,sendmsg,fsync,fdatasync,execve"])
        .arg(c.get_program())
        .args(c.get_args())
        .output()
        .expect("spawn strace");
    assert!(
        status.status.success(),
        "strace {:?}: {}",
        c.get_program(),
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(out).expect("strace output");
    let mut t = Trace::default();
    for line in text.lines() {
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

fn traced(ctx: &Ctx) -> Option<[[Trace; 3]; 4]> {
    let available = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        progress!("requests: strace is not installed; counting from the plans only");
        return None;
    }
    progress!("requests: one cycle of each method under strace");
    let lab = Lab::new(false);
    let host = lab.host();
    let dir = TestDir::new();
    let state = dir.path().join("state");
    let bin = Binary::new(&ctx.bin, host, &state);
    let script = Script {
        path: ctx.script.clone(),
        netns: host.name().to_string(),
        state_file: state.join("bridge.state"),
    };
    let mut inproc = InProc::new(&ctx.rt, host, Store::Dir(state));
    let batch = prepare_batch(&bin, &mut inproc, host, TAP, dir.path());
    let log = dir.path().join("strace.log");
    let mut out = [[Trace::default(); 3]; 4];
    for c in CMDS {
        out[index(c)][0] = strace(&bin.command(&Binary::args(c)), &log);
    }
    for c in CMDS {
        out[index(c)][1] = strace(&script.command(c), &log);
    }
    for c in CMDS {
        out[index(c)][2] = strace(&batch.command(c), &log);
    }
    Some(out)
}

/// `inproc` is the in-process series of the timing section (its plans and breakdowns).
pub fn run(ctx: &Ctx, inproc: &Series) -> Vec<Row> {
    let traces = traced(ctx);
    CMDS.iter()
        .enumerate()
        .map(|(i, c)| {
            let plan = &inproc.plans[i];
            let b = inproc.mean_breakdown(i);
            let dumps = b.as_ref().map_or(0, |b| b.dumps);
            let dump_requests = b.as_ref().map_or(0, |b| b.dump_requests);
            let sysctls = plan
                .ops()
                .filter(|op| op.to_string().starts_with("sysctl"))
                .count();
            Row {
                cmd: c.name(),
                ops: plan.steps.len() - sysctls,
                sysctls,
                env_qemu: sent(plan, dump_requests),
                dumps,
                minimum: minimum(*c, plan),
                traced: traces.map(|t| t[i]),
            }
        })
        .collect()
}
