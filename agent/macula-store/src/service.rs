//! The tokio shell around the repair planner: events in through a channel (from membership,
//! inventory reports and audits), actions executed concurrently through a [`Client`], status
//! published on a watch channel (what D-Bus will show as the repair queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_core::NodeId;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::header::SegmentId;
use crate::network::{Client, StorageNetwork};
use crate::repair::{Event, HeldShard, RepairConfig, RepairPlanner, RepairStatus};
use crate::segment::Shard;
use crate::store::{LocalStore, StoreError};

/// Handle to a running repair service.
pub struct RepairService {
    events: mpsc::UnboundedSender<Event>,
    status: watch::Receiver<RepairStatus>,
    task: JoinHandle<()>,
}

impl RepairService {
    /// Starts the repair service of node `me` on the current tokio runtime.
    pub fn start<N: StorageNetwork + 'static>(
        me: NodeId,
        client: Arc<Client<N>>,
        cfg: RepairConfig,
    ) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(RepairStatus::default());
        let task = tokio::spawn(run(me, client, cfg, rx, status_tx));
        Self {
            events,
            status,
            task,
        }
    }

    /// Feeds an event to the planner (membership change, inventory, audit result).
    pub fn send(&self, event: Event) {
        // The service only stops when this handle is dropped, so the receiver is alive.
        let _ = self.events.send(event);
    }

    /// Audits a local store every `interval`: runs [`LocalStore::gc`] (every shard verified),
    /// reports every shard that failed verification as `ShardLost` and then the store's
    /// inventory. Runs until the service stops.
    pub fn audit_local(
        &self,
        node: NodeId,
        store: Arc<LocalStore>,
        interval: Duration,
    ) -> JoinHandle<()> {
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                let store2 = store.clone();
                let found = tokio::task::spawn_blocking(move || audit_once(&store2)).await;
                let (lost, shards) = match found {
                    Ok(Ok(found)) => found,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "storage: audit failed");
                        (Vec::new(), None)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "storage: audit task panicked");
                        (Vec::new(), None)
                    }
                };
                let lost = lost.into_iter().map(|(segment, index)| Event::ShardLost {
                    segment,
                    index,
                    node,
                });
                let inventory = shards.map(|shards| Event::Inventory { node, shards });
                for ev in lost.chain(inventory) {
                    if events.send(ev).is_err() {
                        return;
                    }
                }
                tokio::time::sleep(interval).await;
                if events.is_closed() {
                    return;
                }
            }
        })
    }

    /// Tells the planner of every delete `store` applies ([`Event::Deleted`]), so the other
    /// holders' inventories that stop listing a deleted segment start no repair. Runs until the
    /// service stops.
    pub fn follow_deletes(&self, store: &LocalStore) -> JoinHandle<()> {
        let events = self.events.clone();
        let mut deletes = store.watch_deletes();
        tokio::spawn(async move {
            loop {
                match deletes.recv().await {
                    Ok(segment) => {
                        if events.send(Event::Deleted { segment }).is_err() {
                            return;
                        }
                    }
                    // Missed ones are forgotten at this node's next inventory.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// A sender for events (for tasks that feed the planner, like an inventory subscription).
    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }

    /// The latest planner status.
    pub fn status(&self) -> watch::Receiver<RepairStatus> {
        self.status.clone()
    }

    /// Stops the service and waits for running repairs to be dropped.
    pub async fn stop(self) {
        drop(self.events);
        let _ = self.task.await;
    }
}

async fn run<N: StorageNetwork + 'static>(
    me: NodeId,
    client: Arc<Client<N>>,
    cfg: RepairConfig,
    mut events: mpsc::UnboundedReceiver<Event>,
    status: watch::Sender<RepairStatus>,
) {
    let epoch = Instant::now();
    let now_ms = || epoch.elapsed().as_millis() as u64;
    let mut planner = RepairPlanner::new(me, cfg, now_ms());
    let mut running = JoinSet::new();
    loop {
        let now = now_ms();
        while let Some(action) = planner.poll(now) {
            let client = client.clone();
            running.spawn(async move {
                let result = client.execute_repair(&action).await;
                (action, result)
            });
        }
        status.send_replace(planner.status(now));
        let wait = planner
            .next_wakeup(now)
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(t.saturating_sub(now))
            });
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => planner.handle(now_ms(), ev),
                None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let now = now_ms();
                match done {
                    Ok((action, Ok(stored))) => {
                        tracing::info!(segment = %action.segment, rank = action.rank, stored = ?stored, "storage: repaired");
                        planner.handle(now, Event::RepairDone { segment: action.segment, stored });
                    }
                    Ok((action, Err(e))) => {
                        tracing::warn!(segment = %action.segment, error = %e, "storage: repair failed; will retry");
                        planner.handle(now, Event::RepairFailed { segment: action.segment });
                    }
                    Err(e) => tracing::error!(error = %e, "storage: repair task panicked"),
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    running.abort_all();
}

/// Every shard of a local store, from the self-describing headers (data not read).
pub fn local_inventory(store: &LocalStore) -> Result<Vec<HeldShard>, StoreError> {
    let mut held = Vec::new();
    for (segment, index) in store.list()? {
        // A file removed or found malformed since the listing is not held.
        if let Ok(h) = store.header(&segment, index) {
            held.push(HeldShard {
                segment,
                index,
                k: h.desc().k,
                m: h.desc().m,
                shard_bytes: Shard::total_len(&h) as u64,
            });
        }
    }
    Ok(held)
}

/// Shards an audit removed as corrupt, and the inventory left (unless listing failed).
type Audit = (Vec<(SegmentId, u16)>, Option<Vec<HeldShard>>);

fn audit_once(store: &LocalStore) -> Result<Audit, StoreError> {
    let report = store.gc()?;
    Ok((report.removed_corrupt, local_inventory(store).ok()))
}
