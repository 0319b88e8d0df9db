//! Wiring of `macula-proof` (`docs/proofs.md`): the resource monitor samples `/proc` and
//! `statvfs` into the crate's `Aggregator`, asks its `Spreader` whether the figures are worth
//! telling the realm, publishes signed reports on [`RESOURCES_TOPIC`] and keeps the verified
//! reports of the others for `io.macula.Node1`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use macula_bus::node::{InterfaceTraffic, NodeObject, Resources as BusResources};
use macula_core::{NodeId, NodeKey};
use macula_proof::config::ProofsConfig;
use macula_proof::resources::{
    Aggregator, ReadSpec, Resources, SignedResources, SpreadPolicy, Spreader, read_sample,
};

use crate::mesh::MeshGlue;
use crate::storage::StorageGlue;
use crate::worker::Workers;

/// Realm topic of signed resource reports (`docs/protocol.md` pub/sub).
pub const RESOURCES_TOPIC: &str = "macula/resources";

/// Shortest sampling interval, whatever `spread.min_interval_ms` says.
const MIN_SAMPLE: Duration = Duration::from_millis(200);

/// One report: who, its number, the figures, and when it was made or arrived here.
#[derive(Debug, Clone)]
struct Report {
    seq: u64,
    resources: Resources,
    at: Instant,
}

/// The monitor's shared state: this node's last spread report and the others' latest.
#[derive(Clone)]
pub struct MonitorGlue {
    node: NodeId,
    /// Reports older than this are left out of `PeerResources` (3 heartbeats).
    stale: Duration,
    /// `[proofs] spread` and `interfaces`.
    policy: SpreadPolicy,
    interfaces: Vec<String>,
    own: Arc<Mutex<Option<Report>>>,
    peers: Arc<Mutex<HashMap<NodeId, Report>>>,
}

/// The one conversion of a report to its D-Bus form.
fn to_bus(node: &NodeId, r: &Report) -> BusResources {
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
            stale: Duration::from_millis(config.spread.max_interval_ms.saturating_mul(3)),
            policy: config.spread,
            interfaces: config.interfaces.clone(),
            own: Arc::default(),
            peers: Arc::default(),
        }
    }

    /// `Node1.Resources`.
    pub fn resources(&self) -> BusResources {
        match &*self.own.lock().expect("monitor lock") {
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
            .lock()
            .expect("monitor lock")
            .iter()
            .map(|r| to_bus(&self.node, r))
            .collect();
        let peers = self.peers.lock().expect("monitor lock");
        let mut others: Vec<_> = peers
            .iter()
            .filter(|(_, r)| r.at.elapsed() <= self.stale)
            .collect();
        others.sort_by_key(|(id, _)| id.to_string());
        out.extend(others.into_iter().map(|(id, r)| to_bus(id, r)));
        out
    }

    /// Keeps a verified report when it is newer than what we hold of its node.
    fn accept(&self, node: NodeId, seq: u64, resources: Resources) -> bool {
        let mut peers = self.peers.lock().expect("monitor lock");
        if peers.get(&node).is_some_and(|r| r.seq >= seq) {
            return false;
        }
        peers.insert(
            node,
            Report {
                seq,
                resources,
                at: Instant::now(),
            },
        );
        true
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
                tokio::time::interval(Duration::from_millis(policy.min_interval_ms).max(MIN_SAMPLE));
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
                *me.own.lock().expect("monitor lock") = Some(Report {
                    seq,
                    resources: r,
                    at: Instant::now(),
                });
                if let Some(node) = mesh2.running_node()
                    && let Err(e) = node.publish(RESOURCES_TOPIC, signed).await
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
            let mut sub = match node.subscribe(RESOURCES_TOPIC).await {
                Ok(s) => s,
                Err(e) => return Err(format!("cannot subscribe to {RESOURCES_TOPIC}: {e}")),
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
                match SignedResources::decode_verified(&p.payload) {
                    Ok(body) if body.node == p.publisher => {
                        if body.node != me.node {
                            me.accept(body.node, body.seq, body.resources);
                        }
                    }
                    Ok(body) => {
                        tracing::warn!(target: "macula::proofs", publisher = %p.publisher,
                            node = %body.node, "refused a resource report relayed as another node's");
                    }
                    Err(e) => {
                        tracing::warn!(target: "macula::proofs", publisher = %p.publisher,
                            error = %e, "refused a resource report");
                    }
                }
            }
        });
    }
}
