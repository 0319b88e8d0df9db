//! The request/reply loop over the rust-netlink crates: `netlink-sys` sockets opened in a chosen
//! network namespace, `netlink-packet-core` framing, and typed messages: `netlink-packet-route`
//! headers and address messages ([`crate::links`]), `netlink-packet-generic` (family lookup,
//! [`crate::mptcp`]) and `netlink-packet-wireguard` ([`crate::overlay::kernel`]).
//!
//! Calls are short and blocking (one dump or one set at a time), so the async connection layers
//! of the same family (`rtnetlink`, `genetlink`, `netlink-proto`) are not used; see
//! docs/network.md, "Netlink".
//! [`messages`] splits a datagram into typed messages (bounded, fuzzed:
//! `fuzz/fuzz_targets/netlink_reply.rs`). Datagrams not sent by the kernel are ignored.

use std::fmt::Debug;

use netlink_packet_core::{
    DecodeError, NLM_F_DUMP, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_sys::{Socket, SocketAddr};

use crate::cmd::Host;

pub use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

/// Largest datagram we read or decode.
pub const MAX_REPLY: usize = 1 << 16;

/// Netlink failures.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("the kernel refused {what}: {source}")]
    Kernel {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

impl From<DecodeError> for NetlinkError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// Splits one datagram into netlink messages decoded as `T` (error, done and data messages).
pub fn messages<T>(buf: &[u8]) -> Result<Vec<NetlinkMessage<T>>, NetlinkError>
where
    T: NetlinkDeserializable + Debug,
{
    if buf.len() > MAX_REPLY {
        return Err(NetlinkError::Malformed("reply too large".into()));
    }
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = NetlinkBuffer::new_checked(rest)?.length() as usize;
        out.push(NetlinkMessage::<T>::deserialize(&rest[..len])?);
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    Ok(out)
}

/// A typed request: header flags set, sequence 1, length filled in.
pub(crate) fn request<T>(payload: T, flags: u16) -> NetlinkMessage<T>
where
    T: NetlinkSerializable + Debug,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    msg.finalize();
    msg
}

/// Opens a netlink socket of `protocol` in `host`'s namespace, subscribed to `groups`.
pub(crate) fn open(host: &Host, protocol: isize, groups: u32) -> Result<Socket, NetlinkError> {
    Ok(host.in_netns(|| {
        let mut s = Socket::new(protocol)?;
        s.bind(&SocketAddr::new(0, groups))?;
        Ok(s)
    })?)
}

/// Reads one datagram from the kernel (others are dropped) and decodes it.
pub(crate) fn receive<T>(
    sock: &Socket,
    buf: &mut Vec<u8>,
) -> Result<Vec<NetlinkMessage<T>>, NetlinkError>
where
    T: NetlinkDeserializable + Debug,
{
    loop {
        buf.clear();
        buf.reserve(MAX_REPLY);
        let (_, from) = sock.recv_from(buf, 0)?;
        if from.port_number() == 0 {
            return messages(buf);
        }
    }
}

/// Sends `req` and collects the data replies (decoded as `R`) until the ack, `NLMSG_DONE`, or (for
/// a request that is neither a dump nor acked) the first reply.
pub(crate) fn transact<Q, R>(
    sock: &Socket,
    req: &NetlinkMessage<Q>,
    what: &'static str,
) -> Result<Vec<R>, NetlinkError>
where
    Q: NetlinkSerializable + Debug,
    R: NetlinkDeserializable + Debug,
{
    let mut bytes = vec![0u8; req.buffer_len()];
    req.serialize(&mut bytes);
    sock.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
    let dump = req.header.flags & NLM_F_DUMP == NLM_F_DUMP;
    let ack = req.header.flags & NLM_F_ACK != 0;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let mut finished = false;
        for m in receive::<R>(sock, &mut buf)? {
            match m.payload {
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(NetlinkError::Kernel {
                        what,
                        source: e.to_io(),
                    });
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => finished = true,
                NetlinkPayload::InnerMessage(inner) => {
                    out.push(inner);
                    if !dump && !ack {
                        finished = true;
                    }
                }
                _ => {}
            }
        }
        if finished {
            return Ok(out);
        }
    }
}

/// Opens a generic-netlink socket in `host`'s namespace and resolves family `name`
/// (`None`: the kernel has no such family, e.g. the module is not loaded).
pub(crate) fn genl_family(host: &Host, name: &str) -> Result<(Socket, Option<u16>), NetlinkError> {
    let sock = open(host, netlink_sys::protocols::NETLINK_GENERIC, 0)?;
    let req = request(
        GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.into())],
        }),
        NLM_F_REQUEST,
    );
    let replies: Vec<GenlMessage<GenlCtrl>> = match transact(&sock, &req, "family lookup") {
        Ok(r) => r,
        Err(NetlinkError::Kernel { .. }) => return Ok((sock, None)),
        Err(e) => return Err(e),
    };
    let family = replies
        .iter()
        .flat_map(|m| &m.payload.nlas)
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        });
    Ok((sock, family))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::LinkMessage;

    #[test]
    fn requests_split_back_into_messages() {
        let req = request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        );
        let mut one = vec![0u8; req.buffer_len()];
        req.serialize(&mut one);
        let two = [one.clone(), one].concat();
        let msgs = messages::<RouteNetlinkMessage>(&two).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].header.flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert!(matches!(
            msgs[0].payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(_))
        ));
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(messages::<RouteNetlinkMessage>(&[0xff; 16]).is_err());
        assert!(messages::<RouteNetlinkMessage>(&[1, 2, 3]).is_err());
        assert!(messages::<RouteNetlinkMessage>(&vec![0; MAX_REPLY + 1]).is_err());
    }
}
