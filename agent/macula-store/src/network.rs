//! Moving shards between nodes, behind a trait, and the object-level client on top of it.
//!
//! [`StorageNetwork`] is implemented over the mesh by [`crate::mesh::MeshNetwork`] (one QUIC
//! stream per shard); here [`InProcessNetwork`] connects [`LocalStore`]s in one process for tests.
//! Requests are batched so an implementation can run them in parallel and answer from the fastest
//! holders. Fetches return verified [`Shard`]s: the implementation verifies each one against the
//! segment ID and index asked for (over the mesh, piece by piece as it arrives, see
//! [`crate::receive`]), so the client never handles unverified bytes.
//!
//! [`Client`] implements put (segment → encrypt → code → place → store), get (any `k` verified
//! shards per segment, falling back from the placed holders to every member), and repair
//! (read `k`, reconstruct, store the missing shards on new nodes).

use macula_core::sync::Locked;
use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use macula_core::{NodeId, NodeKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{CodecError, CodecId, DEFAULT_CODEC};
use crate::crypto::{AeadId, ObjectKey};
use crate::header::{SegmentId, SegmentKind, ShardHeader, SignedDescriptor};
use crate::object::{Capability, Manifest, ObjectError};
use crate::placement::{self, NodeInfo, PlacementError};
use crate::repair::RepairAction;
use crate::segment::{self, EncodedSegment, SegmentError, SegmentParams, Shard};
use crate::store::{DeleteRequest, LocalStore, StoreError};

/// Why a transfer to or from one node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    #[error("node does not have the shard")]
    NotFound,
    #[error(
        "node sent a corrupt shard (a copy found corrupt at the node is removed there; one damaged on the way is not)"
    )]
    Corrupt,
    #[error("node refused the shard: {0}")]
    Rejected(String),
    /// The node refused a shard to store for lack of space: its store's quota is used up or its
    /// disk is full (not a per-owner quota).
    #[error("node has no space for the shard: {0}")]
    NoSpace(String),
}

/// A request to fetch one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    pub node: NodeId,
    pub segment: SegmentId,
    pub index: u16,
}

/// Shard transfer between nodes. Results are in request order.
pub trait StorageNetwork: Send + Sync {
    /// Sends serialised shards to nodes, which verify and store them.
    fn store_shards(
        &self,
        shards: Vec<(NodeId, Vec<u8>)>,
    ) -> impl Future<Output = Vec<Result<(), TransferError>>> + Send;
    /// Fetches shards from nodes, each verified against the requested segment ID and index
    /// (a shard that fails is [`TransferError::Corrupt`]; the node also verifies its copy before
    /// sending).
    fn fetch_shards(
        &self,
        requests: Vec<FetchRequest>,
    ) -> impl Future<Output = Vec<Result<Shard, TransferError>>> + Send;
    /// Fetches shards until `want` of them arrived verified; requests still running then are
    /// cancelled (`None`). The default waits for all of them.
    fn fetch_first(
        &self,
        requests: Vec<FetchRequest>,
        want: usize,
    ) -> impl Future<Output = Vec<Option<Result<Shard, TransferError>>>> + Send {
        let _ = want;
        async move {
            self.fetch_shards(requests)
                .await
                .into_iter()
                .map(Some)
                .collect()
        }
    }
    /// Asks nodes to delete every shard of a segment (owner-signed); returns shards removed.
    fn delete_segments(
        &self,
        requests: Vec<(NodeId, DeleteRequest)>,
    ) -> impl Future<Output = Vec<Result<usize, TransferError>>> + Send;
}

/// In-process network of local stores, with nodes that can be taken down.
#[derive(Default)]
pub struct InProcessNetwork {
    nodes: Mutex<BTreeMap<NodeId, (Arc<LocalStore>, bool)>>,
}

impl InProcessNetwork {
    pub fn add_node(&self, id: NodeId, store: Arc<LocalStore>) {
        self.lock().insert(id, (store, true));
    }

    /// Marks a node up or down (down nodes answer nothing).
    pub fn set_up(&self, id: &NodeId, up: bool) {
        if let Some(n) = self.lock().get_mut(id) {
            n.1 = up;
        }
    }

    /// Whether a node is up (answers requests).
    pub fn is_up(&self, id: &NodeId) -> bool {
        self.lock().get(id).is_some_and(|n| n.1)
    }

    pub fn store(&self, id: &NodeId) -> Option<Arc<LocalStore>> {
        self.lock().get(id).map(|n| n.0.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, (Arc<LocalStore>, bool)>> {
        self.nodes.locked()
    }

    fn up_store(&self, id: &NodeId) -> Result<Arc<LocalStore>, TransferError> {
        match self.lock().get(id) {
            Some((s, true)) => Ok(s.clone()),
            _ => Err(TransferError::Unreachable(*id)),
        }
    }
}

impl StorageNetwork for InProcessNetwork {
    async fn store_shards(&self, shards: Vec<(NodeId, Vec<u8>)>) -> Vec<Result<(), TransferError>> {
        shards
            .into_iter()
            .map(|(node, bytes)| {
                self.up_store(&node)?
                    .put(&bytes)
                    .map(|_| ())
                    .map_err(|e| TransferError::Rejected(e.to_string()))
            })
            .collect()
    }

    /// The store's own verified read (segment ID and index) is the caller's: no bytes travel.
    async fn fetch_shards(&self, requests: Vec<FetchRequest>) -> Vec<Result<Shard, TransferError>> {
        requests
            .into_iter()
            .map(
                |r| match self.up_store(&r.node)?.get_shard(&r.segment, r.index) {
                    Ok(s) => Ok(s),
                    Err(StoreError::NotFound { .. }) => Err(TransferError::NotFound),
                    Err(StoreError::Corrupt { .. }) => Err(TransferError::Corrupt),
                    Err(e) => Err(TransferError::Rejected(e.to_string())),
                },
            )
            .collect()
    }

    async fn delete_segments(
        &self,
        requests: Vec<(NodeId, DeleteRequest)>,
    ) -> Vec<Result<usize, TransferError>> {
        requests
            .into_iter()
            .map(|(node, req)| {
                self.up_store(&node)?
                    .delete(&req)
                    .map_err(|e| TransferError::Rejected(e.to_string()))
            })
            .collect()
    }
}

/// Parameters for new objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutConfig {
    pub k: u16,
    pub m: u16,
    /// Plaintext bytes per segment (default 1 MiB); memory use of put and get is a small multiple.
    pub segment_len: u32,
    pub codec: CodecId,
    pub aead: AeadId,
    /// `k` and `m` are chosen at each put from the number of storage nodes
    /// ([`auto_geometry`]); the fields are not used.
    pub auto: bool,
}

impl Default for PutConfig {
    fn default() -> Self {
        Self {
            k: 4,
            m: 2,
            segment_len: 1 << 20,
            codec: DEFAULT_CODEC,
            aead: AeadId::preferred(),
            auto: false,
        }
    }
}

impl PutConfig {
    /// The parameters of a put among `nodes` storage nodes: these, or with `auto` the
    /// [`auto_geometry`] for `nodes`.
    pub fn for_nodes(&self, nodes: usize) -> Result<PutConfig, PlacementError> {
        if !self.auto {
            return Ok(self.clone());
        }
        let (k, m) = auto_geometry(nodes).ok_or(PlacementError::NotEnoughNodes {
            have: nodes,
            need: 2,
            shard_bytes: u64::from(self.segment_len),
        })?;
        Ok(PutConfig {
            k,
            m,
            auto: false,
            ..self.clone()
        })
    }

    /// The parameters of segment `index` of `count` of an object put with these.
    fn segment_params(&self, kind: SegmentKind, index: u32, count: u32) -> SegmentParams {
        SegmentParams {
            kind,
            codec: self.codec,
            aead: self.aead,
            k: self.k,
            m: self.m,
            segment_index: index,
            segment_count: count,
        }
    }
}

/// `k + m` for a realm of `nodes` storage nodes when `[storage]` sets neither (docs/storage.md
/// has the table): every shard of a segment on its own node, and from 4 nodes on one node to
/// spare, so a lost node's shards can be rebuilt on the others; `None` below 2 nodes.
pub fn auto_geometry(nodes: usize) -> Option<(u16, u16)> {
    Some(match nodes {
        0 | 1 => return None,
        2 => (1, 1),
        3 | 4 => (2, 1),
        5 => (2, 2),
        6 => (3, 2),
        _ => (4, 2),
    })
}

/// Errors of object operations. Each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "segment {segment}: not enough shards (have {have}, need {need}); bring more holders online and retry"
    )]
    NotEnoughShards {
        segment: SegmentId,
        have: usize,
        need: usize,
    },
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(
        "could store only {stored} of {needed} shards of segment {segment}: {last_error}; check the nodes and retry"
    )]
    PutIncomplete {
        segment: SegmentId,
        stored: usize,
        needed: usize,
        last_error: TransferError,
    },
    #[error(
        "delete incomplete: {removed} shards removed, but segment {segment}: {error}; retry when all nodes are up"
    )]
    DeleteIncomplete {
        segment: SegmentId,
        removed: usize,
        error: TransferError,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    #[error("writing the output failed: {0}")]
    Output(std::io::Error),
    #[error("the coding task did not finish: {0}; the agent is shutting down")]
    Cancelled(String),
    #[error(
        "object {object} has coding parameters {found} but the capability says {expected}; the capability is damaged"
    )]
    ParamsMismatch {
        object: SegmentId,
        found: String,
        expected: String,
    },
}

/// What a get noticed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetReport {
    pub bytes: u64,
    /// Shards found corrupt (and removed by their holders): candidates for repair.
    pub corrupt: Vec<(SegmentId, u16, NodeId)>,
    /// Segments read from fewer than all their shards' placed holders (degraded).
    pub degraded: Vec<SegmentId>,
}

impl GetReport {
    /// Segments that need repair (corrupt or missing shards seen).
    pub fn segments_to_repair(&self) -> Vec<SegmentId> {
        let set: BTreeSet<SegmentId> = self
            .corrupt
            .iter()
            .map(|c| c.0)
            .chain(self.degraded.iter().copied())
            .collect();
        set.into_iter().collect()
    }
}

/// The object client (owner side): put, get, repair over a [`StorageNetwork`].
pub struct Client<N> {
    net: N,
    owner: Arc<NodeKey>,
    cfg: PutConfig,
}

/// Segments a put stores at once (each held coded, 1.5× its size at 4 + 2, until every holder
/// answered), besides the one being coded and the one being read.
const PUT_STORES_IN_FLIGHT: usize = 3;

/// A segment's store, as [`Client::store_segment`] runs it.
type Storing<'a> = Pin<Box<dyn Future<Output = Result<SegmentId, ClientError>> + Send + 'a>>;

/// The segment stores a put has in flight, driven while the put reads and codes what comes next.
#[derive(Default)]
struct StoreWindow<'a> {
    running: Vec<Storing<'a>>,
    failed: Option<ClientError>,
}

impl<'a> StoreWindow<'a> {
    fn start(&mut self, store: Storing<'a>) {
        self.running.push(store);
    }

    /// Polls every store in flight once; the first failure is kept.
    fn poll_running(&mut self, cx: &mut Context<'_>) {
        self.running
            .retain_mut(|store| match store.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        self.failed.get_or_insert(e);
                    }
                    false
                }
            });
    }

    /// Runs `fut` while the stores in flight go on.
    async fn beside<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            self.poll_running(cx);
            fut.as_mut().poll(cx)
        })
        .await
    }

    /// Waits until fewer than `n` stores are in flight.
    async fn until_below(&mut self, n: usize) {
        poll_fn(|cx| {
            self.poll_running(cx);
            if self.running.len() < n {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Lets every store in flight finish.
    async fn drain(&mut self) {
        self.until_below(1).await
    }

    /// The first store that failed, if one did.
    fn check(&mut self) -> Result<(), ClientError> {
        self.failed.take().map_or(Ok(()), Err)
    }
}

/// A segment being coded (`Client::code`).
type Coding = tokio::task::JoinHandle<Result<EncodedSegment, SegmentError>>;

/// The coded segment, once its task is done (a panic in it goes on in the caller).
async fn coded(task: Coding) -> Result<EncodedSegment, ClientError> {
    let seg = task.await.map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => ClientError::Cancelled(e.to_string()),
    })??;
    Ok(seg)
}

/// Verified shards of one segment.
struct Fetched {
    signed: SignedDescriptor,
    shards: Vec<Option<Vec<u8>>>,
    holders: BTreeMap<u16, NodeId>,
}

impl<N: StorageNetwork> Client<N> {
    pub fn new(net: N, owner: NodeKey, cfg: PutConfig) -> Self {
        Self {
            net,
            owner: Arc::new(owner),
            cfg,
        }
    }

    pub fn network(&self) -> &N {
        &self.net
    }

    /// Stores `len` bytes read from `input`; returns the capability. One segment's bytes are in
    /// memory at a time, read while nothing else is in flight: a slow input (a socket) paces the
    /// put, a short one fails it with nothing left behind.
    pub async fn put(
        &self,
        members: &[NodeInfo],
        input: &mut (impl AsyncRead + Unpin),
        len: u64,
    ) -> Result<Capability, ClientError> {
        let mut stored = Vec::new();
        match self.put_inner(members, input, len, &mut stored).await {
            Ok(cap) => Ok(cap),
            Err(e) => {
                // A failed put leaves no orphans: delete what was stored (best effort; nodes that
                // are unreachable now keep their shards until the owner deletes them).
                if let ClientError::PutIncomplete { segment, .. } = &e
                    && !stored.contains(segment)
                {
                    stored.push(*segment);
                }
                for id in stored {
                    let req = DeleteRequest::sign(id, &self.owner);
                    self.net
                        .delete_segments(members.iter().map(|m| (m.id, req.clone())).collect())
                        .await;
                }
                Err(e)
            }
        }
    }

    async fn put_inner(
        &self,
        members: &[NodeInfo],
        input: &mut (impl AsyncRead + Unpin),
        len: u64,
        stored: &mut Vec<SegmentId>,
    ) -> Result<Capability, ClientError> {
        let cfg = &self.cfg.for_nodes(members.len())?;
        let key = ObjectKey::generate();
        let mut window = StoreWindow::default();
        let segments = self
            .put_segments(members, input, len, cfg, &key, &mut window, stored)
            .await;
        // On a failure the stores still in flight finish first, so that the caller's cleanup
        // deletes whatever they stored.
        window.drain().await;
        segments?;
        let manifest = Manifest {
            object_len: len,
            segment_len: cfg.segment_len,
            segments: stored.clone(),
        };
        let p = cfg.segment_params(SegmentKind::Manifest, 0, 1);
        let object_id = self
            .put_segment(&p, members, manifest.encode(), &key)
            .await?;
        Ok(Capability {
            object_id,
            key,
            codec: cfg.codec,
            k: cfg.k,
            m: cfg.m,
        })
    }

    /// The data segments of a put, as a pipeline: the next segment is read and coded (off the
    /// async threads) while up to [`PUT_STORES_IN_FLIGHT`] coded segments are being stored, so a
    /// holder's write and fsync do not stall the put; memory stays at a few segments whatever the
    /// object's size. Every segment is pushed to `stored` when its store starts.
    #[allow(clippy::too_many_arguments)]
    async fn put_segments<'a>(
        &'a self,
        members: &'a [NodeInfo],
        input: &mut (impl AsyncRead + Unpin),
        len: u64,
        cfg: &PutConfig,
        key: &ObjectKey,
        window: &mut StoreWindow<'a>,
        stored: &mut Vec<SegmentId>,
    ) -> Result<(), ClientError> {
        let count = Manifest::check_size(len, cfg.segment_len)?;
        let mut coding: Option<Coding> = None;
        for i in 0..=count {
            let next = if i < count {
                let plain_len = Manifest::plain_len_of(len, cfg.segment_len, i as usize) as usize;
                let mut buf = vec![0; plain_len];
                window
                    .beside(input.read_exact(&mut buf))
                    .await
                    .map_err(ClientError::Input)?;
                window.check()?;
                let p = cfg.segment_params(SegmentKind::Data, i, count);
                Some(self.code(&p, buf, key))
            } else {
                None
            };
            if let Some(prev) = std::mem::replace(&mut coding, next) {
                let seg = window.beside(coded(prev)).await?;
                window.until_below(PUT_STORES_IN_FLIGHT).await;
                window.check()?;
                stored.push(seg.segment_id());
                window.start(Box::pin(self.store_segment(seg, members)));
            }
        }
        window.until_below(1).await;
        window.check()
    }

    async fn put_segment(
        &self,
        p: &SegmentParams,
        members: &[NodeInfo],
        plain: Vec<u8>,
        key: &ObjectKey,
    ) -> Result<SegmentId, ClientError> {
        let seg = coded(self.code(p, plain, key)).await?;
        self.store_segment(seg, members).await
    }

    /// Starts coding a segment off the async threads (the agent's runtime has one): what feeds
    /// the put (the next segment's input, an S3 body being received and hashed) and the store
    /// of the segment before go on meanwhile.
    fn code(&self, p: &SegmentParams, plain: Vec<u8>, key: &ObjectKey) -> Coding {
        let (p, key, owner) = (*p, key.clone(), self.owner.clone());
        tokio::task::spawn_blocking(move || segment::encode_segment(&plain, &p, &key, &owner))
    }

    /// Stores a coded segment's shards on the nodes placement picks; returns its ID.
    async fn store_segment(
        &self,
        seg: EncodedSegment,
        members: &[NodeInfo],
    ) -> Result<SegmentId, ClientError> {
        let id = seg.segment_id();
        let n = seg.n();
        let shard_bytes = Shard::total_len(&seg.shard(0).header) as u64;
        let mut pending: Vec<usize> = (0..n).collect();
        let mut used: Vec<NodeId> = Vec::new();
        let mut stored = 0;
        let mut last_error = TransferError::NotFound;
        // First the placed nodes; shards a node refused go to the next best nodes (one retry).
        for attempt in 0..2 {
            if pending.is_empty() {
                break;
            }
            let nodes = match placement::place(&id, pending.len(), shard_bytes, members, &used) {
                Ok(nodes) => nodes,
                Err(e) if attempt == 0 => return Err(e.into()),
                Err(_) => break,
            };
            let batch: Vec<(NodeId, Vec<u8>)> = pending
                .iter()
                .zip(&nodes)
                .map(|(&i, node)| (*node, seg.shard_bytes(i)))
                .collect();
            let results = self.net.store_shards(batch).await;
            let mut still = Vec::new();
            for ((&i, node), r) in pending.iter().zip(&nodes).zip(results) {
                used.push(*node);
                match r {
                    Ok(()) => stored += 1,
                    Err(e) => {
                        last_error = e;
                        still.push(i);
                    }
                }
            }
            pending = still;
        }
        if stored < n {
            return Err(ClientError::PutIncomplete {
                segment: id,
                stored,
                needed: n,
                last_error,
            });
        }
        Ok(id)
    }

    /// Reads and checks the manifest of the object named by `cap` (what it found corrupt on the
    /// way goes into `report`); [`Client::read`] then reads the object's bytes with it.
    pub async fn manifest(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
        report: &mut GetReport,
    ) -> Result<Manifest, ClientError> {
        let n = usize::from(cap.k) + usize::from(cap.m);
        let fetched = self
            .collect(members, cap.object_id, usize::from(cap.k), n, false, report)
            .await?;
        let d = &fetched.signed.desc;
        if (d.k, d.m, d.codec, d.kind) != (cap.k, cap.m, cap.codec, SegmentKind::Manifest) {
            return Err(ClientError::ParamsMismatch {
                object: cap.object_id,
                found: format!("{}+{} {} {:?}", d.k, d.m, d.codec.name(), d.kind),
                expected: format!("{}+{} {} Manifest", cap.k, cap.m, cap.codec.name()),
            });
        }
        Ok(Manifest::decode(&segment::decode_segment(
            d,
            fetched.shards,
            &cap.key,
        )?)?)
    }

    /// Reads the manifest of the object named by `cap` (its size and segments).
    pub async fn stat(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
    ) -> Result<Manifest, ClientError> {
        self.manifest(members, cap, &mut GetReport::default()).await
    }

    /// Reads the object named by `cap` into `out`.
    pub async fn get(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<GetReport, ClientError> {
        // The range is cut at the object's end.
        self.get_range(members, cap, 0..u64::MAX, out).await
    }

    /// Writes bytes `range` of the object named by `cap` to `out`, fetching only the segments
    /// that hold them (an S3 range GET). A range reaching past the end is cut at the end.
    pub async fn get_range(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
        range: std::ops::Range<u64>,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<GetReport, ClientError> {
        let mut report = GetReport::default();
        let manifest = self.manifest(members, cap, &mut report).await?;
        self.read(
            members,
            cap,
            &manifest,
            range,
            out,
            |_| std::future::ready(()),
            report,
        )
        .await
    }

    /// Writes bytes `range` of the object `manifest` describes (read with
    /// [`Client::manifest`]) to `out`, decoding only the segments that hold them and awaiting
    /// `pace(bytes)` after each write (the caller's bandwidth bound: it sleeps as long as its
    /// rate asks). A range reaching past the end is cut at the end; `report` collects on.
    #[allow(clippy::too_many_arguments)]
    pub async fn read<F: std::future::Future<Output = ()>>(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
        manifest: &Manifest,
        range: std::ops::Range<u64>,
        out: &mut (impl AsyncWrite + Unpin),
        mut pace: impl FnMut(u64) -> F,
        mut report: GetReport,
    ) -> Result<GetReport, ClientError> {
        let n = usize::from(cap.k) + usize::from(cap.m);
        let seg_len = u64::from(manifest.segment_len.max(1));
        let (first, end) = (
            range.start.min(manifest.object_len),
            range.end.min(manifest.object_len),
        );
        // the segments holding bytes first..end (none for an empty range)
        let last = if first < end {
            end.div_ceil(seg_len)
        } else {
            0
        };
        let segments = (first / seg_len) as usize..last as usize;
        // Two stages: segment i is decoded (off the async threads) and written while the shards
        // of segment i + 1 are fetched; at most two segments are held.
        let id = |i: usize| {
            manifest
                .segments
                .get(i)
                .copied()
                .ok_or(ObjectError::Manifest(
                    "fewer segments than its length needs",
                ))
        };
        let k = usize::from(cap.k);
        let mut fetched = match segments.is_empty() {
            false => Some(
                self.collect(members, id(segments.start)?, k, n, false, &mut report)
                    .await?,
            ),
            true => None,
        };
        for i in segments.clone() {
            let Some(f) = fetched.take() else { break };
            let d = f.signed.desc.clone();
            let plain_len = manifest.segment_plain_len(i);
            if d.kind != SegmentKind::Data
                || d.segment_index as usize != i
                || d.plain_len != plain_len
            {
                return Err(ObjectError::Manifest(
                    "data segment header does not match its place in the manifest",
                )
                .into());
            }
            let key = cap.key.clone();
            let decoded =
                tokio::task::spawn_blocking(move || segment::decode_segment(&d, f.shards, &key));
            let start = i as u64 * seg_len;
            let write = async {
                let plain = decoded
                    .await
                    .map_err(|e| ClientError::Cancelled(e.to_string()))??;
                let part = plain
                    .get(
                        (first.max(start) - start) as usize
                            ..(end.min(start + seg_len) - start) as usize,
                    )
                    .ok_or(ObjectError::Manifest(
                        "data segment shorter than the manifest says",
                    ))?;
                out.write_all(part).await.map_err(ClientError::Output)?;
                pace(part.len() as u64).await;
                Ok::<u64, ClientError>(part.len() as u64)
            };
            let next = async {
                if i + 1 < segments.end {
                    self.collect(members, id(i + 1)?, k, n, false, &mut report)
                        .await
                        .map(Some)
                } else {
                    Ok(None)
                }
            };
            let (written, next) = tokio::try_join!(write, next)?;
            report.bytes += written;
            fetched = next;
        }
        out.flush().await.map_err(ClientError::Output)?;
        Ok(report)
    }

    /// Collects at least `k` verified shards of a segment: from all placed holders at once,
    /// keeping the fastest `k` (the slower transfers are cancelled), then every index from every
    /// other member. With `want_all`, keeps going until all `n` are found or every member was
    /// asked.
    async fn collect(
        &self,
        members: &[NodeInfo],
        id: SegmentId,
        k: usize,
        n: usize,
        want_all: bool,
        report: &mut GetReport,
    ) -> Result<Fetched, ClientError> {
        let placed =
            placement::place(&id, n.min(members.len()), 0, members, &[]).unwrap_or_default();
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut holders = BTreeMap::new();
        let mut signed: Option<SignedDescriptor> = None;
        let mut asked: BTreeSet<(NodeId, u16)> = BTreeSet::new();
        // Rounds of requests, cheapest first.
        let mut rounds: Vec<Vec<FetchRequest>> = Vec::new();
        let at = |i: usize| {
            placed.get(i).map(|node| FetchRequest {
                node: *node,
                segment: id,
                index: i as u16,
            })
        };
        // A read races all placed holders and keeps the fastest `k`; a repair wants them all.
        rounds.push((0..n).filter_map(at).collect());
        let mut everyone = Vec::new();
        for m in members {
            for i in 0..n {
                everyone.push(FetchRequest {
                    node: m.id,
                    segment: id,
                    index: i as u16,
                });
            }
        }
        rounds.push(everyone);
        let mut degraded = false;
        for (round, requests) in rounds.into_iter().enumerate() {
            let have = shards.iter().flatten().count();
            if have >= if want_all { n } else { k } {
                break;
            }
            let requests: Vec<FetchRequest> = requests
                .into_iter()
                .filter(|r| {
                    shards[usize::from(r.index)].is_none() && asked.insert((r.node, r.index))
                })
                .collect();
            if requests.is_empty() {
                continue;
            }
            let want = if want_all { n } else { k } - have;
            let results = self.net.fetch_first(requests.clone(), want).await;
            for (r, res) in requests.iter().zip(results) {
                // Cancelled: a faster holder already answered.
                let Some(res) = res else { continue };
                match res {
                    Ok(s) => {
                        if signed.is_none() {
                            signed = Some(s.header.signed.clone());
                        }
                        holders.insert(r.index, r.node);
                        shards[usize::from(r.index)] = Some(s.data);
                    }
                    Err(TransferError::Corrupt) => report.corrupt.push((id, r.index, r.node)),
                    Err(_) if round == 0 => degraded = true,
                    Err(_) => {}
                }
            }
        }
        if degraded {
            report.degraded.push(id);
        }
        let have = shards.iter().flatten().count();
        match signed {
            Some(signed) if have >= k && signed.desc.n() == n => Ok(Fetched {
                signed,
                shards,
                holders,
            }),
            _ => Err(ClientError::NotEnoughShards {
                segment: id,
                have,
                need: k,
            }),
        }
    }

    /// Deletes an object: every data segment, then the manifest, on every member. Each node
    /// checks the request against the owner key in its shard headers, so only the owner can
    /// delete. Returns how many shards were removed; nodes that refused or were unreachable are
    /// reported as an error after all others were asked.
    pub async fn delete(
        &self,
        members: &[NodeInfo],
        cap: &Capability,
    ) -> Result<usize, ClientError> {
        let mut report = GetReport::default();
        let n = usize::from(cap.k) + usize::from(cap.m);
        let fetched = self
            .collect(
                members,
                cap.object_id,
                usize::from(cap.k),
                n,
                false,
                &mut report,
            )
            .await?;
        let manifest = Manifest::decode(&segment::decode_segment(
            &fetched.signed.desc,
            fetched.shards,
            &cap.key,
        )?)?;
        let mut removed = 0;
        let mut failure = None;
        for id in manifest
            .segments
            .iter()
            .chain(std::iter::once(&cap.object_id))
        {
            let req = DeleteRequest::sign(*id, &self.owner);
            let batch = members.iter().map(|m| (m.id, req.clone())).collect();
            for r in self.net.delete_segments(batch).await {
                match r {
                    Ok(count) => removed += count,
                    Err(e) => failure = Some((*id, e)),
                }
            }
        }
        match failure {
            None => Ok(removed),
            Some((segment, error)) => Err(ClientError::DeleteIncomplete {
                segment,
                removed,
                error,
            }),
        }
    }

    /// Finds every shard of a segment among `members`; if any is missing or corrupt and at
    /// least `k` are intact, reconstructs the missing ones and stores them on new nodes (never on
    /// a node that already holds a shard of the segment). Returns what was stored.
    pub async fn repair_segment(
        &self,
        members: &[NodeInfo],
        id: SegmentId,
        k: u16,
        m: u16,
    ) -> Result<Vec<(u16, NodeId)>, ClientError> {
        let n = usize::from(k) + usize::from(m);
        let mut report = GetReport::default();
        let f = self
            .collect(members, id, usize::from(k), n, true, &mut report)
            .await?;
        let missing: Vec<u16> = (0..n as u16)
            .filter(|i| !f.holders.contains_key(i))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let shard_bytes = Shard::total_len(&ShardHeader {
            signed: f.signed.clone(),
            index: 0,
        }) as u64;
        // A missing index goes back to its placed node when that node is free to take it (so
        // reads find it first); the rest go to the best other nodes.
        let placed =
            placement::place(&id, n.min(members.len()), 0, members, &[]).unwrap_or_default();
        let mut taken: Vec<NodeId> = f.holders.values().copied().collect();
        let mut targets = Vec::new();
        let mut rest = Vec::new();
        for i in missing {
            match placed.get(usize::from(i)) {
                Some(node)
                    if !taken.contains(node)
                        && members
                            .iter()
                            .any(|m| m.id == *node && m.free_bytes >= shard_bytes) =>
                {
                    taken.push(*node);
                    targets.push((i, *node));
                }
                _ => rest.push(i),
            }
        }
        if !rest.is_empty() {
            let occupied: Vec<NodeInfo> = members
                .iter()
                .filter(|m| taken.contains(&m.id))
                .cloned()
                .collect();
            let nodes = placement::place_with_domains(
                &id,
                rest.len(),
                shard_bytes,
                members,
                &taken,
                &occupied,
            )?;
            targets.extend(rest.into_iter().zip(nodes));
        }
        let action = RepairAction {
            segment: id,
            sources: f
                .holders
                .iter()
                .map(|(i, n)| (*i, *n))
                .take(usize::from(k))
                .collect(),
            bytes: shard_bytes * targets.len() as u64,
            targets,
            // asked for directly, not planned: no repair order applies
            rank: 0,
        };
        self.store_reconstructed(&f.signed, f.shards, &action).await
    }

    /// Executes a planned repair: reads the action's sources, reconstructs, stores the targets.
    pub async fn execute_repair(
        &self,
        action: &RepairAction,
    ) -> Result<Vec<(u16, NodeId)>, ClientError> {
        let requests: Vec<FetchRequest> = action
            .sources
            .iter()
            .map(|(i, node)| FetchRequest {
                node: *node,
                segment: action.segment,
                index: *i,
            })
            .collect();
        let results = self.net.fetch_shards(requests.clone()).await;
        let mut signed = None;
        let mut shards = Vec::new();
        for (r, res) in requests.iter().zip(results) {
            if let Ok(s) = res {
                if shards.is_empty() {
                    shards = vec![None; s.header.desc().n()];
                }
                shards[usize::from(r.index)] = Some(s.data);
                signed = Some(s.header.signed);
            }
        }
        let have = shards.iter().flatten().count();
        let Some(signed) = signed else {
            return Err(ClientError::NotEnoughShards {
                segment: action.segment,
                have: 0,
                need: action.sources.len(),
            });
        };
        if have < usize::from(signed.desc.k) {
            return Err(ClientError::NotEnoughShards {
                segment: action.segment,
                have,
                need: usize::from(signed.desc.k),
            });
        }
        self.store_reconstructed(&signed, shards, action).await
    }

    async fn store_reconstructed(
        &self,
        signed: &SignedDescriptor,
        shards: Vec<Option<Vec<u8>>>,
        action: &RepairAction,
    ) -> Result<Vec<(u16, NodeId)>, ClientError> {
        let targets: Vec<usize> = action
            .targets
            .iter()
            .map(|(i, _)| usize::from(*i))
            .collect();
        let rebuilt = segment::rebuild(&signed.desc, &shards, &targets).map_err(|e| match e {
            SegmentError::Codec(CodecError::NotEnoughShards { have, need }) => {
                ClientError::NotEnoughShards {
                    segment: action.segment,
                    have,
                    need,
                }
            }
            e => e.into(),
        })?;
        let batch: Vec<(NodeId, Vec<u8>)> = action
            .targets
            .iter()
            .zip(rebuilt)
            .map(|((i, node), (data, outboard))| {
                let shard = Shard {
                    header: ShardHeader {
                        signed: signed.clone(),
                        index: *i,
                    },
                    data,
                    outboard,
                };
                (*node, shard.to_bytes())
            })
            .collect();
        let results = self.net.store_shards(batch).await;
        let mut stored = Vec::new();
        let mut last_error = None;
        for (t, r) in action.targets.iter().zip(results) {
            match r {
                Ok(()) => stored.push(*t),
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            None => Ok(stored),
            Some(last_error) => Err(ClientError::PutIncomplete {
                segment: action.segment,
                stored: stored.len(),
                needed: action.targets.len(),
                last_error,
            }),
        }
    }
}
