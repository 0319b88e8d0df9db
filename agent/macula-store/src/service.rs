//! The tokio shell around the repair planner: events in through a channel (from membership,
//! inventory reports and audits), actions executed concurrently through a [`Client`], status
//! published on a watch channel (what D-Bus will show as the repair queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::network::{Client, StorageNetwork};
use crate::repair::{Event, RepairConfig, RepairPlanner, RepairStatus};

/// Handle to a running repair service.
pub struct RepairService {
    events: mpsc::UnboundedSender<Event>,
    status: watch::Receiver<RepairStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl RepairService {
    /// Starts the service on the current tokio runtime.
    pub fn start<N: StorageNetwork + 'static>(client: Arc<Client<N>>, cfg: RepairConfig) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(RepairStatus::default());
        let task = tokio::spawn(run(client, cfg, rx, status_tx));
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
    client: Arc<Client<N>>,
    cfg: RepairConfig,
    mut events: mpsc::UnboundedReceiver<Event>,
    status: watch::Sender<RepairStatus>,
) {
    let epoch = Instant::now();
    let now_ms = || epoch.elapsed().as_millis() as u64;
    let mut planner = RepairPlanner::new(cfg, now_ms());
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
