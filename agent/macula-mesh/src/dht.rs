//! Kademlia DHT (sans-IO): 256-bit keys, k = 20, α = 3, lookups over d = 3 disjoint paths
//! (S/Kademlia), records signed by their author with a sequence number and an expiry, provider
//! records ("node X holds content Y").
//!
//! The state machine answers requests synchronously ([`Dht::handle_request`]) and runs lookups
//! that emit requests and timeouts ([`DhtOutput`]) and consume responses. Time comes in as unix
//! seconds (record expiry); request timeouts are scheduled by the driver.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ed25519_dalek::Signature;
use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use serde::{Deserialize, Serialize};

use crate::sig::Sig;

/// A DHT key: 256 bits, in the same space as node IDs.
pub type Key = [u8; 32];
/// Bucket size and replication factor.
pub const K: usize = 20;
/// Parallel requests per path.
pub const ALPHA: usize = 3;
/// Disjoint lookup paths.
pub const PATHS: usize = 3;
/// Largest record value.
pub const MAX_VALUE: usize = 1024;
/// Longest record lifetime (the author republishes before it runs out).
pub const MAX_TTL: u64 = 24 * 3600;
/// Most records kept per key (newest first).
pub const MAX_RECORDS_PER_KEY: usize = 64;
/// Records a node stores for others, in total (each at most ~1.2 KiB: ~20 MiB)...
pub const MAX_RECORDS: usize = 16_384;
/// ...and per storing peer (the member that sent the `Store`), whatever authors it signs as.
pub const MAX_RECORDS_PER_PEER: usize = 1024;
/// Consecutive failed requests after which a contact leaves the routing table.
const MAX_FAILURES: u8 = 3;

/// XOR distance.
pub fn distance(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Index of the k-bucket `other` falls in, seen from `me` (= shared prefix length).
fn bucket_index(me: &Key, other: &Key) -> Option<usize> {
    let d = distance(me, other);
    let zeros = d.iter().position(|b| *b != 0)?;
    Some(zeros * 8 + d[zeros].leading_zeros() as usize)
}

#[derive(Debug, Clone)]
struct Entry {
    id: NodeId,
    failures: u8,
}

/// Kademlia routing table: 256 buckets of at most [`K`] contacts. A full bucket keeps its old,
/// proven contacts and only gives up a slot held by one that failed requests.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    me: Key,
    buckets: Vec<Vec<Entry>>,
}

impl RoutingTable {
    pub fn new(me: NodeId) -> Self {
        Self {
            me: *me.as_bytes(),
            buckets: vec![Vec::new(); 256],
        }
    }

    /// Records that `id` answered or contacted us. Returns whether it is in the table now.
    pub fn seen(&mut self, id: NodeId) -> bool {
        let Some(b) = bucket_index(&self.me, id.as_bytes()) else {
            return false;
        };
        let bucket = &mut self.buckets[b];
        if let Some(pos) = bucket.iter().position(|e| e.id == id) {
            let mut e = bucket.remove(pos);
            e.failures = 0;
            bucket.push(e);
            return true;
        }
        if bucket.len() < K {
            bucket.push(Entry { id, failures: 0 });
            return true;
        }
        if let Some(pos) = bucket
            .iter()
            .enumerate()
            .filter(|(_, e)| e.failures > 0)
            .max_by_key(|(_, e)| e.failures)
            .map(|(i, _)| i)
        {
            bucket.remove(pos);
            bucket.push(Entry { id, failures: 0 });
            return true;
        }
        false
    }

    /// Records a failed request to `id`; evicts it after [`MAX_FAILURES`] in a row.
    pub fn failed(&mut self, id: &NodeId) {
        let Some(b) = bucket_index(&self.me, id.as_bytes()) else {
            return;
        };
        let bucket = &mut self.buckets[b];
        if let Some(pos) = bucket.iter().position(|e| e.id == *id) {
            bucket[pos].failures += 1;
            if bucket[pos].failures >= MAX_FAILURES {
                bucket.remove(pos);
            }
        }
    }

    /// Forgets `id` (it left the membership).
    pub fn remove(&mut self, id: &NodeId) {
        if let Some(b) = bucket_index(&self.me, id.as_bytes()) {
            self.buckets[b].retain(|e| e.id != *id);
        }
    }

    /// The `n` contacts closest to `target`.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.buckets.iter().flatten().map(|e| e.id).collect();
        all.sort_by_key(|id| distance(id.as_bytes(), target));
        all.truncate(n);
        all
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordKind {
    /// A value published by its author under `key`.
    Value,
    /// "The author holds the content named `key`" (value: optional hints).
    Provider,
}

/// The signed part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub kind: RecordKind,
    pub key: Key,
    pub author: NodeId,
    /// Higher replaces lower for the same (key, author, kind).
    pub seq: u64,
    /// Unix seconds; at most [`MAX_TTL`] ahead when stored.
    pub expires: u64,
    pub value: Vec<u8>,
}

/// A DHT record: signed by its author in the [`Domain::DhtRecord`] domain over `wire(body)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub body: RecordBody,
    pub sig: Sig,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record signature does not verify against its author")]
    BadSignature,
    #[error("record expired at {0}")]
    Expired(u64),
    #[error("record lives longer than {MAX_TTL} s")]
    TtlTooLong,
    #[error("record value is {0} bytes, more than {MAX_VALUE}")]
    TooLarge(usize),
    #[error("an equal or newer record (seq {0}) is already stored")]
    Stale(u64),
    #[error("the store is full ({0} records of the sender or in all); try other nodes")]
    Full(u64),
}

impl Record {
    pub fn sign(key: &NodeKey, body: RecordBody) -> Self {
        let sig = Sig(key.sign(Domain::DhtRecord, &wire::encode(&body)).to_bytes());
        Self { body, sig }
    }

    /// Checks signature, size and lifetime at unix time `now`.
    pub fn verify(&self, now: u64) -> Result<(), RecordError> {
        let b = &self.body;
        if b.value.len() > MAX_VALUE {
            return Err(RecordError::TooLarge(b.value.len()));
        }
        if b.expires <= now {
            return Err(RecordError::Expired(b.expires));
        }
        if b.expires > now + MAX_TTL {
            return Err(RecordError::TtlTooLong);
        }
        b.author
            .verify(
                Domain::DhtRecord,
                &wire::encode(b),
                &Signature::from_bytes(&self.sig.0),
            )
            .map_err(|_| RecordError::BadSignature)
    }
}

/// Records this node stores for others, bounded in total ([`MAX_RECORDS`]) and per storing
/// peer ([`MAX_RECORDS_PER_PEER`]).
#[derive(Debug)]
pub struct RecordStore {
    /// Per key: each record with the peer that stored it.
    by_key: HashMap<Key, Vec<(Record, NodeId)>>,
    per_peer: HashMap<NodeId, usize>,
    total: usize,
    max_total: usize,
}

impl Default for RecordStore {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            per_peer: HashMap::new(),
            total: 0,
            max_total: MAX_RECORDS,
        }
    }
}

impl RecordStore {
    /// Stores a verified record sent by `from`, replacing an older one of the same
    /// (author, kind).
    pub fn put(&mut self, rec: Record, from: NodeId, now: u64) -> Result<(), RecordError> {
        rec.verify(now)?;
        let list = self.by_key.entry(rec.body.key).or_default();
        let mut gone = Vec::new();
        list.retain(|(r, by)| {
            let keep = r.body.expires > now;
            if !keep {
                gone.push(*by);
            }
            keep
        });
        if let Some(i) = list
            .iter()
            .position(|(r, _)| r.body.author == rec.body.author && r.body.kind == rec.body.kind)
        {
            if list[i].0.body.seq >= rec.body.seq {
                let seq = list[i].0.body.seq;
                self.forget(gone);
                return Err(RecordError::Stale(seq));
            }
            let old_by = list[i].1;
            list[i] = (rec, from);
            self.forget(gone);
            self.forget([old_by]);
            self.count(from);
            return Ok(());
        }
        self.forget(gone);
        let theirs = self.per_peer.get(&from).copied().unwrap_or(0);
        if theirs >= MAX_RECORDS_PER_PEER {
            return Err(RecordError::Full(theirs as u64));
        }
        if self.total >= self.max_total {
            self.expire(now);
            if self.total >= self.max_total {
                return Err(RecordError::Full(self.total as u64));
            }
        }
        let list = self.by_key.entry(rec.body.key).or_default();
        list.push((rec, from));
        let mut dropped = Vec::new();
        if list.len() > MAX_RECORDS_PER_KEY {
            list.sort_by_key(|(r, _)| std::cmp::Reverse(r.body.expires));
            dropped = list.split_off(MAX_RECORDS_PER_KEY);
        }
        self.count(from);
        self.forget(dropped.into_iter().map(|(_, by)| by));
        Ok(())
    }

    fn count(&mut self, by: NodeId) {
        *self.per_peer.entry(by).or_default() += 1;
        self.total += 1;
    }

    fn forget(&mut self, by: impl IntoIterator<Item = NodeId>) {
        for b in by {
            self.total -= 1;
            if let Some(n) = self.per_peer.get_mut(&b) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&b);
                }
            }
        }
    }

    /// Keys with at least one record stored.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_key.keys()
    }

    /// Unexpired records under `key`.
    pub fn get(&self, key: &Key, now: u64) -> Vec<Record> {
        self.by_key
            .get(key)
            .map(|l| {
                l.iter()
                    .filter(|(r, _)| r.body.expires > now)
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops expired records (the node's driver calls it every [`EXPIRE_PERIOD`]).
    pub fn expire(&mut self, now: u64) {
        let mut gone = Vec::new();
        self.by_key.retain(|_, l| {
            l.retain(|(r, by)| {
                let keep = r.body.expires > now;
                if !keep {
                    gone.push(*by);
                }
                keep
            });
            !l.is_empty()
        });
        self.forget(gone);
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// How often the node's driver drops expired records.
pub const EXPIRE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// DHT requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The K contacts closest to `target`.
    FindNode { target: Key },
    /// Records under `key`, plus closer contacts.
    FindValue { key: Key },
    /// Store this record.
    Store(Record),
}

/// DHT responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Nodes(Vec<NodeId>),
    Records {
        records: Vec<Record>,
        closer: Vec<NodeId>,
    },
    Stored(Result<(), RecordError>),
}

// RecordError crosses the wire inside `Stored`.
impl Serialize for RecordError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (code, n): (u8, u64) = match self {
            RecordError::BadSignature => (0, 0),
            RecordError::Expired(t) => (1, *t),
            RecordError::TtlTooLong => (2, 0),
            RecordError::TooLarge(n) => (3, *n as u64),
            RecordError::Stale(q) => (4, *q),
            RecordError::Full(n) => (5, *n),
        };
        (code, n).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RecordError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (code, n) = <(u8, u64)>::deserialize(d)?;
        Ok(match code {
            0 => RecordError::BadSignature,
            1 => RecordError::Expired(n),
            2 => RecordError::TtlTooLong,
            3 => RecordError::TooLarge(usize::try_from(n).unwrap_or(usize::MAX)),
            4 => RecordError::Stale(n),
            5 => RecordError::Full(n),
            _ => return Err(serde::de::Error::custom("unknown record error code")),
        })
    }
}

/// Identifies a lookup.
pub type LookupId = u64;
/// Identifies an outstanding request.
pub type RequestId = u64;

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum DhtOutput {
    /// Send `req` to `to`; feed the answer to [`Dht::handle_response`] with `id`.
    Request {
        to: NodeId,
        id: RequestId,
        req: Request,
    },
    /// Call [`Dht::handle_timeout`] with `id` after `after` unless answered.
    Timeout { after: Duration, id: RequestId },
    /// A lookup finished.
    Done {
        lookup: LookupId,
        result: LookupResult,
    },
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The closest responsive nodes found (at most K), nearest first.
    pub closest: Vec<NodeId>,
    /// Valid records found (get), newest per (author, kind).
    pub records: Vec<Record>,
    /// Request rounds until the first record (get) or the closest node (find) was reached.
    pub hops: Option<u32>,
    /// Requests sent and requests that failed.
    pub queried: u32,
    pub failed: u32,
    /// Stores acknowledged (put).
    pub stored: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandState {
    New,
    Inflight,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
struct Cand {
    id: NodeId,
    dist: Key,
    state: CandState,
    depth: u32,
}

#[derive(Debug, Default)]
struct Path {
    /// Sorted by distance to the target.
    cands: Vec<Cand>,
    inflight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    FindNode,
    Get,
    Put,
}

#[derive(Debug)]
struct Lookup {
    target: Key,
    purpose: Purpose,
    paths: Vec<Path>,
    claimed: HashSet<NodeId>,
    records: Vec<Record>,
    hops: Option<u32>,
    queried: u32,
    failed: u32,
    /// For puts: the record, and the phase (false = finding nodes, true = storing).
    put: Option<Record>,
    storing: usize,
    stored: u32,
    closest: Vec<NodeId>,
}

/// DHT parameters.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    pub request_timeout: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The DHT state machine of one node.
pub struct Dht {
    me: NodeId,
    config: DhtConfig,
    pub table: RoutingTable,
    pub store: RecordStore,
    lookups: HashMap<LookupId, Lookup>,
    requests: HashMap<RequestId, (LookupId, usize, NodeId)>,
    /// Re-replications under way ([`Dht::holder_left`]): they report no [`DhtOutput::Done`].
    replicating: HashSet<LookupId>,
    /// Records re-replicated since start.
    pub replicated: u64,
    next: u64,
    out: Vec<DhtOutput>,
}

impl Dht {
    pub fn new(me: NodeId, config: DhtConfig) -> Self {
        Self {
            me,
            config,
            table: RoutingTable::new(me),
            store: RecordStore::default(),
            lookups: HashMap::new(),
            requests: HashMap::new(),
            replicating: HashSet::new(),
            replicated: 0,
            next: 1,
            out: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, DhtOutput> {
        self.out.drain(..)
    }

    /// Answers a request from `from` (and learns about `from`).
    pub fn handle_request(&mut self, from: NodeId, req: Request, now: u64) -> Response {
        self.table.seen(from);
        match req {
            Request::FindNode { target } => Response::Nodes(self.closest_excluding(&target, &from)),
            Request::FindValue { key } => Response::Records {
                records: self.store.get(&key, now),
                closer: self.closest_excluding(&key, &from),
            },
            Request::Store(rec) => Response::Stored(self.store.put(rec, from, now)),
        }
    }

    fn closest_excluding(&self, target: &Key, from: &NodeId) -> Vec<NodeId> {
        let mut c = self.table.closest(target, K + 1);
        c.retain(|n| n != from);
        c.truncate(K);
        c
    }

    /// Joins through known contacts: adds them and looks up our own ID.
    pub fn bootstrap(&mut self, contacts: impl IntoIterator<Item = NodeId>) -> LookupId {
        for c in contacts {
            self.table.seen(c);
        }
        self.find_node(*self.me.as_bytes())
    }

    pub fn find_node(&mut self, target: Key) -> LookupId {
        self.start(target, Purpose::FindNode, None)
    }

    /// Looks up the records under `key`.
    pub fn get(&mut self, key: Key) -> LookupId {
        self.start(key, Purpose::Get, None)
    }

    /// Stores `rec` at the K nodes closest to its key (and locally).
    pub fn put(&mut self, rec: Record, now: u64) -> LookupId {
        if let Err(e) = self.store.put(rec.clone(), self.me, now) {
            tracing::debug!("own record not stored locally: {e}");
        }
        self.start(rec.body.key, Purpose::Put, Some(rec))
    }

    /// `node` left (membership declared it down): it no longer counts among the K nodes that
    /// hold the records closest to it, so they are stored again at the K closest live nodes.
    /// Of the holders, the one closest to a record's key does it (as far as its routing table
    /// tells; the others leave it to that one), so a departure costs one put per record, not
    /// K. Returns how many records are re-replicated.
    pub fn holder_left(&mut self, node: NodeId, now: u64) -> usize {
        let mut keys: Vec<Key> = self
            .store
            .keys()
            .filter(|key| self.table.closest(key, K).contains(&node))
            .copied()
            .collect();
        // In a fixed order: lookup IDs (and simulations) do not depend on the hash map's.
        keys.sort_unstable();
        self.table.remove(&node);
        let mut count = 0;
        for key in keys {
            let nearest = self.table.closest(&key, 1);
            let mine = distance(self.me.as_bytes(), &key);
            if nearest
                .first()
                .is_some_and(|n| distance(n.as_bytes(), &key) < mine)
            {
                continue;
            }
            for rec in self.store.get(&key, now) {
                let lid = self.start(key, Purpose::Put, Some(rec));
                self.replicating.insert(lid);
                count += 1;
            }
        }
        self.replicated += count as u64;
        count
    }

    fn start(&mut self, target: Key, purpose: Purpose, put: Option<Record>) -> LookupId {
        let id = self.next;
        self.next += 1;
        let mut lookup = Lookup {
            target,
            purpose,
            paths: (0..PATHS).map(|_| Path::default()).collect(),
            claimed: HashSet::new(),
            records: Vec::new(),
            hops: None,
            queried: 0,
            failed: 0,
            put,
            storing: 0,
            stored: 0,
            closest: Vec::new(),
        };
        // Seed the paths round-robin from our K closest contacts: the paths start disjoint and
        // stay so (a node is claimed by the first path that hears of it).
        for (i, c) in self.table.closest(&target, K).into_iter().enumerate() {
            lookup.claimed.insert(c);
            let path = &mut lookup.paths[i % PATHS];
            insert_cand(path, &target, c, 1);
        }
        self.lookups.insert(id, lookup);
        self.advance(id);
        id
    }

    /// Feeds the answer to request `id` from `from`. Answers from another node than the one
    /// asked, or to unknown requests, are ignored.
    pub fn handle_response(&mut self, from: NodeId, id: RequestId, resp: Response, now: u64) {
        let Some((lid, path_ix, asked)) = self.requests.remove(&id) else {
            return;
        };
        if asked != from {
            self.requests.insert(id, (lid, path_ix, asked));
            return;
        }
        self.table.seen(from);
        let me = self.me;
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if l.put.is_some() && l.storing > 0 {
            l.storing -= 1;
            if matches!(resp, Response::Stored(Ok(()))) {
                l.stored += 1;
            }
            self.advance(lid);
            return;
        }
        let target = l.target;
        let path = &mut l.paths[path_ix];
        path.inflight = path.inflight.saturating_sub(1);
        let depth = match path.cands.iter_mut().find(|c| c.id == from) {
            Some(c) => {
                c.state = CandState::Done;
                c.depth
            }
            None => 1,
        };
        let contacts = match resp {
            Response::Nodes(n) => n,
            Response::Records { records, closer } => {
                let mut found = false;
                for r in records {
                    if r.body.key == target && r.verify(now).is_ok() {
                        merge_record(&mut l.records, r);
                        found = true;
                    }
                }
                if found && l.hops.is_none() {
                    l.hops = Some(depth);
                }
                closer
            }
            Response::Stored(_) => Vec::new(),
        };
        for c in contacts.into_iter().take(K) {
            if c != me && l.claimed.insert(c) {
                insert_cand(&mut l.paths[path_ix], &target, c, depth + 1);
            }
        }
        self.advance(lid);
    }

    /// Request `id` got no answer in time.
    pub fn handle_timeout(&mut self, id: RequestId) {
        let Some((lid, path_ix, asked)) = self.requests.remove(&id) else {
            return;
        };
        self.table.failed(&asked);
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        l.failed += 1;
        if l.put.is_some() && l.storing > 0 {
            l.storing -= 1;
        } else {
            let path = &mut l.paths[path_ix];
            path.inflight = path.inflight.saturating_sub(1);
            if let Some(c) = path.cands.iter_mut().find(|c| c.id == asked) {
                c.state = CandState::Failed;
            }
        }
        self.advance(lid);
    }

    fn send(&mut self, lid: LookupId, path: usize, to: NodeId, req: Request) {
        let id = self.next;
        self.next += 1;
        self.requests.insert(id, (lid, path, to));
        self.out.push(DhtOutput::Request { to, id, req });
        self.out.push(DhtOutput::Timeout {
            after: self.config.request_timeout,
            id,
        });
    }

    fn advance(&mut self, lid: LookupId) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if l.put.is_some() && (l.storing > 0 || l.stored > 0 || !l.closest.is_empty()) {
            if l.storing == 0 {
                self.finish(lid);
            }
            return;
        }
        // A get ends as soon as a record was found; otherwise when every path converged.
        let found = l.purpose == Purpose::Get && !l.records.is_empty();
        let mut sends = Vec::new();
        if !found {
            let kind = match l.purpose {
                Purpose::Get => Request::FindValue { key: l.target },
                Purpose::FindNode | Purpose::Put => Request::FindNode { target: l.target },
            };
            for (pi, path) in l.paths.iter_mut().enumerate() {
                while path.inflight < ALPHA {
                    // The closest unqueried candidate among the K closest still-live ones.
                    let next = path
                        .cands
                        .iter_mut()
                        .filter(|c| c.state != CandState::Failed)
                        .take(K)
                        .find(|c| c.state == CandState::New);
                    let Some(c) = next else { break };
                    c.state = CandState::Inflight;
                    path.inflight += 1;
                    sends.push((pi, c.id, kind.clone()));
                }
            }
        }
        let l = self.lookups.get_mut(&lid).expect("present");
        l.queried += sends.len() as u32;
        let idle = l.paths.iter().all(|p| p.inflight == 0);
        for (pi, to, req) in sends {
            self.send(lid, pi, to, req);
        }
        if found || idle {
            let l = self.lookups.get_mut(&lid).expect("present");
            let mut done: Vec<&Cand> = l
                .paths
                .iter()
                .flat_map(|p| p.cands.iter())
                .filter(|c| c.state == CandState::Done)
                .collect();
            done.sort_by_key(|c| c.dist);
            l.closest = done.iter().take(K).map(|c| c.id).collect();
            if l.purpose == Purpose::FindNode && l.hops.is_none() {
                l.hops = done.first().map(|c| c.depth);
            }
            if let Some(rec) = l.put.clone() {
                let targets = l.closest.clone();
                l.storing = targets.len();
                if targets.is_empty() {
                    self.finish(lid);
                    return;
                }
                for t in targets {
                    self.send(lid, 0, t, Request::Store(rec.clone()));
                }
                return;
            }
            self.finish(lid);
        }
    }

    fn finish(&mut self, lid: LookupId) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        self.requests.retain(|_, (id, _, _)| *id != lid);
        if self.replicating.remove(&lid) {
            return;
        }
        self.out.push(DhtOutput::Done {
            lookup: lid,
            result: LookupResult {
                closest: l.closest,
                records: l.records,
                hops: l.hops,
                queried: l.queried,
                failed: l.failed,
                stored: l.stored,
            },
        });
    }
}

fn insert_cand(path: &mut Path, target: &Key, id: NodeId, depth: u32) {
    let dist = distance(id.as_bytes(), target);
    let pos = path.cands.partition_point(|c| c.dist < dist);
    path.cands.insert(
        pos,
        Cand {
            id,
            dist,
            state: CandState::New,
            depth,
        },
    );
    path.cands.truncate(4 * K);
}

fn merge_record(list: &mut Vec<Record>, r: Record) {
    match list
        .iter_mut()
        .find(|x| x.body.author == r.body.author && x.body.kind == r.body.kind)
    {
        Some(x) if x.body.seq < r.body.seq => *x = r,
        Some(_) => {}
        None => list.push(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> NodeKey {
        NodeKey::from_seed([seed; 32])
    }

    fn rec(key: &NodeKey, seq: u64, expires: u64) -> Record {
        Record::sign(
            key,
            RecordBody {
                kind: RecordKind::Value,
                key: [7; 32],
                author: key.node_id(),
                seq,
                expires,
                value: b"hello".to_vec(),
            },
        )
    }

    #[test]
    fn records_are_verified_and_versioned() {
        let a = id(1);
        let mut s = RecordStore::default();
        s.put(rec(&a, 1, 200), a.node_id(), 100).unwrap();
        assert_eq!(
            s.put(rec(&a, 1, 200), a.node_id(), 100),
            Err(RecordError::Stale(1))
        );
        s.put(rec(&a, 2, 200), a.node_id(), 100).unwrap();
        assert_eq!(s.get(&[7; 32], 100)[0].body.seq, 2);
        let mut forged = rec(&a, 3, 200);
        forged.body.value = b"evil".to_vec();
        assert_eq!(
            s.put(forged, a.node_id(), 100),
            Err(RecordError::BadSignature)
        );
        assert_eq!(
            s.put(rec(&a, 4, 50), a.node_id(), 100),
            Err(RecordError::Expired(50))
        );
        assert_eq!(
            s.put(rec(&a, 4, 100 + MAX_TTL + 1), a.node_id(), 100),
            Err(RecordError::TtlTooLong)
        );
        // A provider record by the same author lives next to the value.
        let mut p = rec(&a, 1, 200).body;
        p.kind = RecordKind::Provider;
        s.put(Record::sign(&a, p), a.node_id(), 100).unwrap();
        assert_eq!(s.get(&[7; 32], 100).len(), 2);
        assert!(s.get(&[7; 32], 200).is_empty());
        s.expire(200);
        assert!(s.is_empty());
    }

    /// Issue 18: the record store had no bound and `expire` was never called. A member storing
    /// records under throwaway author keys keeps at most [`MAX_RECORDS_PER_PEER`], all peers
    /// together at most the total; an honest peer still stores, updates replace without
    /// counting twice, and expiry frees the space.
    #[test]
    fn a_member_flooding_the_dht_store_is_held_to_its_share() {
        let mut s = RecordStore {
            max_total: 3 * MAX_RECORDS_PER_PEER,
            ..RecordStore::default()
        };
        let flood = |s: &mut RecordStore, peer: NodeId, n: u64, base: u64| {
            let mut refused = 0;
            for i in 0..n {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(base + i).to_le_bytes());
                let k = NodeKey::from_seed(seed);
                let mut body = rec(&k, 1, 150).body;
                body.key = *k.node_id().as_bytes();
                if s.put(Record::sign(&k, body), peer, 100).is_err() {
                    refused += 1;
                }
            }
            refused
        };
        let rogue = id(66).node_id();
        assert_eq!(
            flood(&mut s, rogue, 1500, 1_000_000),
            1500 - MAX_RECORDS_PER_PEER
        );
        assert_eq!(s.len(), MAX_RECORDS_PER_PEER);
        let honest = id(1);
        s.put(rec(&honest, 1, 300), honest.node_id(), 100).unwrap();
        s.put(rec(&honest, 2, 300), honest.node_id(), 100).unwrap();
        assert_eq!(s.per_peer[&honest.node_id()], 1, "an update replaces");
        // Three more flooding peers: the total holds.
        for p in 0..3u8 {
            flood(
                &mut s,
                id(70 + p).node_id(),
                1100,
                2_000_000 * (u64::from(p) + 1),
            );
        }
        assert_eq!(s.len(), 3 * MAX_RECORDS_PER_PEER);
        assert_eq!(s.per_peer.values().sum::<usize>(), s.len());
        // The flood expires at 150; the driver's expiry frees it, the honest record stays.
        s.expire(150);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&[7; 32], 150).len(), 1);
        assert_eq!(flood(&mut s, rogue, 10, 3_000_000), 0);
    }

    #[test]
    fn routing_table_prefers_old_contacts_and_evicts_failures() {
        let me = id(0).node_id();
        let mut t = RoutingTable::new(me);
        let keys: Vec<NodeId> = (1..=200u8).map(|i| id(i).node_id()).collect();
        for k in &keys {
            t.seen(*k);
        }
        // Bucket 0 holds half the ID space: capped at K.
        assert!(t.buckets[0].len() <= K);
        let first = t.buckets[0][0].id;
        let newcomer = keys
            .iter()
            .find(|k| {
                bucket_index(me.as_bytes(), k.as_bytes()) == Some(0)
                    && !t.buckets[0].iter().any(|e| e.id == **k)
            })
            .copied();
        if let Some(n) = newcomer {
            assert!(!t.seen(n), "a full bucket keeps its live contacts");
            for _ in 0..MAX_FAILURES {
                t.failed(&first);
            }
            assert!(t.seen(n), "a slot freed by failures is reused");
        }
        let target = *keys[5].as_bytes();
        let c = t.closest(&target, 3);
        assert_eq!(c[0], keys[5]);
    }

    #[test]
    fn wire_roundtrip_of_messages() {
        let a = id(1);
        let resp = Response::Stored(Err(RecordError::Stale(9)));
        assert_eq!(
            wire::decode::<Response>(&wire::encode(&resp)).unwrap(),
            resp
        );
        let req = Request::Store(rec(&a, 1, 200));
        assert_eq!(wire::decode::<Request>(&wire::encode(&req)).unwrap(), req);
    }
}
