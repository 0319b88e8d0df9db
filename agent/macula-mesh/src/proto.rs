//! Messages of protocol `macula/2` (see `docs/protocol.md`). Every value is encoded with
//! `macula_core::wire`; stream frames add the length prefix of [`crate::frame`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::realm::{MembershipCert, RealmId, Revocation};

/// QUIC application close codes.
pub mod close {
    /// Orderly shutdown.
    pub const NORMAL: u32 = 0;
    /// The peer has no valid certificate for our realm (reason text says why).
    pub const NOT_ADMITTED: u32 = 0x10;
    /// A frame or datagram was malformed, oversized or unexpected.
    pub const PROTOCOL: u32 = 0x11;
    /// No Hello arrived within the handshake timeout.
    pub const HELLO_TIMEOUT: u32 = 0x12;
    /// Another connection to the same peer is kept instead of this one.
    pub const DUPLICATE: u32 = 0x13;
    /// The peer was revoked from the realm.
    pub const REVOKED: u32 = 0x14;
    /// Stream reset: the sender's partly received frames on this connection would exceed the
    /// receiver's buffer budget ([`crate::transport::TransportParams::conn_buffer_budget`]);
    /// the call fails as `Overloaded` and may be retried.
    pub const OVERLOADED: u32 = 0x15;
}

/// Most revocations a Hello may carry.
pub const MAX_HELLO_REVOCATIONS: usize = 256;

/// The first frame on the control stream (the first bidirectional stream, opened by the dialer),
/// in both directions: the dialer sends first, the acceptor answers only after admitting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub realm: RealmId,
    pub cert: MembershipCert,
    /// Addresses the sender accepts connections on.
    pub listen: Vec<SocketAddr>,
    /// Revocations the sender knows (at most [`MAX_HELLO_REVOCATIONS`]).
    pub revocations: Vec<Revocation>,
}

/// Frames on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    Hello(Hello),
}

/// One QUIC datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// A SWIM (foca) packet.
    Swim(Vec<u8>),
}
