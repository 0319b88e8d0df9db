//! The QUIC endpoint: one UDP socket that both dials and accepts, TLS 1.3 raw-key identity
//! ([`crate::tls`]) and realm admission by a Hello exchange on the first bidirectional stream.
//! A [`Peer`] exists only after both sides verified each other's membership certificate.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use macula_core::{NodeId, NodeKey};
use quinn::VarInt;
use tokio::time::timeout;

use crate::frame::{self, FrameError};
use crate::proto::{Control, Hello, MAX_HELLO_REVOCATIONS, close};
use crate::realm::{Admission, CertError, MembershipCert, Revocation};
use crate::relay::{Relay, RelaySocket};
use crate::tls;

/// Connection parameters. Defaults suit a 1 GB board on a LAN.
#[derive(Debug, Clone)]
pub struct TransportParams {
    /// Close a connection after this long without any packet (default 15 s).
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without traffic (default 5 s).
    pub keep_alive: Duration,
    /// Budget for the TLS handshake plus the Hello exchange (default 5 s).
    pub handshake_timeout: Duration,
    /// Largest control-stream frame (default 64 KiB).
    pub max_frame: usize,
    /// Per-stream receive window (default 2 MiB).
    pub stream_window: u32,
    /// Per-connection receive and send window (default 8 MiB).
    pub conn_window: u32,
    /// Concurrent bidirectional streams a peer may open (default 64).
    pub max_bidi_streams: u32,
    /// Put ChaCha20-Poly1305 first (default: when the CPU has no AES instructions).
    pub chacha_first: bool,
    /// How long a peer may take to send a whole RPC request or pub/sub message on a stream it
    /// opened; a stream that stalls longer is reset, freeing its buffer and its stream credit
    /// (default 30 s: a 4 MiB request at about 1 Mbit/s).
    pub request_deadline: Duration,
    /// Bytes of partly received frames (RPC requests, pub/sub messages) the streams of one
    /// connection may make this node hold at once; a stream that would go over is reset with
    /// [`close::OVERLOADED`](crate::proto::close::OVERLOADED) (default 16 MiB: four requests of
    /// the largest size at once).
    pub conn_buffer_budget: usize,
    /// What one peer may make this node do per second and at once (`[mesh.limits]`).
    pub limits: crate::limits::PeerLimits,
}

impl Default for TransportParams {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15),
            keep_alive: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_frame: 64 * 1024,
            stream_window: 2 << 20,
            conn_window: 8 << 20,
            max_bidi_streams: 64,
            chacha_first: !macula_core::cpu::has_aes(),
            request_deadline: Duration::from_secs(30),
            conn_buffer_budget: 16 << 20,
            limits: crate::limits::PeerLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "cannot bind the mesh UDP socket on {addr}: {source}; pick a free port in [mesh] listen"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot dial {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("peer {peer} refused us: {reason}")]
    Refused { peer: NodeId, reason: String },
    #[error("refused peer {peer}: {source}")]
    NotAdmitted {
        peer: NodeId,
        #[source]
        source: CertError,
    },
    #[error("protocol violation by {peer}: {source}")]
    Protocol {
        peer: NodeId,
        #[source]
        source: FrameError,
    },
    #[error("join-code request of {peer}: {outcome}")]
    Join { peer: NodeId, outcome: String },
    #[error("handshake with {0} timed out")]
    Timeout(String),
    #[error("cannot keep the mesh clock state in {path}: {reason}")]
    ClockState {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// An admitted peer connection.
#[derive(Debug)]
pub struct Peer {
    pub id: NodeId,
    pub cert: MembershipCert,
    /// Where the peer accepts connections (from its Hello).
    pub listen: Vec<SocketAddr>,
    /// Revocations the peer sent that were new to us and verified.
    pub new_revocations: Vec<Revocation>,
    pub conn: quinn::Connection,
    /// The control stream (after the Hello exchange).
    pub control: (quinn::SendStream, quinn::RecvStream),
    /// Did we dial (rather than accept) this connection?
    pub dialled: bool,
}

/// Seconds since the Unix epoch, for certificate validity.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn transport_config(p: &TransportParams) -> Result<quinn::TransportConfig, TransportError> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        p.idle_timeout
            .try_into()
            .map_err(|_| TransportError::Tls("idle timeout out of range".into()))?,
    ));
    t.keep_alive_interval(Some(p.keep_alive));
    t.stream_receive_window(VarInt::from_u32(p.stream_window));
    t.receive_window(VarInt::from_u32(p.conn_window));
    t.send_window(u64::from(p.conn_window));
    t.max_concurrent_bidi_streams(VarInt::from_u32(p.max_bidi_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    t.datagram_receive_buffer_size(Some(256 * 1024));
    Ok(t)
}

/// One QUIC endpoint of this node.
pub struct Endpoint {
    quinn: quinn::Endpoint,
    relay: Arc<Relay>,
    admission: Arc<Admission>,
    params: TransportParams,
    listen: Vec<SocketAddr>,
    /// Answers join-code requests (`crate::join`), on a holder of the realm key.
    joins: std::sync::OnceLock<crate::join::JoinHandler>,
}

impl Endpoint {
    /// Binds `addr` (use port 0 for an ephemeral port). `advertise` are the addresses put in our
    /// Hello; empty means the bound address.
    pub fn bind(
        key: &NodeKey,
        admission: Arc<Admission>,
        addr: SocketAddr,
        advertise: Vec<SocketAddr>,
        params: TransportParams,
    ) -> Result<Self, TransportError> {
        let tls_err = |e: rustls::Error| TransportError::Tls(e.to_string());
        let deny = admission.deny_list();
        let transport = Arc::new(transport_config(&params)?);
        let server_tls =
            tls::server_config(key, deny.clone(), params.chacha_first).map_err(tls_err)?;
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let client_tls = tls::client_config(key, deny, params.chacha_first).map_err(tls_err)?;
        let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);
        let bind_err = |source| TransportError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_err(io::Error::other("no async runtime")))?;
        let relay = Arc::new(Relay::new(
            admission.own_cert().body.role == macula_core::config::Role::Hub,
            addr.is_ipv6(),
        ));
        let socket = RelaySocket::new(
            runtime.wrap_udp_socket(socket).map_err(bind_err)?,
            relay.clone(),
        );
        // The relay marks its frames with a clear QUIC fixed bit: peers must never grease it
        // (RFC 9287), so we do not advertise support.
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.grease_quic_bit(false);
        let mut quinn = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            Arc::new(socket),
            runtime,
        )
        .map_err(bind_err)?;
        quinn.set_default_client_config(client);
        let bound = quinn
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;
        let listen = if advertise.is_empty() {
            vec![bound]
        } else {
            advertise
        };
        Ok(Self {
            quinn,
            relay,
            admission,
            params,
            listen,
            joins: std::sync::OnceLock::new(),
        })
    }

    /// Answers join-code requests with `handler` from now on (once; later calls are ignored).
    pub fn serve_joins(&self, handler: crate::join::JoinHandler) {
        let _ = self.joins.set(handler);
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.quinn.local_addr()
    }

    /// Relay state of this endpoint's socket (protocol.md §12).
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn params(&self) -> &TransportParams {
        &self.params
    }

    fn hello(&self) -> Control {
        let mut revocations = self.admission.revocations();
        revocations.truncate(MAX_HELLO_REVOCATIONS);
        Control::Hello(Hello {
            realm: self.admission.realm(),
            cert: self.admission.own_cert(),
            listen: self.listen.clone(),
            revocations,
        })
    }

    /// Dials `addr`, expecting node `expect` there (or any realm member when `None`).
    pub async fn dial(
        &self,
        addr: SocketAddr,
        expect: Option<NodeId>,
    ) -> Result<Peer, TransportError> {
        self.dial_within(addr, expect, self.params.handshake_timeout)
            .await
    }

    /// As [`Endpoint::dial`] with its own time budget (a short one when a relay is the fallback).
    pub async fn dial_within(
        &self,
        addr: SocketAddr,
        expect: Option<NodeId>,
        budget: Duration,
    ) -> Result<Peer, TransportError> {
        let connecting = self
            .quinn
            .connect(addr, &tls::server_name(expect.as_ref()))
            .map_err(|source| TransportError::Connect { addr, source })?;
        let fut = async {
            let conn = connecting.await?;
            let id = tls::peer_node_id(&conn)
                .ok_or_else(|| TransportError::Tls("peer presented no raw Ed25519 key".into()))?;
            let (mut send, mut recv) = conn.open_bi().await?;
            frame::write(&mut send, &self.hello(), self.params.max_frame)
                .await
                .map_err(|e| self.protocol(&conn, id, e))?;
            let hello = self.read_hello(&conn, id, &mut recv).await?;
            self.admit(conn, id, hello, (send, recv), true)
        };
        timeout(budget, fut)
            .await
            .map_err(|_| TransportError::Timeout(addr.to_string()))?
    }

    /// Waits for the next incoming connection attempt; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<quinn::Incoming> {
        self.quinn.accept().await
    }

    /// Completes an incoming connection: TLS, then the dialer's Hello, admission, and only then
    /// our Hello.
    pub async fn handshake(&self, incoming: quinn::Incoming) -> Result<Peer, TransportError> {
        let remote = incoming.remote_address();
        let budget = self.params.handshake_timeout;
        let mut established = None;
        let fut = async {
            let conn = incoming.await?;
            established = Some(conn.clone());
            let id = tls::peer_node_id(&conn)
                .ok_or_else(|| TransportError::Tls("peer presented no raw Ed25519 key".into()))?;
            if tls::negotiated_alpn(&conn).as_deref() == Some(tls::JOIN_ALPN) {
                return Err(self.serve_join(&conn, id).await);
            }
            let (send, mut recv) = conn.accept_bi().await?;
            let hello = self.read_hello(&conn, id, &mut recv).await?;
            // The dialer learns nothing about us (certificate, addresses, revocations) unless
            // it is admitted.
            let mut peer = self.admit(conn, id, hello, (send, recv), false)?;
            frame::write(&mut peer.control.0, &self.hello(), self.params.max_frame)
                .await
                .map_err(|e| self.protocol(&peer.conn, id, e))?;
            Ok(peer)
        };
        let res = timeout(budget, fut).await;
        match res {
            Ok(r) => r,
            Err(_) => {
                if let Some(conn) = established {
                    conn.close(VarInt::from_u32(close::HELLO_TIMEOUT), b"no hello in time");
                }
                Err(TransportError::Timeout(remote.to_string()))
            }
        }
    }

    /// A join-code connection (`crate::join`): one request, one reply, then closed. Never
    /// admits the peer: the outcome is returned as [`TransportError::Join`].
    async fn serve_join(&self, conn: &quinn::Connection, id: NodeId) -> TransportError {
        use crate::join::{JoinReply, JoinRequest, MAX_JOIN_FRAME};
        let outcome = |outcome: String| TransportError::Join { peer: id, outcome };
        let Some(handler) = self.joins.get() else {
            conn.close(
                VarInt::from_u32(close::NOT_ADMITTED),
                b"this node issues no join codes",
            );
            return outcome("refused: this node issues no join codes".into());
        };
        let exchange = async {
            let (mut send, mut recv) = conn.accept_bi().await?;
            let req = match frame::read::<JoinRequest>(&mut recv, MAX_JOIN_FRAME).await {
                Ok(Some(r)) => r,
                Ok(None) => return Err(self.protocol(conn, id, FrameError::Truncated)),
                Err(e) => return Err(self.protocol(conn, id, e)),
            };
            let reply = handler(id, req);
            frame::write(&mut send, &reply, MAX_JOIN_FRAME)
                .await
                .map_err(|e| self.protocol(conn, id, e))?;
            let _ = send.finish();
            // The new node closes once it has read the reply.
            let _ = timeout(Duration::from_secs(2), conn.closed()).await;
            Ok(match reply {
                JoinReply::Admitted(_) => "admitted".to_string(),
                JoinReply::Refused(r) => format!("refused: {r}"),
            })
        };
        match exchange.await {
            Ok(o) => outcome(o),
            Err(e) => e,
        }
    }

    fn protocol(&self, conn: &quinn::Connection, peer: NodeId, e: FrameError) -> TransportError {
        conn.close(VarInt::from_u32(close::PROTOCOL), b"malformed frame");
        TransportError::Protocol { peer, source: e }
    }

    async fn read_hello(
        &self,
        conn: &quinn::Connection,
        peer: NodeId,
        recv: &mut quinn::RecvStream,
    ) -> Result<Hello, TransportError> {
        match frame::read::<Control>(recv, self.params.max_frame).await {
            Ok(Some(Control::Hello(h))) => Ok(h),
            Ok(None) => Err(self.protocol(conn, peer, FrameError::Truncated)),
            Err(FrameError::Read(quinn::ReadExactError::ReadError(
                quinn::ReadError::ConnectionLost(e),
            ))) => Err(refusal(peer, e)),
            Err(e) => Err(self.protocol(conn, peer, e)),
        }
    }

    fn admit(
        &self,
        conn: quinn::Connection,
        id: NodeId,
        hello: Hello,
        control: (quinn::SendStream, quinn::RecvStream),
        dialled: bool,
    ) -> Result<Peer, TransportError> {
        if let Err(source) = self
            .admission
            .check(id, &hello.realm, &hello.cert, unix_now())
        {
            let code = if matches!(source, CertError::Revoked(_)) {
                close::REVOKED
            } else {
                close::NOT_ADMITTED
            };
            conn.close(VarInt::from_u32(code), source.to_string().as_bytes());
            return Err(TransportError::NotAdmitted { peer: id, source });
        }
        let mut new_revocations = Vec::new();
        for rev in hello.revocations.into_iter().take(MAX_HELLO_REVOCATIONS) {
            match self.admission.revoke(rev.clone()) {
                Ok(true) => new_revocations.push(rev),
                Ok(false) => {}
                Err(e) => tracing::warn!(peer = %id, "ignoring invalid revocation: {e}"),
            }
        }
        Ok(Peer {
            id,
            cert: hello.cert,
            listen: hello.listen,
            new_revocations,
            conn,
            control,
            dialled,
        })
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.quinn
            .close(VarInt::from_u32(close::NORMAL), b"shutting down");
    }

    /// Waits until every connection is closed (for a clean exit).
    pub async fn wait_idle(&self) {
        self.quinn.wait_idle().await;
    }
}

/// Turns the peer closing the connection during the Hello exchange into a readable refusal.
fn refusal(peer: NodeId, e: quinn::ConnectionError) -> TransportError {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == VarInt::from_u32(close::NOT_ADMITTED)
                || c.error_code == VarInt::from_u32(close::REVOKED) =>
        {
            TransportError::Refused {
                peer,
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            }
        }
        e => TransportError::Connection(e),
    }
}
