//! `host-probe`: env-qemu's host backend ([`SystemHost`]) on its own namespaces, for the
//! real-daemon tests, which run it inside a confined daemon's mount and network
//! namespaces (`nsenter -t HOLDER -m -n -- host-probe …`), where the daemon's /run is.
//!
//! ```text
//! host-probe managers DEV…      who manages each DEV, as JSON
//! host-probe apply 'HOSTOP'     one core::host::HostOp given as JSON; prints the error
//!                               as JSON and exits 1 if it fails
//! ```

use std::process::ExitCode;

use env_qemu_backend_netlink::{ProblemKind, SystemHost};
use env_qemu_core::host::{Host, HostOp};
use env_qemu_core::model::IfName;
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(&args)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(out) => {
            println!("{out}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<serde_json::Value, serde_json::Value> {
    let host = SystemHost::current().map_err(|e| json!({ "error": e }))?;
    match args.split_first() {
        Some((verb, devs)) if verb == "managers" => {
            let devs: Vec<IfName> = devs
                .iter()
                .map(|d| IfName::new(d).expect("an interface name"))
                .collect();
            let found = host
                .detect(&devs)
                .await
                .map_err(|e| json!({ "error": e }))?;
            let problems: Vec<_> = found
                .problems
                .iter()
                .map(|p| {
                    let kind = match &p.kind {
                        ProblemKind::NoAnswer { .. } => "no_answer",
                        ProblemKind::OtherMountNamespace => "other_mount_namespace",
                        ProblemKind::NoBus { .. } => "no_bus",
                    };
                    json!({ "dev": p.dev, "pid": p.pid, "kind": kind, "message": p.to_string() })
                })
                .collect();
            Ok(json!({
                "managed": found.managers.managed,
                "describe": found.managers.describe(),
                "problems": problems,
                "unreadable": found.unreadable,
            }))
        }
        Some((verb, [op])) if verb == "apply" => {
            let op: HostOp = serde_json::from_str(op).expect("a HostOp as JSON");
            let t0 = std::time::Instant::now();
            host.apply(&op)
                .await
                .map_err(|e| json!({ "error": e, "message": e.to_string() }))?;
            Ok(json!({ "ok": true, "seconds": t0.elapsed().as_secs_f64() }))
        }
        _ => {
            Err(json!({ "usage": "host-probe managers DEV… | host-probe apply 'HOSTOP as JSON'" }))
        }
    }
}
