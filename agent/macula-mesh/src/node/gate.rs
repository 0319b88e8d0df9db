//! The per-peer limits applied ([`crate::limits`]): one [`PeerGate`] per peer with open
//! connections, shared by them all. A connection's call and pub/sub streams are accepted only
//! when the peer's gate lets them through, and its frames are read at the peer's byte rate
//! (the gate is the connection budget's [`Pace`]); what waits stays with QUIC's flow control,
//! at the peer.

use macula_core::sync::Locked;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use macula_core::NodeId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Shared;
use crate::frame::Pace;
use crate::limits::{Allowance, PeerLimits};
use crate::stats::MeshStats;

/// One peer's limits in force.
#[derive(Debug)]
pub(super) struct PeerGate {
    allowance: Mutex<Allowance>,
    in_flight: Arc<Semaphore>,
    origin: Instant,
    stats: Arc<Mutex<MeshStats>>,
}

/// The gates of the peers with open connections, each with its count of them.
pub(super) type Gates = std::collections::HashMap<NodeId, (Arc<PeerGate>, u32)>;

impl PeerGate {
    fn new(limits: PeerLimits, stats: Arc<Mutex<MeshStats>>) -> Self {
        Self {
            allowance: Mutex::new(Allowance::new(limits, 0)),
            in_flight: Arc::new(Semaphore::new(limits.calls_in_flight as usize)),
            origin: Instant::now(),
            stats,
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn limited(&self, limit: &'static str) {
        *self.stats.locked().limited.entry(limit).or_default() += 1;
    }

    /// Waits until the peer may open another call: a free slot of its `calls_in_flight` (held
    /// until the call ends: the permit) and its call rate.
    pub(super) async fn call_slot(&self) -> OwnedSemaphorePermit {
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.limited("calls_in_flight");
                self.in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the gate's semaphore is never closed")
            }
        };
        self.wait("calls_per_sec", |a, now| a.call_wait_ms(now))
            .await;
        permit
    }

    /// The call let through by [`PeerGate::call_slot`] was accepted.
    pub(super) fn call_taken(&self) {
        let now = self.now_ms();
        self.allowance.locked().call_taken(now);
    }

    /// Waits until the peer may send another pub/sub message.
    pub(super) async fn message_slot(&self) {
        self.wait("messages_per_sec", |a, now| a.message_wait_ms(now))
            .await
    }

    pub(super) fn message_taken(&self) {
        let now = self.now_ms();
        self.allowance.locked().message_taken(now);
    }

    async fn wait(&self, limit: &'static str, mut ms: impl FnMut(&mut Allowance, u64) -> u64) {
        let mut counted = false;
        loop {
            let now = self.now_ms();
            let wait = ms(&mut self.allowance.locked(), now);
            if wait == 0 {
                return;
            }
            if !counted {
                self.limited(limit);
                counted = true;
            }
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

impl Pace for PeerGate {
    fn read(&self, n: usize) -> Duration {
        let now = self.now_ms();
        let wait = self.allowance.locked().bytes_read(n as u64, now);
        if wait > 0 {
            self.limited("bytes_per_sec");
        }
        Duration::from_millis(wait)
    }
}

/// Counts a new connection of `peer`; its gate, or `None` when the peer already holds as many
/// connections as its limit allows (the caller closes the new one).
pub(super) fn open(shared: &Shared, peer: NodeId) -> Option<Arc<PeerGate>> {
    let limits = shared.endpoint.params().limits;
    let mut gates = shared.gates.locked();
    let (gate, count) = gates
        .entry(peer)
        .or_insert_with(|| (Arc::new(PeerGate::new(limits, shared.stats.clone())), 0));
    if *count >= limits.connections {
        gate.limited("connections");
        return None;
    }
    *count += 1;
    Some(gate.clone())
}

/// One connection of `peer` ended; the gate goes with its last one.
pub(super) fn close(shared: &Shared, peer: &NodeId) {
    let mut gates = shared.gates.locked();
    if let Some((_, count)) = gates.get_mut(peer) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            gates.remove(peer);
        }
    }
}
