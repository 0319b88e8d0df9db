//! The tokio shell around [`MeshCore`]: the QUIC [`Endpoint`], tasks, and the public API.
//!
//! * [`conns`]: accepting and dialling (bootstrap contacts, the core's dial plan with hub relays),
//!   registering admitted connections with the core, one reader task per connection.
//! * [`driver`]: one task executes the core's outputs and fires its timers; it waits on the
//!   core's next timeout and on wake-ups from the tasks that feed the core, never polls.
//! * [`rpc_client`] and [`rpc_server`]: one bidirectional stream per call.
//! * [`time`]: the persisted metadata clock and the realm's clock.
//! * This module: [`MeshNode`], the API; every rule (peer table, which of two duplicate
//!   connections is kept, relay choice, timers) is the core's.

use macula_core::sync::Locked;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use macula_core::{NodeId, NodeKey, wire};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::MetaClock;
use crate::core::{ConnId, CoreConfig, DialPlan, MeshCore, Now};
use crate::dht::{
    Key, LookupId, LookupResult, Record, RecordBody, RecordKind, Request as DhtRequest,
};
use crate::inbox::Inbox;
use crate::membership::{
    Capacity, FailureDomains, MemberId, MemberMeta, Membership, MembershipConfig, SignedMeta,
    UplinkAddr,
};
use crate::pubsub::{PubSubError, Publication};
use crate::realm::{Admission, CertError, MembershipCert, Revocation};
use crate::rpc::{ErrorCode, Handler, MAX_RPC_FRAME, Procedure, RpcError, StreamHandler};
use crate::stats::MeshStats;
use crate::transport::{Endpoint, TransportError, TransportParams, unix_now};

mod bootstrap;
mod conns;
mod driver;
mod gate;
mod rpc_client;
mod rpc_server;
mod time;

pub use self::bootstrap::{Bootstrap, BootstrapError, BootstrapParseError, Contacts};
pub use self::rpc_client::ReplyStream;
pub use self::time::{CLOCK_THRESHOLD_MS, ClockReport, TIME_PROCEDURE};
pub use crate::core::{PeerChanged, PeerInfo, PeerState};

use self::conns::{accept_loop, bootstrap, register};
use self::driver::drive;
use self::rpc_client::{call, open_call};
use self::time::{keep_time, load_clock, persist_clock, unix_ms};

/// How long the leave announcement is given on the wire before the endpoint closes.
const LEAVE_GRACE: Duration = Duration::from_millis(200);

/// Largest pub/sub frame (a publication of the largest payload plus headers).
const MAX_PUBSUB_FRAME: usize = crate::pubsub::MAX_PAYLOAD + 1024;

/// Everything a mesh node needs besides its key and admission.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// UDP address to bind (port 0 = ephemeral).
    pub listen: SocketAddr,
    /// Addresses to advertise (empty: the bound address).
    pub advertise: Vec<SocketAddr>,
    pub bootstrap: Vec<Bootstrap>,
    pub transport: TransportParams,
    pub membership: MembershipConfig,
    /// WireGuard overlay public key to advertise.
    pub overlay_key: Option<[u8; 32]>,
    /// Storage capacity announced at start ([`MeshNode::set_capacity`] changes it later).
    pub capacity: Capacity,
    /// Failure-domain labels announced in member metadata.
    pub domains: FailureDomains,
    /// Where the node keeps its generation and metadata-version ceiling ([`CLOCK_FILE`]) so
    /// both grow across restarts whatever the wall clock says; `None` persists nothing.
    pub state_dir: Option<std::path::PathBuf>,
    /// Step the system clock (`clock_settime`, needs root) to the realm's time when it is off
    /// by more than [`CLOCK_THRESHOLD_MS`]; otherwise only say so.
    pub set_clock: bool,
    /// NTP servers (`host` or `host:port`) asked for the time before the realm's clocks.
    pub ntp: Vec<String>,
}

/// File in [`NodeConfig::state_dir`] holding the [`ClockState`].
pub const CLOCK_FILE: &str = "mesh-clock";

enum DhtOp {
    Get(Key),
    Put(Record),
}

/// Publications on one topic, delivered once each, through a queue of its own bounded by bytes in
/// total and per publisher ([`crate::inbox`]).
pub struct Subscription {
    topic: String,
    inbox: Arc<Inbox>,
    /// Publications dropped so far (reported once each).
    dropped: u64,
    /// Peers that acknowledged the subscription.
    pub acked: usize,
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next publication on the topic; `None` when the node stopped. A subscriber that falls
    /// behind by more than the queue's bounds skips the oldest publications of the publishers
    /// holding the most ([`crate::inbox`]'s policy; logged, and counted by
    /// [`Subscription::dropped`]).
    pub async fn recv(&mut self) -> Option<Publication> {
        let (p, dropped) = self.inbox.recv().await?;
        if dropped > self.dropped {
            tracing::warn!(topic = %self.topic, "subscriber fell behind, {} publications dropped",
                dropped - self.dropped);
            self.dropped = dropped;
        }
        Some(p)
    }

    /// Publications dropped from this subscription's queue so far, as [`Subscription::recv`]
    /// has seen.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting in this subscription's queue (at most [`crate::inbox::INBOX_BYTES`]).
    pub fn queued_bytes(&self) -> usize {
        self.inbox.bytes()
    }
}

struct Shared {
    endpoint: Endpoint,
    /// Every rule of the node; fed by the tasks, drained by the driver.
    core: Mutex<MeshCore>,
    /// Monotonic time zero of the core ([`Now::mono`]).
    origin: Instant,
    /// Wakes the driver after the core was fed.
    wake: Notify,
    /// Open connections, by [`ConnId`] (the core says which one serves each peer).
    conns: Mutex<HashMap<ConnId, quinn::Connection>>,
    /// Peers being dialled for a SWIM packet.
    dialing: Mutex<HashSet<NodeId>>,
    /// Callers waiting for the core's answer: subscriptions (by token) and lookups.
    subscribing: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<usize>>>,
    lookups: Mutex<HashMap<LookupId, tokio::sync::oneshot::Sender<LookupResult>>>,
    /// The caller of [`MeshNode::leave`], told when the leave announcement went out.
    leaving: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    stopped: AtomicBool,
    procedures: RwLock<HashMap<String, Procedure>>,
    /// The peer table as last reported by the core (with [`Shared::changes`]).
    peers: Mutex<BTreeMap<NodeId, PeerInfo>>,
    changes: broadcast::Sender<PeerChanged>,
    /// Each subscription's queue, by topic; closed when the node stops.
    inboxes: Mutex<Vec<(String, Weak<Inbox>)>>,
    me: NodeId,
    /// Signs this node's DHT records and metadata.
    key: NodeKey,
    /// Where the core's [`crate::core::CoreOutput::Persist`] goes.
    clock_file: Option<std::path::PathBuf>,
    /// What the realm said about our clock.
    clock: Mutex<Option<ClockReport>>,
    /// Bytes of partly received frames held for all connections (their [`crate::frame::ConnBudget`]s).
    buffered: Arc<AtomicUsize>,
    /// RPC and pub/sub figures ([`MeshNode::stats`]).
    stats: Arc<Mutex<MeshStats>>,
    /// The limits in force for each peer with open connections.
    gates: Mutex<gate::Gates>,
}

/// One RPC call being counted in [`MeshStats`]: [`CallRecord::end`] records how it ended; a call
/// dropped before (the caller gave up, or the callee's stream was stopped) counts as
/// `cancelled`.
pub(crate) struct CallRecord {
    stats: Arc<Mutex<MeshStats>>,
    served: bool,
    procedure: String,
    started: Instant,
    ended: bool,
}

impl CallRecord {
    fn start(shared: &Shared, served: bool, procedure: &str) -> Self {
        Self {
            stats: shared.stats.clone(),
            served,
            procedure: procedure.to_owned(),
            started: Instant::now(),
            ended: false,
        }
    }

    /// Counts the call as ended now with `end` (once; later calls change nothing).
    fn end(&mut self, end: Result<(), ErrorCode>) {
        if !std::mem::replace(&mut self.ended, true) {
            self.stats
                .locked()
                .call(self.served, &self.procedure, self.started.elapsed(), end);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.end(Err(ErrorCode::Cancelled));
    }
}

impl Shared {
    fn now(&self) -> Now {
        Now {
            mono: self.origin.elapsed(),
            unix_ms: unix_ms(),
        }
    }

    /// The core, to read.
    fn core(&self) -> MutexGuard<'_, MeshCore> {
        self.core.locked()
    }

    /// Feeds the core, then wakes the driver to execute what it asks for.
    fn with_core<R>(&self, f: impl FnOnce(&mut MeshCore, Now) -> R) -> R {
        let r = {
            let mut core = self.core();
            f(&mut core, self.now())
        };
        self.wake.notify_one();
        r
    }

    fn dial_plan(&self, peer: &NodeId) -> DialPlan {
        let handshake = self.endpoint.params().handshake_timeout;
        self.core().dial_plan(peer, handshake)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The driver ended: callers waiting for it get their answer now (none).
    fn stopped(&self) {
        self.stopped.store(true, Ordering::Release);
        self.subscribing.locked().clear();
        self.lookups.locked().clear();
        if let Some(done) = self.leaving.locked().take() {
            let _ = done.send(());
        }
    }

    /// Runs a DHT lookup; `None` when the node stopped.
    async fn dht(&self, op: DhtOp) -> Option<LookupResult> {
        if self.is_stopped() {
            return None;
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        self.with_core(|core, now| {
            let id = match op {
                DhtOp::Get(key) => core.dht_get(now, key),
                DhtOp::Put(rec) => core.dht_put(now, rec),
            };
            // Registered under the core's lock: the driver cannot see the result before.
            self.lookups.locked().insert(id, done);
        });
        rx.await.ok()
    }

    /// Queues a publication for this node's subscribers of its topic.
    fn deliver(&self, p: Publication) {
        let (mut delivered, mut dropped) = (0, 0);
        {
            let mut inboxes = self.inboxes.locked();
            inboxes.retain(|(_, i)| i.strong_count() > 0);
            for (topic, inbox) in inboxes.iter() {
                if *topic == p.topic
                    && let Some(inbox) = inbox.upgrade()
                {
                    delivered += 1;
                    dropped += inbox.push(p.clone());
                }
            }
        }
        let mut stats = self.stats.locked();
        stats.delivered += delivered;
        stats.dropped += dropped;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for (_, inbox) in self.inboxes.locked().iter() {
            if let Some(inbox) = inbox.upgrade() {
                inbox.close();
            }
        }
    }
}

/// A running mesh node.
pub struct MeshNode {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl MeshNode {
    /// Binds the endpoint and starts the tasks; dials the bootstrap contacts in the background.
    /// Advertised addresses are announced under the uplink name `default`.
    pub fn start(
        key: &NodeKey,
        admission: Arc<Admission>,
        config: NodeConfig,
    ) -> Result<Self, TransportError> {
        Self::start_with_uplinks(key, admission, config, &[])
    }

    /// As [`MeshNode::start`], with the uplink name of each `config.advertise` entry in member
    /// metadata (`uplinks[i]` names `advertise[i]`; missing names are `default`).
    pub fn start_with_uplinks(
        key: &NodeKey,
        admission: Arc<Admission>,
        config: NodeConfig,
        uplinks: &[String],
    ) -> Result<Self, TransportError> {
        let endpoint = Endpoint::bind(
            key,
            admission.clone(),
            config.listen,
            config.advertise.clone(),
            config.transport.clone(),
        )?;
        let bound = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let advertised = if config.advertise.is_empty() {
            vec![bound]
        } else {
            config.advertise.clone()
        };
        let own_cert = admission.own_cert();
        let cert = own_cert.body.clone();
        let clock_file = config.state_dir.as_ref().map(|d| d.join(CLOCK_FILE));
        let now_ms = unix_ms();
        let mut clock = match &clock_file {
            Some(path) => {
                let (clock, state) = MetaClock::resume(load_clock(path)?, now_ms);
                persist_clock(path, &state)?;
                clock
            }
            None => MetaClock::volatile(now_ms),
        };
        let generation = clock.generation();
        let (version, _) = clock.next(now_ms, 0);
        let meta = SignedMeta::sign(
            key,
            own_cert,
            MemberMeta {
                node: key.node_id(),
                version,
                role: cert.role,
                name: cert.name.clone(),
                addrs: advertised
                    .iter()
                    .enumerate()
                    .map(|(i, a)| UplinkAddr {
                        uplink: uplinks.get(i).cloned().unwrap_or_else(|| "default".into()),
                        addr: *a,
                    })
                    .collect(),
                overlay_key: config.overlay_key,
                capacity: config.capacity,
                domains: config.domains.clone(),
                software: macula_core::VERSION.into(),
                relays: vec![],
            },
        );
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the OS random number generator failed");
        let mut membership = Membership::new(
            MemberId {
                node: key.node_id(),
                generation,
            },
            admission.realm(),
            Some(meta),
            config.membership.clone(),
            u64::from_le_bytes(seed),
            unix_now(),
        );
        membership.set_clock(clock);
        let origin = Instant::now();
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: unix_ms(),
        };
        let core = MeshCore::new(key, membership, CoreConfig::default(), now);
        let (changes, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            endpoint,
            core: Mutex::new(core),
            origin,
            wake: Notify::new(),
            conns: Mutex::default(),
            dialing: Mutex::default(),
            subscribing: Mutex::default(),
            lookups: Mutex::default(),
            leaving: Mutex::default(),
            stopped: AtomicBool::new(false),
            procedures: RwLock::default(),
            peers: Mutex::default(),
            changes,
            inboxes: Mutex::default(),
            me: key.node_id(),
            key: NodeKey::from_seed(*key.signing_key().as_bytes()),
            clock_file,
            clock: Mutex::default(),
            buffered: Arc::default(),
            stats: Arc::default(),
            gates: Mutex::default(),
        });
        // The core answers remote DHT requests; the handler holds the node weakly (it lives in
        // the node's procedure table).
        let node = Arc::downgrade(&shared);
        let dht_handler: Handler = Arc::new(move |from, body| {
            let node = node.clone();
            Box::pin(async move {
                let req: DhtRequest = wire::decode_with_limit(&body, MAX_RPC_FRAME)
                    .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                let shared = node
                    .upgrade()
                    .filter(|s| !s.is_stopped())
                    .ok_or_else(|| RpcError::new(ErrorCode::Unavailable, "node stopping"))?;
                let resp = shared.with_core(|core, now| core.handle_dht_request(now, from, req));
                Ok(wire::encode(&resp))
            })
        });
        shared
            .procedures
            .locked()
            .insert(DHT_PROCEDURE.to_string(), Procedure::Plain(dht_handler));
        let time_handler: Handler =
            Arc::new(|_, _| Box::pin(async { Ok(wire::encode(&unix_ms())) }));
        shared
            .procedures
            .locked()
            .insert(TIME_PROCEDURE.to_string(), Procedure::Plain(time_handler));
        let tasks = vec![
            tokio::spawn(keep_time(shared.clone(), config.set_clock, config.ntp)),
            tokio::spawn(accept_loop(shared.clone())),
            tokio::spawn(drive(shared.clone())),
            tokio::spawn(bootstrap(shared.clone(), config.bootstrap)),
        ];
        Ok(Self { shared, tasks })
    }

    /// The realm this node belongs to.
    pub fn realm(&self) -> crate::realm::RealmId {
        self.shared.endpoint.admission().realm()
    }

    pub fn id(&self) -> NodeId {
        self.shared.me
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// This node's certificate as it is now (renewals included).
    pub fn own_cert(&self) -> MembershipCert {
        self.shared.endpoint.admission().own_cert()
    }

    /// Whether this node has a connection to `node` now.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared.core().connection(node).is_some()
    }

    /// All known peers (alive, suspect, and down ones not yet forgotten), by node ID.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peers.locked().values().cloned().collect()
    }

    /// What the realm's clocks say about ours, once a peer answered.
    pub fn clock(&self) -> Option<ClockReport> {
        *self.shared.clock.locked()
    }

    /// Bytes this node holds in frames its peers' streams are still sending (requests and pub/sub
    /// messages), across all connections: what peers can make it buffer, bounded per connection
    /// by [`TransportParams::conn_buffer_budget`].
    pub fn stream_buffer_bytes(&self) -> usize {
        self.shared.buffered.load(Ordering::Relaxed)
    }

    /// The RPC calls this node made and served and the publications it published, delivered to
    /// its subscribers and dropped from their queues, since it started.
    pub fn stats(&self) -> MeshStats {
        self.shared.stats.locked().clone()
    }

    /// Peer changes from now on.
    pub fn watch_peers(&self) -> broadcast::Receiver<PeerChanged> {
        self.shared.changes.subscribe()
    }

    /// Announces new storage capacity: this node's member metadata is re-signed under a higher
    /// version and spread to the realm, where [`MeshNode::peers`] shows it and
    /// [`MeshNode::watch_peers`] reports the change. Nothing is sent when it equals the capacity
    /// announced last. Every call spreads a rumor through the realm: callers rate-limit.
    pub fn set_capacity(&self, capacity: Capacity) {
        let key = &self.shared.key;
        let version = self
            .shared
            .with_core(|core, now| core.update_meta(now, key, |m| m.capacity = capacity));
        if let Some(version) = version {
            tracing::debug!(version, "own metadata updated");
        }
    }

    /// Installs a renewed certificate of this node (`crate::renewal`): used in Hellos and
    /// beacons from now on, and spread in its member metadata, so members extend its admission.
    /// Refused when it is not valid now for this realm and node.
    pub fn renew_cert(&self, cert: MembershipCert) -> Result<(), CertError> {
        self.shared
            .endpoint
            .admission()
            .set_own_cert(cert.clone(), unix_now())?;
        let key = &self.shared.key;
        self.shared
            .with_core(|core, now| core.set_cert(now, key, cert));
        Ok(())
    }

    /// Subscribes to `topic`. Resolves once every peer alive now acknowledged the subscription
    /// (or after 3 s); [`Subscription::acked`] says how many did.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, PubSubError> {
        if topic.is_empty() || topic.len() > crate::pubsub::MAX_TOPIC {
            return Err(PubSubError::BadTopic);
        }
        if self.shared.is_stopped() {
            return Err(PubSubError::Stopped);
        }
        let inbox = Arc::new(Inbox::default());
        self.shared
            .inboxes
            .locked()
            .push((topic.to_string(), Arc::downgrade(&inbox)));
        let (done, acked) = tokio::sync::oneshot::channel();
        self.shared.with_core(|core, now| {
            let token = core.subscribe(now, topic)?;
            // Registered under the core's lock: the driver cannot see the answer before.
            self.shared.subscribing.locked().insert(token, done);
            Ok::<_, PubSubError>(())
        })?;
        let acked = tokio::time::timeout(Duration::from_secs(3), acked)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        Ok(Subscription {
            topic: topic.to_string(),
            inbox,
            dropped: 0,
            acked,
        })
    }

    pub fn unsubscribe(&self, topic: &str) {
        self.shared
            .with_core(|core, now| core.unsubscribe(now, topic));
    }

    /// Publishes `payload` on `topic` to every subscriber in the realm; returns its sequence
    /// number.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<u64, PubSubError> {
        if self.shared.is_stopped() {
            return Err(PubSubError::Stopped);
        }
        let seq = self
            .shared
            .with_core(|core, now| core.publish(now, topic, payload))?;
        self.shared.stats.locked().published += 1;
        Ok(seq)
    }

    /// Stores a signed record at the nodes closest to its key; the result says how many stored it.
    pub async fn dht_put(&self, rec: Record) -> Option<LookupResult> {
        self.dht(DhtOp::Put(rec)).await
    }

    /// Looks up the records under `key`.
    pub async fn dht_get(&self, key: Key) -> Option<LookupResult> {
        self.dht(DhtOp::Get(key)).await
    }

    async fn dht(&self, op: DhtOp) -> Option<LookupResult> {
        self.shared.dht(op).await
    }

    /// Serves procedure `name` (replacing an earlier handler of that name).
    /// Answers join-code requests (`crate::join`) with `handler`; for a holder of the realm key.
    pub fn serve_joins(&self, handler: crate::join::JoinHandler) {
        self.shared.endpoint.serve_joins(handler);
    }

    pub fn serve(&self, name: &str, handler: Handler) {
        self.shared
            .procedures
            .locked()
            .insert(name.to_string(), Procedure::Plain(handler));
    }

    /// Serves stream procedure `name` (replacing an earlier handler of that name): the handler
    /// sends the reply in chunks through its [`ChunkSender`]; callers read them with
    /// [`MeshNode::call_stream`].
    pub fn serve_stream(&self, name: &str, handler: StreamHandler) {
        self.shared
            .procedures
            .locked()
            .insert(name.to_string(), Procedure::Stream(handler));
    }

    /// Advertises in the DHT that this node serves procedure `name` (a provider record under
    /// [`procedure_key`], valid 1 h, re-published every 30 min while the node runs). Returns how
    /// many nodes stored the first advertisement.
    pub async fn advertise(&self, name: &str) -> u32 {
        let stored = advertise_once(&self.shared, name).await;
        let shared = Arc::downgrade(&self.shared);
        let name = name.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ADVERTISE_REFRESH).await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                advertise_once(&shared, &name).await;
            }
        });
        stored
    }

    /// Nodes that advertise procedure `name` in the DHT.
    pub async fn providers(&self, name: &str) -> Vec<NodeId> {
        let Some(res) = self.dht(DhtOp::Get(procedure_key(name))).await else {
            return Vec::new();
        };
        res.records
            .iter()
            .filter(|r| r.body.kind == RecordKind::Provider)
            .map(|r| r.body.author)
            .collect()
    }

    /// Calls `procedure` on `peer` with `body`, waiting at most `deadline`. Dropping the returned
    /// future cancels the call at the callee.
    pub async fn call(
        &self,
        peer: NodeId,
        procedure: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        call(&self.shared, peer, procedure, body, deadline).await
    }

    /// Calls stream procedure `procedure` on `peer` with `body`; the reply's chunks come from
    /// [`ReplyStream::next`]. `deadline` bounds the whole call, reply included. Dropping the
    /// [`ReplyStream`] before its end cancels the call at the callee.
    pub async fn call_stream(
        &self,
        peer: NodeId,
        procedure: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<ReplyStream, RpcError> {
        let started = Instant::now();
        let mut record = CallRecord::start(&self.shared, false, procedure);
        let (send, recv) = open_call(&self.shared, peer, procedure, body, deadline)
            .await
            .inspect_err(|e| record.end(Err(e.code)))?;
        Ok(ReplyStream {
            record,
            send,
            recv,
            what: format!("`{procedure}` on {}", peer.short()),
            deadline: started + deadline,
            budget: deadline,
            first: true,
            end: None,
        })
    }

    /// Dials a contact found at run time (LAN beacon) unless a connection to that node exists,
    /// and joins membership through it. The TLS handshake checks the node's key and realm
    /// certificate as for any peer.
    pub async fn add_contact(&self, contact: Bootstrap) -> Result<(), TransportError> {
        if let Some(n) = contact.node
            && self.is_connected(&n)
        {
            return Ok(());
        }
        let peer = self
            .shared
            .endpoint
            .dial(contact.addr, contact.node)
            .await?;
        let id = peer.id;
        register(&self.shared, peer);
        self.shared.with_core(|core, now| core.join(now, id));
        Ok(())
    }

    /// Spreads a revocation signed by the realm key and cuts the node off.
    pub fn revoke(&self, rev: Revocation) -> Result<(), crate::realm::CertError> {
        rev.verify(&self.shared.endpoint.admission().realm())?;
        self.shared.with_core(|core, now| {
            if let Err(e) = core.handle_revocation(now, rev) {
                tracing::warn!("revocation not applied: {e}");
            }
        });
        Ok(())
    }

    /// Leaves the realm gracefully, then closes every connection.
    pub async fn shutdown(mut self) {
        self.leave().await;
        self.stop().await;
    }

    /// Announces that this node leaves the realm (members mark it down at once instead of
    /// suspecting it) and closes every connection. The node is inert afterwards.
    pub async fn leave(&self) {
        if !self.shared.is_stopped() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            *self.shared.leaving.locked() = Some(tx);
            self.shared.with_core(|core, now| core.leave(now));
            if tokio::time::timeout(Duration::from_secs(1), rx)
                .await
                .is_ok()
            {
                tokio::time::sleep(LEAVE_GRACE).await;
            }
        }
        self.shared.endpoint.close();
    }

    /// Stops abruptly, as a crash would (no leave message).
    pub async fn abort(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.shared.stopped();
        self.shared.endpoint.close();
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The DHT key under which providers of RPC procedure `name` are advertised.
pub fn procedure_key(name: &str) -> Key {
    blake3::derive_key("macula/v1/rpc-procedure", name.as_bytes())
}

/// Lifetime of a procedure advertisement and how often it is renewed.
const ADVERTISE_TTL: u64 = 3600;
const ADVERTISE_REFRESH: Duration = Duration::from_secs(1800);

async fn advertise_once(shared: &Arc<Shared>, name: &str) -> u32 {
    let now = unix_now();
    let rec = Record::sign(
        &shared.key,
        RecordBody {
            kind: RecordKind::Provider,
            key: procedure_key(name),
            author: shared.me,
            seq: now,
            expires: now + ADVERTISE_TTL,
            value: Vec::new(),
        },
    );
    shared.dht(DhtOp::Put(rec)).await.map_or(0, |r| r.stored)
}
/// The RPC procedure carrying DHT requests (body `wire(dht::Request)`, reply
/// `wire(dht::Response)`).
pub const DHT_PROCEDURE: &str = "mesh.dht";
