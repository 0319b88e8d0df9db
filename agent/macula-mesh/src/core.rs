//! [`MeshCore`]: everything one mesh node decides, without a clock or a socket.
//!
//! The core owns the membership, pub/sub and DHT state machines and the rules that tie them
//! together: one timer queue for all three, the subscriptions waiting for acknowledgements, the
//! lookups under way, the peer table (addresses from the newest metadata), which connection is
//! used when two peers dialled each other, and which hubs may relay to a peer. It is driven like
//! `quinn-proto`'s `Connection`: the shell (or the simulator) feeds it what happened through
//! `handle_*(now, …)`, executes what [`MeshCore::poll_output`] returns, and calls
//! [`MeshCore::handle_timeout`] at [`MeshCore::poll_timeout`]. Time is given, never read.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use foca::State;
use macula_core::{NodeId, NodeKey};

use crate::clock::ClockState;
use crate::dht::{
    Dht, DhtConfig, DhtOutput, Key, LookupId, LookupResult, Record, Request as DhtRequest,
    RequestId, Response as DhtResponse,
};
use crate::membership::{
    Event, MemberId, MemberMeta, MemberTimer, Membership, MembershipError, Output,
};
use crate::proto::close;
use crate::pubsub::{PubSub, PubSubError, PubSubMsg, PubSubOutput, PubSubTimer, Publication};
use crate::realm::{MembershipCert, Revocation, Role};
use crate::relay::Relay;

/// The time the core is given: a monotonic reading (timers) and the wall clock (certificates,
/// records, metadata versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since an origin the driver chose (its start).
    pub mono: Duration,
    /// Unix time in milliseconds.
    pub unix_ms: u64,
}

impl Now {
    /// Unix seconds.
    pub fn unix(&self) -> u64 {
        self.unix_ms / 1000
    }
}

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

/// A change of a peer's state or metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChanged {
    pub peer: PeerInfo,
    /// The peer left the realm for good — revoked, its certificate expired or its issuing hub
    /// was revoked, or membership forgot it after it was down for
    /// [`foca::Config::remove_down_after`] — rather than merely going down: its state is
    /// [`PeerState::Down`], and what it held is lost.
    pub left: bool,
}

/// Names one connection (the shell's `quinn::Connection::stable_id`).
pub type ConnId = usize;

/// Core parameters.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub dht: DhtConfig,
    /// How often the peer table is rebuilt from membership (suspicions raise no event).
    pub peer_sync: Duration,
    /// How long a `subscribe` waits for the peers' acknowledgements.
    pub subscribe_wait: Duration,
    /// How long a superseded duplicate connection stays open for the streams under way on it.
    pub duplicate_grace: Duration,
    /// Budget of a direct dial when a hub relay is the fallback.
    pub direct_budget_with_relay: Duration,
    /// How often a peer reached only through a hub relay is dialled directly again (its NAT may
    /// have opened, it may have moved): a direct connection replaces the relayed one.
    pub direct_retry: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            dht: DhtConfig::default(),
            peer_sync: Duration::from_millis(250),
            subscribe_wait: Duration::from_secs(3),
            duplicate_grace: Duration::from_secs(5),
            direct_budget_with_relay: Duration::from_millis(1500),
            direct_retry: Duration::from_secs(30),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum CoreOutput {
    /// Send a SWIM packet as one datagram (`proto::Datagram::Swim`) to `to`, dialling it per
    /// [`MeshCore::dial_plan`] when there is no connection.
    Swim { to: NodeId, data: Vec<u8> },
    /// Send a pub/sub message on its own stream to `to`.
    PubSub { to: NodeId, msg: PubSubMsg },
    /// Send a DHT request; answer with [`MeshCore::handle_dht_response`] or
    /// [`MeshCore::handle_dht_failed`].
    DhtRequest {
        to: NodeId,
        id: RequestId,
        req: DhtRequest,
    },
    /// Hand a publication to local subscribers.
    Deliver(Publication),
    /// The subscription `token` ([`MeshCore::subscribe`]) was acknowledged by `acked` peers (all
    /// it waited for, or as many as did within [`CoreConfig::subscribe_wait`]).
    Subscribed { token: u64, acked: usize },
    /// A lookup ([`MeshCore::dht_get`], [`MeshCore::dht_put`]) finished.
    LookupDone {
        lookup: LookupId,
        result: LookupResult,
    },
    /// The peer table changed for this peer.
    PeerChanged(PeerInfo),
    /// Membership forgot this peer (down long enough): it left the peer table.
    PeerForgotten(NodeId),
    /// This peer left the realm for good: revoked, or its certificate expired or its issuing
    /// hub was revoked (it stays in the peer table as down).
    PeerLeft(NodeId),
    /// Persist this (fsync'd) before acting on any later output.
    Persist(ClockState),
    /// A verified revocation: give it to the admission (refuse the node's handshakes).
    Revoked(Revocation),
    /// Close connection `conn` to `peer` with `code`.
    Close {
        peer: NodeId,
        conn: ConnId,
        code: u32,
        reason: &'static str,
    },
    /// What membership reported (for logs and simulations; the core acted on it already).
    Member(Event),
    /// Try to reach `peer`, now connected through a hub relay, directly at `addrs` (no relay
    /// fallback); a direct connection replaces the relayed one ([`MeshCore::handle_connected`]).
    DialDirect {
        peer: NodeId,
        addrs: Vec<SocketAddr>,
    },
}

/// How to reach a peer without a connection: its addresses first (each within `direct_budget`),
/// then through each hub that may relay to it, as (hub, the hub connection's remote address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    pub direct: Vec<SocketAddr>,
    pub direct_budget: Duration,
    pub relays: Vec<(NodeId, SocketAddr)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CoreTimer {
    Member(MemberTimer),
    PubSub(PubSubTimer),
    DhtRequest(RequestId),
    Subscribe(u64),
    Duplicate { peer: NodeId, conn: ConnId },
    PeerSync,
    DhtExpire,
    DirectRetry,
}

/// A pending `subscribe`: peers whose acknowledgement is awaited.
#[derive(Debug)]
struct PendingSub {
    token: u64,
    topic: String,
    waiting: BTreeSet<NodeId>,
    acked: usize,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: ConnId,
    dialled: bool,
    remote: SocketAddr,
}

/// The I/O-free mesh node (see the module documentation).
pub struct MeshCore {
    me: NodeId,
    config: CoreConfig,
    m: Membership,
    ps: PubSub,
    dht: Dht,
    timers: BinaryHeap<Reverse<(Duration, u64)>>,
    timer_kinds: HashMap<u64, CoreTimer>,
    timer_seq: u64,
    subs: Vec<PendingSub>,
    next_token: u64,
    peers: BTreeMap<NodeId, PeerInfo>,
    /// Addresses each peer accepts connections on: its Hello, replaced by each newer metadata.
    addrs: HashMap<NodeId, Vec<SocketAddr>>,
    roles: HashMap<NodeId, Role>,
    conns: HashMap<NodeId, Conn>,
    dirty: bool,
    left: bool,
    out: VecDeque<CoreOutput>,
}

impl MeshCore {
    /// The core of the node holding `key`, around its membership state machine.
    pub fn new(key: &NodeKey, membership: Membership, config: CoreConfig, now: Now) -> Self {
        let me = key.node_id();
        let mut core = Self {
            me,
            m: membership,
            ps: PubSub::new(
                NodeKey::from_seed(*key.signing_key().as_bytes()),
                now.unix_ms.saturating_mul(1000),
            ),
            dht: Dht::new(me, config.dht.clone()),
            config,
            timers: BinaryHeap::new(),
            timer_kinds: HashMap::new(),
            timer_seq: 0,
            subs: Vec::new(),
            next_token: 0,
            peers: BTreeMap::new(),
            addrs: HashMap::new(),
            roles: HashMap::new(),
            conns: HashMap::new(),
            dirty: false,
            left: false,
            out: VecDeque::new(),
        };
        core.schedule(now, core.config.peer_sync, CoreTimer::PeerSync);
        core.schedule(now, crate::dht::EXPIRE_PERIOD, CoreTimer::DhtExpire);
        core.schedule(now, core.config.direct_retry, CoreTimer::DirectRetry);
        core.process(now);
        core
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The next output for the driver.
    pub fn poll_output(&mut self) -> Option<CoreOutput> {
        self.out.pop_front()
    }

    /// When [`MeshCore::handle_timeout`] must be called next (monotonic, as [`Now::mono`]).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now.mono {
                break;
            }
            self.timers.pop();
            let Some(t) = self.timer_kinds.remove(&seq) else {
                continue;
            };
            match t {
                CoreTimer::Member(t) => self.m.handle_timer(t, now.unix()),
                CoreTimer::PubSub(t) => self.ps.handle_timer(t),
                CoreTimer::DhtRequest(id) => self.dht.handle_timeout(id),
                CoreTimer::Subscribe(token) => {
                    if let Some(i) = self.subs.iter().position(|p| p.token == token) {
                        let p = self.subs.remove(i);
                        self.out.push_back(CoreOutput::Subscribed {
                            token,
                            acked: p.acked,
                        });
                    }
                }
                CoreTimer::Duplicate { peer, conn } => self.out.push_back(CoreOutput::Close {
                    peer,
                    conn,
                    code: close::DUPLICATE,
                    reason: "duplicate connection",
                }),
                CoreTimer::PeerSync => {
                    self.dirty = true;
                    self.schedule(now, self.config.peer_sync, CoreTimer::PeerSync);
                }
                CoreTimer::DhtExpire => {
                    self.dht.store.expire(now.unix());
                    self.schedule(now, crate::dht::EXPIRE_PERIOD, CoreTimer::DhtExpire);
                }
                CoreTimer::DirectRetry => {
                    let mut relayed: Vec<NodeId> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| Relay::is_virtual(c.remote))
                        .map(|(p, _)| *p)
                        .collect();
                    // In a fixed order: simulations replay per seed.
                    relayed.sort_unstable();
                    for peer in relayed {
                        self.upgrade(peer);
                    }
                    self.schedule(now, self.config.direct_retry, CoreTimer::DirectRetry);
                }
            }
            self.process(now);
        }
    }

    /// A SWIM datagram from `from`.
    pub fn handle_swim(
        &mut self,
        now: Now,
        from: NodeId,
        data: &[u8],
    ) -> Result<(), MembershipError> {
        let res = self.m.handle_packet(from, data, now.unix());
        self.process(now);
        res
    }

    /// A pub/sub message from `from`.
    pub fn handle_pubsub(&mut self, now: Now, from: NodeId, msg: PubSubMsg) {
        self.ps.handle(from, msg);
        self.process(now);
    }

    /// A DHT request from `from`; the answer to send back.
    pub fn handle_dht_request(&mut self, now: Now, from: NodeId, req: DhtRequest) -> DhtResponse {
        let resp = self.dht.handle_request(from, req, now.unix());
        self.process(now);
        resp
    }

    /// The answer to our DHT request `id`.
    pub fn handle_dht_response(&mut self, now: Now, from: NodeId, id: RequestId, r: DhtResponse) {
        self.dht.handle_response(from, id, r, now.unix());
        self.process(now);
    }

    /// Our DHT request `id` failed (no connection, no answer, a malformed one).
    pub fn handle_dht_failed(&mut self, now: Now, id: RequestId) {
        self.dht.handle_timeout(id);
        self.process(now);
    }

    /// Asks the driver to dial `peer`, connected through a relay, at its known addresses.
    fn upgrade(&mut self, peer: NodeId) {
        let addrs = self.addrs(&peer).to_vec();
        if !addrs.is_empty() {
            self.out.push_back(CoreOutput::DialDirect { peer, addrs });
        }
    }

    /// An admitted connection to `peer` (its Hello checked). Membership admits the peer; the
    /// connection becomes the one used for it unless a live one exists that is direct while
    /// the new one goes through a hub relay, or — both direct or both relayed — that the smaller
    /// node ID dialled. The loser of two connections is closed after
    /// [`CoreConfig::duplicate_grace`], so streams already under way on it finish.
    pub fn handle_connected(&mut self, now: Now, hello: Connected) -> Result<(), MembershipError> {
        let Connected {
            cert,
            listen,
            conn,
            remote,
            dialled,
        } = hello;
        let peer = cert.body.node;
        self.roles.insert(peer, cert.body.role);
        let admitted = if self.m.requires_cert() {
            self.m.admit(&cert, now.unix())
        } else {
            Ok(())
        };
        if !listen.is_empty() {
            self.addrs.insert(peer, listen);
        }
        let ours_wins = |dialled: bool| (dialled && self.me < peer) || (!dialled && peer < self.me);
        let new = Conn {
            id: conn,
            dialled,
            remote,
        };
        let direct = !Relay::is_virtual(remote);
        let new_wins = |old: &Conn| match (!Relay::is_virtual(old.remote), direct) {
            (false, true) => true,
            (true, false) => false,
            _ => ours_wins(dialled),
        };
        let loser = match self.conns.get(&peer) {
            Some(old) if old.id == conn => None,
            Some(old) if !new_wins(old) => Some(conn),
            _ => self.conns.insert(peer, new).map(|old| old.id),
        };
        if let Some(loser) = loser {
            let grace = self.config.duplicate_grace;
            self.schedule(now, grace, CoreTimer::Duplicate { peer, conn: loser });
        }
        self.process(now);
        admitted
    }

    /// Connection `conn` to `peer` (remote address `remote`) closed. Returns whether the
    /// connection used for the peer now has the same remote address (a hub relay then keeps its
    /// entry for the peer).
    pub fn handle_closed(
        &mut self,
        now: Now,
        peer: NodeId,
        conn: ConnId,
        remote: SocketAddr,
    ) -> bool {
        if self.conns.get(&peer).is_some_and(|c| c.id == conn) {
            self.conns.remove(&peer);
            self.process(now);
        }
        self.conns.get(&peer).is_some_and(|c| c.remote == remote)
    }

    /// Revocations a peer's Hello carried (verified by the admission).
    pub fn handle_revocation(&mut self, now: Now, rev: Revocation) -> Result<(), MembershipError> {
        let res = self.m.revoke(rev);
        self.process(now);
        res
    }

    /// A connected peer's certificate ran out: membership expels the expired now.
    pub fn handle_cert_expired(&mut self, now: Now) {
        self.m.expel_expired(now.unix());
        self.process(now);
    }

    /// Adds members known from elsewhere (a previous run, a converged view) as alive.
    pub fn seed_members(&mut self, now: Now, ids: impl IntoIterator<Item = MemberId>) {
        self.m.seed_members(ids);
        self.process(now);
    }

    /// Addresses of `peer` known from elsewhere than its Hello or metadata (a converged view in
    /// simulations); later metadata replaces them.
    pub fn learn_addrs(&mut self, peer: NodeId, addrs: Vec<SocketAddr>) {
        self.addrs.insert(peer, addrs);
    }

    /// Announces this node to `peer` (a bootstrap contact).
    pub fn join(&mut self, now: Now, peer: NodeId) {
        self.m.join(peer);
        self.process(now);
    }

    /// Leaves the realm (announced to the members).
    pub fn leave(&mut self, now: Now) {
        self.m.leave();
        self.left = true;
        self.process(now);
    }

    /// Whether [`MeshCore::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Changes own metadata (re-signed under a newer version, re-disseminated); the version, if
    /// anything changed.
    pub fn update_meta(
        &mut self,
        now: Now,
        key: &NodeKey,
        change: impl FnOnce(&mut MemberMeta),
    ) -> Option<u64> {
        let v = self.m.update_meta(key, now.unix_ms, change);
        self.process(now);
        v
    }

    /// Announces a renewed certificate of this node (own metadata re-signed with it).
    pub fn set_cert(&mut self, now: Now, key: &NodeKey, cert: MembershipCert) -> Option<u64> {
        let v = self.m.set_cert(key, now.unix_ms, cert);
        self.process(now);
        v
    }

    /// Subscribes to `topic`; [`CoreOutput::Subscribed`] with the returned token follows once
    /// every peer active now acknowledged (or after [`CoreConfig::subscribe_wait`]).
    pub fn subscribe(&mut self, now: Now, topic: &str) -> Result<u64, PubSubError> {
        self.ps.subscribe(topic)?;
        self.next_token += 1;
        let token = self.next_token;
        let waiting = self
            .m
            .members()
            .filter(|(_, s)| *s != State::Down)
            .map(|(id, _)| id.node)
            .collect();
        self.subs.push(PendingSub {
            token,
            topic: topic.to_string(),
            waiting,
            acked: 0,
        });
        let wait = self.config.subscribe_wait;
        self.schedule(now, wait, CoreTimer::Subscribe(token));
        self.process(now);
        Ok(token)
    }

    pub fn unsubscribe(&mut self, now: Now, topic: &str) {
        self.ps.unsubscribe(topic);
        self.process(now);
    }

    /// Publishes to every subscriber in the realm; the publication's sequence number.
    pub fn publish(&mut self, now: Now, topic: &str, payload: Vec<u8>) -> Result<u64, PubSubError> {
        let res = self.ps.publish(topic, payload);
        self.process(now);
        res
    }

    /// Looks up the records under `key`; [`CoreOutput::LookupDone`] follows.
    pub fn dht_get(&mut self, now: Now, key: Key) -> LookupId {
        let id = self.dht.get(key);
        self.process(now);
        id
    }

    /// Stores a signed record at the nodes closest to its key; [`CoreOutput::LookupDone`]
    /// follows (its `stored` says how many did).
    pub fn dht_put(&mut self, now: Now, rec: Record) -> LookupId {
        let id = self.dht.put(rec, now.unix());
        self.process(now);
        id
    }

    /// All known peers (alive, suspect, and down ones not yet forgotten), by node ID.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    pub fn peer(&self, id: &NodeId) -> Option<&PeerInfo> {
        self.peers.get(id)
    }

    /// The connection used for `peer`, if any.
    pub fn connection(&self, peer: &NodeId) -> Option<ConnId> {
        self.conns.get(peer).map(|c| c.id)
    }

    /// Whether we dialled the connection used for `peer`.
    pub fn dialled(&self, peer: &NodeId) -> Option<bool> {
        self.conns.get(peer).map(|c| c.dialled)
    }

    /// Where `peer` accepts connections.
    pub fn addrs(&self, peer: &NodeId) -> &[SocketAddr] {
        self.addrs.get(peer).map_or(&[], Vec::as_slice)
    }

    /// How to dial `peer` (see [`DialPlan`]); relays are the hubs its metadata names, else every
    /// hub (by metadata) we are connected to directly (protocol.md §12).
    pub fn dial_plan(&self, peer: &NodeId, handshake_timeout: Duration) -> DialPlan {
        let named = self
            .peers
            .get(peer)
            .and_then(|p| p.meta.as_ref())
            .map(|m| m.relays.clone())
            .unwrap_or_default();
        let hubs: Vec<NodeId> = if named.is_empty() {
            self.peers
                .values()
                .filter(|p| p.meta.as_ref().is_some_and(|m| m.role == Role::Hub))
                .map(|p| p.id)
                .collect()
        } else {
            named
        };
        let relays: Vec<(NodeId, SocketAddr)> = hubs
            .into_iter()
            .filter(|h| h != peer && *h != self.me)
            .filter_map(|h| self.conns.get(&h).map(|c| (h, c.remote)))
            .filter(|(_, a)| !Relay::is_virtual(*a))
            .collect();
        DialPlan {
            direct: self.addrs(peer).to_vec(),
            direct_budget: if relays.is_empty() {
                handshake_timeout
            } else {
                handshake_timeout.min(self.config.direct_budget_with_relay)
            },
            relays,
        }
    }

    /// Up to `n` alive peers whose certificate we saw, to read the time from: hubs first.
    pub fn time_sources(&self, n: usize) -> Vec<(NodeId, bool)> {
        let mut sources: Vec<(NodeId, bool)> = self
            .peers
            .values()
            .filter(|p| p.state == PeerState::Alive)
            .filter_map(|p| self.roles.get(&p.id).map(|r| (p.id, *r == Role::Hub)))
            .collect();
        sources.sort_by_key(|(id, hub)| (!hub, *id));
        sources.truncate(n);
        sources
    }

    pub fn membership(&self) -> &Membership {
        &self.m
    }

    pub fn pubsub(&self) -> &PubSub {
        &self.ps
    }

    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    fn schedule(&mut self, now: Now, after: Duration, t: CoreTimer) {
        self.timer_seq += 1;
        self.timers
            .push(Reverse((now.mono + after, self.timer_seq)));
        self.timer_kinds.insert(self.timer_seq, t);
    }

    /// Moves the state machines' outputs to the driver's queue, applying the rules between
    /// them: membership first (its events change the peers pub/sub and the DHT use), then the
    /// DHT, then pub/sub.
    fn process(&mut self, now: Now) {
        loop {
            let outputs: Vec<Output> = self.m.drain().collect();
            let dht: Vec<DhtOutput> = self.dht.drain().collect();
            let ps: Vec<PubSubOutput> = self.ps.drain().collect();
            if outputs.is_empty() && dht.is_empty() && ps.is_empty() {
                break;
            }
            for out in outputs {
                match out {
                    Output::Send { to, data } => self.out.push_back(CoreOutput::Swim { to, data }),
                    Output::Schedule { after, timer } => {
                        self.schedule(now, after, CoreTimer::Member(timer));
                    }
                    Output::Persist(state) => self.out.push_back(CoreOutput::Persist(state)),
                    Output::Event(ev) => self.member_event(now, ev),
                }
            }
            for out in dht {
                match out {
                    DhtOutput::Request { to, id, req } => {
                        self.out.push_back(CoreOutput::DhtRequest { to, id, req });
                    }
                    DhtOutput::Timeout { after, id } => {
                        self.schedule(now, after, CoreTimer::DhtRequest(id));
                    }
                    DhtOutput::Done { lookup, result } => {
                        self.out
                            .push_back(CoreOutput::LookupDone { lookup, result });
                    }
                }
            }
            for out in ps {
                match out {
                    PubSubOutput::Send { to, msg } => {
                        self.out.push_back(CoreOutput::PubSub { to, msg });
                    }
                    PubSubOutput::Schedule { after, timer } => {
                        self.schedule(now, after, CoreTimer::PubSub(timer));
                    }
                    PubSubOutput::Deliver { msg, .. } => {
                        self.out.push_back(CoreOutput::Deliver(msg));
                    }
                    PubSubOutput::Subscribed { topic, peer } => {
                        for p in self.subs.iter_mut().filter(|p| p.topic == topic) {
                            if p.waiting.remove(&peer) {
                                p.acked += 1;
                            }
                        }
                    }
                }
            }
        }
        let (done, open): (Vec<PendingSub>, Vec<PendingSub>) = std::mem::take(&mut self.subs)
            .into_iter()
            .partition(|p| p.waiting.is_empty());
        self.subs = open;
        for p in done {
            self.out.push_back(CoreOutput::Subscribed {
                token: p.token,
                acked: p.acked,
            });
        }
        if self.dirty {
            self.sync_peers();
        }
    }

    fn member_event(&mut self, now: Now, ev: Event) {
        match &ev {
            Event::Up(id) => {
                self.ps.peer_up(id.node);
                // The DHT only routes through members it knows how to reach.
                if self.addrs.contains_key(&id.node) {
                    self.dht.table.seen(id.node);
                }
            }
            Event::Meta(sm) if sm.meta.node != self.me => {
                let addrs: Vec<SocketAddr> = sm.meta.addrs.iter().map(|a| a.addr).collect();
                if !addrs.is_empty() {
                    // Membership reports only metadata newer than what it held.
                    self.addrs.insert(sm.meta.node, addrs);
                    self.dht.table.seen(sm.meta.node);
                    // New addresses of a peer reached through a relay: try them at once.
                    if self
                        .conns
                        .get(&sm.meta.node)
                        .is_some_and(|c| Relay::is_virtual(c.remote))
                    {
                        self.upgrade(sm.meta.node);
                    }
                }
            }
            Event::Renamed { new, .. } => self.ps.peer_restarted(new.node),
            Event::Down(id) => {
                self.ps.peer_down(&id.node);
                // Records it held are stored again at the closest live nodes.
                self.dht.holder_left(id.node, now.unix());
            }
            Event::Revoked(r) => {
                let node = r.body.node;
                self.out.push_back(CoreOutput::Revoked(r.clone()));
                self.out.push_back(CoreOutput::PeerLeft(node));
                if let Some(c) = self.conns.remove(&node) {
                    self.out.push_back(CoreOutput::Close {
                        peer: node,
                        conn: c.id,
                        code: close::REVOKED,
                        reason: "revoked",
                    });
                }
            }
            Event::Expelled(node) => {
                self.addrs.remove(node);
                self.out.push_back(CoreOutput::PeerLeft(*node));
                if let Some(c) = self.conns.remove(node) {
                    self.out.push_back(CoreOutput::Close {
                        peer: *node,
                        conn: c.id,
                        code: close::NOT_ADMITTED,
                        reason: "certificate expired or its issuer revoked",
                    });
                }
            }
            _ => {}
        }
        self.dirty = true;
        self.out.push_back(CoreOutput::Member(ev));
    }

    /// Brings the peer table up to the membership state and reports what changed (the newest
    /// generation of each node; metadata cloned only when its version moved).
    fn sync_peers(&mut self) {
        self.dirty = false;
        let me = self.me;
        let mut newest: Vec<(MemberId, State)> =
            self.m.members().filter(|(id, _)| id.node != me).collect();
        newest.sort_unstable_by_key(|(id, _)| (id.node, Reverse(id.generation)));
        newest.dedup_by_key(|(id, _)| id.node);
        let out = &mut self.out;
        self.peers.retain(|node, _| {
            let kept = newest.binary_search_by_key(node, |(id, _)| id.node).is_ok();
            if !kept {
                out.push_back(CoreOutput::PeerForgotten(*node));
            }
            kept
        });
        for (id, state) in newest {
            let state = PeerState::from(state);
            let version = self.m.meta_version(&id.node);
            let same = self.peers.get(&id.node).is_some_and(|p| {
                p.generation == id.generation
                    && p.state == state
                    && p.meta.as_ref().map(|m| m.version) == version
            });
            if same {
                continue;
            }
            let info = PeerInfo {
                id: id.node,
                generation: id.generation,
                state,
                meta: self.m.meta(&id.node).map(|s| s.meta),
            };
            if self.peers.get(&id.node) != Some(&info) {
                self.out.push_back(CoreOutput::PeerChanged(info.clone()));
                self.peers.insert(id.node, info);
            }
        }
    }
}

/// An admitted connection, as [`MeshCore::handle_connected`] hears of it.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The peer's realm certificate (from its Hello).
    pub cert: MembershipCert,
    /// Where the peer accepts connections (from its Hello).
    pub listen: Vec<SocketAddr>,
    pub conn: ConnId,
    pub remote: SocketAddr,
    /// Did we dial (rather than accept) it?
    pub dialled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MembershipConfig;
    use crate::realm::{CertBody, RealmKey};

    const T0: Now = Now {
        mono: Duration::ZERO,
        unix_ms: 1_750_000_000_000,
    };

    fn at(secs: u64) -> Now {
        Now {
            mono: Duration::from_secs(secs),
            unix_ms: T0.unix_ms + secs * 1000,
        }
    }

    /// Two nodes of one realm: the core of the one with the smaller node ID, the other's
    /// certificate.
    fn pair() -> (MeshCore, MembershipCert) {
        let realm = RealmKey::from_seed([1; 32]);
        let mut keys = [NodeKey::from_seed([2; 32]), NodeKey::from_seed([3; 32])];
        keys.sort_by_key(NodeKey::node_id);
        let cert = |k: &NodeKey| {
            realm.issue(CertBody {
                realm: realm.id(),
                node: k.node_id(),
                role: Role::Edge,
                name: "n".into(),
                not_before: 0,
                expires: u64::MAX,
            })
        };
        let id = MemberId {
            node: keys[0].node_id(),
            generation: 0,
        };
        let m = Membership::new(id, realm.id(), None, MembershipConfig::lan(2), 7, T0.unix());
        let core = MeshCore::new(&keys[0], m, CoreConfig::default(), T0);
        (core, cert(&keys[1]))
    }

    fn hello(cert: &MembershipCert, conn: ConnId, dialled: bool) -> Connected {
        Connected {
            cert: cert.clone(),
            listen: vec!["192.0.2.1:4433".parse().expect("an address")],
            conn,
            remote: "192.0.2.1:4433".parse().expect("an address"),
            dialled,
        }
    }

    fn closed(core: &mut MeshCore) -> Vec<ConnId> {
        std::iter::from_fn(|| core.poll_output())
            .filter_map(|o| match o {
                CoreOutput::Close { conn, code, .. } if code == close::DUPLICATE => Some(conn),
                _ => None,
            })
            .collect()
    }

    /// Of two simultaneous connections, both sides keep the one the smaller node ID dialled, and
    /// the other closes only after the grace period.
    #[test]
    fn the_connection_dialled_by_the_smaller_id_wins() {
        for dialled_first in [true, false] {
            let (mut core, other) = pair();
            let peer = other.body.node;
            // Ours (smaller ID, dialled) is 1; theirs (accepted) is 2.
            let (first, second) = if dialled_first {
                (hello(&other, 1, true), hello(&other, 2, false))
            } else {
                (hello(&other, 2, false), hello(&other, 1, true))
            };
            core.handle_connected(T0, first).expect("admitted");
            core.handle_connected(at(1), second).expect("admitted");
            assert_eq!(
                core.connection(&peer),
                Some(1),
                "dialled first: {dialled_first}"
            );
            assert_eq!(core.dialled(&peer), Some(true));
            assert!(
                closed(&mut core).is_empty(),
                "closed before the grace period"
            );
            let grace = CoreConfig::default().duplicate_grace.as_secs();
            core.handle_timeout(at(1 + grace));
            assert_eq!(closed(&mut core), vec![2]);
            // The loser closing leaves the winner in place.
            assert!(!core.handle_closed(at(9), peer, 2, "192.0.2.9:1".parse().expect("addr")));
            assert_eq!(core.connection(&peer), Some(1));
            assert_eq!(core.addrs(&peer), ["192.0.2.1:4433".parse().expect("addr")]);
        }
    }
    /// A direct connection replaces one through a hub relay whoever dialled it, and a relayed
    /// one never replaces a direct one.
    #[test]
    fn a_direct_connection_wins_over_a_relayed_one() {
        let relayed = |cert: &MembershipCert, conn: ConnId, dialled: bool| Connected {
            remote: "240.0.0.7:1".parse().expect("a virtual address"),
            ..hello(cert, conn, dialled)
        };
        // Relayed first (dialled by us, the smaller ID), then direct (dialled by the peer).
        let (mut core, other) = pair();
        let peer = other.body.node;
        core.handle_connected(T0, relayed(&other, 1, true))
            .expect("admitted");
        core.handle_connected(at(1), hello(&other, 2, false))
            .expect("admitted");
        assert_eq!(core.connection(&peer), Some(2), "the direct one is used");
        let grace = CoreConfig::default().duplicate_grace.as_secs();
        core.handle_timeout(at(1 + grace));
        assert_eq!(closed(&mut core), vec![1]);
        // Direct first (dialled by the peer), then relayed (dialled by us).
        let (mut core, other) = pair();
        core.handle_connected(T0, hello(&other, 1, false))
            .expect("admitted");
        core.handle_connected(at(1), relayed(&other, 2, true))
            .expect("admitted");
        assert_eq!(core.connection(&peer), Some(1), "the direct one stays");
        core.handle_timeout(at(1 + grace));
        assert_eq!(closed(&mut core), vec![2]);
    }

    /// A peer reached through a relay is dialled directly at its known addresses every
    /// `direct_retry`.
    #[test]
    fn a_relayed_peer_is_dialled_directly_again() {
        let (mut core, other) = pair();
        let peer = other.body.node;
        let relayed = Connected {
            remote: "240.0.0.7:1".parse().expect("a virtual address"),
            ..hello(&other, 1, true)
        };
        core.handle_connected(T0, relayed).expect("admitted");
        let retry = CoreConfig::default().direct_retry.as_secs();
        core.handle_timeout(at(retry));
        let dials: Vec<(NodeId, Vec<SocketAddr>)> = std::iter::from_fn(|| core.poll_output())
            .filter_map(|o| match o {
                CoreOutput::DialDirect { peer, addrs } => Some((peer, addrs)),
                _ => None,
            })
            .collect();
        assert_eq!(
            dials,
            vec![(peer, vec!["192.0.2.1:4433".parse().expect("addr")])]
        );
    }
}
