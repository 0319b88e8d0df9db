//! The driver: executes what the [`MeshCore`](crate::core::MeshCore) asks for and fires its
//! timers. It sleeps only until the core's next timeout or a wake-up from a task that fed the
//! core (a datagram, a stream, an API call); it never polls.

use macula_core::sync::Locked;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use macula_core::{NodeId, wire};
use quinn::VarInt;

use super::conns::{dial_peer, open_connection, register};
use super::rpc_client::call;
use super::time::persist_clock;
use super::{DHT_PROCEDURE, MAX_PUBSUB_FRAME, Shared};
use crate::core::{CoreOutput, DialPlan, PeerChanged, PeerInfo, PeerState};
use crate::dht::{Request as DhtRequest, RequestId, Response as DhtResponse};
use crate::proto::Datagram;
use crate::pubsub::PubSubMsg;
use crate::rpc::MAX_RPC_FRAME;

pub(super) async fn drive(shared: Arc<Shared>) {
    loop {
        let (outputs, next, left) = {
            let mut core = shared.core();
            core.handle_timeout(shared.now());
            let outputs: Vec<CoreOutput> = std::iter::from_fn(|| core.poll_output()).collect();
            (outputs, core.poll_timeout(), core.has_left())
        };
        for out in outputs {
            execute(&shared, out);
        }
        if left {
            // The leave announcement is on its way; `MeshNode::leave` gives it time.
            shared.stopped();
            return;
        }
        let timeout = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.origin + at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.wake.notified() => {}
            () = timeout => {}
        }
    }
}

fn execute(shared: &Arc<Shared>, out: CoreOutput) {
    match out {
        CoreOutput::Swim { to, data } => send_swim(shared, to, data),
        CoreOutput::PubSub { to, msg } => send_pubsub(shared, to, msg),
        CoreOutput::DhtRequest { to, id, req } => send_dht(shared, to, id, req),
        CoreOutput::Deliver(p) => shared.deliver(p),
        CoreOutput::Subscribed { token, acked } => {
            if let Some(done) = shared.subscribing.locked().remove(&token) {
                let _ = done.send(acked);
            }
        }
        CoreOutput::LookupDone { lookup, result } => {
            if let Some(done) = shared.lookups.locked().remove(&lookup) {
                let _ = done.send(result);
            }
        }
        // The table callers read and the changes they watch move together.
        CoreOutput::PeerChanged(peer) => {
            let mut peers = shared.peers.locked();
            peers.insert(peer.id, peer.clone());
            let _ = shared.changes.send(PeerChanged { peer, left: false });
        }
        CoreOutput::PeerForgotten(id) => {
            let gone = shared.peers.locked().remove(&id);
            if let Some(peer) = gone {
                send_left(shared, peer);
            }
        }
        CoreOutput::PeerLeft(id) => {
            let known = shared.peers.locked().get(&id).cloned();
            send_left(
                shared,
                known.unwrap_or(PeerInfo {
                    id,
                    generation: 0,
                    state: PeerState::Down,
                    meta: None,
                }),
            );
        }
        CoreOutput::Persist(state) => {
            if let Some(path) = &shared.clock_file
                && let Err(e) = persist_clock(path, &state)
            {
                tracing::error!(
                    "{e}; after a restart with the clock behind, peers may keep older metadata"
                );
            }
        }
        CoreOutput::Revoked(r) => {
            if let Err(e) = shared.endpoint.admission().revoke(r) {
                tracing::warn!("revocation rejected: {e}");
            }
        }
        CoreOutput::Close {
            conn, code, reason, ..
        } => {
            if let Some(c) = shared.conns.locked().get(&conn) {
                c.close(VarInt::from_u32(code), reason.as_bytes());
            }
        }
        CoreOutput::Member(ev) => tracing::trace!("membership: {ev:?}"),
        CoreOutput::DialDirect { peer, addrs } => dial_direct(shared, peer, addrs),
    }
}

/// Tells peer watchers that `peer` left the realm for good.
fn send_left(shared: &Shared, peer: PeerInfo) {
    let peer = PeerInfo {
        state: PeerState::Down,
        ..peer
    };
    let _ = shared.changes.send(PeerChanged { peer, left: true });
}

/// Sends a SWIM packet as a datagram; without a connection, dials the peer by the core's plan in
/// the background (one dial per peer at a time) and sends it once connected.
fn send_swim(shared: &Arc<Shared>, to: NodeId, data: Vec<u8>) {
    let datagram = Bytes::from(wire::encode(&Datagram::Swim(data)));
    if let Some(conn) = open_connection(shared, &to) {
        if let Err(e) = conn.send_datagram(datagram) {
            tracing::debug!(peer = %to, "datagram not sent: {e}");
        }
        return;
    }
    let plan = shared.dial_plan(&to);
    if plan.direct.is_empty() || !shared.dialing.locked().insert(to) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        match dial_peer(&shared, to, plan).await {
            Ok(peer) => {
                let conn = peer.conn.clone();
                register(&shared, peer);
                let _ = conn.send_datagram(datagram);
            }
            Err(e) => tracing::debug!(peer = %to, "dial failed: {e}"),
        }
        shared.dialing.locked().remove(&to);
    });
}

/// Dials `peer` (reached through a relay) at `addrs` only, in the background, unless a dial to
/// it is under way; the core keeps the direct connection and retires the relayed one.
fn dial_direct(shared: &Arc<Shared>, peer: NodeId, addrs: Vec<SocketAddr>) {
    if !shared.dialing.locked().insert(peer) {
        return;
    }
    let plan = DialPlan {
        direct: addrs,
        direct_budget: shared.endpoint.params().handshake_timeout,
        relays: Vec::new(),
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        match dial_peer(&shared, peer, plan).await {
            Ok(p) => register(&shared, p),
            Err(e) => tracing::debug!(peer = %peer, "no direct path yet: {e}"),
        }
        shared.dialing.locked().remove(&peer);
    });
}

/// Sends a pub/sub message on its own unidirectional stream.
fn send_pubsub(shared: &Arc<Shared>, to: NodeId, msg: PubSubMsg) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let Ok(conn) = super::conns::connection(&shared, to).await else {
            return;
        };
        if let Ok(mut s) = conn.open_uni().await {
            if crate::frame::write(&mut s, &msg, MAX_PUBSUB_FRAME)
                .await
                .is_ok()
            {
                let _ = s.finish();
            }
        }
    });
}

/// Sends one DHT request as an RPC call; its deadline is the DHT request timeout.
fn send_dht(shared: &Arc<Shared>, to: NodeId, id: RequestId, req: DhtRequest) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let timeout = crate::dht::DhtConfig::default().request_timeout;
        let res = call(&shared, to, DHT_PROCEDURE, wire::encode(&req), timeout).await;
        let resp = res
            .ok()
            .and_then(|b| wire::decode_with_limit::<DhtResponse>(&b, MAX_RPC_FRAME).ok());
        shared.with_core(|core, now| match resp {
            Some(resp) => core.handle_dht_response(now, to, id, resp),
            None => core.handle_dht_failed(now, id),
        });
    });
}
