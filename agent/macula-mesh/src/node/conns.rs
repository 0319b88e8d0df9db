//! Connections: accepting and dialling (bootstrap contacts, the core's dial plan with its hub
//! relays), registering an admitted connection with the core, and one reader task per connection
//! that hands datagrams and pub/sub streams to the core and call streams to the RPC server.

use macula_core::sync::Locked;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use macula_core::{NodeId, wire};
use quinn::VarInt;

use super::gate::{self, PeerGate};
use super::rpc_server::serve_call;
use super::{Bootstrap, MAX_PUBSUB_FRAME, Shared};
use crate::core::{Connected, DialPlan, PeerState};
use crate::frame::{ConnBudget, FrameError};
use crate::proto::{Datagram, close};
use crate::pubsub::PubSubMsg;
use crate::realm::Role;
use crate::rpc::{ErrorCode, RpcError};
use crate::transport::{Peer, TransportError, unix_now};

/// Largest datagram accepted.
const MAX_DATAGRAM: usize = 1400;

/// Dials the bootstrap contacts while no peer is up (backing off from 0.5 s to 30 s) and joins
/// membership through each one reached.
pub(super) async fn bootstrap(shared: Arc<Shared>, contacts: Vec<Bootstrap>) {
    if contacts.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected = shared
            .peers
            .locked()
            .values()
            .any(|p| p.state != PeerState::Down);
        if !connected {
            for c in &contacts {
                match shared.endpoint.dial(c.addr, c.node).await {
                    Ok(peer) => {
                        let id = peer.id;
                        register(&shared, peer);
                        shared.with_core(|core, now| core.join(now, id));
                    }
                    Err(e) => tracing::info!(contact = %c, "bootstrap contact unreachable: {e}"),
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

pub(super) async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            match shared.endpoint.handshake(incoming).await {
                Ok(peer) => register(&shared, peer),
                Err(e) => tracing::info!("inbound connection refused: {e}"),
            }
        });
    }
}

/// Hands an admitted connection to the core (which picks the one used for the peer) and starts
/// its reader.
pub(super) fn register(shared: &Arc<Shared>, peer: Peer) {
    let Peer {
        id,
        cert,
        listen,
        new_revocations,
        conn,
        control,
        dialled,
    } = peer;
    let Some(gate) = gate::open(shared, id) else {
        tracing::warn!(peer = %id, "connection closed: the member holds as many connections as [mesh.limits] connections allows");
        conn.close(
            VarInt::from_u32(close::OVERLOADED),
            b"too many connections from this member",
        );
        return;
    };
    watch_expiry(shared, conn.clone(), cert.body.expires);
    shared
        .endpoint
        .relay()
        .member_up(id, conn.remote_address(), cert.body.role == Role::Hub);
    // A closed connection the reader has not reported yet is no rival for the new one.
    let current = shared.core().connection(&id);
    let stale = current.and_then(|c| {
        shared
            .conns
            .locked()
            .get(&c)
            .filter(|q| q.close_reason().is_some())
            .map(|q| (c, q.remote_address()))
    });
    shared.conns.locked().insert(conn.stable_id(), conn.clone());
    shared.with_core(|core, now| {
        for r in new_revocations {
            if let Err(e) = core.handle_revocation(now, r) {
                tracing::warn!("revocation not applied: {e}");
            }
        }
        if let Some((stale, remote)) = stale {
            core.handle_closed(now, id, stale, remote);
        }
        let hello = Connected {
            cert,
            listen,
            conn: conn.stable_id(),
            remote: conn.remote_address(),
            dialled,
        };
        if let Err(e) = core.handle_connected(now, hello) {
            tracing::info!("membership refused a peer: {e}");
        }
    });
    tokio::spawn(read_connection(shared.clone(), id, conn, control, gate));
}

/// Closes `conn` when the peer's certificate expires (unix seconds `expires`) and has membership
/// expel it at once; ends early when the connection closes first.
fn watch_expiry(shared: &Arc<Shared>, conn: quinn::Connection, expires: u64) {
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let left = Duration::from_secs(expires.saturating_sub(unix_now()));
        tokio::select! {
            () = tokio::time::sleep(left) => {
                conn.close(VarInt::from_u32(close::NOT_ADMITTED), b"certificate expired");
                if let Some(shared) = shared.upgrade() {
                    shared.with_core(|core, now| core.handle_cert_expired(now));
                }
            }
            _ = conn.closed() => {}
        }
    });
}

async fn read_connection(
    shared: Arc<Shared>,
    id: NodeId,
    conn: quinn::Connection,
    control: (quinn::SendStream, quinn::RecvStream),
    gate: Arc<PeerGate>,
) {
    // The control stream stays open; nothing may follow the Hello in this protocol version.
    let (_send, mut recv) = control;
    let max = shared.endpoint.params().max_frame;
    let budget = ConnBudget::paced(
        shared.endpoint.params().conn_buffer_budget,
        shared.buffered.clone(),
        Some(gate.clone()),
    );
    let calls = tokio::spawn(accept_calls(
        shared.clone(),
        id,
        conn.clone(),
        gate.clone(),
        budget.clone(),
    ));
    let messages = tokio::spawn(accept_messages(
        shared.clone(),
        id,
        conn.clone(),
        gate,
        budget,
    ));
    loop {
        tokio::select! {
            d = conn.read_datagram() => match d {
                Ok(bytes) => match wire::decode_with_limit::<Datagram>(&bytes, MAX_DATAGRAM) {
                    Ok(Datagram::Swim(data)) => {
                        shared.with_core(|core, now| {
                            if let Err(e) = core.handle_swim(now, id, &data) {
                                tracing::debug!(peer = %id, "membership packet: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(peer = %id, "malformed datagram, closing: {e}");
                        conn.close(VarInt::from_u32(close::PROTOCOL), b"malformed datagram");
                        break;
                    }
                },
                Err(_) => break,
            },
            f = crate::frame::read::<crate::proto::Control>(&mut recv, max) => {
                match f {
                    Ok(None) => {}
                    Ok(Some(_)) | Err(_) => {
                        tracing::warn!(peer = %id, "unexpected or malformed control frame, closing");
                        conn.close(VarInt::from_u32(close::PROTOCOL), b"unexpected control frame");
                    }
                }
                break;
            }
        }
    }
    calls.abort();
    messages.abort();
    let _ = conn.closed().await;
    gate::close(&shared, &id);
    shared.conns.locked().remove(&conn.stable_id());
    let remote = conn.remote_address();
    let other_live =
        shared.with_core(|core, now| core.handle_closed(now, id, conn.stable_id(), remote));
    if !other_live {
        shared.endpoint.relay().member_down(id, remote);
    }
}

/// Accepts the peer's call streams as its gate lets them through (a slot of its calls in
/// flight, its call rate); each call holds its slot until answered.
async fn accept_calls(
    shared: Arc<Shared>,
    id: NodeId,
    conn: quinn::Connection,
    gate: Arc<PeerGate>,
    budget: Arc<ConnBudget>,
) {
    loop {
        let slot = gate.call_slot().await;
        let Ok((send, recv)) = conn.accept_bi().await else {
            return;
        };
        gate.call_taken();
        let (shared, budget) = (shared.clone(), budget.clone());
        tokio::spawn(async move {
            serve_call(shared, id, send, recv, budget).await;
            drop(slot);
        });
    }
}

/// Accepts the peer's pub/sub streams at its message rate.
async fn accept_messages(
    shared: Arc<Shared>,
    id: NodeId,
    conn: quinn::Connection,
    gate: Arc<PeerGate>,
    budget: Arc<ConnBudget>,
) {
    loop {
        gate.message_slot().await;
        let Ok(recv) = conn.accept_uni().await else {
            return;
        };
        gate.message_taken();
        tokio::spawn(read_pubsub(shared.clone(), id, recv, budget.clone()));
    }
}

/// Reads the one pub/sub message of a unidirectional stream (within the request deadline and
/// the connection's buffer budget) and hands it to the core.
async fn read_pubsub(
    shared: Arc<Shared>,
    id: NodeId,
    mut recv: quinn::RecvStream,
    budget: Arc<ConnBudget>,
) {
    let deadline = shared.endpoint.params().request_deadline;
    let read = crate::frame::read_within::<PubSubMsg>(&mut recv, MAX_PUBSUB_FRAME, Some(&budget));
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(Some((msg, _held)))) => {
            shared.with_core(|core, now| core.handle_pubsub(now, id, msg));
        }
        Ok(Ok(None)) => {}
        Ok(Err(e @ FrameError::OverBudget { .. })) => {
            tracing::warn!(peer = %id, "pub/sub stream reset: {e}");
            let _ = recv.stop(VarInt::from_u32(close::OVERLOADED));
        }
        Ok(Err(e)) => {
            tracing::warn!(peer = %id, "malformed pub/sub frame: {e}");
            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL));
        }
        Err(_) => {
            tracing::warn!(peer = %id, "pub/sub stream stalled past {deadline:?}, reset");
            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL));
        }
    }
}

/// The connection the core uses for `peer`, if it is open.
pub(super) fn open_connection(shared: &Shared, peer: &NodeId) -> Option<quinn::Connection> {
    let current = shared.core().connection(peer)?;
    shared
        .conns
        .locked()
        .get(&current)
        .filter(|c| c.close_reason().is_none())
        .cloned()
}

/// The connection to `peer`: the open one, or a new one dialled by the core's plan.
pub(super) async fn connection(
    shared: &Arc<Shared>,
    peer: NodeId,
) -> Result<quinn::Connection, RpcError> {
    if let Some(c) = open_connection(shared, &peer) {
        return Ok(c);
    }
    let plan = shared.dial_plan(&peer);
    match dial_peer(shared, peer, plan).await {
        Ok(p) => {
            let conn = p.conn.clone();
            register(shared, p);
            Ok(conn)
        }
        Err(e) => Err(RpcError::new(ErrorCode::Unavailable, e.to_string())),
    }
}

/// Why a peer could not be dialled.
#[derive(Debug)]
pub(super) struct DialError {
    peer: NodeId,
    /// The last direct attempt's error; `None` when no address was known.
    direct: Option<TransportError>,
    /// Each hub tried, with its error.
    relays: Vec<(NodeId, TransportError)>,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.direct {
            Some(e) => write!(f, "{e}")?,
            None => write!(f, "no known address for {}", self.peer.short())?,
        }
        for (hub, e) in &self.relays {
            write!(f, "; through hub {}: {e}", hub.short())?;
        }
        Ok(())
    }
}

impl std::error::Error for DialError {}

/// Dials `peer` by `plan`: its addresses, then through each hub that may relay to it.
pub(super) async fn dial_peer(
    shared: &Arc<Shared>,
    peer: NodeId,
    plan: DialPlan,
) -> Result<Peer, DialError> {
    let full = shared.endpoint.params().handshake_timeout;
    let mut err = DialError {
        peer,
        direct: None,
        relays: Vec::new(),
    };
    for addr in plan.direct {
        match shared
            .endpoint
            .dial_within(addr, Some(peer), plan.direct_budget)
            .await
        {
            Ok(p) => return Ok(p),
            Err(e) => {
                tracing::debug!(peer = %peer, %addr, "direct dial failed: {e}");
                err.direct = Some(e);
            }
        }
    }
    for (hub, hub_addr) in plan.relays {
        let v = shared.endpoint.relay().virtual_addr(hub_addr, peer);
        match shared.endpoint.dial_within(v, Some(peer), full).await {
            Ok(p) => {
                tracing::info!(peer = %peer, hub = %hub, "reached through the hub relay");
                return Ok(p);
            }
            Err(e) => err.relays.push((hub, e)),
        }
    }
    Err(err)
}
