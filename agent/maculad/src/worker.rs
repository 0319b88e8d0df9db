//! Named background workers (model: Garage's `util/background/worker.rs`).
//!
//! Every long-lived task of the agent runs as a worker: it has a name, a [`WorkerState`], the
//! last error it reported and a stop signal. A worker waits for its next event through
//! [`WorkerCtx::wait`], which marks it idle meanwhile and returns `None` once the stop signal
//! came, so each loop ends at a point of its choosing (after finishing the event in hand).
//! [`Workers::stop_all`] raises the stop signal and waits, within a deadline, for every worker
//! to return; one that does not is aborted and reported failed. `io.macula.Node1.Workers` and
//! `maculactl node workers` list them.

use macula_core::sync::Locked;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use macula_bus::node::{WorkerState, WorkerStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a worker shares with the registry.
#[derive(Debug)]
struct Slot {
    name: String,
    state: WorkerState,
    last_error: String,
    errors: u64,
}

/// The handle a worker's future gets: its stop signal and its state.
#[derive(Clone)]
pub struct WorkerCtx {
    slot: Arc<Mutex<Slot>>,
    stop: watch::Receiver<bool>,
}

impl WorkerCtx {
    fn set(&self, state: WorkerState) {
        lock(&self.slot).state = state;
    }

    /// Waits for `next` (the worker's next event or timer) as an idle worker. `None` when the
    /// stop signal came first: the worker should return.
    pub async fn wait<T>(&self, next: impl Future<Output = T>) -> Option<T> {
        let mut stop = self.stop.clone();
        if *stop.borrow_and_update() {
            return None;
        }
        self.set(WorkerState::Idle);
        let out = tokio::select! {
            biased;
            _ = stop.changed() => None,
            v = next => Some(v),
        };
        if out.is_some() {
            self.set(WorkerState::Running);
        }
        out
    }

    /// Records an error the worker survived (it keeps running); listed as its last error.
    pub fn error(&self, e: impl std::fmt::Display) {
        let mut s = lock(&self.slot);
        s.last_error = e.to_string();
        s.errors += 1;
    }
}

/// A worker ends with `Ok` (stopped: asked to, or nothing left to do) or `Err` (failed).
pub type WorkerResult = Result<(), String>;

/// A worker in the registry: its shared slot, its task and the task that records its end.
struct Entry {
    slot: Arc<Mutex<Slot>>,
    task: tokio::task::AbortHandle,
    watcher: Option<JoinHandle<()>>,
}

/// The registry of this agent's workers.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Mutex<Vec<Entry>>>,
    stop: Arc<watch::Sender<bool>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked while holding its slot left plain data behind: keep using it.
    m.locked()
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            stop: Arc::new(watch::channel(false).0),
        }
    }
}

impl Workers {
    /// Starts `run(ctx)` as the worker `name`. Started after [`Workers::stop_all`], it is told to
    /// stop at once.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, run: F)
    where
        F: FnOnce(WorkerCtx) -> Fut,
        Fut: Future<Output = WorkerResult> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(Slot {
            name: name.into(),
            state: WorkerState::Running,
            last_error: String::new(),
            errors: 0,
        }));
        let ctx = WorkerCtx {
            slot: slot.clone(),
            stop: self.stop.subscribe(),
        };
        let fut = run(ctx);
        let task = tokio::spawn(fut);
        let abort = task.abort_handle();
        let watcher = slot.clone();
        // A panic ends the task, not the agent: its join error is the worker's last error.
        let handle = tokio::spawn(async move {
            let result = match task.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(format!("panicked: {e}")),
                Err(e) => Err(format!("aborted: {e}")),
            };
            let mut s = lock(&watcher);
            match result {
                Ok(()) => s.state = WorkerState::Stopped,
                Err(e) => {
                    tracing::error!(target: "macula::node", worker = %s.name, error = %e,
                        "worker failed");
                    s.state = WorkerState::Failed;
                    s.last_error = e;
                    s.errors += 1;
                }
            }
        });
        lock(&self.inner).push(Entry {
            slot,
            task: abort,
            watcher: Some(handle),
        });
    }

    /// Every worker, in start order.
    pub fn list(&self) -> Vec<WorkerStatus> {
        lock(&self.inner)
            .iter()
            .map(|e| {
                let s = lock(&e.slot);
                WorkerStatus {
                    name: s.name.clone(),
                    state: s.state,
                    last_error: s.last_error.clone(),
                    errors: s.errors,
                }
            })
            .collect()
    }

    /// Raises the stop signal and waits until every worker returned, at most `within`. Workers
    /// still running then are aborted and marked failed. Returns how many stopped by themselves
    /// and the names of the aborted ones.
    pub async fn stop_all(&self, within: Duration) -> (usize, Vec<String>) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + within;
        let handles: Vec<_> = lock(&self.inner)
            .iter_mut()
            .filter_map(|e| Some((e.slot.clone(), e.task.clone(), e.watcher.take()?)))
            .collect();
        let mut stopped = 0;
        let mut aborted = vec![];
        for (slot, task, mut watcher) in handles {
            if tokio::time::timeout_at(deadline, &mut watcher)
                .await
                .is_ok()
            {
                stopped += 1;
                continue;
            }
            task.abort();
            let _ = watcher.await;
            let mut s = lock(&slot);
            s.state = WorkerState::Failed;
            s.last_error = format!("did not stop within {within:?} of the stop signal; aborted");
            aborted.push(s.name.clone());
        }
        (stopped, aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(w: &Workers, name: &str) -> (WorkerState, String) {
        let s = w.list().into_iter().find(|s| s.name == name).unwrap();
        (s.state, s.last_error)
    }

    #[tokio::test]
    async fn states_errors_and_stop() {
        let w = Workers::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        w.spawn("echo", |ctx| async move {
            while let Some(Some(v)) = ctx.wait(rx.recv()).await {
                if v == 0 {
                    ctx.error("zero is not allowed");
                }
                seen_tx.send(v).unwrap();
            }
            // Asked to stop: the event in hand was finished first.
            Ok(())
        });
        w.spawn("fails", |_| async { Err("cannot bind".to_string()) });
        w.spawn("panics", |_| async { panic!("boom") });
        w.spawn("stubborn", |_| async {
            std::future::pending::<()>().await;
            Ok(())
        });
        tx.send(0).unwrap();
        assert_eq!(seen.recv().await, Some(0));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            state(&w, "echo"),
            (WorkerState::Idle, "zero is not allowed".into())
        );
        assert_eq!(
            state(&w, "fails"),
            (WorkerState::Failed, "cannot bind".into())
        );
        let (s, e) = state(&w, "panics");
        assert_eq!(s, WorkerState::Failed);
        assert!(e.contains("panicked"), "{e}");
        assert_eq!(state(&w, "stubborn").0, WorkerState::Running);

        let t0 = std::time::Instant::now();
        let (stopped, aborted) = w.stop_all(Duration::from_millis(200)).await;
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(stopped, 3);
        assert_eq!(aborted, vec!["stubborn".to_string()]);
        assert_eq!(state(&w, "echo").0, WorkerState::Stopped);
        assert_eq!(state(&w, "stubborn").0, WorkerState::Failed);
        assert_eq!(state(&w, "fails").0, WorkerState::Failed);
        // A worker started after the stop signal returns at its first wait.
        w.spawn("late", |ctx| async move {
            assert!(ctx.wait(std::future::pending::<()>()).await.is_none());
            Ok(())
        });
        let (stopped, aborted) = w.stop_all(Duration::from_millis(200)).await;
        assert_eq!((stopped, aborted.len()), (1, 0));
        assert_eq!(state(&w, "late").0, WorkerState::Stopped);
    }
}
