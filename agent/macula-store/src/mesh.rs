//! [`StorageNetwork`] over the QUIC mesh: three RPC procedures, one QUIC stream per shard.
//!
//! * `store.put` — body: a serialised shard (self-describing, signed header); the callee verifies
//!   it completely (signature, segment ID, BLAKE3 tree) before the atomic rename, so a transfer
//!   cut off half-way never leaves a shard behind. Reply: empty.
//! * `store.get` — a stream procedure ([`MeshNode::serve_stream`]). Body: segment ID (32 B) ‖
//!   index (u16 LE). The callee verifies its copy before sending (a corrupt copy is removed there
//!   and reported as corrupt), then sends it in wire order `header ‖ outboard ‖ data` in chunks
//!   of [`GET_CHUNK`] bytes ([`wire_chunks`]). The caller feeds the chunks to a
//!   [`ShardReceiver`], which checks the header against the segment ID and index, the outboard
//!   against the root and every 16 KiB group as it arrives; at the first bad piece the caller drops
//!   the call — which stops the transfer at the holder — and counts the shard as corrupt, so the
//!   get goes on with other holders.
//! * `store.delete` — body: segment ID (32 B) ‖ owner signature (64 B). Reply: shards removed
//!   (u32 LE).
//!
//! Batches run in parallel, one call (stream) per shard. Calls to this node itself go straight to
//! the local store. Shards are bounded by [`MAX_SHARD_BYTES`] (a put is one RPC frame: the frame
//! limit minus room for the envelope): a segment size whose shards would not fit is refused up
//! front by [`check_put_config`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeId;
use macula_mesh::node::MeshNode;
use macula_mesh::rpc::{ErrorCode, Handler, MAX_RPC_FRAME, RpcError, StreamHandler};
use tokio::task::JoinSet;

use crate::header::{SegmentId, shard_len_for};
use crate::network::{FetchRequest, PutConfig, StorageNetwork, TransferError};
use crate::receive::{ShardReceiver, SignatureCheck, wire_chunks};
use crate::segment::Shard;
use crate::store::{DeleteRequest, LocalStore, StoreError};

/// Prefix of a `store.put` error (code `Overloaded`) meaning the holder has no space left: its
/// quota is used up or its disk is full.
const NO_SPACE: &str = "no space: ";
pub const PUT_PROCEDURE: &str = "store.put";
pub const GET_PROCEDURE: &str = "store.get";
pub const DELETE_PROCEDURE: &str = "store.delete";

/// Largest serialised shard sent in one call.
pub const MAX_SHARD_BYTES: usize = MAX_RPC_FRAME - (64 << 10);

/// How long one shard transfer may take.
pub const SHARD_DEADLINE: Duration = Duration::from_secs(60);

/// Bytes per chunk of a `store.get` reply: four 16 KiB groups, so every data chunk is checked as
/// soon as it arrives.
pub const GET_CHUNK: usize = 64 << 10;

/// Message prefix that marks a copy found corrupt at the holder.
const CORRUPT: &str = "corrupt: ";

/// Refuses coding parameters whose shards would not fit one RPC frame.
pub fn check_put_config(cfg: &PutConfig) -> Result<(), String> {
    // Shard data plus its outboard tree (< 1 %) plus a header of at most a few KiB.
    let data = shard_len_for(cfg.segment_len, cfg.k);
    let estimate = data + data / 64 + 8192 + 40 * (u64::from(cfg.k) + u64::from(cfg.m));
    if estimate > MAX_SHARD_BYTES as u64 {
        return Err(format!(
            "storage.segment_bytes = {} with k = {} gives shards of about {estimate} bytes, more than \
             the {MAX_SHARD_BYTES}-byte transfer limit; lower segment_bytes or raise k",
            cfg.segment_len, cfg.k
        ));
    }
    Ok(())
}

/// Shard transfer over a [`MeshNode`].
#[derive(Clone)]
pub struct MeshNetwork {
    node: Arc<MeshNode>,
    local: Arc<LocalStore>,
    refused: Option<Arc<dyn Fn(NodeId, u64) + Send + Sync>>,
}

impl MeshNetwork {
    pub fn new(node: Arc<MeshNode>, local: Arc<LocalStore>) -> Self {
        Self {
            node,
            local,
            refused: None,
        }
    }

    /// Calls `refused(node, bytes)` for each shard of `bytes` another node refused to store for
    /// lack of space ([`TransferError::NoSpace`]) — evidence against the space it claims.
    pub fn on_refused(mut self, refused: impl Fn(NodeId, u64) + Send + Sync + 'static) -> Self {
        self.refused = Some(Arc::new(refused));
        self
    }

    pub fn local(&self) -> &Arc<LocalStore> {
        &self.local
    }

    /// Runs one operation per item in parallel (local ones in a blocking task, remote ones as
    /// RPC calls); results in item order.
    async fn parallel<I, T, F, Fut>(&self, items: Vec<I>, f: F) -> Vec<Result<T, TransferError>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(Self, I) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransferError>> + Send + 'static,
    {
        let mut set = JoinSet::new();
        let n = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let fut = f(self.clone(), item);
            set.spawn(async move { (i, fut.await) });
        }
        let mut out: Vec<Option<Result<T, TransferError>>> = (0..n).map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(TransferError::Rejected("transfer task failed".into()))))
            .collect()
    }

    async fn call(
        &self,
        node: NodeId,
        proc_: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransferError> {
        self.node
            .call(node, proc_, body, SHARD_DEADLINE)
            .await
            .map_err(|e| transfer_error(node, e))
    }

    fn is_local(&self, node: &NodeId) -> bool {
        *node == self.node.id()
    }

    async fn fetch_one(
        &self,
        r: FetchRequest,
        signature: Arc<SignatureCheck>,
    ) -> Result<Shard, TransferError> {
        if self.is_local(&r.node) {
            let store = self.local.clone();
            return blocking(move || store.get_shard(&r.segment, r.index))
                .await
                .map_err(local_error);
        }
        let fail = |e| transfer_error(r.node, e);
        let body = get_body(&r.segment, r.index);
        let mut reply = self
            .node
            .call_stream(r.node, GET_PROCEDURE, body, SHARD_DEADLINE)
            .await
            .map_err(fail)?;
        let mut shard = ShardReceiver::sharing(r.segment, r.index, MAX_SHARD_BYTES, signature);
        let checked = loop {
            match reply.next().await.map_err(fail)? {
                Some(chunk) => {
                    if let Err(e) = shard.feed(&chunk) {
                        break Err(e);
                    }
                }
                None => break shard.finish(),
            }
        };
        // On an error, dropping `reply` stops the transfer at the holder.
        checked.map_err(|e| {
            tracing::warn!(
                holder = %r.node,
                segment = %r.segment,
                index = r.index,
                "shard transfer aborted, trying other holders: {e}"
            );
            TransferError::Corrupt
        })
    }
}

/// Each request with the signature check shared by the requests for its segment.
fn with_signature_checks(requests: Vec<FetchRequest>) -> Vec<(FetchRequest, Arc<SignatureCheck>)> {
    let mut checks: HashMap<SegmentId, Arc<SignatureCheck>> = HashMap::new();
    requests
        .into_iter()
        .map(|r| {
            let check = checks.entry(r.segment).or_default().clone();
            (r, check)
        })
        .collect()
}

fn transfer_error(node: NodeId, e: RpcError) -> TransferError {
    match e.code {
        ErrorCode::NotFound => TransferError::NotFound,
        ErrorCode::Internal if e.message.starts_with(CORRUPT) => TransferError::Corrupt,
        ErrorCode::Overloaded if e.message.starts_with(NO_SPACE) => {
            TransferError::NoSpace(e.message[NO_SPACE.len()..].to_string())
        }
        ErrorCode::Unavailable
        | ErrorCode::DeadlineExceeded
        | ErrorCode::Cancelled
        | ErrorCode::NoSuchProcedure => TransferError::Unreachable(node),
        _ => TransferError::Rejected(e.message),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| panic!("storage task panicked: {e}"))
}

fn local_error(e: StoreError) -> TransferError {
    match e {
        StoreError::NotFound { .. } => TransferError::NotFound,
        StoreError::Corrupt { .. } => TransferError::Corrupt,
        e if no_space(&e) => TransferError::NoSpace(e.to_string()),
        e => TransferError::Rejected(e.to_string()),
    }
}

/// The store refused for lack of space: its quota, or the disk (`ENOSPC`, `EDQUOT`).
fn no_space(e: &StoreError) -> bool {
    match e {
        StoreError::QuotaExceeded { .. } => true,
        StoreError::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ),
        _ => false,
    }
}

fn rpc_error(e: StoreError) -> RpcError {
    match e {
        StoreError::NotFound { .. } => RpcError::new(ErrorCode::NotFound, e.to_string()),
        StoreError::Corrupt { .. } => RpcError::new(ErrorCode::Internal, format!("{CORRUPT}{e}")),
        e if no_space(&e) => RpcError::new(ErrorCode::Overloaded, format!("{NO_SPACE}{e}")),
        StoreError::Io { .. } => RpcError::new(ErrorCode::Internal, e.to_string()),
        StoreError::QuotaExceeded { .. } | StoreError::OwnerQuotaExceeded { .. } => {
            RpcError::new(ErrorCode::Overloaded, e.to_string())
        }
        e => RpcError::new(ErrorCode::BadRequest, e.to_string()),
    }
}

fn get_body(segment: &SegmentId, index: u16) -> Vec<u8> {
    let mut b = segment.0.to_vec();
    b.extend_from_slice(&index.to_le_bytes());
    b
}

fn parse_get(body: &[u8]) -> Result<(SegmentId, u16), RpcError> {
    let bad = || RpcError::new(ErrorCode::BadRequest, "store.get: expected 34 bytes");
    let seg: [u8; 32] = body
        .get(..32)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let idx: [u8; 2] = body
        .get(32..)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    Ok((SegmentId(seg), u16::from_le_bytes(idx)))
}

fn delete_body(req: &DeleteRequest) -> Vec<u8> {
    let mut b = req.segment.0.to_vec();
    b.extend_from_slice(&req.signature);
    b
}

fn parse_delete(body: &[u8]) -> Result<DeleteRequest, RpcError> {
    let bad = || RpcError::new(ErrorCode::BadRequest, "store.delete: expected 96 bytes");
    if body.len() != 96 {
        return Err(bad());
    }
    Ok(DeleteRequest {
        segment: SegmentId(body[..32].try_into().map_err(|_| bad())?),
        signature: body[32..].try_into().map_err(|_| bad())?,
    })
}

impl StorageNetwork for MeshNetwork {
    async fn store_shards(&self, shards: Vec<(NodeId, Vec<u8>)>) -> Vec<Result<(), TransferError>> {
        self.parallel(shards, |net, (node, bytes)| async move {
            if bytes.len() > MAX_SHARD_BYTES {
                return Err(TransferError::Rejected(format!(
                    "shard of {} bytes exceeds the {MAX_SHARD_BYTES}-byte transfer limit",
                    bytes.len()
                )));
            }
            if net.is_local(&node) {
                let store = net.local.clone();
                return blocking(move || store.put(&bytes))
                    .await
                    .map(|_| ())
                    .map_err(local_error);
            }
            let len = bytes.len() as u64;
            let r = net.call(node, PUT_PROCEDURE, bytes).await.map(|_| ());
            if let (Err(TransferError::NoSpace(_)), Some(f)) = (&r, &net.refused) {
                f(node, len);
            }
            r
        })
        .await
    }

    async fn fetch_shards(&self, requests: Vec<FetchRequest>) -> Vec<Result<Shard, TransferError>> {
        self.parallel(
            with_signature_checks(requests),
            |net, (r, check)| async move { net.fetch_one(r, check).await },
        )
        .await
    }

    async fn fetch_first(
        &self,
        requests: Vec<FetchRequest>,
        want: usize,
    ) -> Vec<Option<Result<Shard, TransferError>>> {
        let mut set = JoinSet::new();
        let n = requests.len();
        for (i, (r, check)) in with_signature_checks(requests).into_iter().enumerate() {
            let net = self.clone();
            set.spawn(async move { (i, net.fetch_one(r, check).await) });
        }
        let mut out: Vec<Option<Result<Shard, TransferError>>> = (0..n).map(|_| None).collect();
        let mut ok = 0;
        while ok < want {
            let Some(done) = set.join_next().await else {
                break;
            };
            if let Ok((i, r)) = done {
                ok += usize::from(r.is_ok());
                out[i] = Some(r);
            }
        }
        // Dropping the rest cancels their calls at the holders.
        set.abort_all();
        out
    }

    async fn delete_segments(
        &self,
        requests: Vec<(NodeId, DeleteRequest)>,
    ) -> Vec<Result<usize, TransferError>> {
        self.parallel(requests, |net, (node, req)| async move {
            if net.is_local(&node) {
                let store = net.local.clone();
                return blocking(move || store.delete(&req))
                    .await
                    .map_err(local_error);
            }
            let reply = net.call(node, DELETE_PROCEDURE, delete_body(&req)).await?;
            let n: [u8; 4] = reply
                .as_slice()
                .try_into()
                .map_err(|_| TransferError::Rejected("malformed delete reply".into()))?;
            Ok(u32::from_le_bytes(n) as usize)
        })
        .await
    }
}

/// Called with a shard this node found corrupt (and removed) while serving a read.
pub type OnCorrupt = Arc<dyn Fn(SegmentId, u16) + Send + Sync>;

/// Whether a `store.put` from member `sender` may leave a shard signed by `owner` here: the
/// daemon takes the owner's own shards and, for repairs, those of other members it knows, so a
/// member cannot park shards under throwaway keys beyond any per-owner quota.
pub type AcceptOwner = Arc<dyn Fn(NodeId, NodeId) -> bool + Send + Sync>;

/// The daemon's rule: a shard's owner is its sender, this node, or a member `node` knows (a
/// repair re-storing another member's shard). A key no member ever presented is refused.
pub fn members_only(node: &Arc<MeshNode>) -> AcceptOwner {
    let node = Arc::downgrade(node);
    Arc::new(move |sender, owner| {
        owner == sender
            || node
                .upgrade()
                .is_some_and(|n| n.id() == owner || n.peers().iter().any(|p| p.id == owner))
    })
}

/// Serves this node's shard store to the realm (`store.put`, `store.get`, `store.delete`).
/// Every call is checked completely before it touches the disk; a copy found corrupt by a read
/// is reported to `on_corrupt` (so this node's repair planner rebuilds it); a put whose shard
/// owner `accept_owner` refuses is refused.
pub fn serve(
    node: &MeshNode,
    store: Arc<LocalStore>,
    on_corrupt: OnCorrupt,
    accept_owner: AcceptOwner,
) {
    let s = store.clone();
    let put: Handler = Arc::new(move |from, body| {
        let s = s.clone();
        let accept_owner = accept_owner.clone();
        Box::pin(async move {
            if body.len() > MAX_SHARD_BYTES {
                return Err(RpcError::new(ErrorCode::BadRequest, "shard too large"));
            }
            blocking(move || s.put_accepting(&body, |owner| accept_owner(from, *owner)))
                .await
                .map(|_| Vec::new())
                .map_err(rpc_error)
        })
    });
    let s = store.clone();
    let get: StreamHandler = Arc::new(move |_from, body, mut reply| {
        let s = s.clone();
        let on_corrupt = on_corrupt.clone();
        Box::pin(async move {
            let (seg, idx) = parse_get(&body)?;
            // Reported from the blocking task itself: a caller that cancels the read (a faster
            // holder answered) does not keep the loss from being reported.
            let shard = blocking(move || {
                let r = s.get_shard(&seg, idx);
                if let Err(StoreError::Corrupt { segment, index }) = &r {
                    on_corrupt(*segment, *index);
                }
                r
            })
            .await
            .map_err(rpc_error)?;
            for chunk in wire_chunks(&shard, GET_CHUNK) {
                reply.send(chunk).await?;
            }
            Ok(())
        })
    });
    let s = store;
    let delete: Handler = Arc::new(move |_from, body| {
        let s = s.clone();
        Box::pin(async move {
            let req = parse_delete(&body)?;
            blocking(move || s.delete(&req))
                .await
                .map(|n| (n as u32).to_le_bytes().to_vec())
                .map_err(rpc_error)
        })
    });
    node.serve(PUT_PROCEDURE, put);
    node.serve_stream(GET_PROCEDURE, get);
    node.serve(DELETE_PROCEDURE, delete);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_out_of_space_is_told_apart_from_other_refusals() {
        let node = macula_core::NodeKey::from_seed([3; 32]).node_id();
        let over_the_wire = |e: StoreError| transfer_error(node, rpc_error(e));
        let quota = || StoreError::QuotaExceeded {
            need: 10,
            free: 5,
            quota: 100,
        };
        let want = TransferError::NoSpace(quota().to_string());
        assert_eq!(over_the_wire(quota()), want);
        assert_eq!(local_error(quota()), want);
        let disk_full = StoreError::Io {
            action: "write",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert!(matches!(
            over_the_wire(disk_full),
            TransferError::NoSpace(m) if m.contains("write /x")
        ));
        // A per-owner quota is the holder's policy, not a lack of space.
        let owner = StoreError::OwnerQuotaExceeded {
            owner: node,
            need: 10,
            used: 90,
            quota: 100,
        };
        assert!(matches!(over_the_wire(owner), TransferError::Rejected(_)));
        let other_io = StoreError::Io {
            action: "write",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(5),
        };
        assert!(matches!(
            over_the_wire(other_io),
            TransferError::Rejected(_)
        ));
    }

    #[test]
    fn request_bodies_round_trip_and_reject_bad_lengths() {
        let seg = SegmentId([7; 32]);
        assert_eq!(parse_get(&get_body(&seg, 5)).unwrap(), (seg, 5));
        assert!(parse_get(&[0; 33]).is_err());
        assert!(parse_get(&[0; 35]).is_err());
        let req = DeleteRequest {
            segment: seg,
            signature: [9; 64],
        };
        assert_eq!(parse_delete(&delete_body(&req)).unwrap(), req);
        assert!(parse_delete(&[0; 95]).is_err());
    }

    #[test]
    fn oversized_segments_are_refused() {
        assert!(check_put_config(&PutConfig::default()).is_ok());
        let big = PutConfig {
            k: 1,
            segment_len: 16 << 20,
            ..PutConfig::default()
        };
        assert!(
            check_put_config(&big)
                .unwrap_err()
                .contains("segment_bytes")
        );
    }
}
