//! Wiring of the S3 gateway (`docs/s3.md`): the realm-wide index (`macula_s3::index`) kept on
//! disk and exchanged on the pub/sub topic [`TOPIC`], access keys on `io.macula.S3`, and, with
//! `[s3] enabled`, an HTTP/1.1 listener whose requests `macula_s3` parses, authenticates and
//! routes; object bodies stream between the socket and the realm's storage (`crate::storage`)
//! segment by segment (a chunked PUT body of unknown length through a spool file first).

use std::collections::BTreeMap;
use std::io::Seek;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use macula_bus::Error;
use macula_bus::s3::{BoxFuture, S3Control, S3Status};
use macula_core::NodeId;
use macula_core::NodeKey;
use macula_core::sync::Locked;
use macula_mesh::node::{MeshNode, PeerState};
use macula_mesh::rpc::{ErrorCode, Handler, RpcError};
use macula_s3::body::BodyCheck;
use macula_s3::chunked::{self, Framing};
use macula_s3::config::S3Config;
use macula_s3::etag;
use macula_s3::http::{self, Head};
use macula_s3::index::{
    AccessKey, Applied, CATCH_UP_WAIT, Change, Index, KeyScope, ObjectMeta, Part, Record,
    SYNC_DEADLINE, SYNC_PAGE_BYTES, SYNC_PROCEDURE, SyncCursor, SyncPage, UploadHead, UploadState,
};
use macula_s3::multipart::{self, Upload, UploadedPart};
use macula_s3::route::{self, Op, Route};
use macula_s3::sigv4::{self, Payload, SignedRequest};
use macula_s3::{Code, S3Error, xml};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

use crate::mesh::MeshGlue;
use crate::storage::StorageGlue;
use crate::worker::Workers;

/// The pub/sub topic index records travel on.
pub const TOPIC: &str = "macula.s3.index";
/// Bytes read from a socket at a time.
const CHUNK: usize = 64 << 10;
/// Bytes buffered between a PUT body's receiver and the put reading it.
const PIPE: usize = 1 << 20;
/// Largest object accepted in one PUT (as S3 without multipart).
const MAX_PUT: u64 = 5 << 30;
/// Largest body of a request other than PutObject (DeleteObjects of 1000 long keys fits).
const SMALL_BODY: u64 = 1 << 20;

#[derive(Clone)]
pub struct S3Glue {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: S3Config,
    /// This node serves S3 (`[s3] enabled`, or a hub storing shards).
    serve: bool,
    me: [u8; 32],
    index: Mutex<Index>,
    /// The index on disk (0600: it holds access-key secrets).
    file: PathBuf,
    spool: PathBuf,
    storage: StorageGlue,
    node: OnceLock<Arc<MeshNode>>,
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    serving: std::sync::atomic::AtomicBool,
    /// Uploads in progress as a gateway before the realm index kept them left them in
    /// `uploads_file`: entered into the index once the mesh runs, then the file is removed.
    legacy_uploads: Mutex<BTreeMap<String, Upload>>,
    uploads_file: PathBuf,
    /// Whether this node has caught up from a member since it started (the listener waits).
    caught_up: tokio::sync::watch::Sender<bool>,
}

/// Loads the index copy kept in `<state>/s3/index` (if any) and checks `[s3]`. `serve`: this
/// node serves S3 (`S3Config::serves`); every node keeps the index either way.
pub fn open(
    cfg: &S3Config,
    serve: bool,
    state_dir: &std::path::Path,
    key: &NodeKey,
    storage: StorageGlue,
) -> anyhow::Result<S3Glue> {
    cfg.check().map_err(anyhow::Error::msg)?;
    let dir = state_dir.join("s3");
    let file = dir.join("index");
    let mut index = Index::default();
    match std::fs::read(&file) {
        Ok(b) => {
            let records: Vec<Record> = macula_core::wire::decode(&b).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); move it away, the gateway then learns the index anew",
                    file.display()
                )
            })?;
            for r in records {
                index.apply(r);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
    }
    let uploads_file = dir.join("uploads");
    let uploads: BTreeMap<String, Upload> = match std::fs::read(&uploads_file) {
        Ok(b) => macula_core::wire::decode(&b).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); move it away to start without the multipart uploads in \
                 progress (their parts' shards stay until deleted)",
                uploads_file.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", uploads_file.display()),
    };
    Ok(S3Glue {
        inner: Arc::new(Inner {
            cfg: cfg.clone(),
            serve,
            me: *key.node_id().as_bytes(),
            index: Mutex::new(index),
            file,
            spool: dir.join("spool"),
            storage,
            node: OnceLock::new(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            serving: std::sync::atomic::AtomicBool::new(false),
            legacy_uploads: Mutex::new(uploads),
            uploads_file,
            caught_up: tokio::sync::watch::Sender::new(false),
        }),
    })
}

impl S3Glue {
    /// Hears the realm's index records once the mesh runs, catches up from every member that
    /// is or comes alive (`macula_s3::index::SYNC_PROCEDURE`), serves its own index to the
    /// others, and, when it serves S3 (`[s3] enabled`, or a hub storing shards), serves S3.
    pub fn attach(&self, mesh: MeshGlue, workers: &Workers) {
        let this = self.clone();
        let serve = self.inner.serve;
        let workers2 = workers.clone();
        workers.spawn("s3.index", |ctx| async move {
            let Some(node) = ctx.wait(mesh.wait_running()).await else {
                return Ok(());
            };
            this.serve_sync(&node);
            let mut changes = node.watch_peers();
            let mut sub = node
                .subscribe(TOPIC)
                .await
                .map_err(|e| format!("cannot subscribe to {TOPIC}: {e}"))?;
            let _ = this.inner.node.set(node.clone());
            this.migrate_uploads().await;
            for p in node.peers() {
                if p.state == PeerState::Alive {
                    this.catch_up(&node, p.id);
                }
            }
            if serve {
                let this2 = this.clone();
                workers2.spawn("s3.serve", |ctx| async move { this2.serve(ctx).await });
                let after = this.inner.cfg.abort_incomplete_uploads_secs;
                if after > 0 {
                    let this2 = this.clone();
                    workers2.spawn("s3.uploads-lifecycle", move |ctx| async move {
                        this2.abort_incomplete(ctx, after).await
                    });
                }
            }
            loop {
                let next = ctx.wait(async {
                    tokio::select! {
                        p = sub.recv() => Heard::Record(p),
                        c = changes.recv() => Heard::Peer(c),
                    }
                });
                match next.await {
                    None | Some(Heard::Record(None)) => return Ok(()),
                    Some(Heard::Record(Some(p))) => {
                        if p.publisher == node.id() {
                            continue;
                        }
                        match macula_core::wire::decode::<Record>(&p.payload) {
                            Ok(r) => this.apply(r),
                            Err(e) => tracing::warn!(target: "macula::s3", from = %p.publisher,
                                error = %e, "index record ignored"),
                        }
                    }
                    Some(Heard::Peer(Ok(c))) => {
                        if c.peer.state == PeerState::Alive && !c.left {
                            this.catch_up(&node, c.peer.id);
                        }
                    }
                    Some(Heard::Peer(Err(RecvError::Lagged(n)))) => {
                        ctx.error(format!("{n} peer changes missed"));
                    }
                    Some(Heard::Peer(Err(RecvError::Closed))) => return Ok(()),
                }
            }
        });
    }

    /// Enters the uploads a gateway of the version before kept in `<state>/s3/uploads` into
    /// the realm index, then removes the file.
    async fn migrate_uploads(&self) {
        let legacy = std::mem::take(&mut *self.inner.legacy_uploads.locked());
        if legacy.is_empty() {
            return;
        }
        let count = legacy.len();
        for (id, u) in legacy {
            let open = Change::Upload {
                id: id.clone(),
                state: UploadState::Open(UploadHead {
                    bucket: u.bucket,
                    key: u.key,
                    created_ms: u.created_ms,
                    content_type: u.content_type,
                    user_meta: u.user_meta,
                }),
            };
            // Applied here even when not sent: the realm hears it at its next catch-up.
            let _ = self.commit(open).await;
            for (number, part) in u.parts {
                let _ = self
                    .commit(Change::UploadPart {
                        id: id.clone(),
                        number,
                        part,
                    })
                    .await;
            }
        }
        match std::fs::remove_file(&self.inner.uploads_file) {
            Ok(()) => tracing::info!(target: "macula::s3", uploads = count,
                "multipart uploads in progress moved into the realm index"),
            Err(e) => {
                tracing::warn!(target: "macula::s3", file = %self.inner.uploads_file.display(),
                error = %e, "uploads moved into the realm index; the old file stays")
            }
        }
    }

    /// Aborts the uploads created more than `after` seconds ago (every gateway that serves S3
    /// does: two aborting the same upload end it the same way); looks every quarter of `after`
    /// (between 1 s and 1 h).
    async fn abort_incomplete(
        &self,
        ctx: crate::worker::WorkerCtx,
        after: u64,
    ) -> crate::worker::WorkerResult {
        let every = std::time::Duration::from_millis(
            (after.saturating_mul(1000) / 4).clamp(1000, 3_600_000),
        );
        while ctx.wait(tokio::time::sleep(every)).await.is_some() {
            let cutoff = unix_ms().saturating_sub(after.saturating_mul(1000));
            let expired: Vec<(String, Upload)> = self
                .inner
                .index
                .locked()
                .uploads(None)
                .into_iter()
                .filter(|(_, u)| u.created_ms < cutoff)
                .collect();
            for (id, u) in expired {
                let ended = Change::Upload {
                    id: id.clone(),
                    state: UploadState::Ended { kept: Vec::new() },
                };
                match self.commit(ended).await {
                    Ok(()) => {
                        tracing::info!(target: "macula::s3", bucket = %u.bucket, key = %u.key,
                        upload = %id, parts = u.parts.len(), after_secs = after,
                        "aborted an incomplete multipart upload ([s3] abort_incomplete_uploads_secs)")
                    }
                    Err(e) => ctx.error(format!(
                        "incomplete upload {id} aborted here only: {}",
                        e.message
                    )),
                }
            }
        }
        Ok(())
    }

    /// Answers `SYNC_PROCEDURE`: one page of this node's index records.
    fn serve_sync(&self, node: &MeshNode) {
        let this = self.clone();
        let handler: Handler = Arc::new(move |_from, body| {
            let this = this.clone();
            Box::pin(async move {
                let after: Option<SyncCursor> = macula_core::wire::decode(&body).map_err(|e| {
                    RpcError::new(ErrorCode::BadRequest, format!("not a sync cursor: {e}"))
                })?;
                let page =
                    this.inner
                        .index
                        .locked()
                        .sync_page(after.as_ref(), SYNC_PAGE_BYTES, |r| {
                            macula_core::wire::encode(r).len()
                        });
                Ok(macula_core::wire::encode(&page))
            })
        });
        node.serve(SYNC_PROCEDURE, handler);
    }

    /// Fetches `peer`'s whole index, page by page, and applies it (in the background).
    fn catch_up(&self, node: &Arc<MeshNode>, peer: NodeId) {
        let (this, node) = (self.clone(), node.clone());
        tokio::spawn(async move {
            let mut after: Option<SyncCursor> = None;
            let mut records = 0usize;
            loop {
                let body = macula_core::wire::encode(&after);
                let page = match node.call(peer, SYNC_PROCEDURE, body, SYNC_DEADLINE).await {
                    Ok(b) => macula_core::wire::decode::<SyncPage>(&b).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(target: "macula::s3", %peer, error = %e,
                            "index catch-up stopped (again when the member next comes up)");
                        return;
                    }
                };
                records += page.records.len();
                for r in page.records {
                    this.apply(r);
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            tracing::debug!(target: "macula::s3", %peer, records, "index caught up");
            this.inner.caught_up.send_replace(true);
        });
    }

    async fn serve(&self, ctx: crate::worker::WorkerCtx) -> crate::worker::WorkerResult {
        let listen = self.inner.cfg.listen;
        // Serving before the index caught up would answer NoSuchBucket, InvalidAccessKeyId…
        // for what the realm has.
        let mut caught_up = self.inner.caught_up.subscribe();
        let waited = ctx
            .wait(async {
                tokio::time::timeout(CATCH_UP_WAIT, caught_up.wait_for(|c| *c))
                    .await
                    .map(|r| r.is_ok())
            })
            .await;
        match waited {
            None => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(_)) => tracing::info!(target: "macula::s3",
                "no member answered an index catch-up; serving the index this node holds"),
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}; change [s3] listen"))?;
        if let Err(e) = std::fs::create_dir_all(&self.inner.spool) {
            return Err(format!("cannot create {}: {e}", self.inner.spool.display()));
        }
        tracing::info!(target: "macula::s3", %listen, region = %self.inner.cfg.region,
            "S3 gateway listening");
        self.inner.serving.store(true, Ordering::Relaxed);
        while let Some(accepted) = ctx.wait(listener.accept()).await {
            match accepted {
                Ok((sock, _)) => {
                    // A response is a head and a body written apart: with Nagle's algorithm
                    // the body of a small object waited for the client's delayed ACK (40 ms).
                    let _ = sock.set_nodelay(true);
                    let this = self.clone();
                    tokio::spawn(async move { this.connection(sock).await });
                }
                Err(e) => ctx.error(format!("accept: {e}")),
            }
        }
        Ok(())
    }

    /// Applies a record (from here or another gateway), keeps the index on disk, and deletes
    /// the body of an object this node wrote that the record superseded.
    fn apply(&self, r: Record) {
        let applied = {
            let mut ix = self.inner.index.locked();
            let applied = ix.apply(r);
            if applied != Applied::Stale {
                let bytes = macula_core::wire::encode(&ix.records());
                if let Err(e) = macula_core::fsutil::write_atomic(&self.inner.file, &bytes, 0o600) {
                    tracing::error!(target: "macula::s3", file = %self.inner.file.display(),
                        error = %e, "cannot keep the index on disk");
                }
            }
            applied
        };
        if let Applied::Won { replaced, unused } = applied {
            let mine = replaced
                .into_iter()
                .flat_map(|(v, old)| old.parts.into_iter().map(move |p| (v, p)))
                .chain(unused)
                .filter(|(v, _)| v.node == self.inner.me)
                .map(|(_, p)| p)
                .collect::<Vec<_>>();
            if !mine.is_empty() {
                self.delete_parts(mine);
            }
        }
    }

    /// Makes a change here and sends it to the realm's other gateways.
    async fn commit(&self, change: Change) -> Result<(), S3Error> {
        let node = self.inner.node.get().ok_or_else(unavailable)?;
        let r = Record {
            version: self.inner.index.locked().next_version(self.inner.me),
            change,
        };
        let bytes = macula_core::wire::encode(&r);
        self.apply(r);
        node.publish(TOPIC, bytes).await.map_err(|e| {
            tracing::warn!(target: "macula::s3", error = %e, "index record not sent");
            S3Error::new(
                Code::ServiceUnavailable,
                "the change was made here but not sent to the realm; retry",
            )
        })?;
        Ok(())
    }

    async fn connection(&self, mut sock: TcpStream) {
        let mut buf = Vec::with_capacity(4096);
        loop {
            let head = match read_head(&mut sock, &mut buf).await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(e) => {
                    let _ = self.respond_error(&mut sock, &e, false, false).await;
                    return;
                }
            };
            let mut body = BodyReader::new(&head, &mut buf);
            let keep = match self.request(&head, &mut body, &mut sock).await {
                Ok(keep) => keep && body.left == 0,
                Err(_) => return,
            };
            if !keep {
                return;
            }
        }
    }

    /// Serves one request; `Ok(keep-alive)`, `Err` when the socket failed.
    async fn request(
        &self,
        head: &Head,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> std::io::Result<bool> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let is_head = head.method == "HEAD";
        match self.handle(head, body, sock).await {
            Ok(resp) => {
                let keep = head.keep_alive;
                let mut h: Vec<(&str, String)> = resp
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.clone()))
                    .collect();
                h.push(("x-amz-request-id", self.request_id()));
                match resp.body {
                    Body::Bytes(b) => {
                        let len = resp.len.unwrap_or(b.len() as u64);
                        sock.write_all(&http::response_head(resp.status, &h, len, keep))
                            .await?;
                        if !is_head {
                            sock.write_all(&b).await?;
                        }
                    }
                    Body::Object { parts, len } => {
                        let head = http::response_head(resp.status, &h, len, keep);
                        return self.send_object(sock, head, parts, len, keep).await;
                    }
                }
                Ok(keep)
            }
            Err(e) => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "macula::s3", method = %head.method,
                    path = %head.raw_path, code = e.code.as_str(), "request refused");
                // A body not read cannot be skipped reliably: close the connection after it.
                let keep = head.keep_alive && body.left == 0;
                self.respond_error(sock, &e, is_head, keep).await?;
                Ok(keep)
            }
        }
    }

    /// Sends a response whose body is read from the realm as it goes out. A failure before
    /// the first byte is answered with an S3 error; after it, the connection is closed and the
    /// client sees a short body (and retries), as with S3.
    async fn send_object(
        &self,
        sock: &mut TcpStream,
        head: Vec<u8>,
        parts: Vec<(String, std::ops::Range<u64>)>,
        len: u64,
        keep: bool,
    ) -> std::io::Result<bool> {
        let mut out = HeadFirst {
            head,
            at: 0,
            sock: &mut *sock,
        };
        let read = self.read_parts(&parts, &mut out).await;
        let began = out.at > 0;
        match read {
            Ok(sent) => {
                out.finish().await?;
                self.inner.bytes_out.fetch_add(sent, Ordering::Relaxed);
                if sent != len {
                    return Err(std::io::Error::other(format!(
                        "object bodies gave {sent} bytes of {len}"
                    )));
                }
                Ok(keep)
            }
            Err(e) if !began => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                self.respond_error(sock, &storage_error(e), false, keep)
                    .await?;
                Ok(keep)
            }
            Err(e) => {
                self.inner.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "macula::s3", error = %e, "an object could not be read to the end; connection closed");
                Err(std::io::Error::other(e.to_string()))
            }
        }
    }

    fn request_id(&self) -> String {
        format!("{:016x}", self.inner.requests.load(Ordering::Relaxed))
    }

    async fn respond_error(
        &self,
        sock: &mut TcpStream,
        e: &S3Error,
        is_head: bool,
        keep: bool,
    ) -> std::io::Result<()> {
        let body = e.body(&self.request_id());
        let h = [
            ("Content-Type", "application/xml".to_string()),
            ("x-amz-request-id", self.request_id()),
        ];
        let len = if is_head { 0 } else { body.len() as u64 };
        sock.write_all(&http::response_head(e.status(), &h, len, keep))
            .await?;
        if !is_head {
            sock.write_all(body.as_bytes()).await?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        head: &Head,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<Response, S3Error> {
        let cfg = &self.inner.cfg;
        let route = route::route_head(head, cfg.domain.as_deref())?;
        let signed = SignedRequest {
            method: &head.method,
            raw_path: &head.raw_path,
            raw_query: &head.raw_query,
            headers: &head.headers,
        };
        let auth = sigv4::parse(&signed)?
            .ok_or_else(|| S3Error::new(Code::AccessDenied, "Anonymous access is not allowed"))?;
        let secret = self
            .inner
            .index
            .locked()
            .access_key(&auth.access_key)
            .map(|(k, scope)| (k.secret.clone(), scope.clone()))
            .ok_or_else(|| {
                S3Error::new(
                    Code::InvalidAccessKeyId,
                    "The AWS Access Key Id you provided does not exist in our records.",
                )
            })?;
        let (secret, scope) = secret;
        auth.verify(&signed, secret.as_bytes(), &cfg.region, unix_now())?;
        scope.allows(&route.op, route.bucket.as_deref())?;
        let bauth = BodyAuth {
            chunks: Framing::for_request(&auth, secret.as_bytes()),
            payload: auth.payload.clone(),
        };
        if self.inner.node.get().is_none() {
            return Err(unavailable());
        }
        let bucket = route.bucket.clone().unwrap_or_default();
        let key = route.key.clone().unwrap_or_default();
        match route.op {
            Op::ListBuckets => {
                let mut buckets = self.inner.index.locked().buckets();
                buckets.retain(|b| scope.lists(&b.name));
                Ok(Response::xml(xml::list_buckets(&buckets, &auth.access_key)))
            }
            Op::CreateBucket => {
                // The optional CreateBucketConfiguration (a location constraint): read so the
                // connection stays usable; the realm has one location.
                self.small_body(head, &bauth, body, sock).await?;
                let change = self
                    .inner
                    .index
                    .locked()
                    .create_bucket(&bucket, unix_ms())?;
                self.commit(change).await?;
                Ok(Response::empty(200).header("Location", format!("/{bucket}")))
            }
            Op::HeadBucket => {
                self.inner.index.locked().check_bucket(&bucket)?;
                Ok(Response::empty(200).header("x-amz-bucket-region", cfg.region.clone()))
            }
            Op::DeleteBucket => {
                let change = self.inner.index.locked().delete_bucket(&bucket)?;
                self.commit(change).await?;
                Ok(Response::empty(204))
            }
            Op::GetBucketLocation => {
                self.inner.index.locked().check_bucket(&bucket)?;
                Ok(Response::xml(xml::location(&cfg.region)))
            }
            Op::ListObjectsV2 => self.list_v2(&bucket, &route),
            Op::ListObjectsV1 | Op::ListObjectVersions => {
                self.list_v1(&bucket, &route, route.op == Op::ListObjectVersions)
            }
            Op::DeleteObjects => self.delete_objects(head, &bauth, &bucket, body, sock).await,
            Op::CopyObject => self.copy(head, &scope, &bucket, &key).await,
            Op::PutObject => self.put(head, &bauth, &bucket, &key, body, sock).await,
            Op::CreateMultipartUpload
            | Op::UploadPart
            | Op::CompleteMultipartUpload
            | Op::AbortMultipartUpload
            | Op::ListParts
            | Op::ListMultipartUploads => self.multipart(&route, head, &bauth, body, sock).await,
            Op::GetObject | Op::HeadObject => {
                self.get(head, &bucket, &key, route.op == Op::HeadObject)
                    .await
            }
            Op::DeleteObject => {
                let exists = {
                    let ix = self.inner.index.locked();
                    match ix.object(&bucket, &key) {
                        Ok(_) => true,
                        Err(e) if e.code == Code::NoSuchKey => false,
                        Err(e) => return Err(e),
                    }
                };
                if exists {
                    self.commit(Change::Object {
                        bucket,
                        key,
                        meta: None,
                    })
                    .await?;
                }
                Ok(Response::empty(204))
            }
            Op::NotImplemented(what) => Err(S3Error::new(
                Code::NotImplemented,
                format!("{what} is not implemented by this gateway (docs/s3.md)"),
            )),
        }
    }

    fn list_v2(&self, bucket: &str, route: &Route) -> Result<Response, S3Error> {
        let max_keys = match route.param("max-keys") {
            None => macula_s3::index::MAX_KEYS,
            Some(m) => m
                .parse::<usize>()
                .map_err(|_| S3Error::new(Code::InvalidArgument, "max-keys must be a number"))?,
        };
        let prefix = route.param("prefix").unwrap_or("");
        let delimiter = route.param("delimiter").filter(|d| !d.is_empty());
        let continuation = route.param("continuation-token");
        let start_after = route.param("start-after");
        let after = match continuation {
            Some(t) => Some(macula_s3::index::parse_continuation(t)?),
            None => start_after.map(str::to_string),
        };
        let page = self.inner.index.locked().list(
            bucket,
            prefix,
            delimiter,
            after.as_deref(),
            max_keys,
        )?;
        let echo = xml::ListV2Echo {
            bucket,
            prefix,
            delimiter,
            max_keys: max_keys.min(macula_s3::index::MAX_KEYS),
            continuation,
            start_after,
            url_encode: route.param("encoding-type") == Some("url"),
        };
        Ok(Response::xml(xml::list_objects_v2(&echo, &page)))
    }

    fn list_v1(&self, bucket: &str, route: &Route, versions: bool) -> Result<Response, S3Error> {
        let max_keys = match route.param("max-keys") {
            None => macula_s3::index::MAX_KEYS,
            Some(m) => m
                .parse::<usize>()
                .map_err(|_| S3Error::new(Code::InvalidArgument, "max-keys must be a number"))?,
        };
        let prefix = route.param("prefix").unwrap_or("");
        let delimiter = route.param("delimiter").filter(|d| !d.is_empty());
        let marker = route
            .param(if versions { "key-marker" } else { "marker" })
            .unwrap_or("");
        let page = self.inner.index.locked().list(
            bucket,
            prefix,
            delimiter,
            (!marker.is_empty()).then_some(marker),
            max_keys,
        )?;
        let echo = xml::ListV1Echo {
            bucket,
            prefix,
            delimiter,
            max_keys: max_keys.min(macula_s3::index::MAX_KEYS),
            marker,
            url_encode: route.param("encoding-type") == Some("url"),
        };
        Ok(Response::xml(if versions {
            xml::list_versions(&echo, &page)
        } else {
            xml::list_objects_v1(&echo, &page)
        }))
    }

    /// Reads a small request body (≤ 1 MiB: DeleteObjects) after its checks.
    async fn small_body(
        &self,
        head: &Head,
        bauth: &BodyAuth,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<Vec<u8>, S3Error> {
        if head.content_length > SMALL_BODY {
            return Err(S3Error::new(
                Code::EntityTooLarge,
                "this request's body may be at most 1 MiB",
            ));
        }
        if bauth.chunks.is_some() {
            return Err(S3Error::new(
                Code::NotImplemented,
                "aws-chunked bodies are accepted for PutObject and UploadPart only",
            ));
        }
        let mut check = BodyCheck::new(&head.headers, &bauth.payload)?;
        if head.expect_continue {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| internal("the client went away"))?;
        }
        let mut out = Vec::with_capacity(head.content_length as usize);
        let mut piece = vec![0u8; CHUNK];
        while body.left > 0 {
            let n = body.read(sock, &mut piece).await.map_err(body_error)?;
            // A chunked body's length shows only as it comes.
            if (out.len() + n) as u64 > SMALL_BODY {
                return Err(S3Error::new(
                    Code::EntityTooLarge,
                    "this request's body may be at most 1 MiB",
                ));
            }
            out.extend_from_slice(&piece[..n]);
        }
        check.update(&out);
        check.finish()?;
        Ok(out)
    }

    async fn delete_objects(
        &self,
        head: &Head,
        bauth: &BodyAuth,
        bucket: &str,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<Response, S3Error> {
        self.inner.index.locked().check_bucket(bucket)?;
        let b = self.small_body(head, bauth, body, sock).await?;
        let text = String::from_utf8(b)
            .map_err(|_| S3Error::new(Code::MalformedXML, "the body is not UTF-8"))?;
        let (keys, quiet) = xml::parse_delete(&text)?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for key in keys {
            let exists = self.inner.index.locked().object(bucket, &key).is_ok();
            if exists {
                let change = Change::Object {
                    bucket: bucket.to_string(),
                    key: key.clone(),
                    meta: None,
                };
                if let Err(e) = self.commit(change).await {
                    errors.push((key, e));
                    continue;
                }
            }
            deleted.push(key);
        }
        Ok(Response::xml(xml::delete_result(&deleted, &errors, quiet)))
    }

    /// CopyObject: the source's bytes are read and stored again (an object's shards belong to
    /// one object: sharing a capability would let deleting one copy destroy the other).
    async fn copy(
        &self,
        head: &Head,
        scope: &KeyScope,
        bucket: &str,
        key: &str,
    ) -> Result<Response, S3Error> {
        let (sb, sk) = route::parse_copy_source(head.header("x-amz-copy-source").unwrap_or(""))?;
        scope.may_read(&sb)?;
        let src = self.inner.index.locked().object(&sb, &sk)?.clone();
        self.inner.index.locked().check_bucket(bucket)?;
        let replace = match head.header("x-amz-metadata-directive") {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(d) => {
                return Err(S3Error::new(
                    Code::InvalidArgument,
                    format!("x-amz-metadata-directive {d}: use COPY or REPLACE"),
                ));
            }
        };
        if !replace && sb == bucket && sk == key {
            return Err(S3Error::new(
                Code::InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
            ));
        }
        let cap = self.copy_body(&src, format!("s3://{bucket}/{key}")).await?;
        let (content_type, user_meta) = if replace {
            (
                head.header("content-type").map(str::to_string),
                user_meta(head),
            )
        } else {
            (src.content_type.clone(), src.user_meta.clone())
        };
        let meta = ObjectMeta {
            parts: vec![Part {
                cap,
                size: src.size,
            }],
            size: src.size,
            etag: src.etag.clone(),
            modified_ms: unix_ms(),
            content_type,
            user_meta,
        };
        let result = xml::copy_result(&meta.etag, meta.modified_ms);
        self.commit(Change::Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
            meta: Some(meta),
        })
        .await?;
        Ok(Response::xml(result))
    }

    /// Stores a request body in the realm as it arrives and checks it (length, Content-MD5,
    /// checksums, trailers); a body that fails a check is deleted again. A chunked body of
    /// unknown length goes through a spool file first (a put needs the length up front).
    async fn store_body(
        &self,
        head: &Head,
        bauth: &BodyAuth,
        label: String,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<(Part, [u8; 16]), S3Error> {
        if head.header("content-length").is_none() && !head.chunked {
            return Err(S3Error::new(
                Code::MissingContentLength,
                "You must provide the Content-Length HTTP header.",
            ));
        }
        if head.content_length > MAX_PUT {
            return Err(S3Error::new(
                Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT or part).",
            ));
        }
        let check = BodyCheck::new(&head.headers, &bauth.payload)?;
        // The length the body must have; unknown before the end of a chunked body that is
        // not aws-chunked.
        let size = match &bauth.chunks {
            None if head.chunked => None,
            None => Some(head.content_length),
            Some(_) => head
                .header("x-amz-decoded-content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    S3Error::new(
                        Code::MissingContentLength,
                        "an aws-chunked body needs x-amz-decoded-content-length",
                    )
                })
                .map(Some)?,
        };
        if size.is_some_and(|size| size > MAX_PUT) {
            return Err(S3Error::new(
                Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT or part).",
            ));
        }
        if size.is_some_and(|size| size > MAX_PUT) {
            return Err(S3Error::new(
                Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT or part).",
            ));
        }
        if head.expect_continue {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| internal("the client went away"))?;
        }
        let pump = Pump {
            bauth,
            size,
            check,
            written: 0,
            bytes_in: &self.inner.bytes_in,
        };
        let Some(size) = size else {
            let (path, file) = self.spool_file()?;
            let _cleanup = RemoveOnDrop(path);
            let mut spool = tokio::fs::File::from_std(file);
            let (written, md5) = pump.run(body, sock, &mut spool).await?;
            spool
                .flush()
                .await
                .map_err(|e| internal(format!("spool: {e}")))?;
            let mut file = spool.into_std().await;
            file.rewind().map_err(|e| internal(format!("spool: {e}")))?;
            let cap = self
                .inner
                .storage
                .put_spooled(file, label)
                .await
                .map_err(storage_error)?;
            return Ok((Part { cap, size: written }, md5));
        };
        let (pumped, stored) = self
            .put_fed(size, label, async |tx| pump.run(body, sock, tx).await)
            .await;
        match (pumped, stored) {
            (Ok((written, md5)), Ok(cap)) => Ok((Part { cap, size: written }, md5)),
            (Err(e), Ok(cap)) => {
                self.delete_parts(vec![Part { cap, size }]);
                Err(e)
            }
            (Err(e), Err(_)) if e.code != Code::InternalError => Err(e),
            (_, Err(e)) => Err(storage_error(e)),
        }
    }

    /// Deletes bodies this node stored (in the background; a failure is logged).
    fn delete_parts(&self, parts: Vec<Part>) {
        let storage = self.inner.storage.clone();
        tokio::spawn(async move {
            for p in parts {
                if let Err(e) = storage.delete_cap(p.cap).await {
                    tracing::warn!(target: "macula::s3", error = %e,
                        "a body no object uses was not deleted");
                }
            }
        });
    }

    async fn put(
        &self,
        head: &Head,
        bauth: &BodyAuth,
        bucket: &str,
        key: &str,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<Response, S3Error> {
        self.inner.index.locked().check_bucket(bucket)?;
        let label = format!("s3://{bucket}/{key}");
        let (part, md5) = self.store_body(head, bauth, label, body, sock).await?;
        let etag = etag::etag(&md5);
        let meta = ObjectMeta {
            size: part.size,
            parts: vec![part],
            etag: etag.clone(),
            modified_ms: unix_ms(),
            content_type: head.header("content-type").map(str::to_string),
            user_meta: user_meta(head),
        };
        self.commit_object(bucket, key, meta).await?;
        Ok(Response::empty(200).header("ETag", etag))
    }

    /// Records a new object (its bodies deleted instead if the bucket went meanwhile).
    async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<(), S3Error> {
        let bucket_gone = self.inner.index.locked().check_bucket(bucket).err();
        if let Some(e) = bucket_gone {
            self.delete_parts(meta.parts);
            return Err(e);
        }
        self.commit(Change::Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
            meta: Some(meta),
        })
        .await
    }

    /// The upload a request names (`uploadId`), in progress for its bucket and key.
    fn upload(&self, route: &Route, bucket: &str, key: &str) -> Result<(String, Upload), S3Error> {
        let id = route.param("uploadId").unwrap_or("");
        self.inner
            .index
            .locked()
            .upload(id, bucket, key)
            .map(|u| (id.to_string(), u))
            .ok_or_else(no_such_upload)
    }

    async fn multipart(
        &self,
        route: &Route,
        head: &Head,
        bauth: &BodyAuth,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
    ) -> Result<Response, S3Error> {
        let bucket = route.bucket.as_deref().unwrap_or_default();
        let key = route.key.as_deref().unwrap_or_default();
        self.inner.index.locked().check_bucket(bucket)?;
        match route.op {
            Op::CreateMultipartUpload => {
                let mut r = [0u8; 16];
                getrandom::fill(&mut r).map_err(|e| internal(format!("random: {e}")))?;
                let id = sigv4::hex(&r);
                self.commit(Change::Upload {
                    id: id.clone(),
                    state: UploadState::Open(UploadHead {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        created_ms: unix_ms(),
                        content_type: head.header("content-type").map(str::to_string),
                        user_meta: user_meta(head),
                    }),
                })
                .await?;
                Ok(Response::xml(multipart::initiate_result(bucket, key, &id)))
            }
            Op::UploadPart => {
                let n = multipart::part_number(route.param("partNumber"))?;
                let (id, _) = self.upload(route, bucket, key)?;
                let label = format!("s3://{bucket}/{key}#{n}");
                let (part, md5) = self.store_body(head, bauth, label, body, sock).await?;
                // Applying it deletes the body of a part it replaces, and this body when the
                // upload ended (elsewhere) while it streamed in.
                self.commit(Change::UploadPart {
                    id: id.clone(),
                    number: n,
                    part: UploadedPart {
                        part,
                        md5,
                        modified_ms: unix_ms(),
                    },
                })
                .await?;
                self.upload(route, bucket, key)?;
                Ok(Response::empty(200).header("ETag", etag::etag(&md5)))
            }
            Op::CompleteMultipartUpload => {
                let b = self.small_body(head, bauth, body, sock).await?;
                let text = String::from_utf8(b)
                    .map_err(|_| S3Error::new(Code::MalformedXML, "the body is not UTF-8"))?;
                let list = multipart::parse_complete(&text)?;
                let (id, u) = self.upload(route, bucket, key)?;
                let done = u.complete(&list)?;
                let meta = ObjectMeta {
                    parts: done.parts.clone(),
                    size: done.size,
                    etag: done.etag.clone(),
                    modified_ms: unix_ms(),
                    content_type: u.content_type,
                    user_meta: u.user_meta,
                };
                self.commit_object(bucket, key, meta).await?;
                // Every gateway deletes the parts it wrote that the object does not use.
                self.commit(Change::Upload {
                    id,
                    state: UploadState::Ended {
                        kept: done.parts.into_iter().map(|p| p.cap).collect(),
                    },
                })
                .await?;
                Ok(Response::xml(multipart::complete_result(
                    bucket, key, &done.etag,
                )))
            }
            Op::AbortMultipartUpload => {
                let (id, _) = self.upload(route, bucket, key)?;
                self.commit(Change::Upload {
                    id,
                    state: UploadState::Ended { kept: Vec::new() },
                })
                .await?;
                Ok(Response::empty(204))
            }
            Op::ListParts => {
                let (id, u) = self.upload(route, bucket, key)?;
                Ok(Response::xml(multipart::list_parts(&id, &u)))
            }
            _ => {
                let uploads = self.inner.index.locked().uploads(Some(bucket));
                Ok(Response::xml(multipart::list_uploads(
                    bucket,
                    uploads.iter().map(|(id, u)| (id.as_str(), u)),
                )))
            }
        }
    }

    async fn get(
        &self,
        head: &Head,
        bucket: &str,
        key: &str,
        head_only: bool,
    ) -> Result<Response, S3Error> {
        let meta = self.inner.index.locked().object(bucket, key)?.clone();
        let mut headers = vec![
            ("ETag".to_string(), meta.etag.clone()),
            (
                "Last-Modified".to_string(),
                sigv4::format_times(meta.modified_ms / 1000).1,
            ),
            ("Accept-Ranges".to_string(), "bytes".to_string()),
            (
                "Content-Type".to_string(),
                meta.content_type
                    .clone()
                    .unwrap_or_else(|| "binary/octet-stream".into()),
            ),
        ];
        for (n, v) in &meta.user_meta {
            headers.push((format!("x-amz-meta-{n}"), v.clone()));
        }
        if let Some(m) = head.header("if-none-match") {
            if etag::matches(m, &meta.etag) {
                return Ok(Response {
                    status: 304,
                    headers,
                    body: Body::Bytes(Vec::new()),
                    len: Some(0),
                });
            }
        }
        if let Some(m) = head.header("if-match") {
            if !etag::matches(m, &meta.etag) {
                return Err(S3Error::new(
                    Code::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
        }
        let range = route::parse_range(head.header("range"), meta.size)?;
        let (status, first, len) = match range {
            Some(r) => {
                headers.push((
                    "Content-Range".to_string(),
                    format!("bytes {}-{}/{}", r.first, r.last, meta.size),
                ));
                (206, r.first, r.last - r.first + 1)
            }
            None => (200, 0, meta.size),
        };
        if head_only {
            return Ok(Response {
                status,
                headers,
                body: Body::Bytes(Vec::new()),
                len: Some(len),
            });
        }
        Ok(Response {
            status,
            headers,
            body: Body::Object {
                parts: object_ranges(&meta.parts, first, len),
                len,
            },
            len: Some(len),
        })
    }

    /// Writes the ranges of realm objects `parts` names to `out`, in order; the bytes written.
    async fn read_parts(
        &self,
        parts: &[(String, std::ops::Range<u64>)],
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<u64, Error> {
        let mut sum = 0;
        for (cap, range) in parts {
            sum += self
                .inner
                .storage
                .get_range_to(cap, range.clone(), out)
                .await?;
        }
        Ok(sum)
    }

    /// Stores the `size` bytes `feed` writes as a new realm object: the put reads them from a
    /// pipe on its own task (coding and sending beside the feeding), and when it ends early the
    /// pipe breaks, so the feed fails too. Returns what the feed returned and the put's result.
    async fn put_fed<T>(
        &self,
        size: u64,
        label: String,
        feed: impl AsyncFnOnce(&mut tokio::io::DuplexStream) -> T,
    ) -> (T, Result<String, Error>) {
        let (mut tx, mut rx) = tokio::io::duplex(PIPE);
        let storage = self.inner.storage.clone();
        let put = tokio::spawn(async move { storage.put_stream(&mut rx, size, label).await });
        let fed = feed(&mut tx).await;
        drop(tx);
        let stored = put
            .await
            .unwrap_or_else(|e| Err(Error::Failed(format!("put task: {e}"))));
        (fed, stored)
    }

    /// Stores a copy of `src`'s bytes as a new realm object, streamed from its parts; returns
    /// the capability.
    async fn copy_body(&self, src: &ObjectMeta, label: String) -> Result<String, S3Error> {
        let parts = object_ranges(&src.parts, 0, src.size);
        let (read, stored) = self
            .put_fed(src.size, label, async |tx| {
                self.read_parts(&parts, tx).await
            })
            .await;
        match (read, stored) {
            (Ok(_), Ok(cap)) => Ok(cap),
            (Err(e), Ok(cap)) => {
                self.delete_parts(vec![Part {
                    cap,
                    size: src.size,
                }]);
                Err(storage_error(e))
            }
            // the source unreadable: the put only saw its input end
            (Err(e @ Error::Unavailable(_)), Err(_)) => Err(storage_error(e)),
            (_, Err(e)) => Err(storage_error(e)),
        }
    }

    fn spool_file(&self) -> Result<(PathBuf, std::fs::File), S3Error> {
        let mut r = [0u8; 12];
        getrandom::fill(&mut r).map_err(|e| internal(format!("random: {e}")))?;
        let path = self.inner.spool.join(sigv4::hex(&r));
        // Written, then read back: a PUT body is stored from it.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| internal(format!("spool {}: {e}", path.display())))?;
        Ok((path, f))
    }
}

/// `x-amz-meta-*` of a request (names without the prefix).
fn user_meta(head: &Head) -> Vec<(String, String)> {
    head.headers
        .iter()
        .filter_map(|(n, v)| {
            n.strip_prefix("x-amz-meta-")
                .map(|m| (m.to_string(), v.clone()))
        })
        .collect()
}

/// Moves a request body from the socket to a sink: decodes aws-chunked framing, counts and
/// bounds the length, and runs the body's checks.
struct Pump<'a> {
    bauth: &'a BodyAuth,
    /// The decoded length announced (None: a chunked body of unknown length).
    size: Option<u64>,
    check: BodyCheck,
    written: u64,
    bytes_in: &'a AtomicU64,
}

impl Pump<'_> {
    /// Returns the bytes written and the body's MD5.
    async fn run(
        mut self,
        body: &mut BodyReader<'_>,
        sock: &mut TcpStream,
        sink: &mut (impl AsyncWrite + Unpin),
    ) -> Result<(u64, [u8; 16]), S3Error> {
        let mut decoder = self.bauth.chunks.clone().map(chunked::Decoder::new);
        let mut chunk = vec![0u8; CHUNK];
        while body.left > 0 {
            let n = body.read(sock, &mut chunk).await.map_err(body_error)?;
            let Some(d) = decoder.as_mut() else {
                self.write(&chunk[..n], sink).await?;
                continue;
            };
            d.input(&chunk[..n]);
            while let chunked::Step::Data(b) = d.next_step()? {
                self.write(&b, sink).await?;
            }
        }
        if let Some(d) = decoder.as_mut() {
            if d.next_step()? != chunked::Step::Done {
                return Err(S3Error::new(
                    Code::IncompleteBody,
                    "the aws-chunked body ended before its final chunk",
                ));
            }
            self.check.trailers(d.trailers())?;
        }
        if self.size.is_some_and(|size| self.written != size) {
            return Err(short_body());
        }
        let md5 = self.check.finish()?;
        Ok((self.written, md5))
    }

    async fn write(
        &mut self,
        b: &[u8],
        sink: &mut (impl AsyncWrite + Unpin),
    ) -> Result<(), S3Error> {
        self.check.update(b);
        self.written += b.len() as u64;
        if self.written > self.size.unwrap_or(MAX_PUT) {
            return Err(match self.size {
                Some(_) => short_body(),
                None => S3Error::new(
                    Code::EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT or part).",
                ),
            });
        }
        self.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
        sink.write_all(b)
            .await
            .map_err(|e| internal(format!("the body could not be stored: {e}")))
    }
}

fn short_body() -> S3Error {
    S3Error::new(
        Code::IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    )
}

/// The parts of an object holding bytes `first..first + len`, each with the range within it.
fn object_ranges(parts: &[Part], first: u64, len: u64) -> Vec<(String, std::ops::Range<u64>)> {
    let (covered, skipped) = macula_s3::index::parts_covering(parts, first, len);
    let end = first.saturating_add(len);
    let mut at = skipped;
    let mut out = Vec::with_capacity(covered.len());
    for p in covered {
        let range = first.max(at) - at..end.min(at + p.size).saturating_sub(at);
        if !range.is_empty() {
            out.push((p.cap.clone(), range));
        }
        at += p.size;
    }
    out
}

/// A socket writer that sends a response head before the body's first byte (or at
/// [`HeadFirst::finish`]), so a body that fails before its first byte can still be answered
/// with an error.
struct HeadFirst<'a> {
    head: Vec<u8>,
    /// Bytes of `head` sent.
    at: usize,
    sock: &'a mut TcpStream,
}

impl HeadFirst<'_> {
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.at < self.head.len() {
            let n = ready!(Pin::new(&mut *self.sock).poll_write(cx, &self.head[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends the head if no body byte did, and flushes.
    async fn finish(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_head(cx)).await?;
        self.sock.flush().await
    }
}

impl AsyncWrite for HeadFirst<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_head(cx))?;
        Pin::new(&mut *this.sock).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_head(cx))?;
        Pin::new(&mut *this.sock).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().sock).poll_shutdown(cx)
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn no_such_upload() -> S3Error {
    S3Error::new(
        Code::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

/// What a request's body is checked with: the SigV4 payload mode and, for `aws-chunked`, the
/// chunk signer.
struct BodyAuth {
    payload: Payload,
    chunks: Option<Framing>,
}

enum Heard {
    Record(Option<macula_mesh::pubsub::Publication>),
    Peer(Result<macula_mesh::core::PeerChanged, RecvError>),
}

/// The body of the current request: bytes already read after the head, then the socket;
/// a `Transfer-Encoding: chunked` body decoded on the way.
struct BodyReader<'a> {
    /// Bytes of the body still to come: the rest of `Content-Length`, or `u64::MAX` while a
    /// chunked body has not ended (0 once it has).
    left: u64,
    buf: &'a mut Vec<u8>,
    /// A chunked body's decoder, the decoded bytes not handed out yet, and whether its final
    /// chunk was read.
    chunked: Option<(chunked::Decoder, Vec<u8>, bool)>,
}

impl<'a> BodyReader<'a> {
    fn new(head: &Head, buf: &'a mut Vec<u8>) -> Self {
        match head.chunked {
            true => Self {
                left: u64::MAX,
                buf,
                chunked: Some((chunked::Decoder::new(Framing::http()), Vec::new(), false)),
            },
            false => Self {
                left: head.content_length,
                buf,
                chunked: None,
            },
        }
    }

    /// The next bytes of the body (decoded when chunked); never 0 while `left` > 0. A chunked
    /// body that breaks its framing is an `InvalidData` error naming what is wrong.
    async fn read(&mut self, sock: &mut TcpStream, out: &mut [u8]) -> std::io::Result<usize> {
        let mut raw = Vec::new();
        loop {
            let Some((_, pending, ended)) = self.chunked.as_mut() else {
                return self.read_raw(sock, out).await;
            };
            if !pending.is_empty() || *ended {
                let n = out.len().min(pending.len());
                out[..n].copy_from_slice(&pending[..n]);
                pending.drain(..n);
                if pending.is_empty() && *ended {
                    self.left = 0;
                }
                return Ok(n);
            }
            raw.resize(out.len().max(4096), 0);
            let n = self.read_raw(sock, &mut raw).await?;
            let Some((decoder, pending, ended)) = self.chunked.as_mut() else {
                return Ok(0);
            };
            decoder.input(&raw[..n]);
            loop {
                match decoder.next_step() {
                    Ok(chunked::Step::Data(b)) => pending.extend_from_slice(&b),
                    Ok(chunked::Step::NeedMore) => break,
                    Ok(chunked::Step::Done) => {
                        *ended = true;
                        break;
                    }
                    Err(e) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("Transfer-Encoding chunked: {}", e.message),
                        ));
                    }
                }
            }
        }
    }

    async fn read_raw(&mut self, sock: &mut TcpStream, out: &mut [u8]) -> std::io::Result<usize> {
        let want = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = if !self.buf.is_empty() {
            let n = want.min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            n
        } else {
            let n = sock.read(&mut out[..want]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            n
        };
        if self.chunked.is_none() {
            self.left -= n as u64;
        }
        Ok(n)
    }
}

/// A body that could not be read: its framing broken (named), or the client gone.
fn body_error(e: std::io::Error) -> S3Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData => S3Error::new(Code::InvalidRequest, e.to_string()),
        _ => S3Error::new(Code::IncompleteBody, "the body ended early"),
    }
}

enum Body {
    Bytes(Vec<u8>),
    /// Bytes of realm objects, read as they are sent: each part's capability and range.
    Object {
        parts: Vec<(String, std::ops::Range<u64>)>,
        len: u64,
    },
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    /// Content-Length when it is not the body's (HEAD).
    len: Option<u64>,
}

impl Response {
    fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            len: None,
        }
    }

    fn xml(s: String) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: Body::Bytes(s.into_bytes()),
            len: None,
        }
    }

    fn header(mut self, n: &str, v: String) -> Self {
        self.headers.push((n.to_string(), v));
        self
    }
}

fn unavailable() -> S3Error {
    S3Error::new(
        Code::ServiceUnavailable,
        "the gateway waits for the mesh and storage; retry shortly",
    )
}

fn internal(msg: impl Into<String>) -> S3Error {
    S3Error::new(Code::InternalError, msg)
}

fn storage_error(e: Error) -> S3Error {
    match e {
        Error::Unavailable(m) => S3Error::new(Code::ServiceUnavailable, m),
        e => S3Error::new(Code::InternalError, e.to_string()),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unix_now() -> u64 {
    unix_ms() / 1000
}

/// Access key ids: `MK` and 18 characters of `A-Z2-7` (90 random bits); secrets: 40
/// characters of base64's alphabet (240 random bits).
fn new_key() -> Result<(String, String), Error> {
    let mut r = [0u8; 58];
    getrandom::fill(&mut r).map_err(|e| Error::Failed(format!("no randomness: {e}")))?;
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let id: String = std::iter::once('M')
        .chain(std::iter::once('K'))
        .chain(r[..18].iter().map(|b| B32[usize::from(b & 31)] as char))
        .collect();
    let secret: String = r[18..]
        .iter()
        .map(|b| B64[usize::from(b & 63)] as char)
        .collect();
    Ok((id, secret))
}

impl S3Control for S3Glue {
    fn status(&self) -> S3Status {
        let inner = &self.inner;
        let ix = inner.index.locked();
        let (buckets, objects) = ix.counts();
        S3Status {
            enabled: inner.serve,
            serving: inner.serving.load(Ordering::Relaxed),
            listen: inner.cfg.listen.to_string(),
            region: inner.cfg.region.clone(),
            requests: inner.requests.load(Ordering::Relaxed),
            errors: inner.errors.load(Ordering::Relaxed),
            bytes_in: inner.bytes_in.load(Ordering::Relaxed),
            bytes_out: inner.bytes_out.load(Ordering::Relaxed),
            uploads: u32::try_from(ix.uploads(None).len()).unwrap_or(u32::MAX),
            buckets: u32::try_from(buckets).unwrap_or(u32::MAX),
            objects: objects as u64,
            keys: u32::try_from(ix.access_keys().count()).unwrap_or(u32::MAX),
        }
    }

    fn revoke_key(&self, id: String) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let change = self.inner.index.locked().revoke_key(&id).ok_or_else(|| {
                Error::NotFound(format!(
                    "no access key {id}; `maculactl s3 key list` shows the keys"
                ))
            })?;
            self.commit(change).await.map_err(|e| match e.code {
                Code::ServiceUnavailable => {
                    Error::Unavailable("the mesh is not running; retry once it is".into())
                }
                _ => Error::Failed(e.message),
            })?;
            tracing::info!(target: "macula::s3", %id, "access key revoked");
            Ok(())
        })
    }

    fn list_keys(&self) -> Vec<macula_bus::s3::KeyInfo> {
        self.inner
            .index
            .locked()
            .access_keys()
            .map(|(id, k, scope)| {
                (
                    id.to_string(),
                    k.name.clone(),
                    k.created_ms,
                    scope.bucket.clone().unwrap_or_default(),
                    scope.read_only,
                )
            })
            .collect()
    }

    fn create_key(
        &self,
        name: String,
        bucket: Option<String>,
        read_only: bool,
    ) -> BoxFuture<'_, Result<(String, String), Error>> {
        Box::pin(async move {
            if let Some(b) = &bucket {
                macula_s3::index::check_bucket_name(b)
                    .map_err(|e| Error::InvalidArgument(format!("bucket `{b}`: {}", e.message)))?;
            }
            let (id, secret) = new_key()?;
            let key = AccessKey {
                name: name.clone(),
                secret: secret.clone(),
                created_ms: unix_ms(),
            };
            let scope = KeyScope { bucket, read_only };
            let change = if scope.is_full() {
                Change::Key {
                    id: id.clone(),
                    key: Some(key),
                }
            } else {
                Change::ScopedKey {
                    id: id.clone(),
                    key,
                    scope: scope.clone(),
                }
            };
            self.commit(change).await.map_err(|e| match e.code {
                Code::ServiceUnavailable => Error::Unavailable(
                    "the mesh is not running; the key can be made once this node is in a realm"
                        .into(),
                ),
                _ => Error::Failed(e.message),
            })?;
            tracing::info!(target: "macula::s3", %id, %name, bucket = ?scope.bucket,
                read_only = scope.read_only, "access key created");
            Ok((id, secret))
        })
    }
}

/// Reads from `sock` until `buf` holds a whole request head, which it takes off `buf` (what
/// follows stays there: the body's first bytes, or the next request); `Ok(None)` when the client
/// closed first. Shared by the S3 gateway and `/metrics`.
pub(crate) async fn read_head(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Head>, S3Error> {
    loop {
        if let Some((head, n)) = http::parse_head(buf)? {
            buf.drain(..n);
            return Ok(Some(head));
        }
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
