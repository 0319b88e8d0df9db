//! Hub relay (protocol.md §12): encrypted QUIC packets forwarded through a hub, so a node behind
//! NAT is reachable while QUIC-TLS stays end-to-end between the two nodes.
//!
//! [`RelaySocket`] wraps the endpoint's UDP socket. A first byte without bit 0x40 marks a relay
//! frame (every QUIC packet has the fixed bit 0x40 set):
//! * `[0x00 | target id (32) | QUIC packet]` — to a hub: "forward to target";
//! * `[0x02 | source id (32) | QUIC packet]` — from a hub: "this came from source".
//!
//! A sender addresses a relayed peer through a *virtual address* standing for (hub, peer); quinn
//! sees one ordinary remote address per relayed path. A hub forwards only between members it holds
//! admitted connections to, identified by their connections' remote addresses, within a per-source
//! byte rate.

use macula_core::sync::Locked;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use macula_core::NodeId;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// Tag of a frame sent to a hub.
pub const TAG_FORWARD: u8 = 0x00;
/// Tag of a frame delivered by a hub.
pub const TAG_DELIVER: u8 = 0x02;
/// Tag byte plus node id.
pub const HEADER_LEN: usize = 1 + 32;
/// Largest relay frame (header plus QUIC packet) accepted or sent.
pub const MAX_RELAY_DATAGRAM: usize = 1500;
/// Virtual addresses a node keeps at most (one per (hub, peer) pair).
pub const MAX_VIRTUAL: usize = 4096;
/// Bytes per second a hub forwards for one source member (burst: one second's worth).
pub const RATE_BYTES_PER_SEC: f64 = 16.0 * 1024.0 * 1024.0;

/// A parsed relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    pub tag: u8,
    /// The target (forward) or the source (deliver).
    pub node: NodeId,
    pub packet: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("not a relay frame (first byte {0:#04x} has the QUIC fixed bit)")]
    NotRelay(u8),
    #[error("unknown relay tag {0:#04x}")]
    UnknownTag(u8),
    #[error("relay frame of {0} bytes is shorter than its 33-byte header plus one packet byte")]
    Short(usize),
    #[error("relay frame names an invalid node id")]
    BadNode,
    #[error("relay frame of {0} bytes exceeds {MAX_RELAY_DATAGRAM}")]
    TooLong(usize),
}

/// Is this datagram a relay frame rather than a QUIC packet?
pub fn is_relay(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0x40 == 0)
}

impl<'a> RelayFrame<'a> {
    /// Bounded parse: tag, 32-byte id, non-empty packet, total ≤ [`MAX_RELAY_DATAGRAM`].
    pub fn parse(d: &'a [u8]) -> Result<Self, RelayError> {
        let Some(&tag) = d.first() else {
            return Err(RelayError::Short(0));
        };
        if tag & 0x40 != 0 {
            return Err(RelayError::NotRelay(tag));
        }
        if tag != TAG_FORWARD && tag != TAG_DELIVER {
            return Err(RelayError::UnknownTag(tag));
        }
        if d.len() <= HEADER_LEN {
            return Err(RelayError::Short(d.len()));
        }
        if d.len() > MAX_RELAY_DATAGRAM {
            return Err(RelayError::TooLong(d.len()));
        }
        let id: [u8; 32] = d[1..HEADER_LEN].try_into().expect("32 bytes");
        let node = NodeId::from_bytes(id).map_err(|_| RelayError::BadNode)?;
        Ok(Self {
            tag,
            node,
            packet: &d[HEADER_LEN..],
        })
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.packet.len());
        v.push(self.tag);
        v.extend_from_slice(self.node.as_bytes());
        v.extend_from_slice(self.packet);
        v
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Tables {
    /// (hub address, peer) → virtual address, and back.
    virt: HashMap<(SocketAddr, NodeId), SocketAddr>,
    real: HashMap<SocketAddr, (SocketAddr, NodeId)>,
    /// Virtual addresses in the order they were made (the oldest is reused first when full).
    order: VecDeque<(SocketAddr, NodeId)>,
    /// Last virtual address index handed out.
    next: u32,
    /// Admitted, connected members by their connection's remote address (with whether their
    /// certificate says hub), and back.
    member_at: HashMap<SocketAddr, (NodeId, bool)>,
    member_addr: HashMap<NodeId, SocketAddr>,
    buckets: HashMap<NodeId, Bucket>,
}

/// Relay state shared by the node (membership of connections) and the socket.
#[derive(Debug)]
pub struct Relay {
    /// Forward frames for others (hubs only).
    hub: bool,
    ipv6: bool,
    t: Mutex<Tables>,
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

impl Relay {
    pub fn new(hub: bool, ipv6: bool) -> Self {
        Self {
            hub,
            ipv6,
            t: Mutex::default(),
        }
    }

    /// Virtual addresses live in 240.0.0.0/4 (IPv4, reserved) or 100::/64 (IPv6 discard-only).
    pub fn is_virtual(addr: SocketAddr) -> bool {
        match unmap(addr).ip() {
            IpAddr::V4(v4) => v4.octets()[0] & 0xf0 == 0xf0,
            IpAddr::V6(v6) => v6.segments()[..4] == [0x100, 0, 0, 0],
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.t.locked()
    }

    /// The virtual address that stands for `peer` reached through the hub at `hub`; `None` when
    /// the table is full.
    pub fn virtual_addr(&self, hub: SocketAddr, peer: NodeId) -> SocketAddr {
        let hub = unmap(hub);
        let mut t = self.tables();
        if let Some(v) = t.virt.get(&(hub, peer)) {
            return *v;
        }
        // Full: the oldest address is reused (its relayed connection, if any, breaks).
        while t.virt.len() >= MAX_VIRTUAL {
            let Some(old) = t.order.pop_front() else {
                break;
            };
            if let Some(v) = t.virt.remove(&old) {
                t.real.remove(&v);
            }
        }
        // Indices 1..2^28 (the IPv4 form is 240.0.0.0/4), skipping ones still in use.
        let v = loop {
            t.next = t.next % 0x0fff_ffff + 1;
            let v = self.virtual_of(t.next);
            if !t.real.contains_key(&v) {
                break v;
            }
        };
        t.virt.insert((hub, peer), v);
        t.real.insert(v, (hub, peer));
        t.order.push_back((hub, peer));
        v
    }

    fn virtual_of(&self, idx: u32) -> SocketAddr {
        if self.ipv6 {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(
                    0x100,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (idx >> 16) as u16,
                    idx as u16,
                )),
                1,
            )
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xf000_0000 | idx)), 1)
        }
    }

    /// An admitted connection to `node` at `addr` is up (virtual addresses are ignored).
    pub fn member_up(&self, node: NodeId, addr: SocketAddr, hub: bool) {
        if Self::is_virtual(addr) {
            return;
        }
        let addr = unmap(addr);
        let mut t = self.tables();
        if let Some(old) = t.member_addr.insert(node, addr) {
            t.member_at.remove(&old);
        }
        t.member_at.insert(addr, (node, hub));
    }

    /// The connection to `node` at `addr` closed.
    pub fn member_down(&self, node: NodeId, addr: SocketAddr) {
        let addr = unmap(addr);
        let mut t = self.tables();
        if t.member_addr.get(&node) == Some(&addr) {
            t.member_addr.remove(&node);
            t.member_at.remove(&addr);
            t.buckets.remove(&node);
            // The virtual addresses of peers relayed by it are freed.
            let Tables {
                virt, real, order, ..
            } = &mut *t;
            virt.retain(|(hub, _), v| {
                let keep = *hub != addr;
                if !keep {
                    real.remove(v);
                }
                keep
            });
            order.retain(|(hub, _)| *hub != addr);
        }
    }

    /// Hub side: where to send a frame from `from` for `target`, rewritten as a deliver frame;
    /// `None` drops it (not a hub, unknown sender or target, over rate).
    fn forward(&self, from: SocketAddr, f: &RelayFrame<'_>) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.hub {
            return None;
        }
        let mut t = self.tables();
        let (source, _) = *t.member_at.get(&unmap(from))?;
        let to = *t.member_addr.get(&f.node)?;
        if source == f.node {
            return None;
        }
        let now = Instant::now();
        let b = t.buckets.entry(source).or_insert(Bucket {
            tokens: RATE_BYTES_PER_SEC,
            at: now,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * RATE_BYTES_PER_SEC).min(RATE_BYTES_PER_SEC);
        b.at = now;
        let cost = f.packet.len() as f64;
        if b.tokens < cost {
            return None;
        }
        b.tokens -= cost;
        let out = RelayFrame {
            tag: TAG_DELIVER,
            node: source,
            packet: f.packet,
        };
        Some((to, out.encode()))
    }

    /// Receiver side: the virtual address for a deliver frame from the address of a connected
    /// hub (by its certificate); from anyone else it is dropped.
    fn deliver_from(&self, from: SocketAddr, source: NodeId) -> Option<SocketAddr> {
        let hub = self
            .tables()
            .member_at
            .get(&unmap(from))
            .is_some_and(|(_, hub)| *hub);
        hub.then(|| self.virtual_addr(from, source))
    }

    fn resolve(&self, v: SocketAddr) -> Option<(SocketAddr, NodeId)> {
        self.tables().real.get(&unmap(v)).copied()
    }
}

/// The endpoint's UDP socket with relay framing (see the module documentation).
pub struct RelaySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    relay: Arc<Relay>,
}

impl fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelaySocket").finish_non_exhaustive()
    }
}

impl RelaySocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, relay: Arc<Relay>) -> Self {
        Self { inner, relay }
    }

    fn send_raw(&self, to: SocketAddr, contents: &[u8]) {
        let t = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: None,
        };
        if let Err(e) = self.inner.try_send(&t) {
            tracing::trace!(%to, "relay frame not sent: {e}");
        }
    }

    /// Rewrites one received buffer in place: forwards or strips relay frames, keeps only the
    /// segments that share the first kept segment's origin (GRO may coalesce several). Returns the
    /// new length (0: nothing left for quinn).
    fn filter(&self, buf: &mut [u8], meta: &mut RecvMeta) -> usize {
        let stride = meta.stride.max(1);
        let len = meta.len.min(buf.len());
        // The origin of the kept segments: None = plain QUIC, Some(v) = virtual address v.
        let mut keep: Option<Option<SocketAddr>> = None;
        let mut out = 0;
        let mut out_stride = stride;
        let mut start = 0;
        while start < len {
            let end = (start + stride).min(len);
            let origin = if is_relay(&buf[start..end]) {
                match RelayFrame::parse(&buf[start..end]) {
                    Ok(f) if f.tag == TAG_FORWARD => {
                        if let Some((to, bytes)) = self.relay.forward(meta.addr, &f) {
                            self.send_raw(to, &bytes);
                        }
                        None
                    }
                    Ok(f) => self.relay.deliver_from(meta.addr, f.node).map(Some),
                    Err(e) => {
                        tracing::trace!(from = %meta.addr, "relay frame dropped: {e}");
                        None
                    }
                }
            } else {
                Some(None)
            };
            if let Some(origin) = origin {
                if keep.is_none() {
                    keep = Some(origin);
                    out_stride = if origin.is_some() {
                        stride - HEADER_LEN
                    } else {
                        stride
                    };
                }
                if keep == Some(origin) {
                    let skip = if origin.is_some() { HEADER_LEN } else { 0 };
                    let n = end - start - skip;
                    buf.copy_within(start + skip..end, out);
                    out += n;
                    if n != out_stride {
                        // A short segment ends a GRO batch.
                        break;
                    }
                }
            }
            start = end;
        }
        if let Some(Some(v)) = keep {
            meta.addr = v;
        }
        meta.len = out;
        meta.stride = out_stride.min(out.max(1));
        out
    }
}

impl AsyncUdpSocket for RelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some((hub, peer)) = Relay::is_virtual(transmit.destination)
            .then(|| self.relay.resolve(transmit.destination))
            .flatten()
        else {
            return self.inner.try_send(transmit);
        };
        let seg = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for packet in transmit.contents.chunks(seg) {
            let frame = RelayFrame {
                tag: TAG_FORWARD,
                node: peer,
                packet,
            };
            self.send_raw(hub, &frame.encode());
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..n {
                if self.filter(&mut bufs[i], &mut meta[i]) == 0 {
                    continue;
                }
                if kept != i {
                    let len = meta[i].len;
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..len].copy_from_slice(&tail[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        macula_core::NodeKey::from_seed([b; 32]).node_id()
    }

    #[test]
    fn parse_is_bounded_and_roundtrips() {
        let f = RelayFrame {
            tag: TAG_FORWARD,
            node: id(7),
            packet: &[0xc0, 1, 2],
        };
        let b = f.encode();
        assert_eq!(RelayFrame::parse(&b), Ok(f));
        for n in 0..=HEADER_LEN {
            assert!(RelayFrame::parse(&b[..n]).is_err(), "prefix {n} accepted");
        }
        assert!(RelayFrame::parse(&b[..=HEADER_LEN]).is_ok());
        assert_eq!(
            RelayFrame::parse(&[0x40; 40]),
            Err(RelayError::NotRelay(0x40))
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; 40]),
            Err(RelayError::UnknownTag(1))
        );
        assert_eq!(
            RelayFrame::parse(&vec![0u8; MAX_RELAY_DATAGRAM + 1]),
            Err(RelayError::TooLong(MAX_RELAY_DATAGRAM + 1))
        );
    }

    #[test]
    fn hub_forwards_only_between_connected_members_within_rate() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.9:9".parse().unwrap();
        let edge = Relay::new(false, false);
        let hub = Relay::new(true, false);
        for r in [&edge, &hub] {
            r.member_up(id(1), a, false);
            r.member_up(id(2), b, false);
        }
        let pkt = [0xc0u8; 1000];
        let f = RelayFrame {
            tag: TAG_FORWARD,
            node: id(2),
            packet: &pkt,
        };
        assert!(edge.forward(a, &f).is_none(), "only hubs forward");
        assert!(hub.forward(stranger, &f).is_none(), "unknown sender");
        let (to, bytes) = hub.forward(a, &f).unwrap();
        assert_eq!(to, b);
        let d = RelayFrame::parse(&bytes).unwrap();
        assert_eq!((d.tag, d.node, d.packet), (TAG_DELIVER, id(1), &pkt[..]));
        let to_self = RelayFrame { node: id(1), ..f };
        assert!(hub.forward(a, &to_self).is_none());
        let unknown = RelayFrame { node: id(3), ..f };
        assert!(hub.forward(a, &unknown).is_none());
        hub.member_down(id(2), b);
        assert!(hub.forward(a, &f).is_none(), "target gone");
        hub.member_up(id(2), b, false);
        let sent = (0..100_000)
            .take_while(|_| hub.forward(a, &f).is_some())
            .count();
        assert!(sent < 100_000, "rate bound never hit");
    }

    #[test]
    fn virtual_addresses_are_stable_and_distinct() {
        let r = Relay::new(false, false);
        let h: SocketAddr = "10.0.0.1:4433".parse().unwrap();
        let v1 = r.virtual_addr(h, id(1));
        let v2 = r.virtual_addr(h, id(2));
        assert_ne!(v1, v2);
        assert_eq!(r.virtual_addr(h, id(1)), v1);
        assert!(Relay::is_virtual(v1) && !Relay::is_virtual(h));
        assert_eq!(r.resolve(v2), Some((h, id(2))));
        let r6 = Relay::new(false, true);
        assert!(Relay::is_virtual(r6.virtual_addr(h, id(1))));
    }

    #[test]
    fn deliveries_come_only_from_hubs_and_the_address_table_is_bounded_and_freed() {
        let r = Relay::new(false, false);
        let hub: SocketAddr = "10.0.0.1:4433".parse().unwrap();
        let edge: SocketAddr = "10.0.0.2:4433".parse().unwrap();
        r.member_up(id(1), hub, true);
        r.member_up(id(2), edge, false);
        // A member that is no hub cannot make us take packets as coming from anyone.
        assert_eq!(r.deliver_from(edge, id(3)), None);
        let v = r.deliver_from(hub, id(3)).unwrap();
        assert_eq!(r.resolve(v), Some((hub, id(3))));
        // A flood of sources: the table stays bounded and a new peer still gets an address.
        let key = |i: u32| {
            macula_core::NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).into()).node_id()
        };
        for i in 0..MAX_VIRTUAL as u32 + 100 {
            r.deliver_from(hub, key(i)).unwrap();
        }
        assert_eq!(r.tables().virt.len(), MAX_VIRTUAL);
        assert_eq!(r.tables().real.len(), MAX_VIRTUAL);
        let fresh = r.virtual_addr(edge, id(4));
        assert_eq!(r.resolve(fresh), Some((edge, id(4))));
        // The hub's connection closes: the addresses it relayed are freed.
        r.member_down(id(1), hub);
        assert_eq!(r.tables().virt.len(), 1);
        assert_eq!(r.tables().real.len(), 1);
        assert_eq!(r.tables().order.len(), 1);
        assert_eq!(r.deliver_from(hub, id(3)), None, "no longer connected");
    }
}
