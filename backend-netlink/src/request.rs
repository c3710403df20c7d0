//! Sending rtnetlink requests with exactly the flags we choose, and collecting answers.
//!
//! rtnetlink's request types fix flags and fill defaults (proto static for routes,
//! broadcast for IPv4 addresses); building the messages ourselves and sending them here
//! keeps every field under control and gives one place that turns a NACK into a
//! [`Failure`] with the kernel's extended-ack text.

use std::sync::Arc;

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;
use tokio::sync::Mutex;

use crate::errors::Failure;

/// One rtnetlink connection.
///
/// The kernel runs at most one dump per netlink socket: a second NLM_F_DUMP while one
/// is in progress fails with EBUSY (measured: concurrent `dump()`s on one
/// `NetlinkKernel`). Dumps therefore take `dumping`; plain requests interleave freely,
/// the sequence numbers keep their answers apart.
#[derive(Clone, Debug)]
pub(crate) struct Netlink {
    handle: Handle,
    dumping: Arc<Mutex<()>>,
}

impl Netlink {
    pub(crate) fn new(handle: Handle) -> Netlink {
        Netlink {
            handle,
            dumping: Arc::new(Mutex::new(())),
        }
    }
}

/// `NLM_F_CREATE | NLM_F_EXCL`: `ip … add`.
pub(crate) const CREATE_EXCL: u16 =
    rtnetlink::packet_core::NLM_F_CREATE | rtnetlink::packet_core::NLM_F_EXCL;
/// `NLM_F_CREATE | NLM_F_APPEND`: `ip route append`.
pub(crate) const CREATE_APPEND: u16 =
    rtnetlink::packet_core::NLM_F_CREATE | rtnetlink::packet_core::NLM_F_APPEND;
/// `NLM_F_CREATE | NLM_F_REPLACE`: `ip route replace`.
pub(crate) const CREATE_REPLACE: u16 =
    rtnetlink::packet_core::NLM_F_CREATE | rtnetlink::packet_core::NLM_F_REPLACE;

/// Sends one request with `NLM_F_REQUEST | NLM_F_ACK | extra_flags` and returns the
/// messages the kernel answered before its ACK.
pub(crate) async fn execute(
    nl: &Netlink,
    message: RouteNetlinkMessage,
    extra_flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, Failure> {
    let (answers, _) = send(&nl.handle, message, NLM_F_REQUEST | NLM_F_ACK | extra_flags).await?;
    Ok(answers)
}

/// How often a dump the kernel marked inconsistent (NLM_F_DUMP_INTR: the table changed
/// while it was being read) is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// A full dump (`NLM_F_DUMP`), retried while the kernel flags it as interrupted.
pub(crate) async fn dump(
    nl: &Netlink,
    message: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, Failure> {
    let _one_dump_at_a_time = nl.dumping.lock().await;
    for _ in 0..DUMP_ATTEMPTS {
        let (answers, interrupted) =
            send(&nl.handle, message.clone(), NLM_F_REQUEST | NLM_F_DUMP).await?;
        if !interrupted {
            return Ok(answers);
        }
    }
    Err(Failure::errno(
        libc::EINTR,
        Some("the table kept changing while it was dumped".to_string()),
    ))
}

async fn send(
    handle: &Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<(Vec<RouteNetlinkMessage>, bool), Failure> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    let mut handle = handle.clone();
    let mut responses = handle
        .request(request)
        .map_err(|_| Failure::unavailable("the netlink connection is closed"))?;
    let mut answers = Vec::new();
    let mut interrupted = false;
    while let Some(response) = responses.next().await {
        interrupted |= response.header.flags & NLM_F_DUMP_INTR != 0;
        match response.payload {
            NetlinkPayload::InnerMessage(m) => answers.push(m),
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(Failure::from_nack(&e, response.header.flags));
            }
            _ => {}
        }
    }
    Ok((answers, interrupted))
}

/// The ifindex of `name` (`ip link show dev NAME`). ENODEV, naming the device, when
/// there is none.
pub(crate) async fn ifindex(nl: &Netlink, name: &str) -> Result<u32, Failure> {
    let mut query = LinkMessage::default();
    query
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    let answers = execute(nl, RouteNetlinkMessage::GetLink(query), 0)
        .await
        .map_err(|f| match f {
            Failure::Errno { errno, .. } if errno == libc::ENODEV => {
                Failure::errno(errno, Some(format!("no interface named {name}")))
            }
            other => other,
        })?;
    answers
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
            _ => None,
        })
        .ok_or_else(|| Failure::errno(libc::ENODEV, Some(format!("no interface named {name}"))))
}
