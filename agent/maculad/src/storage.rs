//! Wiring of storage: the local shard store on the data dir, shard transfer over the mesh
//! (`macula_store::mesh`), the repair service fed by membership, local audits and the realm's
//! shared inventories, and `io.macula.Storage1`.
//!
//! Storage starts once the mesh runs (at start-up with a certificate, or after `realm join`).
//! Every node publishes its complete shard inventory on `macula_store::inventory::TOPIC` when
//! `inventory::Schedule` says; each node's repair planner watches the segments it holds a shard
//! of, learns from the others' inventories who holds the rest, and the one holder ranked first
//! for a segment leads its repair (`macula_store::repair`). What the planner hears of membership
//! and which members placement uses is `macula_store::membership::MembershipFeed`'s.

use macula_core::sync::Locked;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use macula_bus::firewall::BoxFuture;
use macula_bus::storage::{ObjectStat, RepairQueue, StorageControl, StorageObject, StorageStats};
use macula_bus::{Caller, Error};
use macula_core::metrics::Histogram;
use macula_core::{NodeId, NodeKey};
use macula_mesh::membership::Capacity;
use macula_mesh::node::{MeshNode, PeerState};
use macula_store::config::StorageConfig;
use macula_store::header::SegmentId;
use macula_store::inventory::{self, Assembler, DeleteEcho, Schedule};
use macula_store::membership::{Actions, MembershipFeed};
use macula_store::mesh::MeshNetwork;
use macula_store::network::GetReport;
use macula_store::network::{Client, ClientError, PutConfig, StorageNetwork};
use macula_store::object::{Capability, Manifest};
use macula_store::placement::NodeInfo;
use macula_store::repair::{Event, RepairConfig, RepairStatus};
use macula_store::service::{self, RepairService};
use macula_store::store::{DeleteRequest, LocalStore};
use std::pin::Pin;
use std::task::{self, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use zbus::object_server::SignalEmitter;

use crate::mesh::MeshGlue;
use crate::worker::{WorkerCtx, WorkerResult, Workers};

/// Puts, gets and deletes a node runs at once; more wait for a slot. Memory use is about three
/// segments per transfer (plaintext, coded shards, a reply in flight).
pub const MAX_TRANSFERS: usize = 4;

/// Storage of this node.
#[derive(Clone)]
pub struct StorageGlue {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: StorageConfig,
    put_cfg: PutConfig,
    repair_cfg: RepairConfig,
    dir: PathBuf,
    store: Option<Arc<LocalStore>>,
    key: NodeKey,
    running: OnceLock<Running>,
    conn: OnceLock<zbus::Connection>,
    /// The mesh (for the realm key of a realm-wide purge).
    mesh: OnceLock<MeshGlue>,
    /// Puts, gets and deletes running at once (each holds about one segment in memory).
    transfers: tokio::sync::Semaphore,
    repair_status: Mutex<RepairStatus>,
    /// Inventories published (after each change and every refresh).
    inventory_rounds: AtomicU64,
    /// Object bytes of the puts and gets done through this node (`Stats`, `/metrics`).
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
    /// How long the puts and gets that succeeded took (`/metrics`).
    latency: Mutex<(Histogram, Histogram)>,
    /// Storage's view of membership: exclusions (quarantined by the realm's proofs,
    /// `crate::proofs`), who is up.
    feed: Mutex<MembershipFeed>,
    /// Shards another node refused to store for lack of space: (node, bytes), for the proofs.
    refused: tokio::sync::broadcast::Sender<(NodeId, u64)>,
}

/// Refusals queued for a slow listener before the oldest are dropped.
const REFUSALS_QUEUED: usize = 64;

struct Running {
    node: Arc<MeshNode>,
    client: Arc<Client<MeshNetwork>>,
    repair: RepairService,
}

/// Sends `node` the owner-signed deletes of segments its inventory still lists (it was down
/// when they were deleted); the node checks each against its shard's owner and deletes. Those
/// that do not reach it are sent again at its next inventory.
fn send_deletes(
    r: &Running,
    echo: Arc<Mutex<DeleteEcho>>,
    node: NodeId,
    deletes: Vec<DeleteRequest>,
) {
    let client = r.client.clone();
    tokio::spawn(async move {
        let segments: Vec<SegmentId> = deletes.iter().map(|d| d.segment).collect();
        let batch = deletes.into_iter().map(|d| (node, d)).collect();
        let results = client.network().delete_segments(batch).await;
        let removed: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
        let failed: Vec<SegmentId> = segments
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_err())
            .map(|(s, _)| *s)
            .collect();
        match results.iter().find_map(|r| r.as_ref().err()) {
            None => {
                tracing::info!(target: "macula::storage", %node, segments = segments.len(), shards = removed,
                "a node still held segments their owner deleted while it was away: sent the deletes")
            }
            Some(e) => {
                tracing::warn!(target: "macula::storage", %node, segments = failed.len(), error = %e,
                    "a node still holds segments their owner deleted; the deletes did not reach it (sent again at its next inventory)");
                echo.locked().failed(node, &failed);
            }
        }
    });
}

fn client_error(e: ClientError) -> Error {
    match e {
        ClientError::NotEnoughShards { .. } | ClientError::Placement(_) => {
            Error::Unavailable(e.to_string())
        }
        ClientError::Object(_) | ClientError::ParamsMismatch { .. } => {
            Error::InvalidArgument(e.to_string())
        }
        e => Error::Failed(e.to_string()),
    }
}

/// Opens the local store when `[storage] enabled`; checks the section either way.
pub fn open(cfg: &StorageConfig, state_dir: &Path, key: &NodeKey) -> Result<StorageGlue> {
    let put_cfg = cfg.put_config()?;
    macula_store::mesh::check_put_config(&put_cfg).map_err(anyhow::Error::msg)?;
    let repair_cfg = cfg.repair_config()?;
    cfg.quota(0)?; // quota_bytes / quota_percent checked even when storage is off
    let dir = cfg.shard_dir(state_dir);
    let store = if cfg.enabled {
        // `quota_percent` measures the file system that will hold the store (the directory or,
        // before its first start, its nearest existing parent).
        let fs = dir
            .ancestors()
            .find_map(|d| macula_core::fsutil::fs_space(d).ok())
            .with_context(|| format!("cannot measure the file system of {}", dir.display()))?;
        let quota = cfg.quota(fs.total)?;
        let store = LocalStore::open(&dir, quota)
            .with_context(|| format!("cannot open the shard store in {}", dir.display()))?;
        store.set_owner_quota(cfg.owner_quota_bytes);
        tracing::info!(target: "macula::storage", dir = %dir.display(), quota,
            fs_total = fs.total, used = store.used(), "shard store open");
        Some(Arc::new(store))
    } else {
        None
    };
    Ok(StorageGlue {
        inner: Arc::new(Inner {
            cfg: cfg.clone(),
            put_cfg,
            repair_cfg,
            dir,
            store,
            key: NodeKey::from_seed(*key.signing_key().as_bytes()),
            running: OnceLock::new(),
            conn: OnceLock::new(),
            mesh: OnceLock::new(),
            transfers: tokio::sync::Semaphore::new(MAX_TRANSFERS),
            repair_status: Mutex::default(),
            inventory_rounds: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
            get_bytes: AtomicU64::new(0),
            latency: Mutex::default(),
            feed: Mutex::new(MembershipFeed::new(key.node_id())),
            refused: tokio::sync::broadcast::Sender::new(REFUSALS_QUEUED),
        }),
    })
}

impl StorageGlue {
    /// Shards other nodes refused to store for lack of space (node, bytes), as puts and repairs
    /// meet them.
    pub fn refusals(&self) -> tokio::sync::broadcast::Receiver<(NodeId, u64)> {
        self.inner.refused.subscribe()
    }

    /// How long the puts and gets through this node that succeeded took, since start.
    pub fn latency(&self) -> (Histogram, Histogram) {
        self.inner.latency.locked().clone()
    }

    pub fn object(&self) -> StorageObject {
        StorageObject::new(Box::new(self.clone()))
    }

    /// What this node announces in its member metadata.
    pub fn capacity(&self) -> Capacity {
        match &self.inner.store {
            Some(s) => Capacity {
                storage_total: s.quota(),
                storage_free: s.free(),
            },
            None => Capacity::default(),
        }
    }

    /// The local store, when storage is on.
    pub fn local_store(&self) -> Option<Arc<LocalStore>> {
        self.inner.store.clone()
    }

    /// Members quarantined by the realm's proofs: placement avoids them, and the repair planner
    /// hears them as down (no repair source; their shards are rebuilt elsewhere after the grace)
    /// until they are released and heard as up again.
    pub fn set_excluded(&self, nodes: std::collections::BTreeSet<NodeId>) {
        let peers = match self.inner.running.get() {
            Some(r) => r.node.peers(),
            None => vec![],
        };
        let actions = self.inner.feed.locked().set_excluded(nodes, &peers);
        if let Some(r) = self.inner.running.get() {
            self.apply(r, actions);
        }
    }

    /// Carries out what the membership feed asks: events to the planner, purge orders to members
    /// that came up.
    fn apply(&self, r: &Running, actions: Actions) {
        for ev in actions.events {
            r.repair.send(ev);
        }
        if let Some(store) = &self.inner.store {
            for peer in actions.pass_on_purges {
                pass_on_purges(&r.node, store, peer);
            }
        }
    }

    /// The shard directory, when storage is on.
    pub fn dir(&self) -> Option<PathBuf> {
        self.inner.store.as_ref().map(|_| self.inner.dir.clone())
    }

    /// Wakes on every change of the local store (`None` when storage is off).
    pub fn watch_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.store.as_ref().map(|s| s.watch_changes())
    }

    /// Starts storage as soon as the mesh runs: the worker `storage.serve` waits for it, starts
    /// the shard service, the repair planner and the other storage workers, then feeds the
    /// others' inventories to the planner.
    pub fn attach(&self, mesh: MeshGlue, conn: &zbus::Connection, workers: &Workers) {
        let _ = self.inner.conn.set(conn.clone());
        let _ = self.inner.mesh.set(mesh.clone());
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let this = self.clone();
        let workers2 = workers.clone();
        workers.spawn("storage.serve", |ctx| async move {
            let Some(node) = ctx.wait(mesh.wait_running()).await else {
                return Ok(());
            };
            this.serve(ctx, &workers2, node, store).await
        });
    }

    async fn serve(
        &self,
        ctx: WorkerCtx,
        workers: &Workers,
        node: Arc<MeshNode>,
        store: Arc<LocalStore>,
    ) -> WorkerResult {
        let inner = &self.inner;
        let this = self.clone();
        let me = node.id();
        macula_store::mesh::serve(
            &node,
            store.clone(),
            Arc::new(move |segment, index| {
                if let Some(r) = this.inner.running.get() {
                    r.repair.send(Event::ShardLost {
                        segment,
                        index,
                        node: me,
                    });
                }
            }),
            macula_store::mesh::members_only(&node),
        );
        macula_store::purge::serve(&node, store.clone());
        let refused = inner.refused.clone();
        let net = MeshNetwork::new(node.clone(), store.clone()).on_refused(move |node, bytes| {
            let _ = refused.send((node, bytes));
        });
        let client = Arc::new(Client::new(
            net,
            NodeKey::from_seed(*inner.key.signing_key().as_bytes()),
            inner.put_cfg.clone(),
        ));
        let repair = RepairService::start(me, client.clone(), inner.repair_cfg.clone());
        repair.send(Event::NodeUp(self.self_info(&store)));
        // Membership → planner. Subscribe before reading the current peers so nothing is missed.
        let mut changes = node.watch_peers();
        let start = inner.feed.locked().start(&node.peers());
        let sub = match node.subscribe(inventory::TOPIC).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::error!(target: "macula::storage", error = %e,
                    "cannot hear the realm's inventories; repairs only see local audits");
                ctx.error(format!("cannot subscribe to {}: {e}", inventory::TOPIC));
                None
            }
        };
        let audit = Duration::from_secs(inner.cfg.audit_interval_secs);
        let mut audit_task = repair.audit_local(me, store.clone(), audit);
        let mut deletes_task = repair.follow_deletes(&store);
        let mut status = repair.status();
        if inner
            .running
            .set(Running {
                node: node.clone(),
                client,
                repair,
            })
            .is_err()
        {
            return Err("storage was started twice".into());
        }
        if let Some(r) = inner.running.get() {
            self.apply(r, start);
        }
        tracing::info!(target: "macula::storage", "storage serving the realm");
        // The local store's audits and deletes → planner.
        workers.spawn("storage.audit", |ctx| async move {
            let ended = ctx
                .wait(async {
                    tokio::select! {
                        r = &mut audit_task => r,
                        r = &mut deletes_task => r,
                    }
                })
                .await;
            audit_task.abort();
            deletes_task.abort();
            match ended {
                Some(Err(e)) if e.is_panic() => Err(format!("audit panicked: {e}")),
                _ => Ok(()),
            }
        });
        let this = self.clone();
        workers.spawn("storage.repair-status", |ctx| async move {
            while let Some(Ok(())) = ctx.wait(status.changed()).await {
                *this.inner.repair_status.locked() = status.borrow().clone();
            }
            Ok(())
        });
        let this = self.clone();
        workers.spawn("storage.membership", |ctx| async move {
            loop {
                let c = match ctx.wait(changes.recv()).await {
                    None | Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return Ok(());
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        // The planner hears the current state with the next change of each peer.
                        ctx.error(format!("{n} peer changes missed"));
                        continue;
                    }
                    Some(Ok(c)) => c,
                };
                let Some(r) = this.inner.running.get() else {
                    return Ok(());
                };
                let actions = this.inner.feed.locked().peer_changed(&c);
                this.apply(r, actions);
            }
        });
        // Share the inventory when `inventory::Schedule` says: after changes and as anti-entropy.
        let this = self.clone();
        let store2 = store.clone();
        let mut changed = store.watch_changes();
        workers.spawn("storage.inventory-out", |ctx| async move {
            // Rounds start at the clock so a restarted node's rounds are new to everyone.
            let first_round = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut schedule = Schedule::new(first_round, audit, Instant::now());
            loop {
                if let Some(round) = schedule.poll(Instant::now()) {
                    if let Err(e) = this.publish_inventory(&store2, round).await {
                        ctx.error(e);
                    }
                    this.inner.inventory_rounds.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let due = tokio::time::Instant::from_std(schedule.next());
                let next = ctx.wait(async {
                    tokio::select! {
                        r = changed.changed() => Some(r.is_ok()),
                        () = tokio::time::sleep_until(due) => None,
                    }
                });
                match next.await {
                    None | Some(Some(false)) => return Ok(()),
                    Some(Some(true)) => schedule.changed(Instant::now()),
                    // Due: published at the top of the loop.
                    Some(None) => {}
                }
            }
        });
        // Others' inventories → planner (it keeps what concerns the segments held here), and
        // the owner's delete to a node still listing a segment deleted here.
        let mut assembler = Assembler::default();
        let echo = Arc::new(Mutex::new(DeleteEcho::default()));
        let Some(mut sub) = sub else {
            return Ok(());
        };
        while let Some(Some(p)) = ctx.wait(sub.recv()).await {
            if p.publisher == me {
                continue;
            }
            let shards = match assembler.feed(p.publisher, &p.payload) {
                Ok(Some(shards)) => shards,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(target: "macula::storage", from = %p.publisher, error = %e,
                        "inventory part ignored");
                    continue;
                }
            };
            if let Some(r) = self.inner.running.get() {
                let segments: BTreeSet<SegmentId> = shards.iter().map(|s| s.segment).collect();
                let candidates = store.maybe_deleted(&segments);
                let found = if candidates.is_empty() {
                    Vec::new()
                } else {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || store.deletes_of(&candidates))
                        .await
                        .unwrap_or_default()
                };
                let due = echo
                    .locked()
                    .due(p.publisher, found, std::time::Instant::now());
                if !due.is_empty() {
                    send_deletes(r, echo.clone(), p.publisher, due);
                }
                r.repair.send(Event::Inventory {
                    node: p.publisher,
                    shards,
                });
            }
        }
        Ok(())
    }

    /// Lists the local store, hands the list to this node's planner and publishes it.
    async fn publish_inventory(&self, store: &Arc<LocalStore>, round: u64) -> Result<(), String> {
        let Some(r) = self.inner.running.get() else {
            return Ok(());
        };
        let s = store.clone();
        let listed = tokio::task::spawn_blocking(move || service::local_inventory(&s)).await;
        let shards = match listed {
            Ok(Ok(shards)) => shards,
            Ok(Err(e)) => {
                tracing::warn!(target: "macula::storage", error = %e, "cannot list the shard store");
                return Err(format!("cannot list the shard store: {e}"));
            }
            Err(e) => {
                tracing::error!(target: "macula::storage", error = %e, "inventory task panicked");
                return Err(format!("inventory listing panicked: {e}"));
            }
        };
        let parts = inventory::encode(round, &shards);
        r.repair.send(Event::Inventory {
            node: r.node.id(),
            shards,
        });
        for part in parts {
            if let Err(e) = r.node.publish(inventory::TOPIC, part).await {
                tracing::warn!(target: "macula::storage", error = %e, "cannot share the inventory");
                return Err(format!("cannot share the inventory: {e}"));
            }
        }
        Ok(())
    }

    /// At shutdown, after the D-Bus interface is gone: waits (at most `within`) for the puts,
    /// gets and deletes in flight to finish, then refuses new ones. `Err` holds how many were
    /// still running.
    pub async fn drain(&self, within: Duration) -> Result<(), usize> {
        let all = u32::try_from(MAX_TRANSFERS).unwrap_or(u32::MAX);
        let sem = &self.inner.transfers;
        let res = match tokio::time::timeout(within, sem.acquire_many(all)).await {
            Ok(Ok(permits)) => {
                permits.forget();
                Ok(())
            }
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(MAX_TRANSFERS - sem.available_permits()),
        };
        sem.close();
        res
    }

    /// Makes what the store wrote durable: syncs the store's directories (each shard file is
    /// synced when written).
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        for dir in [store.root().to_owned(), store.root().join("shards")] {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }

    fn self_info(&self, store: &LocalStore) -> NodeInfo {
        NodeInfo {
            id: self.inner.key.node_id(),
            capacity_bytes: store.quota(),
            free_bytes: store.free(),
            site: self.inner.cfg.site.clone(),
            power: self.inner.cfg.power.clone(),
        }
    }

    /// Alive members offering storage and not quarantined, this node first.
    fn members(&self, r: &Running) -> Vec<NodeInfo> {
        let own = self.inner.store.as_deref().map(|s| self.self_info(s));
        let peers = r.node.peers();
        self.inner.feed.locked().members(own, &peers)
    }

    async fn transfer_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        self.inner
            .transfers
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("storage is shutting down".into()))
    }

    fn running(&self) -> Result<&Running, Error> {
        if self.inner.store.is_none() {
            return Err(Error::Unavailable(
                "storage is off on this node: set `[storage] enabled = true` and quota_bytes \
                 or quota_percent in agent.toml (docs/storage.md)"
                    .into(),
            ));
        }
        self.inner.running.get().ok_or_else(|| {
            Error::Unavailable(
                "storage waits for the mesh: this node has no membership certificate; install \
                 one with `maculactl realm join <file>` (docs/realms.md)"
                    .into(),
            )
        })
    }

    /// Reports a transfer's progress to `caller` alone (unicast `Progress` signals): file names
    /// and sizes are the caller's business, not every local user's.
    fn progress(
        &self,
        op: &'static str,
        path: String,
        total: u64,
        caller: Caller,
    ) -> impl FnMut(u64) + use<> {
        let emitter = self
            .inner
            .conn
            .get()
            .zip(caller)
            .and_then(|(conn, caller)| {
                SignalEmitter::new(conn, macula_bus::OBJECT_PATH)
                    .ok()
                    .map(|e| e.set_destination(caller.into_inner().into()).into_owned())
            });
        let step = (total / 100).max(256 << 10);
        let mut next = 0u64;
        move |done| {
            if done < next && done != total {
                return;
            }
            next = done + step;
            let Some(emitter) = emitter.clone() else {
                return;
            };
            let path = path.clone();
            tokio::spawn(async move {
                let _ = StorageObject::progress(&emitter, op, &path, done, total).await;
            });
        }
    }
}

/// Sends the realm-wide purge orders this node keeps to `peer`, which just came up (it may have
/// been down when they were issued; `macula_store::purge`).
fn pass_on_purges(node: &Arc<MeshNode>, store: &Arc<LocalStore>, peer: NodeId) {
    let (node, store) = (node.clone(), store.clone());
    tokio::spawn(async move {
        match macula_store::purge::pass_on(&node, store, peer).await {
            Ok(None | Some((0, _))) => {}
            Ok(Some((shards, bytes))) => tracing::info!(target: "macula::storage", %peer,
                shards, bytes, "a member that came back applied the realm's purge orders"),
            Err(e) => tracing::warn!(target: "macula::storage", %peer, error = %e,
                "purge orders not passed on (again when it next comes up)"),
        }
    });
}

/// Counts bytes through a reader or writer and reports them.
/// Counts the bytes that pass through a reader or writer and reports the running total (a
/// transfer's progress signals).
struct Counting<T, F> {
    inner: T,
    done: u64,
    report: F,
}

impl<T, F: FnMut(u64)> Counting<T, F> {
    fn count(&mut self, n: usize) {
        self.done += n as u64;
        (self.report)(self.done);
    }
}

impl<T: AsyncRead + Unpin, F: FnMut(u64) + Unpin> AsyncRead for Counting<T, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            self.count(n);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin, F: FnMut(u64) + Unpin> AsyncWrite for Counting<T, F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.count(n);
        }
        r
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A get whose manifest was read ([`StorageGlue::open`]).
struct Opened {
    manifest: Manifest,
    /// What reading the manifest found corrupt.
    report: GetReport,
    began: tokio::time::Instant,
}

fn parse_cap(cap: &str) -> Result<Capability, Error> {
    cap.trim()
        .parse()
        .map_err(|e: macula_store::object::ObjectError| Error::InvalidArgument(e.to_string()))
}

impl StorageGlue {
    async fn put_file(
        &self,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> Result<String, Error> {
        let meta = file
            .metadata()
            .map_err(|e| Error::Failed(format!("cannot stat {label}: {e}")))?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{label} is not a regular file; the size must be known before the put"
            )));
        }
        let mut input = tokio::io::BufReader::new(tokio::fs::File::from_std(file));
        self.put_from(&mut input, meta.len(), label, caller).await
    }

    /// Stores the `len` bytes `input` yields; returns the capability. A short input fails the
    /// put with nothing left behind.
    async fn put_from(
        &self,
        input: &mut (impl AsyncRead + Unpin),
        len: u64,
        label: String,
        caller: Caller,
    ) -> Result<String, Error> {
        let r = self.running()?;
        let _slot = self.transfer_slot().await?;
        let mut input = Counting {
            inner: input,
            done: 0,
            report: self.progress("put", label.clone(), len, caller),
        };
        let members = self.members(r);
        let start = tokio::time::Instant::now();
        let cap = r
            .client
            .put(&members, &mut input, len)
            .await
            .map_err(client_error)?;
        self.inner.latency.locked().0.observe(start.elapsed());
        self.inner.put_bytes.fetch_add(len, Ordering::Relaxed);
        tracing::info!(target: "macula::storage", %label, bytes = len, object = %cap.object_id, "stored an object");
        Ok(cap.to_string())
    }

    /// Writes the object to `file` and syncs it; reports corrupt shards the get found.
    async fn get_into(
        &self,
        cap: &str,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> Result<u64, Error> {
        self.get_into_paced(cap, file, label, caller, 0).await
    }

    /// `get_into` at most `rate` bytes per second on average (0: unbounded;
    /// `macula_update::rollout::Pacer`).
    async fn get_into_paced(
        &self,
        cap: &str,
        file: std::fs::File,
        label: String,
        caller: Caller,
        rate: u64,
    ) -> Result<u64, Error> {
        let cap = parse_cap(cap)?;
        let _slot = self.transfer_slot().await?;
        let opened = self.open(&cap).await?;
        let len = opened.manifest.object_len;
        let mut out = Counting {
            inner: tokio::io::BufWriter::new(tokio::fs::File::from_std(file)),
            done: 0,
            report: self.progress("get", label.clone(), len, caller),
        };
        let bytes = self.read_to(&cap, opened, 0..len, &mut out, rate).await?;
        out.flush()
            .await
            .map_err(|e| Error::Failed(format!("cannot write {label}: {e}")))?;
        out.inner
            .get_ref()
            .sync_all()
            .await
            .map_err(|e| Error::Failed(format!("cannot write {label}: {e}")))?;
        Ok(bytes)
    }

    /// Reads the manifest of the object named by `cap`: a get starts (timed from here).
    async fn open(&self, cap: &Capability) -> Result<Opened, Error> {
        let r = self.running()?;
        let began = tokio::time::Instant::now();
        let mut report = GetReport::default();
        let manifest = r
            .client
            .manifest(&self.members(r), cap, &mut report)
            .await
            .map_err(client_error)?;
        Ok(Opened {
            manifest,
            report,
            began,
        })
    }

    /// Writes bytes `range` of the object `opened` describes to `out`, at most `rate` bytes
    /// per second on average (0: unbounded; `macula_update::rollout::Pacer`); reports the
    /// corrupt shards the get found. Returns the bytes written.
    async fn read_to(
        &self,
        cap: &Capability,
        opened: Opened,
        range: std::ops::Range<u64>,
        out: &mut (impl AsyncWrite + Unpin),
        rate: u64,
    ) -> Result<u64, Error> {
        let r = self.running()?;
        let Opened {
            manifest,
            report,
            began,
        } = opened;
        let start = tokio::time::Instant::now();
        let pacer = Mutex::new(macula_update::rollout::Pacer::new(rate, Duration::ZERO));
        let pace = |bytes| tokio::time::sleep(pacer.locked().pause(start.elapsed(), bytes));
        let report = r
            .client
            .read(&self.members(r), cap, &manifest, range, out, pace, report)
            .await
            .map_err(client_error)?;
        for (segment, index, node) in &report.corrupt {
            r.repair.send(Event::ShardLost {
                segment: *segment,
                index: *index,
                node: *node,
            });
        }
        self.inner.latency.locked().1.observe(began.elapsed());
        self.inner
            .get_bytes
            .fetch_add(report.bytes, Ordering::Relaxed);
        Ok(report.bytes)
    }
}

impl StorageGlue {
    /// Stores a spooled file (an S3 PUT body of unknown length, `crate::s3`); returns the
    /// capability.
    pub async fn put_spooled(&self, file: std::fs::File, label: String) -> Result<String, Error> {
        self.put_file(file, label, None).await
    }

    /// Stores the `len` bytes `input` yields as they arrive (an S3 PUT body, `crate::s3`);
    /// returns the capability. A short input fails the put with nothing left behind.
    pub async fn put_stream(
        &self,
        input: &mut (impl AsyncRead + Unpin),
        len: u64,
        label: String,
    ) -> Result<String, Error> {
        self.put_from(input, len, label, None).await
    }

    /// Writes bytes `range` of the object named by `cap` to `out` as its segments arrive (an S3
    /// GET, `crate::s3`); returns the bytes written.
    pub async fn get_range_to(
        &self,
        cap: &str,
        range: std::ops::Range<u64>,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<u64, Error> {
        let cap = parse_cap(cap)?;
        let _slot = self.transfer_slot().await?;
        let opened = self.open(&cap).await?;
        self.read_to(&cap, opened, range, out, 0).await
    }

    /// Reads the object named by `cap` into `file` (synced) at most `rate` bytes per second:
    /// a rollout's bundle (`crate::rollout`). Returns the bytes read.
    pub async fn get_file_paced(
        &self,
        cap: &str,
        file: std::fs::File,
        label: String,
        rate: u64,
    ) -> Result<u64, Error> {
        self.get_into_paced(cap, file, label, None, rate).await
    }

    /// Deletes the object named by `cap` (an S3 object this node wrote).
    pub async fn delete_cap(&self, cap: String) -> Result<u32, Error> {
        StorageControl::delete(self, cap).await
    }
}

impl StorageControl for StorageGlue {
    fn put_fd(
        &self,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(self.put_file(file, label, caller))
    }

    fn get_fd(
        &self,
        cap: String,
        file: std::fs::File,
        label: String,
        caller: Caller,
    ) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { self.get_into(&cap, file, label, caller).await })
    }

    fn stat(&self, cap: String) -> BoxFuture<'_, Result<ObjectStat, Error>> {
        Box::pin(async move {
            let r = self.running()?;
            let cap = parse_cap(&cap)?;
            let members = self.members(r);
            let manifest = r.client.stat(&members, &cap).await.map_err(client_error)?;
            Ok(ObjectStat {
                object_id: cap.object_id.to_hex(),
                size: manifest.object_len,
                segments: u32::try_from(manifest.segments.len()).unwrap_or(u32::MAX),
                segment_bytes: manifest.segment_len,
                k: cap.k,
                m: cap.m,
                codec: cap.codec.name().to_owned(),
            })
        })
    }

    fn delete(&self, cap: String) -> BoxFuture<'_, Result<u32, Error>> {
        Box::pin(async move {
            let r = self.running()?;
            let cap = parse_cap(&cap)?;
            let _slot = self.transfer_slot().await?;
            let members = self.members(r);
            let n = r
                .client
                .delete(&members, &cap)
                .await
                .map_err(client_error)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    fn purge_owner(&self, owner: String) -> BoxFuture<'_, Result<(u32, u64), Error>> {
        Box::pin(async move {
            let owner: NodeId = owner
                .trim()
                .parse()
                .map_err(|e| Error::InvalidArgument(format!("`{owner}` is not a node ID: {e}")))?;
            let Some(store) = self.inner.store.clone() else {
                return Err(self
                    .running()
                    .err()
                    .unwrap_or_else(|| Error::Unavailable("storage is off on this node".into())));
            };
            let (n, bytes) = tokio::task::spawn_blocking(move || store.purge_owner(&owner))
                .await
                .map_err(|e| Error::Failed(format!("purge task failed: {e}")))?
                .map_err(|e| Error::Failed(e.to_string()))?;
            tracing::warn!(target: "macula::storage", %owner, shards = n, bytes,
                "purged an owner's shards; its shards are refused here from now on");
            Ok((u32::try_from(n).unwrap_or(u32::MAX), bytes))
        })
    }

    fn purge_realm(&self, owner: String) -> BoxFuture<'_, Result<(u32, u32, u64), Error>> {
        Box::pin(async move {
            let owner: NodeId = owner
                .trim()
                .parse()
                .map_err(|e| Error::InvalidArgument(format!("`{owner}` is not a node ID: {e}")))?;
            let r = self.running()?;
            let Some(store) = self.inner.store.clone() else {
                return Err(Error::Unavailable("storage is off on this node".into()));
            };
            let realm = self
                .inner
                .mesh
                .get()
                .ok_or_else(|| Error::Unavailable("the mesh is not attached".into()))?
                .realm_key()?;
            if owner == r.node.id() {
                return Err(Error::InvalidArgument(
                    "this node cannot purge its own shards realm-wide".into(),
                ));
            }
            let order =
                macula_core::wire::encode(&realm.purge(owner, macula_mesh::transport::unix_now()));
            let realm_id = r.node.realm();
            let local = {
                let order = order.clone();
                tokio::task::spawn_blocking(move || {
                    macula_store::purge::apply(&store, &realm_id, &order)
                })
                .await
                .map_err(|e| Error::Failed(format!("purge task failed: {e}")))?
                .map_err(|e| Error::Failed(e.to_string()))?
            };
            let (mut members, mut shards, mut bytes) = (0u32, local.shards as u64, local.bytes);
            let alive: Vec<NodeId> = r
                .node
                .peers()
                .into_iter()
                .filter(|p| p.state == PeerState::Alive)
                .map(|p| p.id)
                .collect();
            let mut sends = tokio::task::JoinSet::new();
            for p in alive {
                let node = r.node.clone();
                let order = vec![order.clone()];
                sends.spawn(async move { (p, macula_store::purge::send(&node, p, &order).await) });
            }
            while let Some(Ok((p, res))) = sends.join_next().await {
                match res {
                    Ok((s, b)) => {
                        members += 1;
                        shards += s;
                        bytes += b;
                    }
                    Err(e) => tracing::warn!(target: "macula::storage", peer = %p, error = %e,
                        "purge order not taken now; passed on when the member comes up again"),
                }
            }
            tracing::warn!(target: "macula::storage", %owner, members, shards, bytes,
                "ordered a realm-wide purge of an owner's shards");
            Ok((members, u32::try_from(shards).unwrap_or(u32::MAX), bytes))
        })
    }

    fn stats(&self) -> StorageStats {
        let inner = &self.inner;
        let store = inner.store.as_ref();
        let nodes = inner.running.get().map(|r| self.members(r).len());
        let coding = inner
            .put_cfg
            .for_nodes(nodes.unwrap_or(0))
            .map_or((0, 0), |c| (c.k, c.m));
        StorageStats {
            enabled: store.is_some(),
            running: inner.running.get().is_some(),
            dir: inner.dir.display().to_string(),
            k: coding.0,
            m: coding.1,
            coding_auto: inner.put_cfg.auto,
            codec: inner.put_cfg.codec.name().to_owned(),
            segment_bytes: inner.put_cfg.segment_len,
            quota_bytes: store.map(|s| s.quota()),
            owner_quota_bytes: store.map(|s| s.owner_quota()),
            owners: store.map(|s| s.usage_by_owner().len() as u32),
            used_bytes: store.map(|s| s.used()),
            free_bytes: store.map(|s| s.free()),
            shards: store.map(|s| s.list().map_or(0, |l| l.len() as u64)),
            nodes: nodes.map(|n| n as u32),
            inventory_rounds: inner.inventory_rounds.load(Ordering::Relaxed),
            put_bytes: inner.put_bytes.load(Ordering::Relaxed),
            get_bytes: inner.get_bytes.load(Ordering::Relaxed),
        }
    }

    fn repair_queue(&self) -> RepairQueue {
        let st = self.inner.repair_status.locked().clone();
        RepairQueue {
            segments: st.segments as u64,
            degraded: st.degraded as u64,
            leading: st.leading as u64,
            inflight: st.inflight as u64,
            unrecoverable: st.unrecoverable.iter().map(SegmentId::to_hex).collect(),
            repaired: st.repaired,
            failed: st.failed,
        }
    }
}
