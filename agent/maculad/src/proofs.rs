//! Wiring of `macula-proof` (`docs/proofs.md`): the resource monitor samples `/proc` and
//! `statvfs` into the crate's `Aggregator`, asks its `Spreader` whether the figures are worth
//! telling the realm, publishes signed reports on `resources::TOPIC` and keeps the others'
//! verified reports in the crate's `ReportBook` for `io.macula.Node1`. The proofs keep the node's
//! ledger copy in `<state dir>/ledger` (read and verified at start, written when it changed and at
//! shutdown).

use macula_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use macula_bus::node::{InterfaceTraffic, NodeObject, Resources as BusResources};
use macula_core::{NodeId, NodeKey};
use macula_net::firewall::{Firewall, Holder, NodeQuarantine, QUARANTINE_RETRY};
use macula_proof::book::{
    LEDGER_SUMMARY_TOPIC, LEDGER_TOPIC, PROC_CHALLENGE, PROC_LEDGER, PROC_LEDGER_CERTIFIED,
    PULL_DEADLINE, PULL_EVERY, PULL_ROUNDS, ProofBook, Seen, Verdicts, save_interval,
};
use macula_proof::config::ProofsConfig;
use macula_proof::ledger::{MAX_CERTIFIED, MAX_SNAPSHOT, Voted};
use macula_proof::resources::{
    self, Aggregator, PeerReport, ReadSpec, ReportBook, ReportRefused, Resources, SignedResources,
    SpreadPolicy, Spreader, read_sample,
};

use crate::mesh::MeshGlue;
use crate::storage::StorageGlue;
use crate::worker::Workers;

/// The monitor's shared state: this node's last spread report and the others' latest.
#[derive(Clone)]
pub struct MonitorGlue {
    node: NodeId,
    /// `[proofs] spread` and `interfaces`.
    policy: SpreadPolicy,
    interfaces: Vec<String>,
    own: Arc<Mutex<Option<PeerReport>>>,
    peers: Arc<Mutex<ReportBook>>,
}

/// The one conversion of a report to its D-Bus form.
fn to_bus(node: &NodeId, r: &PeerReport) -> BusResources {
    let x = &r.resources;
    BusResources {
        node_id: node.to_string(),
        seq: r.seq,
        age_ms: u64::try_from(r.at.elapsed().as_millis()).unwrap_or(u64::MAX),
        uptime_s: x.uptime_s,
        processors: x.processors,
        cores_per_processor: x.cores_per_processor,
        load_1_milli: x.load_milli[0],
        load_5_milli: x.load_milli[1],
        load_15_milli: x.load_milli[2],
        cpu_busy_permille: x.cpu_busy_permille,
        mem_total: x.mem_total,
        mem_available: x.mem_available,
        swap_total: x.swap_total,
        swap_used: x.swap_used,
        disk_reported: x.disk_reported,
        disk_taken: x.disk_taken,
        rx_bytes_per_s: x.interfaces.iter().map(|i| i.rx_bytes_per_s).sum(),
        tx_bytes_per_s: x.interfaces.iter().map(|i| i.tx_bytes_per_s).sum(),
        interfaces: x
            .interfaces
            .iter()
            .map(|i| InterfaceTraffic {
                name: i.name.clone(),
                rx_bytes: i.rx_bytes,
                tx_bytes: i.tx_bytes,
                rx_bytes_per_s: i.rx_bytes_per_s,
                tx_bytes_per_s: i.tx_bytes_per_s,
            })
            .collect(),
    }
}

impl MonitorGlue {
    pub fn new(node: NodeId, config: &ProofsConfig) -> Self {
        Self {
            node,
            policy: config.spread,
            interfaces: config.interfaces.clone(),
            own: Arc::default(),
            peers: Arc::new(Mutex::new(ReportBook::new(node, &config.spread))),
        }
    }

    /// `Node1.Resources`.
    pub fn resources(&self) -> BusResources {
        match &*self.own.locked() {
            Some(r) => to_bus(&self.node, r),
            None => BusResources {
                node_id: self.node.to_string(),
                ..Default::default()
            },
        }
    }

    /// `Node1.PeerResources()`: this node's report, then the others' fresh ones by node ID.
    pub fn peer_resources(&self) -> Vec<BusResources> {
        let mut out: Vec<BusResources> = self
            .own
            .locked()
            .iter()
            .map(|r| to_bus(&self.node, r))
            .collect();
        let peers = self.peers.locked();
        out.extend(
            peers
                .fresh(Instant::now())
                .into_iter()
                .map(|(id, r)| to_bus(&id, r)),
        );
        out
    }

    /// The latest report of `node` (this node's own included).
    fn report_of(&self, node: &NodeId) -> Option<Resources> {
        if *node == self.node {
            return self.own.locked().as_ref().map(|r| r.resources.clone());
        }
        self.peers.locked().get(node).map(|r| r.resources.clone())
    }

    /// Starts the workers `proofs.monitor` (sample, spread, signal) and `proofs.reports`
    /// (receive and verify the others' reports, wake the monitor when membership changes).
    pub fn start(
        &self,
        key: &NodeKey,
        state_dir: PathBuf,
        storage: StorageGlue,
        mesh: MeshGlue,
        conn: &zbus::Connection,
        workers: &Workers,
    ) {
        let policy = self.policy;
        let interfaces = self.interfaces.clone();
        let key = NodeKey::from_seed(*key.signing_key().as_bytes());
        let data_dir = storage.dir().filter(|d| d.exists()).unwrap_or(state_dir);
        let joined = Arc::new(tokio::sync::Notify::new());
        let (me, conn, mesh2, joined2) = (self.clone(), conn.clone(), mesh.clone(), joined.clone());
        workers.spawn("proofs.monitor", move |ctx| async move {
            let start = Instant::now();
            let mut aggregator = Aggregator::default();
            let mut spreader = Spreader::new(policy);
            // Report numbers start at the wall clock's milliseconds so a restarted node's
            // reports are newer than its old ones.
            let mut seq = macula_mesh::transport::unix_now().saturating_mul(1000);
            let mut tick =
                tokio::time::interval(policy.sample_interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let joined_now = tokio::select! {
                    _ = tick.tick() => false,
                    () = joined2.notified() => true,
                };
                let Some(joined_now) = ctx.wait(async { joined_now }).await else {
                    return Ok(());
                };
                if joined_now {
                    // A member appeared or changed: it hears a fresh report at the next sample.
                    spreader = Spreader::new(policy);
                    continue;
                }
                let cap = storage.capacity();
                let spec = ReadSpec {
                    proc_dir: std::path::Path::new("/proc"),
                    data_dir: &data_dir,
                    quota: cap.storage_total,
                    taken: cap.storage_total.saturating_sub(cap.storage_free),
                    interfaces: &interfaces,
                };
                let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                let sample = match read_sample(&spec, now_ms) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(target: "macula::proofs", error = %e, "cannot sample resources");
                        ctx.error(format!("cannot sample resources: {e}"));
                        continue;
                    }
                };
                let r = aggregator.update(sample);
                if !spreader.offer(now_ms, &r) {
                    continue;
                }
                seq += 1;
                let signed = SignedResources::sign(&key, seq, &r).encode();
                *me.own.locked() = Some(PeerReport {
                    seq,
                    resources: r,
                    at: Instant::now(),
                });
                if let Some(node) = mesh2.running_node()
                    && let Err(e) = node.publish(resources::TOPIC, signed).await
                {
                    tracing::warn!(target: "macula::proofs", error = %e, "cannot spread the resource report");
                    ctx.error(format!("cannot spread the resource report: {e}"));
                }
                if let Ok(iface) = conn
                    .object_server()
                    .interface::<_, NodeObject>(macula_bus::OBJECT_PATH)
                    .await
                    && let Err(e) = iface
                        .get()
                        .await
                        .resources_changed(iface.signal_emitter())
                        .await
                {
                    tracing::warn!(target: "macula::proofs", error = %e, "cannot signal the resources change");
                }
            }
        });
        let me = self.clone();
        workers.spawn("proofs.reports", move |ctx| async move {
            let Some(node) = ctx.wait(mesh.wait_running()).await else {
                return Ok(());
            };
            let mut changes = node.watch_peers();
            let mut sub = match node.subscribe(resources::TOPIC).await {
                Ok(s) => s,
                Err(e) => return Err(format!("cannot subscribe to {}: {e}", resources::TOPIC)),
            };
            // Our own first report may have gone out before anyone subscribed.
            joined.notify_one();
            loop {
                let next = ctx.wait(async {
                    tokio::select! {
                        p = sub.recv() => Some(p),
                        c = changes.recv() => match c {
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => Some(None),
                            _ => None,
                        },
                    }
                });
                let p = match next.await {
                    None | Some(Some(None)) => return Ok(()),
                    Some(None) => {
                        joined.notify_one();
                        continue;
                    }
                    Some(Some(Some(p))) => p,
                };
                let received = me
                    .peers
                    .locked()
                    .receive(p.publisher, &p.payload, Instant::now());
                match received {
                    Ok(_) => {}
                    Err(ReportRefused::Relayed { node, .. }) => {
                        tracing::warn!(target: "macula::proofs", publisher = %p.publisher,
                            %node, "refused a resource report relayed as another node's");
                    }
                    Err(ReportRefused::Invalid(e)) => {
                        tracing::warn!(target: "macula::proofs", publisher = %p.publisher,
                            error = %e, "refused a resource report");
                    }
                }
            }
        });
    }
}

/// Where a prover reads challenged groups: the local store, or nothing when storage is off.
struct Shards(Option<Arc<macula_store::store::LocalStore>>);

impl macula_proof::storage::ShardSource for Shards {
    fn item(
        &self,
        segment: &macula_store::header::SegmentId,
        index: u16,
        selector: u32,
    ) -> Option<macula_proof::storage::Item> {
        self.0.as_ref()?.item(segment, index, selector)
    }
}

/// The proofs of capacity and storage, the realm ledger and quarantine, for `io.macula.Proofs1`.
#[derive(Clone)]
pub struct ProofsGlue {
    inner: Arc<ProofsInner>,
}

struct ProofsInner {
    key: NodeKey,
    cfg: ProofsConfig,
    /// The ledger copy, the others' inventories, the verdicts (`macula_proof::book`).
    state: Mutex<ProofBook>,
    monitor: MonitorGlue,
    storage: StorageGlue,
    conn: std::sync::OnceLock<zbus::Connection>,
    /// `<state dir>/ledger`: the ledger copy on disk.
    ledger_file: PathBuf,
    /// Held while the ledger file is written (the periodic save and the one at shutdown).
    saving: Mutex<()>,
    /// The quarantined nodes as last decided, for the firewall's `quarantine` set.
    quarantined: tokio::sync::watch::Sender<Vec<NodeId>>,
    /// When this agent started (`ProofBook::may_record`'s grace for authors not heard of).
    started: Instant,
}

/// Name of the ledger copy in the state dir; a refused copy is moved to `ledger.bad`.
const LEDGER_FILE: &str = "ledger";
const LEDGER_BAD: &str = "ledger.bad";

/// Reads the saved ledger copy, refusing a file larger than any copy this build writes.
fn read_ledger_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_SNAPSHOT as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A ledger head as shown (`Proofs1.Status().head`, logs).
fn hex(head: &[u8; 32]) -> String {
    head.iter().map(|b| format!("{b:02x}")).collect()
}

/// The alive members and this node, sorted (what `verifier_for` is computed over).
fn members(node: &macula_mesh::node::MeshNode) -> Vec<NodeId> {
    let mut m: Vec<NodeId> = node
        .peers()
        .iter()
        .filter(|p| p.state == macula_mesh::node::PeerState::Alive)
        .map(|p| p.id)
        .collect();
    m.push(node.id());
    m.sort();
    m.dedup();
    m
}

fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("the OS random number generator failed");
    n
}

fn failure_name(f: macula_proof::ledger::Failure) -> &'static str {
    use macula_proof::ledger::Failure::*;
    match f {
        NoAnswer => "no-answer",
        Late => "late",
        BadWork => "bad-work",
        BadGroup => "bad-group",
        Forged => "forged",
        Refused => "refused",
    }
}

impl ProofsGlue {
    /// The proofs of this node, with the ledger copy saved in `state_dir` read back (see
    /// [`ProofsGlue::load`]).
    pub fn new(
        key: &NodeKey,
        cfg: &ProofsConfig,
        monitor: MonitorGlue,
        storage: StorageGlue,
        state_dir: &Path,
    ) -> Self {
        let glue = Self {
            inner: Arc::new(ProofsInner {
                key: NodeKey::from_seed(*key.signing_key().as_bytes()),
                cfg: cfg.clone(),
                state: Mutex::new(ProofBook::new(cfg)),
                monitor,
                storage,
                conn: std::sync::OnceLock::new(),
                ledger_file: state_dir.join(LEDGER_FILE),
                saving: Mutex::new(()),
                quarantined: tokio::sync::watch::Sender::new(Vec::new()),
                started: Instant::now(),
            }),
        };
        glue.load();
        glue
    }

    /// Reads the saved ledger copy, verifying every record as if it came from the network
    /// (`ProofBook::restore`). None: the node starts empty. A copy that is refused (corrupt,
    /// tampered, cut short, written under other reward constants) is logged as an error naming
    /// the file and moved aside to `ledger.bad`; the node starts empty and pulls the ledger from
    /// the other members.
    fn load(&self) {
        let path = &self.inner.ledger_file;
        let refused = match read_ledger_file(path) {
            Ok(bytes) if bytes.len() > MAX_SNAPSHOT => {
                format!("it is larger than the {MAX_SNAPSHOT} bytes a ledger copy may have")
            }
            Ok(bytes) => {
                let restored = self.state().restore(&bytes);
                match restored {
                    Ok(restored) => {
                        let head = hex(&self.state().ledger().head());
                        tracing::info!(target: "macula::proofs", file = %path.display(),
                            records = restored.records, %head, "ledger copy loaded");
                        // Verdicts recomputed from the copy: a node quarantined before the
                        // restart is excluded from the start.
                        if let Some(v) = restored.verdicts {
                            self.apply_verdicts(v);
                        }
                        return;
                    }
                    Err(e) => e.to_string(),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(target: "macula::proofs", file = %path.display(),
                    "no saved ledger copy; starting with an empty ledger");
                return;
            }
            Err(e) => {
                tracing::error!(target: "macula::proofs", file = %path.display(), error = %e,
                    "cannot read the saved ledger copy; starting with an empty ledger (it is \
                     pulled from the other members) and overwriting the file at the next save");
                return;
            }
        };
        let bad = path.with_file_name(LEDGER_BAD);
        let moved = match std::fs::rename(path, &bad) {
            Ok(()) => format!("moved aside to {}", bad.display()),
            Err(e) => format!("could not be moved aside to {} ({e})", bad.display()),
        };
        tracing::error!(target: "macula::proofs", file = %path.display(), error = %refused,
            "refused the saved ledger copy {} ({moved}); starting with an empty ledger, pulled \
             from the other members", path.display());
    }

    /// Writes the ledger copy to `<state dir>/ledger` (temporary file, fsync, rename; mode 0600)
    /// if it changed since the last save. Blocking: run it off the async threads. Returns the
    /// records and head written, `None` when nothing changed.
    pub fn save(&self) -> std::io::Result<Option<(usize, [u8; 32])>> {
        let _one_at_a_time = self.inner.saving.locked();
        let Some(unsaved) = self.state().unsaved() else {
            return Ok(None);
        };
        if unsaved.bytes.len() > MAX_SNAPSHOT {
            return Err(std::io::Error::other(format!(
                "the ledger copy is {} bytes, more than the {MAX_SNAPSHOT} a node reads back; \
                 it is kept in memory only (restarted, this node pulls it from the others)",
                unsaved.bytes.len()
            )));
        }
        macula_core::fsutil::write_atomic(&self.inner.ledger_file, &unsaved.bytes, 0o600)?;
        self.state().saved(&unsaved);
        Ok(Some((unsaved.records, unsaved.head)))
    }

    /// The final save at shutdown (after the workers stopped), logged.
    pub async fn save_at_shutdown(&self) {
        let me = self.clone();
        let file = self.inner.ledger_file.clone();
        match tokio::task::spawn_blocking(move || me.save()).await {
            Ok(Ok(Some((records, head)))) => {
                tracing::info!(target: "macula::proofs", file = %file.display(), records,
                    head = %hex(&head), "ledger copy saved");
            }
            Ok(Ok(None)) => {
                let head = hex(&self.state().ledger().head());
                tracing::info!(target: "macula::proofs", file = %file.display(), %head,
                    "ledger copy already saved");
            }
            Ok(Err(e)) => {
                tracing::error!(target: "macula::proofs", file = %file.display(), error = %e,
                    "cannot save the ledger copy");
            }
            Err(e) => {
                tracing::error!(target: "macula::proofs", error = %e, "the ledger save failed");
            }
        }
    }

    pub fn object(&self) -> macula_bus::proofs::ProofsObject {
        macula_bus::proofs::ProofsObject::new(Box::new(self.clone()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProofBook> {
        self.inner.state.locked()
    }

    /// The prover's figures for the formula, from its latest signed resource report.
    fn claim_of(&self, node: &NodeId) -> macula_proof::capacity::Claim {
        let r = self.inner.monitor.report_of(node);
        macula_proof::capacity::Claim {
            processors: r.as_ref().map_or(1, |r| r.processors),
            cores_per_processor: r.as_ref().map_or(1, |r| r.cores_per_processor),
            disk_reported: r.as_ref().map_or(0, |r| r.disk_reported),
            disk_taken: r.as_ref().map_or(0, |r| r.disk_taken),
        }
    }

    /// Recomputes the verdicts from the whole ledger (records count only when written by the
    /// prover's designated verifier over `members`); on a change, tells storage placement and
    /// signals `Quarantined`.
    fn reassess(&self, members: &[NodeId]) {
        let verdicts = self.state().reassess(members);
        if let Some(v) = verdicts {
            self.apply_verdicts(v);
        }
    }

    /// Tells storage placement, the firewall's quarantine set and `Proofs1` of changed verdicts.
    fn apply_verdicts(&self, verdicts: Verdicts) {
        let Verdicts {
            quarantined: excluded,
            transitions,
        } = verdicts;
        for tr in transitions {
            tracing::info!(target: "macula::proofs", ?tr, "quarantine verdict");
        }
        tracing::warn!(target: "macula::proofs", quarantined = ?excluded.iter().map(|n| n.short()).collect::<Vec<_>>(),
            "quarantined nodes changed; storage placement avoids them");
        self.inner.quarantined.send_replace(excluded.clone());
        self.inner
            .storage
            .set_excluded(excluded.into_iter().collect());
        if let Some(conn) = self.inner.conn.get().cloned() {
            tokio::spawn(async move {
                if let Ok(iface) = conn
                    .object_server()
                    .interface::<_, macula_bus::proofs::ProofsObject>(macula_bus::OBJECT_PATH)
                    .await
                    && let Err(e) = iface
                        .get()
                        .await
                        .quarantined_changed(iface.signal_emitter())
                        .await
                {
                    tracing::warn!(target: "macula::proofs", error = %e, "cannot signal the quarantine change");
                }
            });
        }
    }

    /// Whether this node may write records of its own yet (`ProofBook::may_record`: after a
    /// restart, not before its own chain came back whole from every alive member).
    fn may_record(&self, node: &macula_mesh::node::MeshNode) -> bool {
        let peers: Vec<(NodeId, Seen)> = node
            .peers()
            .iter()
            .map(|p| {
                let seen = if p.state == macula_mesh::node::PeerState::Alive {
                    Seen::Alive
                } else {
                    Seen::Away
                };
                (p.id, seen)
            })
            .collect();
        let since_start = self.inner.started.elapsed();
        self.state().may_record(&node.id(), &peers, since_start)
    }

    /// Inserts received records in order; `gap`: records are missing (pulled later).
    fn insert(&self, records: &[Vec<u8>]) -> (usize, bool) {
        let received = self.state().insert(records);
        for e in &received.refused {
            tracing::warn!(target: "macula::proofs", error = %e, "refused a ledger record");
        }
        (received.new, received.gap)
    }

    /// Asks `peer` for the certified epoch summary when this node lacks records it covers
    /// (adopted if a majority of the members signed it), then for the records this node lacks,
    /// until it has them all.
    async fn pull(&self, node: &macula_mesh::node::MeshNode, peer: NodeId) {
        let summary = macula_core::wire::encode(&self.state().summary());
        // `Err((why, retryable))`; an undecodable reply is a breach, not worth asking again.
        match node
            .call(peer, PROC_LEDGER_CERTIFIED, summary, PULL_DEADLINE)
            .await
            .map_err(|e| (e.to_string(), e.code.retryable()))
            .and_then(|reply| {
                macula_core::wire::decode_with_limit::<Option<Vec<u8>>>(&reply, MAX_CERTIFIED + 64)
                    .map_err(|e| (e.to_string(), false))
            }) {
            Ok(None) => {}
            Ok(Some(cert)) => match self.state().adopt_summary(&cert, &members(node)) {
                Ok(adopted) => {
                    tracing::info!(target: "macula::proofs", %peer, adopted, "certified ledger summary received");
                }
                Err(e) => {
                    tracing::warn!(target: "macula::proofs", %peer, error = %e, "refused a certified ledger summary");
                }
            },
            Err((e, retryable)) => {
                tracing::debug!(target: "macula::proofs", %peer, error = %e, "ledger summary pull failed");
                self.state().pull_failed(peer, retryable);
                return;
            }
        }
        for _ in 0..PULL_ROUNDS {
            let summary = macula_core::wire::encode(&self.state().summary());
            let reply = match node.call(peer, PROC_LEDGER, summary, PULL_DEADLINE).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(target: "macula::proofs", %peer, error = %e, "ledger pull failed");
                    self.state().pull_failed(peer, e.code.retryable());
                    return;
                }
            };
            let records: Vec<Vec<u8>> = match macula_core::wire::decode_with_limit(&reply, 4 << 20)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(target: "macula::proofs", %peer, error = %e, "undecodable ledger reply");
                    self.state().pull_failed(peer, false);
                    return;
                }
            };
            let (new, _) = self.insert(&records);
            if new > 0 {
                self.reassess(&members(node));
            }
            if !ProofBook::pull_again(records.len(), new) {
                self.state().pulled(peer);
                return;
            }
        }
    }

    /// Runs one prover's capacity and storage challenges, records the results and spreads them.
    async fn verify(&self, node: Arc<macula_mesh::node::MeshNode>, prover: NodeId, epoch: u64) {
        use macula_proof::driver;
        let cfg = &self.inner.cfg;
        let me = self.inner.key.node_id();
        let inventory = self.state().inventory_of(&prover);
        let mut requests = vec![driver::capacity_request(
            me,
            prover,
            epoch,
            random_nonce(),
            cfg,
        )];
        requests.extend(driver::storage_request(
            me,
            prover,
            epoch,
            random_nonce(),
            &inventory,
            cfg,
        ));
        for req in requests {
            let mut reply = None;
            let mut t_ms = 0;
            let deadline = driver::call_deadline(&req);
            for _ in 0..driver::attempts(req.kind(), cfg) {
                let t0 = Instant::now();
                match node
                    .call(prover, PROC_CHALLENGE, req.encode(), deadline)
                    .await
                {
                    Ok(b) => {
                        t_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                        reply = Some(b);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(target: "macula::proofs", prover = %prover.short(), error = %e, "challenge unanswered");
                    }
                }
            }
            let result = driver::judge(&req, reply.as_deref(), t_ms, &self.claim_of(&prover), cfg);
            tracing::info!(target: "macula::proofs", prover = %prover.short(), epoch, kind = ?result.kind,
                outcome = ?result.outcome, "proof judged");
            let signed = self.state().record(&self.inner.key, result);
            self.spread(&node, signed).await;
        }
    }

    /// Spreads a record this node appended (or logs why it could not append it), then
    /// reassesses the verdicts.
    async fn spread(
        &self,
        node: &macula_mesh::node::MeshNode,
        signed: Result<macula_proof::ledger::SignedRecord, macula_proof::ledger::LedgerError>,
    ) {
        match signed {
            Ok(rec) => {
                if let Err(e) = node.publish(LEDGER_TOPIC, rec.encode()).await {
                    tracing::warn!(target: "macula::proofs", error = %e, "cannot spread a ledger record");
                }
            }
            Err(e) => {
                tracing::error!(target: "macula::proofs", error = %e, "cannot append to the ledger");
            }
        }
        self.reassess(&members(node));
    }

    /// A shard write `prover` refused for lack of space: recorded as a capacity failure when this
    /// node is its designated verifier now and its signed claim had room for the shard
    /// (`driver::judge_refusal`), once per prover and epoch.
    async fn refused(&self, node: &macula_mesh::node::MeshNode, prover: NodeId, need: u64) {
        use macula_proof::driver;
        if !self.may_record(node) {
            return;
        }
        let epoch = driver::epoch_of(
            macula_mesh::transport::unix_now(),
            self.inner.cfg.rewards.epoch_s,
        );
        let claim = self.claim_of(&prover);
        let refusal = driver::Refusal { prover, need };
        let me = self.inner.key.node_id();
        let Some(result) = driver::judge_refusal(
            &me,
            &members(node),
            epoch,
            &refusal,
            &claim,
            &self.inner.cfg,
        ) else {
            return;
        };
        let Some(signed) = self.state().record_refusal(&self.inner.key, result) else {
            return;
        };
        tracing::warn!(target: "macula::proofs", prover = %prover.short(), epoch, need,
            claimed_free = claim.disk_reported.saturating_sub(claim.disk_taken),
            "a node refused a shard for lack of space it claims to have");
        self.spread(node, signed).await;
    }

    fn serve(&self, node: &Arc<macula_mesh::node::MeshNode>) {
        use macula_mesh::rpc::{ErrorCode, RpcError};
        let (me, weak) = (self.clone(), Arc::downgrade(node));
        node.serve(
            PROC_CHALLENGE,
            Arc::new(move |caller, body| {
                let (me, weak) = (me.clone(), weak.clone());
                Box::pin(async move {
                    let req = macula_proof::driver::Request::decode(&body)
                        .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                    let node = weak
                        .upgrade()
                        .ok_or_else(|| RpcError::new(ErrorCode::Unavailable, "stopping"))?;
                    let members = members(&node);
                    let shards = Shards(me.inner.storage.local_store());
                    let key = NodeKey::from_seed(*me.inner.key.signing_key().as_bytes());
                    let answered = tokio::task::spawn_blocking(move || {
                        macula_proof::driver::answer(&key, caller, &req, &members, &shards)
                    })
                    .await
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
                    match answered {
                        Ok(a) => Ok(a.encode()),
                        Err(e @ macula_proof::driver::RequestError::NotVerifier { .. }) => {
                            Err(RpcError::new(ErrorCode::PermissionDenied, e.to_string()))
                        }
                        Err(e) => Err(RpcError::new(ErrorCode::BadRequest, e.to_string())),
                    }
                })
            }),
        );
        let me = self.clone();
        node.serve(
            PROC_LEDGER,
            Arc::new(move |_, body| {
                let me = me.clone();
                Box::pin(async move {
                    let summary: std::collections::BTreeMap<NodeId, u64> =
                        macula_core::wire::decode_with_limit(&body, 256 * 1024)
                            .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                    Ok(macula_core::wire::encode(&me.state().missing_for(&summary)))
                })
            }),
        );
        let me = self.clone();
        node.serve(
            PROC_LEDGER_CERTIFIED,
            Arc::new(move |_, body| {
                let me = me.clone();
                Box::pin(async move {
                    let summary: std::collections::BTreeMap<NodeId, u64> =
                        macula_core::wire::decode_with_limit(&body, 256 * 1024)
                            .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                    Ok(macula_core::wire::encode(
                        &me.state().certified_for(&summary),
                    ))
                })
            }),
        );
    }

    /// A member's vote for a ledger epoch summary: kept, and the records it summarizes dropped
    /// when it completes a quorum; a vote for another summary than this node computed is logged.
    fn summary_vote(
        &self,
        node: &macula_mesh::node::MeshNode,
        p: &macula_mesh::pubsub::Publication,
    ) {
        match self.state().summary_vote(&p.payload, &members(node)) {
            Ok(Voted::Agrees { compacted: true }) => {
                tracing::info!(target: "macula::proofs", "ledger compacted into a certified epoch summary");
            }
            Ok(Voted::Disagrees) => {
                tracing::warn!(target: "macula::proofs", publisher = %p.publisher,
                    "a member signed another ledger summary than this node computed");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target: "macula::proofs", publisher = %p.publisher, error = %e,
                    "refused a ledger summary vote");
            }
        }
    }

    /// Starts the workers `proofs.epoch` (the challenges this node owes each epoch),
    /// `proofs.ledger` (records and inventories in, anti-entropy pulls) and `proofs.save` (the
    /// ledger copy written to disk when it changed, at most once per `save_interval`).
    pub fn start(
        &self,
        mesh: MeshGlue,
        firewall: Option<Firewall>,
        conn: &zbus::Connection,
        workers: &Workers,
    ) {
        let _ = self.inner.conn.set(conn.clone());
        if let Some(fw) = firewall {
            let (mut verdicts, mesh) = (self.inner.quarantined.subscribe(), mesh.clone());
            workers.spawn("proofs.firewall", move |ctx| async move {
                let Some(node) = ctx.wait(mesh.wait_running()).await else {
                    return Ok(());
                };
                // Overlay addresses follow from the realm ID and each node ID
                // (`macula_net::firewall::NodeQuarantine`).
                let mut set = NodeQuarantine::new(node.realm().0);
                verdicts.mark_changed();
                let mut failed = false;
                loop {
                    // After a failed update, try again at the next change of the verdicts or
                    // after `QUARANTINE_RETRY`, whichever comes first.
                    let woke = if failed {
                        ctx.wait(async {
                            tokio::time::timeout(QUARANTINE_RETRY, verdicts.changed())
                                .await
                                .unwrap_or(Ok(()))
                        })
                        .await
                    } else {
                        ctx.wait(verdicts.changed()).await
                    };
                    let Some(Ok(())) = woke else { break };
                    let nodes = verdicts.borrow_and_update().clone();
                    let change = set.change(&nodes);
                    if change.is_empty() {
                        continue;
                    }
                    let applied = match fw.quarantine(Holder::Realm, true, &change.add).await {
                        Ok(()) => fw.quarantine(Holder::Realm, false, &change.remove).await,
                        Err(e) => Err(e),
                    };
                    failed = applied.is_err();
                    match applied {
                        Ok(()) => {
                            set.applied(&nodes);
                            tracing::warn!(target: "macula::proofs", added = ?change.add,
                                removed = ?change.remove,
                                "firewall quarantine set follows the quarantined nodes");
                        }
                        Err(e) => {
                            tracing::error!(target: "macula::proofs", error = %e,
                                "cannot update the firewall's quarantine set");
                            ctx.error(format!("cannot update the firewall's quarantine set: {e}"));
                        }
                    }
                }
                Ok(())
            });
        }
        let epoch_s = self.inner.cfg.rewards.epoch_s;
        let tick_every = macula_proof::book::tick_interval(epoch_s);
        let me = self.clone();
        workers.spawn("proofs.save", move |ctx| async move {
            let mut tick = tokio::time::interval(save_interval(epoch_s));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while ctx.wait(tick.tick()).await.is_some() {
                let me2 = me.clone();
                match tokio::task::spawn_blocking(move || me2.save()).await {
                    Ok(Ok(Some((records, head)))) => {
                        tracing::debug!(target: "macula::proofs", records, head = %hex(&head),
                            "ledger copy saved");
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        let file = me.inner.ledger_file.display();
                        tracing::error!(target: "macula::proofs", file = %file, error = %e,
                            "cannot save the ledger copy");
                        ctx.error(format!("cannot save the ledger copy {file}: {e}"));
                    }
                    Err(e) => return Err(format!("the ledger save failed: {e}")),
                }
            }
            Ok(())
        });
        let (me, mesh2) = (self.clone(), mesh.clone());
        workers.spawn("proofs.epoch", move |ctx| async move {
            let Some(node) = ctx.wait(mesh2.wait_running()).await else {
                return Ok(());
            };
            me.serve(&node);
            let mut duties = macula_proof::driver::Duties::new(node.id());
            let mut tick = tokio::time::interval(tick_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while ctx.wait(tick.tick()).await.is_some() {
                // Not before this node's own chain came back whole from the members.
                if !me.may_record(&node) {
                    continue;
                }
                let epoch =
                    macula_proof::driver::epoch_of(macula_mesh::transport::unix_now(), epoch_s);
                for prover in duties.due(epoch, &members(&node)) {
                    let (me, node) = (me.clone(), node.clone());
                    tokio::spawn(async move { me.verify(node, prover, epoch).await });
                }
                let (vote, compacted) = {
                    let mut s = me.state();
                    let upto = |s: &ProofBook| s.ledger().base().map(|b| b.summary.upto_epoch);
                    let before = upto(&s);
                    let vote = s.propose_summary(&me.inner.key, epoch, &members(&node));
                    (vote, upto(&s) != before)
                };
                if compacted {
                    tracing::info!(target: "macula::proofs", "ledger compacted into a certified epoch summary");
                }
                if let Some(vote) = vote
                    && let Err(e) = node.publish(LEDGER_SUMMARY_TOPIC, vote.encode()).await
                {
                    tracing::warn!(target: "macula::proofs", error = %e, "cannot spread a ledger summary vote");
                }
            }
            Ok(())
        });
        let (me, mesh2) = (self.clone(), mesh.clone());
        let mut refusals = self.inner.storage.refusals();
        workers.spawn("proofs.refusals", move |ctx| async move {
            let Some(node) = ctx.wait(mesh2.wait_running()).await else {
                return Ok(());
            };
            loop {
                match ctx.wait(refusals.recv()).await {
                    None | Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return Ok(());
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        tracing::debug!(target: "macula::proofs", skipped = n, "refusals skipped");
                    }
                    Some(Ok((prover, need))) => me.refused(&node, prover, need).await,
                }
            }
        });
        let me = self.clone();
        workers.spawn("proofs.ledger", move |ctx| async move {
            let Some(node) = ctx.wait(mesh.wait_running()).await else {
                return Ok(());
            };
            let mut records = node
                .subscribe(LEDGER_TOPIC)
                .await
                .map_err(|e| format!("cannot subscribe to {LEDGER_TOPIC}: {e}"))?;
            let mut votes = node
                .subscribe(LEDGER_SUMMARY_TOPIC)
                .await
                .map_err(|e| format!("cannot subscribe to {LEDGER_SUMMARY_TOPIC}: {e}"))?;
            let mut inventories = node
                .subscribe(macula_store::inventory::TOPIC)
                .await
                .map_err(|e| format!("cannot subscribe to the inventories: {e}"))?;
            let mut assembler = macula_store::inventory::Assembler::default();
            let mut pull = tokio::time::interval(PULL_EVERY);
            enum Next {
                Record(macula_mesh::pubsub::Publication),
                Vote(macula_mesh::pubsub::Publication),
                Inventory(macula_mesh::pubsub::Publication),
                Pull,
                Stopped,
            }
            loop {
                let next = ctx.wait(async {
                    tokio::select! {
                        p = records.recv() => p.map_or(Next::Stopped, Next::Record),
                        p = votes.recv() => p.map_or(Next::Stopped, Next::Vote),
                        p = inventories.recv() => p.map_or(Next::Stopped, Next::Inventory),
                        _ = pull.tick() => Next::Pull,
                    }
                });
                match next.await {
                    None | Some(Next::Stopped) => return Ok(()),
                    Some(Next::Record(p)) => {
                        let (new, gap) = me.insert(std::slice::from_ref(&p.payload));
                        if gap {
                            me.pull(&node, p.publisher).await;
                        } else if new > 0 {
                            me.reassess(&members(&node));
                        }
                    }
                    Some(Next::Vote(p)) => me.summary_vote(&node, &p),
                    Some(Next::Inventory(p)) => {
                        if let Ok(Some(shards)) = assembler.feed(p.publisher, &p.payload) {
                            me.state().set_inventory(p.publisher, shards);
                        }
                    }
                    Some(Next::Pull) => {
                        let peers = me.state().next_pulls(&node.id(), &members(&node));
                        for peer in peers {
                            me.pull(&node, peer).await;
                        }
                    }
                }
            }
        });
    }
}

impl macula_bus::proofs::ProofsControl for ProofsGlue {
    fn status(&self) -> Option<macula_bus::proofs::ProofsStatus> {
        let s = self.state();
        let epoch_s = self.inner.cfg.rewards.epoch_s;
        Some(macula_bus::proofs::ProofsStatus {
            epoch: macula_proof::driver::epoch_of(macula_mesh::transport::unix_now(), epoch_s),
            epoch_s,
            records: s.ledger().len() as u64,
            head: hex(&s.ledger().head()),
            verified: s.verified(),
            quarantined: s.quarantined().len() as u32,
        })
    }

    fn history(&self, node: &str) -> Vec<macula_bus::proofs::ProofEntry> {
        use macula_proof::ledger::Outcome;
        let s = self.state();
        s.ledger()
            .results()
            .into_iter()
            .filter(|(_, r)| node.is_empty() || r.prover.to_string() == node)
            .map(|(author, r)| {
                let mut e = macula_bus::proofs::ProofEntry {
                    verifier: author.to_string(),
                    prover: r.prover.to_string(),
                    kind: match r.kind {
                        macula_proof::ProofKind::Capacity => "capacity".into(),
                        macula_proof::ProofKind::Storage => "storage".into(),
                    },
                    epoch: r.epoch,
                    reward_micro: r.reward_micro,
                    ..Default::default()
                };
                match r.outcome {
                    Outcome::Capacity {
                        t_ms,
                        capacity_milli,
                    } => {
                        e.passed = true;
                        e.t_ms = t_ms;
                        e.capacity_milli = capacity_milli;
                    }
                    Outcome::Storage { groups } => {
                        e.passed = true;
                        e.groups = groups;
                    }
                    Outcome::Failed(f) => e.failure = failure_name(f).into(),
                }
                e
            })
            .collect()
    }

    fn balances(&self) -> Vec<macula_bus::proofs::Balance> {
        use macula_proof::quarantine::Status;
        let s = self.state();
        s.ledger()
            .balances()
            .into_iter()
            .map(|(node, b)| macula_bus::proofs::Balance {
                node_id: node.to_string(),
                rw1_micro: b.rw1_micro,
                rw2_micro: b.rw2_micro,
                passed: b.passed,
                failed: b.failed,
                standing: match s.status(&node) {
                    Status::Active => "active".into(),
                    Status::Quarantined { passes: 0, .. } => "quarantined".into(),
                    Status::Quarantined { passes, .. } => format!("probation ({passes} passes)"),
                    Status::Revoked => "revoked".into(),
                },
            })
            .collect()
    }

    fn quarantined(&self) -> Vec<String> {
        self.state()
            .quarantined()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// `io.macula.Proofs1` while `[proofs] enabled = false`: every method says how to turn it on.
pub struct ProofsOff;

impl macula_bus::proofs::ProofsControl for ProofsOff {
    fn status(&self) -> Option<macula_bus::proofs::ProofsStatus> {
        None
    }
    fn history(&self, _: &str) -> Vec<macula_bus::proofs::ProofEntry> {
        Vec::new()
    }
    fn balances(&self) -> Vec<macula_bus::proofs::Balance> {
        Vec::new()
    }
    fn quarantined(&self) -> Vec<String> {
        Vec::new()
    }
}
