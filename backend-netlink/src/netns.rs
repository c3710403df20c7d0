//! A dedicated OS thread that lives in the target network namespace.
//!
//! Why a thread: `setns(2)` is per thread, and several things are bound to the namespace
//! of the thread that does them — a netlink socket to the namespace current when it is
//! *opened*, a tap to the namespace of the thread that opens `/dev/net/tun`, and
//! `/proc/sys/net` to the namespace of the *reading* thread. Calling `setns` on a tokio
//! worker would leak the namespace into unrelated tasks that later run on that worker,
//! so the backend never does: this thread enters the namespace once, opens the rtnetlink
//! socket there, drives it on its own current-thread runtime, and executes the blocking
//! jobs (tun ioctls, sysctl files, sysfs reads, tmpfs remounts) handed to it.
//!
//! `setns(CLONE_NEWNET)` leaves the mount namespace alone: paths the jobs open are those
//! of the caller's mount namespace.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use rtnetlink::sys::AsyncSocket;
use tokio::sync::{mpsc, oneshot};

use crate::errors::Failure;
use crate::request::Netlink;
use crate::sysfs::Sysfs;

type Job = Box<dyn FnOnce(&Sysfs) + Send>;

/// Where the worker thread should live.
pub(crate) enum Target {
    /// The namespace of the thread creating the worker (a new thread inherits it).
    Inherit,
    /// An open `/proc/PID/ns/net` or `/run/netns/NAME`.
    Fd(OwnedFd),
}

/// The handle side of the namespace thread. Dropping it stops the thread, which closes
/// the netlink socket.
pub(crate) struct NsWorker {
    jobs: mpsc::UnboundedSender<Job>,
    netlink: Netlink,
}

impl NsWorker {
    /// Starts the thread, enters the namespace, opens the netlink socket there.
    pub(crate) fn start(target: Target) -> Result<NsWorker, Failure> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("env-qemu-netns".into())
            .spawn(move || worker_main(target, &ready_tx))
            .map_err(Failure::from)?;
        ready_rx
            .recv()
            .map_err(|_| Failure::unavailable("namespace worker thread died while starting"))?
    }

    /// Opens `path` (`/run/netns/NAME`, `/proc/PID/ns/net`) as a namespace target.
    pub(crate) fn open_target(path: &Path) -> Result<Target, Failure> {
        let file = File::open(path)?;
        Ok(Target::Fd(OwnedFd::from(file)))
    }

    /// The rtnetlink connection; its socket lives in the worker's namespace.
    pub(crate) fn netlink(&self) -> &Netlink {
        &self.netlink
    }

    /// Runs `job` on the worker thread (inside the namespace) and returns its result.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Sysfs) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let boxed: Job = Box::new(move |sysfs| {
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(job(sysfs));
        });
        self.jobs
            .send(boxed)
            .map_err(|_| Failure::unavailable("namespace worker thread is gone"))?;
        rx.await
            .map_err(|_| Failure::unavailable("namespace worker thread dropped the job"))
    }
}

type Ready = Result<NsWorker, Failure>;

fn worker_main(target: Target, ready: &std::sync::mpsc::Sender<Ready>) {
    // The namespace fd is only needed for setns; it closes when `target` drops here.
    let started = start_in_namespace(&target);
    drop(target);
    let (runtime, connection, sysfs, worker, mut jobs) = match started {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(worker)).is_err() {
        return;
    }
    runtime.block_on(async move {
        tokio::spawn(connection);
        // Jobs are short blocking calls; running them inline only pauses the socket.
        while let Some(job) = jobs.recv().await {
            job(&sysfs);
        }
    });
}

type Connection = rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>;
type Started = (
    tokio::runtime::Runtime,
    Connection,
    Sysfs,
    NsWorker,
    mpsc::UnboundedReceiver<Job>,
);

fn start_in_namespace(target: &Target) -> Result<Started, Failure> {
    let inherited = matches!(target, Target::Inherit);
    if let Target::Fd(fd) = target {
        setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Failure::from(e).context("setns"))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // The tokio socket registers with the reactor of the runtime it is created in.
    let (mut connection, handle, _) = {
        let _enter = runtime.enter();
        rtnetlink::new_connection()?
    };
    let socket = connection.socket_mut().socket_mut();
    // Ask for the kernel's error text ("Nexthop has invalid gateway") and for errors that
    // echo only the request header, not the whole request.
    socket.set_ext_ack(true)?;
    socket.set_cap_ack(true)?;
    // Strict checking makes the kernel honour the filters of dump requests (routes by
    // output device, addresses by ifindex) instead of ignoring them: see dump/filtered.rs.
    socket.set_netlink_get_strict_chk(true)?;
    let sysfs = Sysfs::for_current_namespace(inherited);
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    let worker = NsWorker {
        jobs: jobs_tx,
        netlink: Netlink::new(handle),
    };
    Ok((runtime, connection, sysfs, worker, jobs_rx))
}
