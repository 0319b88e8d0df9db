//! [`CoreSim`]: N whole [`MeshCore`]s (membership, pub/sub, DHT and the rules between them) on a
//! simulated network of connections: a node reaches another by the core's own [`DialPlan`](crate::core::DialPlan)
//! (its addresses, else a hub relay), over latency, loss, partitions, crashes and nodes behind
//! NAT (reachable only through a hub).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use macula_core::{NodeId, NodeKey};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

use super::{EventQueue, NetParams, SIM_EPOCH, Simulation};
use crate::core::{Connected, CoreConfig, CoreOutput, MeshCore, Now, PeerState};
use crate::dht::{Key, LookupId, LookupResult, Record, Request, RequestId, Response};
use crate::membership::{
    Capacity, Event, FailureDomains, MemberId, MemberMeta, Membership, MembershipConfig,
    SignedMeta, UplinkAddr,
};
use crate::pubsub::PubSubMsg;
use crate::realm::{CertBody, MembershipCert, RealmKey, Role};

/// The shape of a simulated node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeKind {
    /// A hub: relays for the nodes that name it.
    pub hub: bool,
    /// Behind NAT: nobody can dial it directly; it names every hub as its relay.
    pub nat: bool,
}

enum Ev {
    Swim {
        to: usize,
        from: usize,
        data: Vec<u8>,
    },
    PubSub {
        to: usize,
        from: usize,
        msg: PubSubMsg,
    },
    DhtReq {
        to: usize,
        from: usize,
        id: RequestId,
        req: Request,
    },
    DhtResp {
        to: usize,
        from: usize,
        id: RequestId,
        resp: Response,
    },
    Wake {
        node: usize,
        epoch: u32,
        at: Duration,
    },
    /// The connection `conn` of `node` to `peer` timed out (the peer crashed).
    Closed {
        node: usize,
        epoch: u32,
        peer: usize,
        conn: usize,
        remote: SocketAddr,
    },
}

struct Node {
    core: MeshCore,
    up: bool,
    epoch: u32,
    kind: NodeKind,
    next_wake: Option<Duration>,
    /// Open connections by peer index: (connection id, remote address as this node sees it).
    conns: BTreeMap<usize, (usize, SocketAddr)>,
    /// Publications delivered: (publisher, seq).
    delivered: Vec<(NodeId, u64)>,
    /// Acknowledgements of finished `subscribe` calls, by token.
    subscribed: HashMap<u64, usize>,
    lookups: HashMap<LookupId, LookupResult>,
}

/// What happened in a run, in order: compared across runs of the same seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    Up(usize, u32),
    Down(usize, u32),
    Peer(usize, PeerState),
    Delivered(NodeId, u64),
    Lookup { records: usize, stored: u32 },
    Dialled { to: usize, relay: Option<usize> },
    DialFailed(usize),
    Closed(usize),
}

/// N mesh cores on a simulated network.
pub struct CoreSim {
    queue: EventQueue<Ev>,
    nodes: Vec<Node>,
    keys: Vec<NodeKey>,
    certs: Vec<MembershipCert>,
    index: HashMap<NodeId, usize>,
    realm: RealmKey,
    config: MembershipConfig,
    core_config: CoreConfig,
    meta: bool,
    rng: StdRng,
    pub net: NetParams,
    cut: HashSet<(usize, usize)>,
    next_conn: usize,
    /// Every traced event: (time, node index, what).
    pub trace: Vec<(Duration, usize, Trace)>,
    /// Datagrams, streams and requests handed to the network.
    pub messages: u64,
}

/// How long a crashed peer's connection takes to time out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a simulated handshake is given (as the transport's default).
const HANDSHAKE: Duration = Duration::from_secs(5);

impl Simulation for CoreSim {
    fn now(&self) -> Duration {
        self.queue.now()
    }

    fn step(&mut self, t: Duration) -> bool {
        self.queue.pop_until(t).map(|ev| self.handle(ev)).is_some()
    }
}

impl CoreSim {
    /// Nodes of the given kinds, keys and RNG derived from `seed`. With `meta`, each node
    /// publishes signed metadata (its address, its relays) and admission checks certificates;
    /// without, membership runs without certificates and every node starts knowing every
    /// address (as metadata would have told it), which keeps 1 000 nodes cheap.
    pub fn new(
        kinds: &[NodeKind],
        config: MembershipConfig,
        core_config: CoreConfig,
        seed: u64,
        meta: bool,
    ) -> Self {
        let mut config = config;
        if !meta {
            config.require_cert = false;
        }
        let n = kinds.len();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seed_bytes = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        };
        let realm = RealmKey::from_seed(seed_bytes());
        let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::from_seed(seed_bytes())).collect();
        let certs = keys
            .iter()
            .zip(kinds)
            .enumerate()
            .map(|(i, (k, kind))| {
                realm.issue(CertBody {
                    realm: realm.id(),
                    node: k.node_id(),
                    role: if kind.hub { Role::Hub } else { Role::Edge },
                    name: format!("sim-{i}"),
                    not_before: 0,
                    expires: u64::MAX,
                })
            })
            .collect();
        let mut sim = Self {
            queue: EventQueue::default(),
            nodes: Vec::with_capacity(n),
            index: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.node_id(), i))
                .collect(),
            keys,
            certs,
            realm,
            config,
            core_config,
            meta,
            rng,
            net: NetParams::default(),
            cut: HashSet::new(),
            next_conn: 0,
            trace: Vec::new(),
            messages: 0,
        };
        for (i, kind) in kinds.iter().enumerate() {
            let core = sim.make(i, *kind, 0);
            sim.nodes.push(Node {
                core,
                up: true,
                epoch: 0,
                kind: *kind,
                next_wake: None,
                conns: BTreeMap::new(),
                delivered: Vec::new(),
                subscribed: HashMap::new(),
                lookups: HashMap::new(),
            });
        }
        for i in 0..n {
            sim.dispatch(i);
        }
        sim
    }

    /// `n` edge nodes, none behind NAT, with the LAN membership defaults and the default core
    /// parameters.
    pub fn edges(n: usize, seed: u64, meta: bool) -> Self {
        let config = MembershipConfig::lan(u32::try_from(n).unwrap_or(u32::MAX));
        Self::new(
            &vec![NodeKind::default(); n],
            config,
            CoreConfig::default(),
            seed,
            meta,
        )
    }

    /// Node `i`'s (simulated) address.
    pub fn addr(i: usize) -> SocketAddr {
        let i = u32::try_from(i).expect("fewer than 2^24 nodes");
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 4433))
    }

    fn hubs(&self) -> Vec<NodeId> {
        (0..self.certs.len())
            .filter(|&i| self.certs[i].body.role == Role::Hub)
            .map(|i| self.keys[i].node_id())
            .collect()
    }

    fn make(&mut self, i: usize, kind: NodeKind, generation: u32) -> MeshCore {
        let key = &self.keys[i];
        let meta = self.meta.then(|| {
            SignedMeta::sign(
                key,
                self.certs[i].clone(),
                MemberMeta {
                    node: key.node_id(),
                    version: u64::from(generation) + 1,
                    role: if kind.hub { Role::Hub } else { Role::Edge },
                    name: format!("sim-{i}"),
                    addrs: vec![UplinkAddr {
                        uplink: "default".into(),
                        addr: Self::addr(i),
                    }],
                    overlay_key: None,
                    capacity: Capacity::default(),
                    domains: FailureDomains::default(),
                    software: "sim".into(),
                    relays: if kind.nat { self.hubs() } else { vec![] },
                },
            )
        });
        let id = MemberId {
            node: key.node_id(),
            generation,
        };
        let now = self.now_of();
        let m = Membership::new(
            id,
            self.realm.id(),
            meta,
            self.config.clone(),
            self.rng.random(),
            now.unix(),
        );
        MeshCore::new(key, m, self.core_config.clone(), now)
    }

    fn now_of(&self) -> Now {
        let now = self.queue.now();
        Now {
            mono: now,
            unix_ms: SIM_EPOCH * 1000 + u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node_id(&self, i: usize) -> NodeId {
        self.keys[i].node_id()
    }

    pub fn key(&self, i: usize) -> &NodeKey {
        &self.keys[i]
    }

    pub fn core(&self, i: usize) -> &MeshCore {
        &self.nodes[i].core
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }

    pub fn live_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.up).count()
    }

    /// Gives every node the full member list (and, without metadata, every address), as after
    /// convergence.
    pub fn seed_full_view(&mut self) {
        let ids: Vec<MemberId> = (0..self.len())
            .map(|i| self.nodes[i].core.membership().id())
            .collect();
        let now = self.now_of();
        for i in 0..self.len() {
            let own = ids[i];
            if !self.meta {
                for j in (0..self.len()).filter(|&j| j != i) {
                    self.nodes[i]
                        .core
                        .learn_addrs(ids[j].node, vec![Self::addr(j)]);
                }
            }
            self.nodes[i]
                .core
                .seed_members(now, ids.iter().copied().filter(|id| *id != own));
            self.dispatch(i);
        }
    }

    /// Node `i` joins through node `via` (dialled at its address, as a bootstrap contact).
    pub fn join(&mut self, i: usize, via: usize) {
        let contact = self.node_id(via);
        self.nodes[i]
            .core
            .learn_addrs(contact, vec![Self::addr(via)]);
        if self.connect(i, via).is_some() {
            let now = self.now_of();
            let peer = self.node_id(via);
            self.nodes[i].core.join(now, peer);
        }
        self.dispatch(i);
    }

    /// Crashes node `i`; its peers' connections to it time out after 10 s.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        let conns: Vec<(usize, usize)> = self.nodes[i]
            .conns
            .iter()
            .map(|(p, (c, _))| (*p, *c))
            .collect();
        for (peer, conn) in conns {
            self.drop_conn_later(peer, i, conn);
        }
        self.nodes[i].conns.clear();
    }

    /// Restarts node `i` with a new generation; it joins through `via`.
    pub fn restart(&mut self, i: usize, via: usize) {
        let generation = self.nodes[i].core.membership().id().generation + 1;
        let kind = self.nodes[i].kind;
        let core = self.make(i, kind, generation);
        let node = &mut self.nodes[i];
        node.core = core;
        node.up = true;
        node.epoch += 1;
        node.next_wake = None;
        node.conns.clear();
        if !self.meta {
            for j in (0..self.len()).filter(|&j| j != i) {
                let id = self.node_id(j);
                self.nodes[i].core.learn_addrs(id, vec![Self::addr(j)]);
            }
        }
        self.dispatch(i);
        self.join(i, via);
    }

    /// Drops all packets between the two groups, both directions.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Node `i` subscribes to `topic`; the token of its [`CoreOutput::Subscribed`].
    pub fn subscribe(&mut self, i: usize, topic: &str) -> u64 {
        let now = self.now_of();
        let token = self.nodes[i]
            .core
            .subscribe(now, topic)
            .expect("a valid topic");
        self.dispatch(i);
        token
    }

    /// How many peers acknowledged node `i`'s subscription `token`, once it finished.
    pub fn subscribed(&self, i: usize, token: u64) -> Option<usize> {
        self.nodes[i].subscribed.get(&token).copied()
    }

    pub fn publish(&mut self, i: usize, topic: &str, payload: Vec<u8>) -> u64 {
        let now = self.now_of();
        let seq = self.nodes[i]
            .core
            .publish(now, topic, payload)
            .expect("a valid publication");
        self.dispatch(i);
        seq
    }

    /// Publications node `i` delivered: (publisher, seq).
    pub fn delivered(&self, i: usize) -> &[(NodeId, u64)] {
        &self.nodes[i].delivered
    }

    pub fn dht_put(&mut self, i: usize, rec: Record) -> LookupId {
        let now = self.now_of();
        let id = self.nodes[i].core.dht_put(now, rec);
        self.dispatch(i);
        id
    }

    pub fn dht_get(&mut self, i: usize, key: Key) -> LookupId {
        let now = self.now_of();
        let id = self.nodes[i].core.dht_get(now, key);
        self.dispatch(i);
        id
    }

    /// The result of node `i`'s lookup `id`, once finished.
    pub fn lookup(&self, i: usize, id: LookupId) -> Option<&LookupResult> {
        self.nodes[i].lookups.get(&id)
    }

    /// Unix seconds now.
    pub fn unix_now(&self) -> u64 {
        self.now_of().unix()
    }

    /// Whether node `i`'s connection to `peer` goes through a hub.
    pub fn relayed(&self, i: usize, peer: usize) -> Option<bool> {
        self.nodes[i]
            .conns
            .get(&peer)
            .map(|(_, remote)| crate::relay::Relay::is_virtual(*remote))
    }

    /// How many live nodes (other than `target`) have `target` in one of `states` in their peer
    /// table.
    pub fn count_seeing(&self, target: usize, states: &[PeerState]) -> usize {
        let id = self.node_id(target);
        (0..self.len())
            .filter(|&i| i != target && self.nodes[i].up)
            .filter(|&i| {
                self.nodes[i]
                    .core
                    .peer(&id)
                    .is_some_and(|p| states.contains(&p.state))
            })
            .count()
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.net.latency;
        if hi > lo {
            self.rng.random_range(lo..hi)
        } else {
            lo
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now_of();
        let node = match ev {
            Ev::Swim { to, from, data } => {
                if !self.nodes[to].up {
                    return;
                }
                let from = self.node_id(from);
                if let Err(e) = self.nodes[to].core.handle_swim(now, from, &data) {
                    tracing::trace!("sim node {to}: {e}");
                }
                to
            }
            Ev::PubSub { to, from, msg } => {
                if !self.nodes[to].up {
                    return;
                }
                let from = self.node_id(from);
                self.nodes[to].core.handle_pubsub(now, from, msg);
                to
            }
            Ev::DhtReq { to, from, id, req } => {
                if !self.nodes[to].up {
                    return;
                }
                let from_id = self.node_id(from);
                let resp = self.nodes[to].core.handle_dht_request(now, from_id, req);
                self.dispatch(to);
                if !self.cut.contains(&(to, from)) {
                    let delay = self.latency();
                    self.queue.push(
                        delay,
                        Ev::DhtResp {
                            to: from,
                            from: to,
                            id,
                            resp,
                        },
                    );
                }
                return;
            }
            Ev::DhtResp { to, from, id, resp } => {
                if !self.nodes[to].up {
                    return;
                }
                let from = self.node_id(from);
                self.nodes[to].core.handle_dht_response(now, from, id, resp);
                to
            }
            Ev::Wake { node, epoch, at } => {
                let n = &mut self.nodes[node];
                if !n.up || n.epoch != epoch || n.next_wake != Some(at) {
                    return;
                }
                n.next_wake = None;
                n.core.handle_timeout(now);
                node
            }
            Ev::Closed {
                node,
                epoch,
                peer,
                conn,
                remote,
            } => {
                let n = &mut self.nodes[node];
                if !n.up || n.epoch != epoch {
                    return;
                }
                if n.conns.get(&peer).is_some_and(|(c, _)| *c == conn) {
                    n.conns.remove(&peer);
                }
                let peer_id = self.keys[peer].node_id();
                self.nodes[node]
                    .core
                    .handle_closed(now, peer_id, conn, remote);
                self.trace.push((now.mono, node, Trace::Closed(peer)));
                node
            }
        };
        self.dispatch(node);
    }

    fn drop_conn_later(&mut self, node: usize, peer: usize, conn: usize) {
        let Some((_, remote)) = self.nodes[node].conns.get(&peer).copied() else {
            return;
        };
        let epoch = self.nodes[node].epoch;
        self.queue.push(
            IDLE_TIMEOUT,
            Ev::Closed {
                node,
                epoch,
                peer,
                conn,
                remote,
            },
        );
    }

    /// Whether `a` can send to `b` now (both up, not cut apart).
    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].up && self.nodes[b].up && !self.cut.contains(&(a, b))
    }

    /// Node `i` goes behind NAT (nobody can dial it directly) or comes out of it.
    pub fn set_nat(&mut self, i: usize, nat: bool) {
        self.nodes[i].kind.nat = nat;
    }

    /// A direct dial from `i` to `j` at `addrs` ([`CoreOutput::DialDirect`]).
    fn dial_direct(&mut self, i: usize, j: usize, addrs: &[SocketAddr]) {
        if !self.nodes[j].kind.nat && addrs.contains(&Self::addr(j)) && self.reachable(i, j) {
            self.open(i, j, None);
        }
    }

    /// The connection from `i` to `j`: the open one, else one dialled by `i`'s dial plan (its
    /// handshake is not simulated: a reachable peer is connected at once).
    fn connect(&mut self, i: usize, j: usize) -> Option<usize> {
        if let Some((c, _)) = self.nodes[i].conns.get(&j) {
            return Some(*c);
        }
        let plan = self.nodes[i].core.dial_plan(&self.node_id(j), HANDSHAKE);
        let direct =
            !self.nodes[j].kind.nat && plan.direct.contains(&Self::addr(j)) && self.reachable(i, j);
        let via = if direct {
            None
        } else {
            let relay = plan.relays.iter().find_map(|(hub, _)| {
                let h = *self.index.get(hub)?;
                (self.reachable(i, h)
                    && self.reachable(h, j)
                    && self.nodes[h].conns.contains_key(&j)
                    && self.nodes[h].conns.contains_key(&i))
                .then_some(h)
            });
            match relay {
                Some(h) => Some(h),
                None => {
                    self.trace.push((self.now(), i, Trace::DialFailed(j)));
                    return None;
                }
            }
        };
        Some(self.open(i, j, via))
    }

    /// Opens a connection from `i` to `j`, directly or through hub `via`; both cores hear of it.
    fn open(&mut self, i: usize, j: usize, via: Option<usize>) -> usize {
        self.next_conn += 1;
        let conn = self.next_conn;
        let (remote_i, remote_j) = match via {
            None => (Self::addr(j), Self::addr(i)),
            Some(h) => {
                let v = |x: usize| {
                    SocketAddr::from((Ipv4Addr::from(0xf000_0000 | (h << 12 | x) as u32), 1))
                };
                (v(j), v(i))
            }
        };
        self.trace
            .push((self.now(), i, Trace::Dialled { to: j, relay: via }));
        let now = self.now_of();
        for (a, b, remote, dialled) in [(i, j, remote_i, true), (j, i, remote_j, false)] {
            let listen = if self.nodes[b].kind.nat {
                vec![]
            } else {
                vec![Self::addr(b)]
            };
            self.nodes[a].conns.insert(b, (conn, remote));
            let hello = Connected {
                cert: self.certs[b].clone(),
                listen,
                conn,
                remote,
                dialled,
            };
            if let Err(e) = self.nodes[a].core.handle_connected(now, hello) {
                tracing::trace!("sim node {a} refused {b}: {e}");
            }
        }
        self.dispatch(j);
        conn
    }

    /// Sends to `j` from `i` after a latency, unless lost or cut; dials first when needed.
    fn transmit(&mut self, i: usize, to: NodeId, ev: impl FnOnce(usize) -> Ev) -> bool {
        let Some(&j) = self.index.get(&to) else {
            return false;
        };
        self.messages += 1;
        if self.connect(i, j).is_none() {
            return false;
        }
        if !self.reachable(i, j) || (self.net.loss > 0.0 && self.rng.random_bool(self.net.loss)) {
            return false;
        }
        let delay = self.latency();
        self.queue.push(delay, ev(j));
        true
    }

    fn dispatch(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        let now = self.now_of();
        while let Some(out) = self.nodes[i].core.poll_output() {
            match out {
                CoreOutput::Swim { to, data } => {
                    self.transmit(i, to, |j| Ev::Swim {
                        to: j,
                        from: i,
                        data,
                    });
                }
                CoreOutput::PubSub { to, msg } => {
                    self.transmit(i, to, |j| Ev::PubSub {
                        to: j,
                        from: i,
                        msg,
                    });
                }
                CoreOutput::DhtRequest { to, id, req } => {
                    let sent = self.transmit(i, to, |j| Ev::DhtReq {
                        to: j,
                        from: i,
                        id,
                        req,
                    });
                    let connected = self
                        .index
                        .get(&to)
                        .is_some_and(|j| self.nodes[i].conns.contains_key(j));
                    if !sent && !connected {
                        // No connection: the request fails at once, as a failed RPC does (a
                        // lost one is left to the request timeout).
                        self.nodes[i].core.handle_dht_failed(now, id);
                    }
                }
                CoreOutput::Deliver(p) => {
                    self.trace
                        .push((now.mono, i, Trace::Delivered(p.publisher, p.seq)));
                    self.nodes[i].delivered.push((p.publisher, p.seq));
                }
                CoreOutput::Subscribed { token, acked } => {
                    self.nodes[i].subscribed.insert(token, acked);
                }
                CoreOutput::LookupDone { lookup, result } => {
                    self.trace.push((
                        now.mono,
                        i,
                        Trace::Lookup {
                            records: result.records.len(),
                            stored: result.stored,
                        },
                    ));
                    self.nodes[i].lookups.insert(lookup, result);
                }
                CoreOutput::PeerChanged(p) => {
                    if let Some(&j) = self.index.get(&p.id) {
                        self.trace.push((now.mono, i, Trace::Peer(j, p.state)));
                    }
                }
                CoreOutput::Close { peer, conn, .. } => {
                    let Some(&j) = self.index.get(&peer) else {
                        continue;
                    };
                    if self.nodes[i].conns.get(&j).is_some_and(|(c, _)| *c == conn) {
                        let (_, remote) = self.nodes[i].conns.remove(&j).expect("present");
                        self.nodes[i].core.handle_closed(now, peer, conn, remote);
                        if let Some((_, remote)) = self.nodes[j]
                            .conns
                            .get(&i)
                            .filter(|(c, _)| *c == conn)
                            .copied()
                        {
                            self.nodes[j].conns.remove(&i);
                            let me = self.node_id(i);
                            self.nodes[j].core.handle_closed(now, me, conn, remote);
                        }
                    }
                }
                CoreOutput::Member(ev) => match ev {
                    Event::Up(id) => {
                        if let Some(&j) = self.index.get(&id.node) {
                            self.trace.push((now.mono, i, Trace::Up(j, id.generation)));
                        }
                    }
                    Event::Down(id) => {
                        if let Some(&j) = self.index.get(&id.node) {
                            self.trace
                                .push((now.mono, i, Trace::Down(j, id.generation)));
                        }
                    }
                    _ => {}
                },
                CoreOutput::DialDirect { peer, addrs } => {
                    if let Some(&j) = self.index.get(&peer) {
                        self.dial_direct(i, j, &addrs);
                    }
                }
                CoreOutput::Persist(_)
                | CoreOutput::Revoked(_)
                | CoreOutput::PeerForgotten(_)
                | CoreOutput::PeerLeft(_) => {}
            }
        }
        let now = self.queue.now();
        if let Some(at) = self.nodes[i].core.poll_timeout().map(|at| at.max(now))
            && self.nodes[i].next_wake.is_none_or(|w| at < w)
        {
            let n = &mut self.nodes[i];
            n.next_wake = Some(at);
            let epoch = n.epoch;
            self.queue.push(at - now, Ev::Wake { node: i, epoch, at });
        }
    }
}
