//! Deterministic simulation: virtual time, a seeded RNG, N nodes in one process.
//!
//! [`EventQueue`] is the clock (a priority queue of timestamped events; ties broken by insertion
//! order, so a seed always replays the same run); [`Simulation`] runs any simulator on it. [`MembershipSim`] drives N [`Membership`] state
//! machines over a simulated network with latency, loss, crashed nodes and partitions;
//! [`DhtSim`] and [`PubSubSim`] do the same for the DHT and pub/sub state machines, and
//! [`CoreSim`] for whole [`crate::core::MeshCore`]s: all three and the rules between them, with
//! connections dialled by each core's own dial plan (direct or through a hub relay).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use foca::State;
use macula_core::{NodeId, NodeKey};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::clock::{ClockState, MetaClock};
use crate::dht::{
    Dht, DhtConfig, DhtOutput, LookupId, LookupResult, Record, Request, RequestId, Response,
};
use crate::membership::{
    Capacity, Event, FailureDomains, Label, MemberId, MemberMeta, MemberTimer, Membership,
    MembershipConfig, Output, SignedMeta,
};
use crate::pubsub::{PubSub, PubSubMsg, PubSubOutput, PubSubTimer};
use crate::realm::{CertBody, MembershipCert, RealmKey, Revocation, Role};

mod combined;
pub use combined::{CoreSim, NodeKind, Trace};

/// Unix time (seconds) of virtual time zero in the simulators.
pub const SIM_EPOCH: u64 = 1_750_000_000;

/// A virtual-time event queue.
pub struct EventQueue<E> {
    now: Duration,
    seq: u64,
    heap: BinaryHeap<Reverse<Scheduled<E>>>,
}

struct Scheduled<E> {
    at: Duration,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            now: Duration::ZERO,
            seq: 0,
            heap: BinaryHeap::new(),
        }
    }
}

impl<E> EventQueue<E> {
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Schedules `ev` after `delay` from now.
    pub fn push(&mut self, delay: Duration, ev: E) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            ev,
        }));
    }

    /// Pops the next event due at or before `until`, advancing the clock to it; otherwise
    /// advances the clock to `until` and returns `None`.
    pub fn pop_until(&mut self, until: Duration) -> Option<E> {
        match self.heap.peek() {
            Some(Reverse(s)) if s.at <= until => {
                let Reverse(s) = self.heap.pop().expect("peeked");
                self.now = s.at;
                Some(s.ev)
            }
            _ => {
                self.now = self.now.max(until);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A simulator driven by an [`EventQueue`]: one way to run every simulator in virtual time.
pub trait Simulation {
    /// Virtual time now.
    fn now(&self) -> Duration;

    /// Handles the next event due at or before `t` and returns true; otherwise advances the
    /// clock to `t` and returns false.
    fn step(&mut self, t: Duration) -> bool;

    /// Runs until virtual time `t` (every event due by then handled).
    fn run_until(&mut self, t: Duration) {
        while self.step(t) {}
    }

    /// Runs until `done` holds (checked every `step`) or `deadline`; returns the time it held.
    fn run_until_cond(
        &mut self,
        deadline: Duration,
        step: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration>
    where
        Self: Sized,
    {
        loop {
            if done(self) {
                return Some(self.now());
            }
            if self.now() >= deadline {
                return None;
            }
            let next = (self.now() + step).min(deadline);
            self.run_until(next);
        }
    }
}

/// Simulated network behaviour.
#[derive(Debug, Clone)]
pub struct NetParams {
    /// One-way latency, uniformly distributed in this range.
    pub latency: (Duration, Duration),
    /// Probability that a packet is lost.
    pub loss: f64,
}

impl Default for NetParams {
    fn default() -> Self {
        Self {
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            loss: 0.0,
        }
    }
}

enum Ev {
    Packet {
        to: usize,
        from: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        epoch: u32,
        timer: MemberTimer,
    },
}

struct SimNode {
    m: Membership,
    up: bool,
    /// Bumped on restart so timers of the previous life are dropped.
    epoch: u32,
    /// The node's wall clock minus virtual time, in milliseconds.
    clock_offset_ms: i64,
    /// What the node persisted ([`Output::Persist`]); survives restarts.
    disk: Option<ClockState>,
}

/// N membership state machines on a simulated network.
pub struct MembershipSim {
    queue: EventQueue<Ev>,
    nodes: Vec<SimNode>,
    keys: Vec<NodeKey>,
    /// Each node's realm certificate (shown in its Hello and carried in its metadata).
    certs: Vec<MembershipCert>,
    index: HashMap<NodeId, usize>,
    realm: RealmKey,
    config: MembershipConfig,
    rng: StdRng,
    pub net: NetParams,
    cut: HashSet<(usize, usize)>,
    /// Every event any node reported: (time, node index, event).
    pub log: Vec<(Duration, usize, Event)>,
    /// Packets and bytes handed to the network.
    pub packets: u64,
    pub bytes: u64,
}

impl Simulation for MembershipSim {
    fn now(&self) -> Duration {
        self.queue.now()
    }

    fn step(&mut self, t: Duration) -> bool {
        self.queue.pop_until(t).map(|ev| self.handle(ev)).is_some()
    }
}

impl MembershipSim {
    /// `n` nodes with keys and RNG derived from `seed`; with `meta`, each node publishes signed
    /// metadata with its realm certificate (costs two signature checks per node pair): name
    /// `sim-<i>`, site `site-<i % 4>`. Without `meta` membership runs without certificates
    /// ([`MembershipConfig::require_cert`] off): failure detection alone.
    pub fn new(n: usize, mut config: MembershipConfig, seed: u64, meta: bool) -> Self {
        if !meta {
            config.require_cert = false;
        }
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
            .enumerate()
            .map(|(i, k)| {
                realm.issue(CertBody {
                    realm: realm.id(),
                    node: k.node_id(),
                    role: Role::Edge,
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
            keys: Vec::new(),
            certs,
            realm,
            config,
            rng,
            net: NetParams::default(),
            cut: HashSet::new(),
            log: Vec::new(),
            packets: 0,
            bytes: 0,
        };
        for (i, key) in keys.iter().enumerate() {
            let m = sim.make(i, key, 0, meta);
            sim.nodes.push(SimNode {
                m,
                up: true,
                epoch: 0,
                clock_offset_ms: 0,
                disk: None,
            });
        }
        sim.keys = keys;
        for i in 0..n {
            sim.dispatch(i);
        }
        sim
    }

    fn make(&mut self, i: usize, key: &NodeKey, generation: u32, meta: bool) -> Membership {
        let id = MemberId {
            node: key.node_id(),
            generation,
        };
        let meta = meta.then(|| {
            SignedMeta::sign(
                key,
                self.certs[i].clone(),
                MemberMeta {
                    node: key.node_id(),
                    version: u64::from(generation) + 1,
                    role: Role::Edge,
                    name: format!("sim-{i}"),
                    addrs: vec![],
                    overlay_key: None,
                    capacity: Capacity::default(),
                    domains: FailureDomains {
                        site: Label::new(format!("site-{}", i % 4)).expect("a valid label"),
                        power: Label::default(),
                    },
                    software: "sim".into(),
                    relays: vec![],
                },
            )
        });
        let seed = self.rng.random();
        let now = self.unix_now();
        Membership::new(id, self.realm.id(), meta, self.config.clone(), seed, now)
    }

    /// Unix seconds at the current virtual time (virtual time zero is [`SIM_EPOCH`]).
    pub fn unix_now(&self) -> u64 {
        SIM_EPOCH + self.now().as_secs()
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

    pub fn membership(&self, i: usize) -> &Membership {
        &self.nodes[i].m
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }

    /// Node `i` announces itself to node `via`.
    pub fn join(&mut self, i: usize, via: usize) {
        let peer = self.node_id(via);
        self.admit(i, via);
        self.nodes[i].m.join(peer);
        self.dispatch(i);
    }

    /// Gives every node the full member list, as after convergence.
    pub fn seed_full_view(&mut self) {
        let ids: Vec<MemberId> = (0..self.len()).map(|i| self.nodes[i].m.id()).collect();
        for i in 0..self.len() {
            // Converged nodes have admitted each other (their Hellos were checked).
            for j in (0..self.len()).filter(|&j| j != i) {
                self.admit(i, j);
            }
            let own = ids[i];
            self.nodes[i]
                .m
                .seed_members(ids.iter().copied().filter(|id| *id != own));
            self.dispatch(i);
        }
    }

    /// Node `i`'s wall clock in Unix milliseconds: virtual time plus its offset, never before
    /// 1970.
    pub fn wall_ms(&self, i: usize) -> u64 {
        let virt = i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX);
        u64::try_from(virt.saturating_add(self.nodes[i].clock_offset_ms)).unwrap_or(0)
    }

    /// Sets node `i`'s wall clock to virtual time plus `offset_ms`.
    pub fn set_clock_offset(&mut self, i: usize, offset_ms: i64) {
        self.nodes[i].clock_offset_ms = offset_ms;
    }

    /// The state node `i` persisted last, if any.
    pub fn persisted_clock(&self, i: usize) -> Option<ClockState> {
        self.nodes[i].disk
    }

    /// Node `i` changes its own metadata (see [`Membership::update_meta`]; the version clock is
    /// its [`MembershipSim::wall_ms`]). Returns the new version, if anything changed.
    pub fn update_meta(&mut self, i: usize, change: impl FnOnce(&mut MemberMeta)) -> Option<u64> {
        let now_ms = self.wall_ms(i);
        let version = self.nodes[i].m.update_meta(&self.keys[i], now_ms, change);
        self.dispatch(i);
        version
    }

    /// Crashes node `i` (no goodbye).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
    }

    /// Restarts node `i` with a new generation; it announces itself to `via`.
    pub fn restart(&mut self, i: usize, via: usize) {
        let generation = self.nodes[i].m.id().generation + 1;
        let key = NodeKey::from_seed(*self.keys[i].signing_key().as_bytes());
        let m = self.make(i, &key, generation, false);
        let node = &mut self.nodes[i];
        node.m = m;
        node.up = true;
        node.epoch += 1;
        self.join(i, via);
    }

    /// Restarts node `i` as the daemon does: its clock set to virtual time plus `offset_ms`, its
    /// generation and metadata version resumed from what it persisted ([`MetaClock::resume`]),
    /// its metadata that of its previous life changed by `change`; it announces itself to `via`.
    pub fn restart_with_clock(
        &mut self,
        i: usize,
        via: usize,
        offset_ms: i64,
        change: impl FnOnce(&mut MemberMeta),
    ) {
        self.nodes[i].clock_offset_ms = offset_ms;
        let now = self.wall_ms(i);
        let (mut clock, state) = MetaClock::resume(self.nodes[i].disk, now);
        self.nodes[i].disk = Some(state);
        let (version, _) = clock.next(now, 0);
        let key = NodeKey::from_seed(*self.keys[i].signing_key().as_bytes());
        let mut meta = self.nodes[i]
            .m
            .own_meta()
            .expect("restart_with_clock needs a node with metadata")
            .meta
            .clone();
        change(&mut meta);
        meta.version = version;
        let id = MemberId {
            node: key.node_id(),
            generation: clock.generation(),
        };
        let seed = self.rng.random();
        let mut m = Membership::new(
            id,
            self.realm.id(),
            Some(SignedMeta::sign(&key, self.certs[i].clone(), meta)),
            self.config.clone(),
            seed,
            self.unix_now(),
        );
        m.set_clock(clock);
        let node = &mut self.nodes[i];
        node.m = m;
        node.up = true;
        node.epoch += 1;
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

    /// Node `i` publishes a revocation (as the realm admin's node would).
    pub fn revoke(&mut self, i: usize, victim: usize) -> Revocation {
        let rev = self.realm.revoke(self.node_id(victim), 1);
        self.nodes[i]
            .m
            .revoke(rev.clone())
            .expect("a realm-signed revocation is accepted");
        self.dispatch(i);
        rev
    }

    /// How many live nodes (other than `target`) see `target` in one of `states`.
    pub fn count_seeing(&self, target: usize, states: &[State]) -> usize {
        let id = self.node_id(target);
        (0..self.len())
            .filter(|&i| i != target && self.nodes[i].up)
            .filter(|&i| {
                self.nodes[i]
                    .m
                    .state_of(&id)
                    .is_some_and(|(_, s)| states.contains(&s))
            })
            .count()
    }

    pub fn live_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.up).count()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Packet { to, from, data } => {
                if !self.nodes[to].up {
                    return;
                }
                let from_id = self.node_id(from);
                self.admit(to, from);
                let now = self.unix_now();
                if let Err(e) = self.nodes[to].m.handle_packet(from_id, &data, now) {
                    tracing::trace!("sim node {to}: {e}");
                }
                self.dispatch(to);
            }
            Ev::Timer { node, epoch, timer } => {
                let n = &mut self.nodes[node];
                if !n.up || n.epoch != epoch {
                    return;
                }
                n.m.handle_timer(timer, SIM_EPOCH + self.queue.now().as_secs());
                self.dispatch(node);
            }
        }
    }

    /// Node `i` admits node `peer` as its Hello on their connection would (once).
    fn admit(&mut self, i: usize, peer: usize) {
        let now = self.unix_now();
        let m = &mut self.nodes[i].m;
        if self.config.require_cert && !m.is_admitted(&self.keys[peer].node_id()) {
            if let Err(e) = m.admit(&self.certs[peer], now) {
                tracing::trace!("sim node {i} refused {peer}: {e}");
            }
        }
    }

    fn dispatch(&mut self, i: usize) {
        let outputs: Vec<Output> = self.nodes[i].m.drain().collect();
        let now = self.now();
        for out in outputs {
            match out {
                Output::Send { to, data } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    self.packets += 1;
                    self.bytes += data.len() as u64;
                    if self.cut.contains(&(i, j))
                        || (self.net.loss > 0.0 && self.rng.random_bool(self.net.loss))
                    {
                        continue;
                    }
                    let (lo, hi) = self.net.latency;
                    let delay = if hi > lo {
                        self.rng.random_range(lo..hi)
                    } else {
                        lo
                    };
                    self.queue.push(
                        delay,
                        Ev::Packet {
                            to: j,
                            from: i,
                            data,
                        },
                    );
                }
                Output::Schedule { after, timer } => {
                    let epoch = self.nodes[i].epoch;
                    self.queue.push(
                        after,
                        Ev::Timer {
                            node: i,
                            epoch,
                            timer,
                        },
                    );
                }
                Output::Event(e) => self.log.push((now, i, e)),
                Output::Persist(state) => self.nodes[i].disk = Some(state),
            }
        }
    }
}

enum DhtEv {
    Req {
        to: usize,
        from: usize,
        id: RequestId,
        req: Request,
    },
    Resp {
        to: usize,
        from: usize,
        id: RequestId,
        resp: Response,
    },
    Timeout {
        node: usize,
        id: RequestId,
    },
}

/// N DHT state machines on a simulated network (latency 10–50 ms by default).
pub struct DhtSim {
    queue: EventQueue<DhtEv>,
    nodes: Vec<Dht>,
    keys: Vec<NodeKey>,
    up: Vec<bool>,
    index: HashMap<NodeId, usize>,
    rng: StdRng,
    pub net: NetParams,
    /// Unix time of simulated time zero (record expiry).
    pub epoch_unix: u64,
    results: HashMap<(usize, LookupId), LookupResult>,
    pub requests: u64,
}

impl Simulation for DhtSim {
    fn now(&self) -> Duration {
        self.queue.now()
    }

    fn step(&mut self, t: Duration) -> bool {
        self.queue.pop_until(t).map(|ev| self.handle(ev)).is_some()
    }
}

impl DhtSim {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<NodeKey> = (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                NodeKey::from_seed(b)
            })
            .collect();
        let config = DhtConfig {
            request_timeout: Duration::from_secs(1),
        };
        Self {
            queue: EventQueue::default(),
            nodes: keys
                .iter()
                .map(|k| Dht::new(k.node_id(), config.clone()))
                .collect(),
            index: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.node_id(), i))
                .collect(),
            up: vec![true; n],
            keys,
            rng,
            net: NetParams {
                latency: (Duration::from_millis(10), Duration::from_millis(50)),
                loss: 0.0,
            },
            epoch_unix: 1_800_000_000,
            results: HashMap::new(),
            requests: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Dht {
        &self.nodes[i]
    }

    pub fn key(&self, i: usize) -> &NodeKey {
        &self.keys[i]
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.up[i]
    }

    pub fn unix_now(&self) -> u64 {
        self.epoch_unix + self.queue.now().as_secs()
    }

    /// Routing tables as after convergence: every node offered every other node, in random
    /// order (full buckets keep their first K).
    pub fn oracle_tables(&mut self) {
        let ids: Vec<NodeId> = self.keys.iter().map(NodeKey::node_id).collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        for i in 0..self.nodes.len() {
            for j in (1..order.len()).rev() {
                let k = self.rng.random_range(0..=j);
                order.swap(j, k);
            }
            for &j in &order {
                if j != i {
                    self.nodes[i].table.seen(ids[j]);
                }
            }
        }
    }

    /// Node `i` joins through node `via` (self-lookup).
    pub fn join(&mut self, i: usize, via: usize) -> LookupId {
        let contact = self.keys[via].node_id();
        let id = self.nodes[i].bootstrap([contact]);
        self.dispatch(i);
        id
    }

    pub fn find_node(&mut self, i: usize, target: NodeId) -> LookupId {
        let id = self.nodes[i].find_node(*target.as_bytes());
        self.dispatch(i);
        id
    }

    pub fn get(&mut self, i: usize, key: crate::dht::Key) -> LookupId {
        let id = self.nodes[i].get(key);
        self.dispatch(i);
        id
    }

    pub fn put(&mut self, i: usize, rec: Record) -> LookupId {
        let now = self.unix_now();
        let id = self.nodes[i].put(rec, now);
        self.dispatch(i);
        id
    }

    pub fn kill(&mut self, i: usize) {
        self.up[i] = false;
    }

    /// The result of lookup `id` started at node `i`, once finished.
    pub fn result(&self, i: usize, id: LookupId) -> Option<&LookupResult> {
        self.results.get(&(i, id))
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.net.latency;
        if hi > lo {
            self.rng.random_range(lo..hi)
        } else {
            lo
        }
    }

    fn handle(&mut self, ev: DhtEv) {
        let now = self.unix_now();
        match ev {
            DhtEv::Req { to, from, id, req } => {
                if !self.up[to] {
                    return;
                }
                let from_id = self.keys[from].node_id();
                let resp = self.nodes[to].handle_request(from_id, req, now);
                let delay = self.latency();
                self.queue.push(
                    delay,
                    DhtEv::Resp {
                        to: from,
                        from: to,
                        id,
                        resp,
                    },
                );
            }
            DhtEv::Resp { to, from, id, resp } => {
                if !self.up[to] {
                    return;
                }
                let from_id = self.keys[from].node_id();
                self.nodes[to].handle_response(from_id, id, resp, now);
                self.dispatch(to);
            }
            DhtEv::Timeout { node, id } => {
                if !self.up[node] {
                    return;
                }
                self.nodes[node].handle_timeout(id);
                self.dispatch(node);
            }
        }
    }

    fn dispatch(&mut self, i: usize) {
        let outputs: Vec<DhtOutput> = self.nodes[i].drain().collect();
        for out in outputs {
            match out {
                DhtOutput::Request { to, id, req } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    self.requests += 1;
                    if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss) {
                        continue;
                    }
                    let delay = self.latency();
                    self.queue.push(
                        delay,
                        DhtEv::Req {
                            to: j,
                            from: i,
                            id,
                            req,
                        },
                    );
                }
                DhtOutput::Timeout { after, id } => {
                    self.queue.push(after, DhtEv::Timeout { node: i, id });
                }
                DhtOutput::Done { lookup, result } => {
                    self.results.insert((i, lookup), result);
                }
            }
        }
    }
}

enum PsEv {
    Msg {
        to: usize,
        from: usize,
        msg: PubSubMsg,
    },
    Timer {
        node: usize,
        timer: PubSubTimer,
    },
}

/// N pub/sub state machines that all know each other (as after SWIM convergence), on a
/// simulated network with latency and loss.
pub struct PubSubSim {
    queue: EventQueue<PsEv>,
    nodes: Vec<PubSub>,
    ids: Vec<NodeId>,
    index: HashMap<NodeId, usize>,
    rng: StdRng,
    pub net: NetParams,
    /// Deliveries per node: (publisher, seq, hops).
    pub delivered: Vec<Vec<(NodeId, u64, u32)>>,
    /// Subscription acknowledgements per node.
    pub acks: Vec<usize>,
    /// Messages sent, by kind: publish, ihave, graft, prune, other.
    pub sent: [u64; 5],
}

impl Simulation for PubSubSim {
    fn now(&self) -> Duration {
        self.queue.now()
    }

    fn step(&mut self, t: Duration) -> bool {
        self.queue.pop_until(t).map(|ev| self.handle(ev)).is_some()
    }
}

impl PubSubSim {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<NodeKey> = (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                NodeKey::from_seed(b)
            })
            .collect();
        let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        let mut sim = Self {
            queue: EventQueue::default(),
            nodes: keys.into_iter().map(|k| PubSub::new(k, 0)).collect(),
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            ids,
            rng,
            net: NetParams::default(),
            delivered: vec![Vec::new(); n],
            acks: vec![0; n],
            sent: [0; 5],
        };
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let p = sim.ids[j];
                    sim.nodes[i].peer_up(p);
                }
            }
            sim.dispatch(i);
        }
        sim
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    pub fn subscribe(&mut self, i: usize, topic: &str) {
        self.nodes[i].subscribe(topic).expect("valid topic");
        self.dispatch(i);
    }

    pub fn publish(&mut self, i: usize, topic: &str, payload: Vec<u8>) -> u64 {
        let seq = self.nodes[i]
            .publish(topic, payload)
            .expect("valid publication");
        self.dispatch(i);
        seq
    }

    fn handle(&mut self, ev: PsEv) {
        match ev {
            PsEv::Msg { to, from, msg } => {
                let from_id = self.ids[from];
                self.nodes[to].handle(from_id, msg);
                self.dispatch(to);
            }
            PsEv::Timer { node, timer } => {
                self.nodes[node].handle_timer(timer);
                self.dispatch(node);
            }
        }
    }

    fn dispatch(&mut self, i: usize) {
        let outputs: Vec<PubSubOutput> = self.nodes[i].drain().collect();
        for out in outputs {
            match out {
                PubSubOutput::Send { to, msg } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    let kind = match msg {
                        PubSubMsg::Publish { .. } => 0,
                        PubSubMsg::IHave { .. } => 1,
                        PubSubMsg::Graft { .. } => 2,
                        PubSubMsg::Prune { .. } => 3,
                        _ => 4,
                    };
                    self.sent[kind] += 1;
                    if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss) {
                        continue;
                    }
                    let (lo, hi) = self.net.latency;
                    let delay = if hi > lo {
                        self.rng.random_range(lo..hi)
                    } else {
                        lo
                    };
                    self.queue.push(
                        delay,
                        PsEv::Msg {
                            to: j,
                            from: i,
                            msg,
                        },
                    );
                }
                PubSubOutput::Schedule { after, timer } => {
                    self.queue.push(after, PsEv::Timer { node: i, timer });
                }
                PubSubOutput::Deliver { msg, hops } => {
                    self.delivered[i].push((msg.publisher, msg.seq, hops));
                }
                PubSubOutput::Subscribed { .. } => self.acks[i] += 1,
            }
        }
    }
}
