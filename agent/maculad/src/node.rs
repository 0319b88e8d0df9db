//! Glue for `io.macula.Node1`: run-time log level control.

use macula_core::sync::Locked;
use std::sync::Mutex;

use macula_bus::node::{ClockInfo, NodeControl, Resources, WorkerStatus};
use macula_core::config::LogLevel;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{Registry, reload};

pub type LevelHandle = reload::Handle<LevelFilter, Registry>;

pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Changes the level of the running subscriber through its reload handle.
pub struct NodeGlue {
    handle: LevelHandle,
    level: Mutex<LogLevel>,
    /// The mesh, whose time keeping the status reports.
    mesh: std::sync::OnceLock<crate::mesh::MeshGlue>,
    /// The resource monitor, when `[proofs] enabled`.
    monitor: std::sync::OnceLock<crate::proofs::MonitorGlue>,
    workers: crate::worker::Workers,
}

impl NodeGlue {
    pub fn new(handle: LevelHandle, level: LogLevel, workers: crate::worker::Workers) -> Self {
        Self {
            handle,
            level: Mutex::new(level),
            mesh: std::sync::OnceLock::new(),
            monitor: std::sync::OnceLock::new(),
            workers,
        }
    }

    pub fn set_mesh(&self, mesh: crate::mesh::MeshGlue) {
        let _ = self.mesh.set(mesh);
    }

    pub fn set_monitor(&self, monitor: crate::proofs::MonitorGlue) {
        let _ = self.monitor.set(monitor);
    }
}

impl NodeControl for NodeGlue {
    fn log_level(&self) -> LogLevel {
        *self.level.locked()
    }

    fn set_log_level(&self, level: LogLevel) -> Result<(), String> {
        self.handle
            .modify(|f| *f = level_filter(level))
            .map_err(|e| format!("cannot change the log level: {e}"))?;
        *self.level.locked() = level;
        Ok(())
    }

    fn clock(&self) -> Option<ClockInfo> {
        let c = self.mesh.get()?.running_node()?.clock()?;
        Some(ClockInfo {
            offset_ms: c.offset_ms,
            wrong: c.offset_ms.unsigned_abs() > macula_mesh::node::CLOCK_THRESHOLD_MS,
            peers: u32::try_from(c.peers).unwrap_or(u32::MAX),
            hubs: c.hubs,
            ntp: c.ntp,
            stepped_ms: c.stepped_ms,
        })
    }

    fn workers(&self) -> Vec<WorkerStatus> {
        self.workers.list()
    }

    fn resources(&self) -> Resources {
        self.monitor
            .get()
            .map(|m| m.resources())
            .unwrap_or_default()
    }

    fn peer_resources(&self) -> Vec<Resources> {
        self.monitor
            .get()
            .map(|m| m.peer_resources())
            .unwrap_or_default()
    }
}
