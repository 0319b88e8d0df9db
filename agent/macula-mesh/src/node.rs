//! The tokio shell: wires the [`Membership`] state machine to the QUIC [`Endpoint`].
//!
//! * One task accepts connections and runs the admission handshake; every admitted connection
//!   gets a reader task (datagrams → membership).
//! * One driver task owns the membership state machine: it receives packets and commands over a
//!   channel, keeps the timer queue, and executes outputs (datagrams over existing connections,
//!   dialling known addresses when there is none).
//! * Connections are reused: one per peer. When both sides dial at once, both keep the connection
//!   dialled by the smaller node ID and close the other with [`close::DUPLICATE`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use foca::State;
use macula_core::{NodeId, NodeKey, wire};
use quinn::VarInt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::{ClockState, Decision, MetaClock, RealmClock, TimeSample};
use crate::dht::{
    Dht, DhtConfig, DhtOutput, Key, LookupId, LookupResult, Record, RecordBody, RecordKind,
    Request as DhtRequest, RequestId, Response as DhtResponse,
};
use crate::frame::{ConnBudget, FrameError};
use crate::inbox::Inbox;
use crate::membership::{
    Capacity, Event, FailureDomains, MemberId, MemberMeta, MemberTimer, Membership,
    MembershipConfig, Output, SignedMeta, UplinkAddr,
};
use crate::proto::{Datagram, close};
use crate::pubsub::{PubSub, PubSubError, PubSubMsg, PubSubOutput, PubSubTimer, Publication};
use crate::realm::{Admission, Revocation, Role};
use crate::relay::Relay;
use crate::rpc::{
    CANCEL_CODE, ChunkSender, ErrorCode, Handler, MAX_RPC_FRAME, MAX_STREAM_FRAME, Procedure,
    RpcError, RpcReply, RpcRequest, StreamHandler, StreamItem,
};
use crate::transport::{Endpoint, Peer, TransportError, TransportParams, unix_now};

/// A bootstrap contact: `host:port`, or `<node-id>@host:port` to also pin the node's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub node: Option<NodeId>,
    pub addr: SocketAddr,
}

impl FromStr for Bootstrap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (node, addr) = match s.split_once('@') {
            Some((n, a)) => (
                Some(n.parse::<NodeId>().map_err(|e| format!("`{s}`: {e}"))?),
                a,
            ),
            None => (None, s),
        };
        let addr = addr.parse().map_err(|e| {
            format!("`{s}`: {e}; write `host:port` or `<node-id>@host:port` with an IP address")
        })?;
        Ok(Self { node, addr })
    }
}

/// Why a bootstrap entry from the config gave no contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapError {
    /// Not `host:port` / `<node-id>@host:port` (a config error).
    Syntax(String),
    /// A well-formed host name that does not resolve now (no network yet, unknown name).
    Resolve(String),
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) | Self::Resolve(e) => f.write_str(e),
        }
    }
}

impl Bootstrap {
    /// Parses a config entry whose host is an IP address or a name. Names are resolved now by
    /// the C library (`getaddrinfo`: `/etc/hosts`, then DNS, per `/etc/nsswitch.conf`); every
    /// address the name has becomes a contact, with the same pinned node ID if one is given.
    pub fn resolve(s: &str) -> Result<Vec<Self>, BootstrapError> {
        use std::net::ToSocketAddrs;
        if let Ok(b) = s.parse::<Self>() {
            return Ok(vec![b]);
        }
        let (node, hostport) = match s.split_once('@') {
            Some((n, a)) => (
                Some(
                    n.parse::<NodeId>()
                        .map_err(|e| BootstrapError::Syntax(format!("`{s}`: {e}")))?,
                ),
                a,
            ),
            None => (None, s),
        };
        let syntax = || {
            BootstrapError::Syntax(format!(
                "`{s}`: write `host:port` or `<node-id>@host:port` (host: IP address or name)"
            ))
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(syntax)?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name || port.parse::<u16>().is_err() {
            return Err(syntax());
        }
        let addrs: Vec<SocketAddr> = hostport
            .to_socket_addrs()
            .map_err(|e| BootstrapError::Resolve(format!("`{s}`: cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(BootstrapError::Resolve(format!(
                "`{s}`: {host} has no address"
            )));
        }
        Ok(addrs.into_iter().map(|addr| Self { node, addr }).collect())
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{n}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

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
}

/// File in [`NodeConfig::state_dir`] holding the [`ClockState`].
pub const CLOCK_FILE: &str = "mesh-clock";

/// A peer as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: NodeId,
    pub generation: u32,
    pub state: PeerState,
    pub meta: Option<MemberMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Alive,
    Suspect,
    Down,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
        }
    }
}

impl From<State> for PeerState {
    fn from(s: State) -> Self {
        match s {
            State::Alive => PeerState::Alive,
            State::Suspect => PeerState::Suspect,
            State::Down => PeerState::Down,
        }
    }
}

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

/// A change of a peer's state or metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChanged {
    pub peer: PeerInfo,
}

enum Cmd {
    Packet {
        from: NodeId,
        data: Vec<u8>,
    },
    PubSub {
        from: NodeId,
        msg: PubSubMsg,
    },
    Subscribe {
        topic: String,
        done: tokio::sync::oneshot::Sender<usize>,
    },
    Unsubscribe(String),
    DhtRequest {
        from: NodeId,
        req: DhtRequest,
        done: tokio::sync::oneshot::Sender<DhtResponse>,
    },
    DhtResponse {
        from: NodeId,
        id: RequestId,
        resp: DhtResponse,
    },
    DhtFailed(RequestId),
    DhtLookup {
        op: DhtOp,
        done: tokio::sync::oneshot::Sender<LookupResult>,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        done: tokio::sync::oneshot::Sender<Result<u64, PubSubError>>,
    },
    /// A peer whose Hello was admitted: membership admits it too (before its packets).
    Admit(Box<crate::realm::MembershipCert>),
    /// A connected peer's certificate ran out: membership expels the expired now.
    CertExpired,
    Join(NodeId),
    Revoke(Revocation),
    /// Change own metadata (re-signed, re-disseminated).
    UpdateMeta(Box<dyn FnOnce(&mut MemberMeta) + Send>),
    Leave(tokio::sync::oneshot::Sender<()>),
}

struct Shared {
    endpoint: Endpoint,
    /// The connection used to reach each peer.
    conns: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Addresses each peer accepts connections on (Hello + metadata).
    addrs: Mutex<HashMap<NodeId, Vec<SocketAddr>>>,
    dialing: Mutex<HashSet<NodeId>>,
    peers: Mutex<BTreeMap<NodeId, PeerInfo>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    procedures: RwLock<HashMap<String, Procedure>>,
    changes: broadcast::Sender<PeerChanged>,
    /// Each subscription's queue, by topic; closed when the node stops.
    inboxes: Mutex<Vec<(String, Weak<Inbox>)>>,
    me: NodeId,
    /// Signs this node's DHT records.
    key: NodeKey,
    /// Where membership's [`Output::Persist`] goes.
    clock_file: Option<std::path::PathBuf>,
    /// Role in each admitted peer's certificate (time sources: hubs first).
    roles: Mutex<HashMap<NodeId, Role>>,
    /// What the realm said about our clock.
    clock: Mutex<Option<ClockReport>>,
    /// Bytes of partly received frames held for all connections (their [`ConnBudget`]s).
    buffered: Arc<AtomicUsize>,
}

impl Shared {
    /// Queues a publication for this node's subscribers of its topic.
    fn deliver(&self, p: Publication) {
        let mut inboxes = self.inboxes.lock().expect("inbox lock");
        inboxes.retain(|(_, i)| i.strong_count() > 0);
        for (topic, inbox) in inboxes.iter() {
            if *topic == p.topic
                && let Some(inbox) = inbox.upgrade()
            {
                inbox.push(p.clone());
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for (_, inbox) in self.inboxes.lock().expect("inbox lock").iter() {
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
        let own_cert = admission.own_cert().clone();
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
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            endpoint,
            conns: Mutex::default(),
            addrs: Mutex::default(),
            dialing: Mutex::default(),
            peers: Mutex::default(),
            cmd: cmd_tx,
            procedures: RwLock::default(),
            changes,
            inboxes: Mutex::default(),
            me: key.node_id(),
            key: NodeKey::from_seed(*key.signing_key().as_bytes()),
            clock_file,
            roles: Mutex::default(),
            clock: Mutex::default(),
            buffered: Arc::default(),
        });
        // The DHT answers remote requests through the driver, which owns its state.
        let cmd = shared.cmd.clone();
        let dht_handler: Handler = Arc::new(move |from, body| {
            let cmd = cmd.clone();
            Box::pin(async move {
                let req: DhtRequest = wire::decode_with_limit(&body, MAX_RPC_FRAME)
                    .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                let (done, rx) = tokio::sync::oneshot::channel();
                cmd.send(Cmd::DhtRequest { from, req, done })
                    .map_err(|_| RpcError::new(ErrorCode::Unavailable, "node stopping"))?;
                let resp = rx
                    .await
                    .map_err(|_| RpcError::new(ErrorCode::Unavailable, "node stopping"))?;
                Ok(wire::encode(&resp))
            })
        });
        shared
            .procedures
            .write()
            .expect("procedure lock")
            .insert(DHT_PROCEDURE.to_string(), Procedure::Plain(dht_handler));
        let time_handler: Handler =
            Arc::new(|_, _| Box::pin(async { Ok(wire::encode(&unix_ms())) }));
        shared
            .procedures
            .write()
            .expect("procedure lock")
            .insert(TIME_PROCEDURE.to_string(), Procedure::Plain(time_handler));
        let tasks = vec![
            tokio::spawn(keep_time(shared.clone(), config.set_clock)),
            tokio::spawn(accept_loop(shared.clone())),
            tokio::spawn(drive(shared.clone(), membership, cmd_rx)),
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

    /// Whether this node has a connection to `node` now.
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.shared
            .conns
            .lock()
            .expect("conn lock")
            .contains_key(node)
    }

    /// All known peers (alive, suspect, and down ones not yet forgotten), by node ID.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared
            .peers
            .lock()
            .expect("peer lock")
            .values()
            .cloned()
            .collect()
    }

    /// What the realm's clocks say about ours, once a peer answered.
    pub fn clock(&self) -> Option<ClockReport> {
        *self.shared.clock.lock().expect("clock lock")
    }

    /// Bytes this node holds in frames its peers' streams are still sending (requests and pub/sub
    /// messages), across all connections: what peers can make it buffer, bounded per connection
    /// by [`TransportParams::conn_buffer_budget`].
    pub fn stream_buffer_bytes(&self) -> usize {
        self.shared.buffered.load(Ordering::Relaxed)
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
        let _ = self
            .shared
            .cmd
            .send(Cmd::UpdateMeta(Box::new(move |m| m.capacity = capacity)));
    }

    /// Subscribes to `topic`. Resolves once every peer alive now acknowledged the subscription
    /// (or after 3 s); [`Subscription::acked`] says how many did.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, PubSubError> {
        if topic.is_empty() || topic.len() > crate::pubsub::MAX_TOPIC {
            return Err(PubSubError::BadTopic);
        }
        let inbox = Arc::new(Inbox::default());
        self.shared
            .inboxes
            .lock()
            .expect("inbox lock")
            .push((topic.to_string(), Arc::downgrade(&inbox)));
        let (done, acked) = tokio::sync::oneshot::channel();
        let _ = self.shared.cmd.send(Cmd::Subscribe {
            topic: topic.to_string(),
            done,
        });
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
        let _ = self.shared.cmd.send(Cmd::Unsubscribe(topic.to_string()));
    }

    /// Publishes `payload` on `topic` to every subscriber in the realm; returns its sequence
    /// number.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<u64, PubSubError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let _ = self.shared.cmd.send(Cmd::Publish {
            topic: topic.to_string(),
            payload,
            done,
        });
        rx.await.unwrap_or(Err(PubSubError::BadTopic))
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
        let (done, rx) = tokio::sync::oneshot::channel();
        self.shared.cmd.send(Cmd::DhtLookup { op, done }).ok()?;
        rx.await.ok()
    }

    /// Serves procedure `name` (replacing an earlier handler of that name).
    pub fn serve(&self, name: &str, handler: Handler) {
        self.shared
            .procedures
            .write()
            .expect("procedure lock")
            .insert(name.to_string(), Procedure::Plain(handler));
    }

    /// Serves stream procedure `name` (replacing an earlier handler of that name): the handler
    /// sends the reply in chunks through its [`ChunkSender`]; callers read them with
    /// [`MeshNode::call_stream`].
    pub fn serve_stream(&self, name: &str, handler: StreamHandler) {
        self.shared
            .procedures
            .write()
            .expect("procedure lock")
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
        let (send, recv) = open_call(&self.shared, peer, procedure, body, deadline).await?;
        Ok(ReplyStream {
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
            && self
                .shared
                .conns
                .lock()
                .expect("conn lock")
                .contains_key(&n)
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
        let _ = self.shared.cmd.send(Cmd::Join(id));
        Ok(())
    }

    /// Spreads a revocation signed by the realm key and cuts the node off.
    pub fn revoke(&self, rev: Revocation) -> Result<(), crate::realm::CertError> {
        rev.verify(&self.shared.endpoint.admission().realm())?;
        let _ = self.shared.cmd.send(Cmd::Revoke(rev));
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.shared.cmd.send(Cmd::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
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

async fn bootstrap(shared: Arc<Shared>, contacts: Vec<Bootstrap>) {
    if contacts.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected = shared
            .peers
            .lock()
            .expect("peer lock")
            .values()
            .any(|p| p.state != PeerState::Down);
        if !connected {
            for c in &contacts {
                match shared.endpoint.dial(c.addr, c.node).await {
                    Ok(peer) => {
                        let id = peer.id;
                        register(&shared, peer);
                        let _ = shared.cmd.send(Cmd::Join(id));
                    }
                    Err(e) => tracing::info!(contact = %c, "bootstrap contact unreachable: {e}"),
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn accept_loop(shared: Arc<Shared>) {
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

/// Makes an admitted connection the one used for its peer and starts its reader.
fn register(shared: &Arc<Shared>, peer: Peer) {
    let Peer {
        id,
        cert,
        listen,
        new_revocations,
        conn,
        control,
        dialled,
    } = peer;
    for r in new_revocations {
        let _ = shared.cmd.send(Cmd::Revoke(r));
    }
    watch_expiry(shared, conn.clone(), cert.body.expires);
    let hub = cert.body.role == Role::Hub;
    shared
        .roles
        .lock()
        .expect("role lock")
        .insert(id, cert.body.role);
    let _ = shared.cmd.send(Cmd::Admit(Box::new(cert)));
    shared.addrs.lock().expect("addr lock").insert(id, listen);
    shared
        .endpoint
        .relay()
        .member_up(id, conn.remote_address(), hub);
    // Deterministic choice between simultaneous connections: the one dialled by the smaller ID
    // is used for new traffic on both sides. The other one is closed after a grace period, so
    // streams already under way on it finish.
    let ours_wins = |dialled: bool| (dialled && shared.me < id) || (!dialled && id < shared.me);
    let loser = {
        let mut conns = shared.conns.lock().expect("conn lock");
        match conns.get(&id) {
            Some(existing) if existing.close_reason().is_none() && !ours_wins(dialled) => {
                Some(conn.clone())
            }
            _ => conns
                .insert(id, conn.clone())
                .filter(|old| old.stable_id() != conn.stable_id()),
        }
    };
    if let Some(loser) = loser {
        tokio::spawn(async move {
            tokio::time::sleep(DUPLICATE_GRACE).await;
            loser.close(VarInt::from_u32(close::DUPLICATE), b"duplicate connection");
        });
    }
    tokio::spawn(read_connection(shared.clone(), id, conn, control));
}

/// Closes `conn` when the peer's certificate expires (unix seconds `expires`) and has membership
/// expel it at once; ends early when the connection closes first.
fn watch_expiry(shared: &Arc<Shared>, conn: quinn::Connection, expires: u64) {
    let cmd = shared.cmd.clone();
    tokio::spawn(async move {
        let left = Duration::from_secs(expires.saturating_sub(unix_now()));
        tokio::select! {
            () = tokio::time::sleep(left) => {
                conn.close(VarInt::from_u32(close::NOT_ADMITTED), b"certificate expired");
                let _ = cmd.send(Cmd::CertExpired);
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
) {
    // The control stream stays open; nothing may follow the Hello in this protocol version.
    let (_send, mut recv) = control;
    let max = shared.endpoint.params().max_frame;
    let budget = ConnBudget::new(
        shared.endpoint.params().conn_buffer_budget,
        shared.buffered.clone(),
    );
    loop {
        tokio::select! {
            s = conn.accept_bi() => match s {
                Ok((send, recv)) => {
                    tokio::spawn(serve_call(shared.clone(), id, send, recv, budget.clone()));
                }
                Err(_) => break,
            },
            u = conn.accept_uni() => match u {
                Ok(mut recv) => {
                    let shared = shared.clone();
                    let budget = budget.clone();
                    tokio::spawn(async move {
                        let deadline = shared.endpoint.params().request_deadline;
                        let read = crate::frame::read_within::<PubSubMsg>(
                            &mut recv,
                            MAX_PUBSUB_FRAME,
                            Some(&budget),
                        );
                        match tokio::time::timeout(deadline, read).await {
                            Ok(Ok(Some((msg, _held)))) => {
                                let _ = shared.cmd.send(Cmd::PubSub { from: id, msg });
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
                    });
                }
                Err(_) => break,
            },
            d = conn.read_datagram() => match d {
                Ok(bytes) => match wire::decode_with_limit::<Datagram>(&bytes, MAX_DATAGRAM) {
                    Ok(Datagram::Swim(data)) => {
                        let _ = shared.cmd.send(Cmd::Packet { from: id, data });
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
    let _ = conn.closed().await;
    let mut conns = shared.conns.lock().expect("conn lock");
    if conns
        .get(&id)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        conns.remove(&id);
    }
    let other_live = conns
        .get(&id)
        .is_some_and(|c| c.close_reason().is_none() && c.remote_address() == conn.remote_address());
    if !other_live {
        shared
            .endpoint
            .relay()
            .member_down(id, conn.remote_address());
    }
}

/// Reads the [`ClockState`] a previous run persisted; `None` when there is none yet.
fn load_clock(path: &std::path::Path) -> Result<Option<ClockState>, TransportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            ClockState::from_text(&text)
                .map(Some)
                .map_err(|reason| TransportError::ClockState {
                    path: path.to_owned(),
                    reason: format!("{reason}; remove the file to start counting anew"),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TransportError::ClockState {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Replaces the state file: temp file → fsync → rename → fsync the directory, so a crash
/// leaves the old or the new state, never a torn one.
fn persist_clock(path: &std::path::Path, state: &ClockState) -> Result<(), TransportError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(state.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    res.map_err(|e| TransportError::ClockState {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The RPC procedure that tells the time: empty body, reply `wire(u64)` = the answering node's
/// wall clock in Unix milliseconds.
pub const TIME_PROCEDURE: &str = "mesh.time";

/// How far this node's clock may be from the realm's before it is called wrong.
pub const CLOCK_THRESHOLD_MS: u64 = 10_000;

/// How often peers' clocks are read, the first time, and from how many peers.
const TIME_PERIOD: Duration = Duration::from_secs(60);
const TIME_RETRY: Duration = Duration::from_secs(2);
const TIME_PEERS: usize = 8;

/// What the realm's clocks say about this node's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReport {
    /// The realm's clock minus ours now, in milliseconds (positive: ours is behind).
    pub offset_ms: i64,
    /// How many peers' clocks that is the median of, and whether they are hubs.
    pub peers: usize,
    pub hubs: bool,
    /// By how much this node stepped its clock to the realm's (0 = never).
    pub stepped_ms: i64,
}

/// Reads the clocks of up to [`TIME_PEERS`] admitted peers (hubs first) every [`TIME_PERIOD`],
/// keeps [`ClockReport`], says when the clock is off, and steps it when allowed. Its timers are
/// monotonic, so a clock step does not disturb it (nor any other mesh timer).
async fn keep_time(shared: Arc<Shared>, set_clock: bool) {
    let mut stepped_ms = 0i64;
    let mut said_off: Option<i64> = None;
    tokio::time::sleep(TIME_RETRY).await;
    loop {
        let alive: Vec<NodeId> = shared
            .peers
            .lock()
            .expect("peer lock")
            .values()
            .filter(|p| p.state == PeerState::Alive)
            .map(|p| p.id)
            .collect();
        let mut sources: Vec<(NodeId, bool)> = {
            let roles = shared.roles.lock().expect("role lock");
            alive
                .iter()
                .filter_map(|id| roles.get(id).map(|r| (*id, *r == Role::Hub)))
                .collect()
        };
        sources.sort_by_key(|(id, hub)| (!hub, *id));
        sources.truncate(TIME_PEERS);
        // Fresh readings each round: peers that left or stopped answering no longer count.
        let mut rc = RealmClock::new(CLOCK_THRESHOLD_MS);
        for (peer, hub) in sources {
            let sent = unix_ms();
            let t0 = Instant::now();
            let Ok(body) = call(&shared, peer, TIME_PROCEDURE, Vec::new(), TIME_RETRY).await else {
                continue;
            };
            let rtt_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Ok(peer_ms) = wire::decode::<u64>(&body) {
                let offset_ms = crate::clock::offset_from_exchange(sent, rtt_ms, peer_ms);
                rc.sample(
                    peer,
                    TimeSample {
                        offset_ms,
                        rtt_ms,
                        hub,
                    },
                );
            }
        }
        let decision = rc.decide(set_clock);
        let estimate = match decision {
            Decision::Unknown => None,
            Decision::Agrees(e) => {
                said_off = None;
                Some(e)
            }
            Decision::Off(e) => {
                // Say it once, and again when the offset moved by more than the threshold.
                if said_off.is_none_or(|o| o.abs_diff(e.offset_ms) > CLOCK_THRESHOLD_MS) {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        peers = e.peers,
                        hubs = e.hubs,
                        "the clock is {} the realm's by {} (median of {} peer clocks); \
                         it looks wrong",
                        if e.offset_ms > 0 { "behind" } else { "ahead of" },
                        human_ms(e.offset_ms.unsigned_abs()),
                        e.peers
                    );
                    said_off = Some(e.offset_ms);
                }
                Some(e)
            }
            Decision::Step(e) => match step_clock(e.offset_ms) {
                Ok(()) => {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        peers = e.peers,
                        hubs = e.hubs,
                        "the clock was {} the realm's by {}; set it to the realm's time",
                        if e.offset_ms > 0 { "behind" } else { "ahead of" },
                        human_ms(e.offset_ms.unsigned_abs()),
                    );
                    rc.stepped(e.offset_ms);
                    stepped_ms = stepped_ms.saturating_add(e.offset_ms);
                    rc.estimate()
                }
                Err(err) => {
                    tracing::warn!(
                        target: "macula::mesh",
                        offset_ms = e.offset_ms,
                        "the clock is off the realm's by {}, and cannot be set: {err}",
                        human_ms(e.offset_ms.unsigned_abs()),
                    );
                    Some(e)
                }
            },
        };
        if let Some(e) = estimate {
            *shared.clock.lock().expect("clock lock") = Some(ClockReport {
                offset_ms: e.offset_ms,
                peers: e.peers,
                hubs: e.hubs,
                stepped_ms,
            });
        }
        tokio::time::sleep(if estimate.is_some() {
            TIME_PERIOD
        } else {
            TIME_RETRY
        })
        .await;
    }
}

/// Steps the system clock by `by_ms` (`clock_settime(CLOCK_REALTIME)`; needs CAP_SYS_TIME).
fn step_clock(by_ms: i64) -> std::io::Result<()> {
    let now = i128::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(i128::MAX);
    let target = (now + i128::from(by_ms) * 1_000_000).max(0);
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(target / 1_000_000_000)
            .map_err(|_| std::io::Error::other("time out of range"))?,
        tv_nsec: libc::c_long::try_from(target % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: `ts` is a valid timespec that lives across the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `3h 0m`, `12m 5s`, `1.2 s`.
fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{} s", s, ms % 1000 / 100),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86400, s / 3600 % 24),
    }
}

/// Unix time in milliseconds: the version of own member metadata.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often the peer table is refreshed from the membership state (to show suspicions).
const PEER_SYNC: Duration = Duration::from_millis(250);

/// Budget of a direct dial when a hub relay is the fallback (relayed RPCs within a 5 s deadline).
const DIRECT_BUDGET_WITH_RELAY: Duration = Duration::from_millis(1500);

/// How long a superseded duplicate connection stays open for the streams under way on it.
const DUPLICATE_GRACE: Duration = Duration::from_secs(5);

/// Largest datagram accepted.
const MAX_DATAGRAM: usize = 1400;

/// Opens a call stream to `peer` and sends the request; connecting, opening and sending count
/// against `deadline`.
async fn open_call(
    shared: &Arc<Shared>,
    peer: NodeId,
    procedure: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<(quinn::SendStream, quinn::RecvStream), RpcError> {
    let req = RpcRequest {
        procedure: procedure.to_string(),
        deadline_ms: u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
        body,
    };
    let at = Instant::now() + deadline;
    let late = || {
        RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!("no answer from {} within {deadline:?}", peer.short()),
        )
    };
    let conn = tokio::time::timeout_at(at, connection(shared, peer))
        .await
        .map_err(|_| RpcError::new(ErrorCode::DeadlineExceeded, "connecting took too long"))??;
    let (mut send, mut recv) = tokio::time::timeout_at(at, conn.open_bi())
        .await
        .map_err(|_| late())?
        .map_err(|e| unavailable(&e))?;
    let sent = tokio::time::timeout_at(at, async {
        crate::frame::write(&mut send, &req, MAX_RPC_FRAME)
            .await
            .map_err(|e| match e {
                FrameError::TooLarge { .. } => {
                    RpcError::new(ErrorCode::BadRequest, format!("request not sent: {e}"))
                }
                FrameError::Write(quinn::WriteError::Stopped(code))
                    if code.into_inner() == u64::from(close::OVERLOADED) =>
                {
                    overloaded()
                }
                e => unavailable(&e),
            })?;
        send.finish().map_err(|e| unavailable(&e))
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok((send, recv)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            cancel(&mut send, &mut recv, CANCEL_CODE);
            Err(late())
        }
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> RpcError {
    RpcError::new(ErrorCode::Unavailable, e.to_string())
}

/// The callee reset the call because our connection's buffer budget there was spent.
fn overloaded() -> RpcError {
    RpcError::new(
        ErrorCode::Overloaded,
        "the callee holds too many of our partly received requests; retry once others finish",
    )
}

/// Abandons a call stream in both directions.
fn cancel(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32) {
    let _ = send.reset(VarInt::from_u32(code));
    let _ = recv.stop(VarInt::from_u32(code));
}

/// The reply frame read from a call stream, or what went wrong reading it.
fn reply_frame(read: Result<Option<RpcReply>, FrameError>) -> Result<RpcReply, RpcError> {
    match read {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(RpcError::new(
            ErrorCode::Unavailable,
            "the callee closed the call before the end of its answer",
        )),
        Err(FrameError::Read(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))))
            if code.into_inner() == u64::from(close::OVERLOADED) =>
        {
            Err(overloaded())
        }
        Err(FrameError::Read(e)) => Err(unavailable(&e)),
        Err(e) => Err(RpcError::new(ErrorCode::Protocol, e.to_string())),
    }
}

/// Calls `procedure` on `peer` (see [`MeshNode::call`]).
async fn call(
    shared: &Arc<Shared>,
    peer: NodeId,
    procedure: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>, RpcError> {
    let at = Instant::now() + deadline;
    let (mut send, mut recv) = open_call(shared, peer, procedure, body, deadline).await?;
    let read = crate::frame::read::<RpcReply>(&mut recv, MAX_RPC_FRAME);
    let Ok(read) = tokio::time::timeout_at(at, read).await else {
        cancel(&mut send, &mut recv, CANCEL_CODE);
        return Err(RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!("no answer from {} within {deadline:?}", peer.short()),
        ));
    };
    let reply = reply_frame(read).and_then(|r| {
        let streamed = matches!(r, RpcReply::Chunk(_) | RpcReply::End);
        crate::rpc::plain_reply(r).map_err(|e| {
            if streamed {
                let at = format!("`{procedure}` on {}", peer.short());
                RpcError::new(e.code, format!("{at}: {}", e.message))
            } else {
                e
            }
        })
    });
    if reply.is_err() {
        // Stops a stream reply (or whatever else the callee is still sending).
        cancel(&mut send, &mut recv, CANCEL_CODE);
    }
    reply
}

/// The reply of a stream call ([`MeshNode::call_stream`]): its chunks in order, then the end.
///
/// Dropping it before the end cancels the call at the callee (the QUIC stream is stopped with
/// [`CANCEL_CODE`] and the callee drops the handler). [`ReplyStream::next`] is not cancel-safe:
/// to give up on a reply, drop the whole `ReplyStream`.
pub struct ReplyStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// "`procedure` on peer", for error messages.
    what: String,
    deadline: Instant,
    budget: Duration,
    /// No frame read yet (the first may be a plain reply, read with the plain limit).
    first: bool,
    /// How the call ended, once it did.
    end: Option<Result<(), RpcError>>,
}

impl ReplyStream {
    /// The next chunk of the reply; `Ok(None)` once the callee ended it. An error ends the call:
    /// the callee's own error as it sent it, otherwise the deadline (`DeadlineExceeded`), a
    /// broken stream or connection (`Unavailable`), a malformed or oversized frame (`Protocol`),
    /// or a plain reply from a plain procedure (`BadRequest`). After the end or an error, `next`
    /// returns the same again.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, RpcError> {
        if let Some(end) = &self.end {
            return end.clone().map(|()| None);
        }
        let limit = if self.first {
            MAX_RPC_FRAME
        } else {
            MAX_STREAM_FRAME
        };
        self.first = false;
        let read = crate::frame::read::<RpcReply>(&mut self.recv, limit);
        let item = match tokio::time::timeout_at(self.deadline, read).await {
            Err(_) => Err(self.late()),
            Ok(read) => match reply_frame(read) {
                // The callee's own error, passed on unchanged.
                Ok(RpcReply::Err { code, message }) => {
                    self.end = Some(Err(RpcError { code, message }));
                    return self.end.clone().expect("just set").map(|()| None);
                }
                Ok(reply) => crate::rpc::stream_item(reply).map_err(|e| self.local(e)),
                Err(e) => Err(self.local(e)),
            },
        };
        let err = match item {
            Ok(StreamItem::Chunk(c)) => return Ok(Some(c)),
            Ok(StreamItem::End) => {
                // The callee finishes the stream right after the end; nothing may follow it.
                let rest = crate::frame::read::<RpcReply>(&mut self.recv, MAX_STREAM_FRAME);
                match tokio::time::timeout_at(self.deadline, rest).await {
                    Ok(Ok(None)) => {
                        self.end = Some(Ok(()));
                        return Ok(None);
                    }
                    Ok(Ok(Some(_))) => self.local(RpcError::new(
                        ErrorCode::Protocol,
                        "a frame followed the end of the reply",
                    )),
                    Ok(Err(FrameError::Read(e))) => self.local(unavailable(&e)),
                    Ok(Err(e)) => self.local(RpcError::new(ErrorCode::Protocol, e.to_string())),
                    Err(_) => self.late(),
                }
            }
            Err(e) => e,
        };
        let code = if err.code == ErrorCode::Protocol {
            close::PROTOCOL
        } else {
            CANCEL_CODE
        };
        cancel(&mut self.send, &mut self.recv, code);
        self.end = Some(Err(err.clone()));
        Err(err)
    }

    fn local(&self, e: RpcError) -> RpcError {
        RpcError::new(e.code, format!("{}: {}", self.what, e.message))
    }

    fn late(&self) -> RpcError {
        RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!(
                "{}: the reply did not end within {:?}",
                self.what, self.budget
            ),
        )
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        if self.end.is_none() {
            cancel(&mut self.send, &mut self.recv, CANCEL_CODE);
        }
    }
}

/// Answers one call stream.
async fn serve_call(
    shared: Arc<Shared>,
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    budget: Arc<ConnBudget>,
) {
    let deadline = shared.endpoint.params().request_deadline;
    let read = crate::frame::read_within::<RpcRequest>(&mut recv, MAX_RPC_FRAME, Some(&budget));
    // The request's charge stays until the call is answered: the handler holds its body.
    let (req, _held) = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(Some(r))) => r,
        Ok(Err(e @ FrameError::OverBudget { .. })) => {
            tracing::debug!(%peer, "call stream reset: {e}");
            let _ = recv.stop(VarInt::from_u32(close::OVERLOADED));
            let _ = send.reset(VarInt::from_u32(close::OVERLOADED));
            return;
        }
        Ok(Ok(None) | Err(_)) | Err(_) => {
            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL));
            let _ = send.reset(VarInt::from_u32(close::PROTOCOL));
            return;
        }
    };
    let found = crate::rpc::admit(&req).and_then(|deadline| {
        let procedure = shared
            .procedures
            .read()
            .expect("procedure lock")
            .get(&req.procedure)
            .cloned();
        procedure.map(|p| (deadline, p)).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NoSuchProcedure,
                format!(
                    "{} serves no procedure `{}`",
                    shared.me.short(),
                    req.procedure
                ),
            )
        })
    });
    let reply: Result<Vec<u8>, RpcError> = match found {
        Err(e) => Err(e),
        Ok((deadline, Procedure::Plain(h))) => {
            tokio::select! {
                r = tokio::time::timeout(deadline, h(peer, req.body)) => r.unwrap_or_else(|_| {
                    Err(RpcError::new(ErrorCode::DeadlineExceeded, "the handler ran past the deadline"))
                }),
                // The caller stopped the stream: cancel by dropping the handler.
                _ = send.stopped() => return,
            }
        }
        Ok((deadline, Procedure::Stream(h))) => {
            let (sender, chunks) = ChunkSender::channel();
            serve_stream(send, deadline, h(peer, req.body, sender), chunks).await;
            return;
        }
    };
    if crate::frame::write(&mut send, &RpcReply::from(reply), MAX_RPC_FRAME)
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

/// Runs a stream handler: writes its chunks in order, then `End` or its error. The handler is
/// dropped when the caller stops the stream or the deadline passes (the caller then gets
/// `DeadlineExceeded`).
async fn serve_stream(
    mut send: quinn::SendStream,
    deadline: Duration,
    handler: crate::rpc::StreamFuture,
    chunks: mpsc::Receiver<Vec<u8>>,
) {
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let result = tokio::select! {
        r = tokio::time::timeout(deadline, forward_chunks(&mut send, handler, chunks)) => match r {
            Ok(Some(r)) => r,
            // The stream broke while writing (the caller stopped it, or the connection is gone).
            Ok(None) => return,
            Err(_) => Err(RpcError::new(ErrorCode::DeadlineExceeded, "the handler ran past the deadline")),
        },
        // The caller stopped the stream: cancel by dropping the handler.
        _ = &mut stopped => return,
    };
    let last = match result {
        Ok(()) => RpcReply::End,
        Err(e) => crate::rpc::stream_error(e),
    };
    if crate::frame::write(&mut send, &last, MAX_STREAM_FRAME)
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = stopped.await;
    }
}

/// Writes the handler's chunks as they come until it returns; `None` when a write failed.
async fn forward_chunks(
    send: &mut quinn::SendStream,
    mut handler: crate::rpc::StreamFuture,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> Option<Result<(), RpcError>> {
    let result = loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(c) => crate::frame::write(send, &RpcReply::Chunk(c), MAX_STREAM_FRAME).await.ok()?,
                // The handler let go of its sender but runs on.
                None => break (&mut handler).await,
            },
            r = &mut handler => break r,
        }
    };
    // Chunks queued before the handler returned go out before the end; later sends fail.
    chunks.close();
    while let Some(c) = chunks.recv().await {
        crate::frame::write(send, &RpcReply::Chunk(c), MAX_STREAM_FRAME)
            .await
            .ok()?;
    }
    Some(result)
}

/// The connection to `peer`: the existing one, or a new one dialled at its known addresses.
async fn connection(shared: &Arc<Shared>, peer: NodeId) -> Result<quinn::Connection, RpcError> {
    let existing = shared.conns.lock().expect("conn lock").get(&peer).cloned();
    if let Some(c) = existing.filter(|c| c.close_reason().is_none()) {
        return Ok(c);
    }
    let addrs = shared
        .addrs
        .lock()
        .expect("addr lock")
        .get(&peer)
        .cloned()
        .unwrap_or_default();
    match dial_peer(shared, peer, addrs).await {
        Ok(p) => {
            let conn = p.conn.clone();
            register(shared, p);
            Ok(conn)
        }
        Err(last) => Err(RpcError::new(ErrorCode::Unavailable, last)),
    }
}

/// Hubs that may relay to `peer`: those its metadata names, else every hub we are connected to
/// (protocol.md §12), as (hub, connection remote address).
fn relay_hubs(shared: &Arc<Shared>, peer: NodeId) -> Vec<(NodeId, SocketAddr)> {
    let named: Vec<NodeId> = {
        let peers = shared.peers.lock().expect("peer lock");
        let meta_relays = peers
            .get(&peer)
            .and_then(|p| p.meta.as_ref())
            .map(|m| m.relays.clone())
            .unwrap_or_default();
        if meta_relays.is_empty() {
            peers
                .values()
                .filter(|p| p.meta.as_ref().is_some_and(|m| m.role == Role::Hub))
                .map(|p| p.id)
                .collect()
        } else {
            meta_relays
        }
    };
    let conns = shared.conns.lock().expect("conn lock");
    named
        .into_iter()
        .filter(|h| *h != peer && *h != shared.me)
        .filter_map(|h| conns.get(&h).map(|c| (h, c.remote_address())))
        .filter(|(_, a)| !Relay::is_virtual(*a))
        .collect()
}

/// Dials `peer` at its known addresses; when that fails, through each hub that may relay to it.
/// With a relay available, a direct attempt gets at most [`DIRECT_BUDGET_WITH_RELAY`].
async fn dial_peer(
    shared: &Arc<Shared>,
    peer: NodeId,
    addrs: Vec<SocketAddr>,
) -> Result<Peer, String> {
    let hubs = relay_hubs(shared, peer);
    let full = shared.endpoint.params().handshake_timeout;
    let direct = if hubs.is_empty() {
        full
    } else {
        full.min(DIRECT_BUDGET_WITH_RELAY)
    };
    let mut last = format!("no known address for {}", peer.short());
    for addr in addrs {
        match shared.endpoint.dial_within(addr, Some(peer), direct).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                tracing::debug!(peer = %peer, %addr, "direct dial failed: {e}");
                last = e.to_string();
            }
        }
    }
    for (hub, hub_addr) in hubs {
        let v = shared.endpoint.relay().virtual_addr(hub_addr, peer);
        match shared.endpoint.dial_within(v, Some(peer), full).await {
            Ok(p) => {
                tracing::info!(peer = %peer, hub = %hub, "reached through the hub relay");
                return Ok(p);
            }
            Err(e) => last = format!("{last}; through hub {}: {e}", hub.short()),
        }
    }
    Err(last)
}

fn send(shared: &Arc<Shared>, to: NodeId, data: Vec<u8>) {
    let datagram = Bytes::from(wire::encode(&Datagram::Swim(data)));
    let existing = shared.conns.lock().expect("conn lock").get(&to).cloned();
    if let Some(conn) = existing.filter(|c| c.close_reason().is_none()) {
        if let Err(e) = conn.send_datagram(datagram) {
            tracing::debug!(peer = %to, "datagram not sent: {e}");
        }
        return;
    }
    let addrs = shared
        .addrs
        .lock()
        .expect("addr lock")
        .get(&to)
        .cloned()
        .unwrap_or_default();
    if addrs.is_empty() || !shared.dialing.lock().expect("dial lock").insert(to) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        match dial_peer(&shared, to, addrs).await {
            Ok(peer) => {
                let conn = peer.conn.clone();
                register(&shared, peer);
                let _ = conn.send_datagram(datagram);
            }
            Err(e) => tracing::debug!(peer = %to, "dial failed: {e}"),
        }
        shared.dialing.lock().expect("dial lock").remove(&to);
    });
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
    let (done, rx) = tokio::sync::oneshot::channel();
    if shared
        .cmd
        .send(Cmd::DhtLookup {
            op: DhtOp::Put(rec),
            done,
        })
        .is_err()
    {
        return 0;
    }
    rx.await.map(|r| r.stored).unwrap_or(0)
}

/// The RPC procedure carrying DHT requests (body `wire(dht::Request)`, reply
/// `wire(dht::Response)`).
pub const DHT_PROCEDURE: &str = "mesh.dht";

/// Sends one DHT request as an RPC call; its deadline is the DHT request timeout.
fn send_dht(shared: &Arc<Shared>, to: NodeId, id: RequestId, req: DhtRequest, timeout: Duration) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let res = call(&shared, to, DHT_PROCEDURE, wire::encode(&req), timeout).await;
        let resp = res
            .ok()
            .and_then(|b| wire::decode_with_limit::<DhtResponse>(&b, MAX_RPC_FRAME).ok());
        let _ = shared.cmd.send(match resp {
            Some(resp) => Cmd::DhtResponse { from: to, id, resp },
            None => Cmd::DhtFailed(id),
        });
    });
}

/// A timer of either state machine.
enum DriverTimer {
    Member(MemberTimer),
    PubSub(PubSubTimer),
}

/// A pending `subscribe` call: peers whose acknowledgement is awaited.
struct PendingSub {
    waiting: HashSet<NodeId>,
    acked: usize,
    done: tokio::sync::oneshot::Sender<usize>,
}

async fn drive(shared: Arc<Shared>, mut m: Membership, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut ps = PubSub::new(NodeKey::from_seed(*shared.key.signing_key().as_bytes()));
    let dht_config = DhtConfig::default();
    let dht_timeout = dht_config.request_timeout;
    let mut dht = Dht::new(shared.me, dht_config);
    let mut lookups: HashMap<LookupId, tokio::sync::oneshot::Sender<LookupResult>> = HashMap::new();
    let mut timers: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut pending: HashMap<u64, DriverTimer> = HashMap::new();
    let mut subs: HashMap<String, Vec<PendingSub>> = HashMap::new();
    let mut seq = 0u64;
    let mut leaving: Option<tokio::sync::oneshot::Sender<()>> = None;
    let mut dirty = false;
    let sync = tokio::time::sleep(PEER_SYNC);
    tokio::pin!(sync);
    let mut expire = tokio::time::interval(crate::dht::EXPIRE_PERIOD);
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = |timers: &mut BinaryHeap<Reverse<(Instant, u64)>>,
                        pending: &mut HashMap<u64, DriverTimer>,
                        after: Duration,
                        t: DriverTimer| {
        seq += 1;
        timers.push(Reverse((Instant::now() + after, seq)));
        pending.insert(seq, t);
    };
    loop {
        // Membership outputs can change the peer set, which pub/sub must hear about first.
        let outputs: Vec<Output> = m.drain().collect();
        for out in outputs {
            match out {
                Output::Send { to, data } => send(&shared, to, data),
                Output::Schedule { after, timer } => {
                    schedule(&mut timers, &mut pending, after, DriverTimer::Member(timer));
                }
                Output::Persist(state) => {
                    if let Some(path) = &shared.clock_file
                        && let Err(e) = persist_clock(path, &state)
                    {
                        tracing::error!(
                            "{e}; after a restart with the clock behind, peers may keep older metadata"
                        );
                    }
                }
                Output::Event(ev) => {
                    match &ev {
                        Event::Up(id) => {
                            ps.peer_up(id.node);
                            // The DHT only routes through members it knows how to reach.
                            if shared
                                .addrs
                                .lock()
                                .expect("addr lock")
                                .contains_key(&id.node)
                            {
                                dht.table.seen(id.node);
                            }
                        }
                        Event::Meta(sm)
                            if sm.meta.node != shared.me && !sm.meta.addrs.is_empty() =>
                        {
                            dht.table.seen(sm.meta.node);
                        }
                        Event::Renamed { new, .. } => ps.peer_up(new.node),
                        Event::Down(id) => ps.peer_down(&id.node),
                        _ => {}
                    }
                    apply_event(&shared, ev);
                    dirty = true;
                }
            }
        }
        let outputs: Vec<DhtOutput> = dht.drain().collect();
        for out in outputs {
            match out {
                DhtOutput::Request { to, id, req } => send_dht(&shared, to, id, req, dht_timeout),
                // The RPC deadline of the request is the timeout; failures come back as
                // `Cmd::DhtFailed`.
                DhtOutput::Timeout { .. } => {}
                DhtOutput::Done { lookup, result } => {
                    if let Some(done) = lookups.remove(&lookup) {
                        let _ = done.send(result);
                    }
                }
            }
        }
        let outputs: Vec<PubSubOutput> = ps.drain().collect();
        for out in outputs {
            match out {
                PubSubOutput::Send { to, msg } => send_pubsub(&shared, to, msg),
                PubSubOutput::Schedule { after, timer } => {
                    schedule(&mut timers, &mut pending, after, DriverTimer::PubSub(timer));
                }
                PubSubOutput::Deliver { msg, .. } => shared.deliver(msg),
                PubSubOutput::Subscribed { topic, peer } => {
                    if let Some(list) = subs.get_mut(&topic) {
                        for p in list.iter_mut() {
                            if p.waiting.remove(&peer) {
                                p.acked += 1;
                            }
                        }
                    }
                }
            }
        }
        for list in subs.values_mut() {
            let (done, open): (Vec<PendingSub>, Vec<PendingSub>) =
                list.drain(..).partition(|p| p.waiting.is_empty());
            *list = open;
            for p in done {
                let _ = p.done.send(p.acked);
            }
        }
        subs.retain(|_, l| !l.is_empty());
        if dirty || sync.is_elapsed() {
            sync_peers(&shared, &m);
            dirty = false;
            sync.as_mut().reset(Instant::now() + PEER_SYNC);
        }
        if let Some(done) = leaving.take() {
            // Give the leave announcement a moment on the wire.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = done.send(());
            return;
        }
        let next = timers.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Packet { from, data }) => {
                    if let Err(e) = m.handle_packet(from, &data, unix_now()) {
                        tracing::debug!(peer = %from, "membership packet: {e}");
                    }
                }
                Some(Cmd::PubSub { from, msg }) => ps.handle(from, msg),
                Some(Cmd::Subscribe { topic, done }) => {
                    if ps.subscribe(&topic).is_ok() {
                        let waiting: HashSet<NodeId> = m
                            .members()
                            .filter(|(_, s)| *s != State::Down)
                            .map(|(id, _)| id.node)
                            .collect();
                        subs.entry(topic).or_default().push(PendingSub { waiting, acked: 0, done });
                    }
                }
                Some(Cmd::Unsubscribe(topic)) => ps.unsubscribe(&topic),
                Some(Cmd::Publish { topic, payload, done }) => {
                    let _ = done.send(ps.publish(&topic, payload));
                }
                Some(Cmd::DhtRequest { from, req, done }) => {
                    let _ = done.send(dht.handle_request(from, req, unix_now()));
                }
                Some(Cmd::DhtResponse { from, id, resp }) => {
                    dht.handle_response(from, id, resp, unix_now());
                }
                Some(Cmd::DhtFailed(id)) => dht.handle_timeout(id),
                Some(Cmd::DhtLookup { op, done }) => {
                    let id = match op {
                        DhtOp::Get(key) => dht.get(key),
                        DhtOp::Put(rec) => dht.put(rec, unix_now()),
                    };
                    lookups.insert(id, done);
                }
                Some(Cmd::CertExpired) => m.expel_expired(unix_now()),
                Some(Cmd::Admit(cert)) => {
                    if let Err(e) = m.admit(&cert, unix_now()) {
                        tracing::info!("membership refused a peer: {e}");
                    }
                }
                Some(Cmd::Join(peer)) => m.join(peer),
                Some(Cmd::UpdateMeta(change)) => {
                    if let Some(version) = m.update_meta(&shared.key, unix_ms(), change) {
                        tracing::debug!(version, "own metadata updated");
                    }
                }
                Some(Cmd::Revoke(r)) => {
                    if let Err(e) = m.revoke(r) {
                        tracing::warn!("revocation not applied: {e}");
                    }
                }
                Some(Cmd::Leave(done)) => {
                    m.leave();
                    leaving = Some(done);
                }
                None => return,
            },
            () = &mut sync => {}
            _ = expire.tick() => dht.store.expire(unix_now()),
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while let Some(Reverse((at, id))) = timers.peek().copied() {
                    if at > now {
                        break;
                    }
                    timers.pop();
                    match pending.remove(&id) {
                        Some(DriverTimer::Member(t)) => m.handle_timer(t, unix_now()),
                        Some(DriverTimer::PubSub(t)) => ps.handle_timer(t),
                        None => {}
                    }
                }
            }
        }
    }
}

/// Sends a pub/sub message on its own unidirectional stream.
fn send_pubsub(shared: &Arc<Shared>, to: NodeId, msg: PubSubMsg) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let Ok(conn) = connection(&shared, to).await else {
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

/// Largest pub/sub frame (a publication of the largest payload plus headers).
const MAX_PUBSUB_FRAME: usize = crate::pubsub::MAX_PAYLOAD + 1024;

/// Side effects of membership events on the shell.
fn apply_event(shared: &Arc<Shared>, ev: Event) {
    match ev {
        Event::Meta(sm) if sm.meta.node != shared.me => {
            let addrs: Vec<SocketAddr> = sm.meta.addrs.iter().map(|a| a.addr).collect();
            shared
                .addrs
                .lock()
                .expect("addr lock")
                .entry(sm.meta.node)
                .or_insert(addrs);
        }
        Event::Revoked(r) => {
            let node = r.body.node;
            if let Err(e) = shared.endpoint.admission().revoke(r) {
                tracing::warn!("revocation rejected: {e}");
            }
            if let Some(c) = shared.conns.lock().expect("conn lock").remove(&node) {
                c.close(VarInt::from_u32(close::REVOKED), b"revoked");
            }
        }
        Event::Expelled(node) => {
            shared.addrs.lock().expect("addr lock").remove(&node);
            if let Some(c) = shared.conns.lock().expect("conn lock").remove(&node) {
                c.close(
                    VarInt::from_u32(close::NOT_ADMITTED),
                    b"certificate expired or its issuer revoked",
                );
            }
        }
        _ => {}
    }
}

/// Rebuilds the peer table from the membership state and reports what changed (suspicions do
/// not produce membership events, so this also runs periodically).
fn sync_peers(shared: &Arc<Shared>, m: &Membership) {
    let mut now: BTreeMap<NodeId, PeerInfo> = BTreeMap::new();
    for (id, state) in m.members() {
        if id.node == shared.me {
            continue;
        }
        let newer = now
            .get(&id.node)
            .is_none_or(|p| p.generation < id.generation);
        if newer {
            now.insert(
                id.node,
                PeerInfo {
                    id: id.node,
                    generation: id.generation,
                    state: state.into(),
                    meta: m.meta(&id.node).map(|s| s.meta),
                },
            );
        }
    }
    let changed: Vec<PeerInfo> = {
        let mut peers = shared.peers.lock().expect("peer lock");
        let changed = now
            .values()
            .filter(|p| peers.get(&p.id) != Some(*p))
            .cloned()
            .collect();
        *peers = now;
        changed
    };
    for peer in changed {
        let _ = shared.changes.send(PeerChanged { peer });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_entries_resolve_ips_and_names() {
        let id = NodeKey::from_seed([4; 32]).node_id();
        let ip = Bootstrap::resolve("192.0.2.7:4433").unwrap();
        assert_eq!(ip, vec!["192.0.2.7:4433".parse::<Bootstrap>().unwrap()]);
        // `localhost` comes from /etc/hosts (no DNS involved)
        let named = Bootstrap::resolve(&format!("{id}@localhost:4433")).unwrap();
        assert!(!named.is_empty());
        assert!(
            named
                .iter()
                .all(|b| b.node == Some(id) && b.addr.ip().is_loopback() && b.addr.port() == 4433)
        );
        for bad in [
            "localhost",
            "localhost:",
            "localhost:99999",
            ":4433",
            "a b:1",
            "x@host:1",
        ] {
            assert!(
                matches!(Bootstrap::resolve(bad), Err(BootstrapError::Syntax(_))),
                "{bad}: {:?}",
                Bootstrap::resolve(bad)
            );
        }
    }
}
