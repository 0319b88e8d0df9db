//! Rollout glue: realm-wide updates in waves (`macula_update::rollout` holds every rule).
//!
//! `Update1.Publish` stores the bundle in the realm's storage and spreads the signed rollout on
//! the topic `macula/rollout`; the worker `update.rollout` keeps this node's `RolloutBook`
//! (saved in `<state>/update/rollout`), hears records and reports on the topic, catches up from
//! every member that is or comes alive (RPC `update.rollout.sync`), and carries out what the
//! book says this node does: fetch the bundle from its peers (paced), check its hash, install
//! it with RAUC, reboot, and report the health check's verdict from the new slot.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use macula_bus::Error;
use macula_bus::update::RolloutStatus;
use macula_core::config::Role;
use macula_core::sync::Locked;
use macula_core::{NodeId, NodeKey, wire};
use macula_mesh::node::{MeshNode, PeerState};
use macula_mesh::rpc::{Handler, RpcError};
use macula_mesh::transport::unix_now;
use macula_update::rollout::{
    self, DEFAULT_WAVE_DEADLINE, MAX_SYNC, Message, NextStep, Offered, Pending, Phase, RESYNC,
    Report, Rollout, RolloutBook, RolloutId, SYNC_DEADLINE, SYNC_PROCEDURE, SignedReport,
    SignedRollout, Step, TOPIC,
};
use macula_update::{Rauc, UpdateSection};
use tokio::sync::broadcast::error::RecvError;

use crate::mesh::MeshGlue;
use crate::storage::StorageGlue;
use crate::worker::{WorkerCtx, Workers};

/// Wave sizes when the publisher gives none.
const DEFAULT_WAVES: &str = "1,100%";

#[derive(Clone)]
pub struct RolloutGlue {
    inner: Arc<Inner>,
}

struct Inner {
    key: NodeKey,
    me: NodeId,
    /// `<state>/update`: the saved book, the pending installation, the fetched bundle.
    dir: PathBuf,
    config: UpdateSection,
    book: Mutex<RolloutBook>,
    /// Something changed that may change this node's next step.
    wake: tokio::sync::Notify,
    rauc: Arc<tokio::sync::OnceCell<Option<Rauc>>>,
    parts: OnceLock<(MeshGlue, StorageGlue)>,
    /// The health check's verdict on this boot: `Some(true)` marked good, `Some(false)` failed.
    health: tokio::sync::watch::Sender<Option<bool>>,
    /// Installed in this boot and rebooting: nothing more to do in it.
    rebooting: std::sync::atomic::AtomicBool,
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

impl RolloutGlue {
    /// The glue with the records saved in `<state_dir>/update` read back.
    pub fn new(
        key: &NodeKey,
        state_dir: &Path,
        config: UpdateSection,
        rauc: Arc<tokio::sync::OnceCell<Option<Rauc>>>,
    ) -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                key: NodeKey::from_seed(*key.signing_key().as_bytes()),
                me: key.node_id(),
                dir: state_dir.join("update"),
                config,
                book: Mutex::new(RolloutBook::new()),
                wake: tokio::sync::Notify::new(),
                rauc,
                parts: OnceLock::new(),
                health: tokio::sync::watch::Sender::new(None),
                rebooting: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        this.load();
        this
    }

    /// The health check decided on this boot (the worker `update.health`).
    pub fn set_health(&self, healthy: bool) {
        self.inner.health.send_replace(Some(healthy));
    }

    /// Starts the worker `update.rollout`.
    pub fn attach(&self, mesh: MeshGlue, storage: StorageGlue, workers: &Workers) {
        let _ = self.inner.parts.set((mesh.clone(), storage.clone()));
        let this = self.clone();
        workers.spawn("update.rollout", move |ctx| async move {
            this.run(ctx, mesh, storage).await
        });
    }

    async fn rauc(&self) -> Option<Rauc> {
        crate::update::connect_rauc(&self.inner.rauc).await.ok()
    }

    fn book_path(&self) -> PathBuf {
        self.inner.dir.join("rollout")
    }

    fn pending_path(&self) -> PathBuf {
        self.inner.dir.join("pending")
    }

    fn bundle_path(&self) -> PathBuf {
        self.inner.dir.join("bundle.raucb")
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.inner.dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", self.inner.dir.display())))
    }

    /// Writes the book (every record held) atomically.
    fn save(&self) {
        let msgs = self.inner.book.locked().messages();
        let r = self.ensure_dir().map_err(|e| e.to_string()).and_then(|()| {
            macula_core::fsutil::write_atomic(&self.book_path(), &wire::encode(&msgs), 0o600)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            tracing::error!(target: "macula::update", error = %e, "cannot save the rollout records");
        }
    }

    /// Reads the saved book back (each record verified again).
    fn load(&self) {
        let Ok(bytes) = std::fs::read(self.book_path()) else {
            return;
        };
        let msgs: Vec<Message> = match wire::decode_with_limit(&bytes, MAX_SYNC) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target: "macula::update", error = %e, "saved rollout records unreadable; ignored");
                return;
            }
        };
        let mut book = self.inner.book.locked();
        for m in msgs {
            let r = match m {
                Message::Rollout(s) => book.offer_rollout(s, |_| Ok(())),
                Message::Report(s) => book.offer_report(s),
            };
            if let Err(e) = r {
                tracing::warn!(target: "macula::update", error = %e, "saved rollout record refused");
            }
        }
    }

    /// May `publisher` publish rollouts? A hub by its certificate (this node's own, or the one
    /// its member metadata carries).
    fn allowed(&self, node: &MeshNode, publisher: &NodeId) -> Result<(), String> {
        let role = if *publisher == self.inner.me {
            self.inner.parts.get().and_then(|(m, _)| m.cert_role())
        } else {
            node.peers()
                .into_iter()
                .find(|p| p.id == *publisher)
                .and_then(|p| p.meta.map(|m| m.role))
        };
        match role {
            Some(Role::Hub) => Ok(()),
            Some(r) => Err(format!("its certificate's role is {r}, only hubs publish")),
            None => Err("not a member this node knows yet".into()),
        }
    }

    /// Takes a record from the topic or a catch-up; true when it was new.
    fn offer(&self, node: &MeshNode, msg: Message) -> bool {
        let r = match msg {
            Message::Rollout(s) => {
                let allowed = |p: &NodeId| self.allowed(node, p);
                self.inner.book.locked().offer_rollout(s, allowed)
            }
            Message::Report(s) => self.inner.book.locked().offer_report(s),
        };
        match r {
            Ok(Offered::New) => true,
            Ok(Offered::Known) => false,
            Err(e) => {
                tracing::warn!(target: "macula::update", error = %e, "rollout record refused");
                false
            }
        }
    }

    fn serve_sync(&self, node: &MeshNode) {
        let this = self.clone();
        let handler: Handler = Arc::new(move |_from, _body| {
            let msgs = this.inner.book.locked().messages();
            Box::pin(async move { Ok(wire::encode(&msgs)) })
        });
        node.serve(SYNC_PROCEDURE, handler);
    }

    /// Takes every record `peer` holds (in the background).
    fn catch_up(&self, node: &Arc<MeshNode>, peer: NodeId) {
        let (this, node) = (self.clone(), node.clone());
        tokio::spawn(async move {
            let msgs = match node
                .call(peer, SYNC_PROCEDURE, Vec::new(), SYNC_DEADLINE)
                .await
            {
                Ok(b) => {
                    wire::decode_with_limit::<Vec<Message>>(&b, MAX_SYNC).map_err(|e| e.to_string())
                }
                Err(e) => Err(RpcError::to_string(&e)),
            };
            let msgs = match msgs {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(target: "macula::update", %peer, error = %e,
                        "rollout catch-up failed (again when the member next comes up)");
                    return;
                }
            };
            let mut new = false;
            for m in msgs {
                new |= this.offer(&node, m);
            }
            if new {
                this.save();
                this.inner.wake.notify_one();
            }
        });
    }

    /// Signs, keeps, saves and spreads this node's report.
    async fn report(&self, node: &MeshNode, step: Step) {
        let signed = {
            let mut book = self.inner.book.locked();
            let Some((id, _)) = book.current() else {
                return;
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let seq = book
                .report_of(&self.inner.me)
                .map_or(now_ms, |r| now_ms.max(r.seq + 1));
            let rep = Report {
                rollout: id,
                node: self.inner.me,
                seq,
                at: unix_now(),
                step,
            };
            tracing::info!(target: "macula::update", rollout = %rollout::short_id(&id),
                step = rep.step.word(), ?rep.step, "rollout report");
            let s = SignedReport::sign(&self.inner.key, &rep);
            if let Err(e) = book.offer_report(s.clone()) {
                tracing::error!(target: "macula::update", error = %e, "own report refused");
            }
            s
        };
        self.save();
        if let Err(e) = node.publish(TOPIC, Message::Report(signed).encode()).await {
            tracing::warn!(target: "macula::update", error = %e,
                "cannot spread the rollout report now; members catch up from this node");
        }
    }

    async fn run(
        &self,
        ctx: WorkerCtx,
        mesh: MeshGlue,
        storage: StorageGlue,
    ) -> crate::worker::WorkerResult {
        let Some(node) = ctx.wait(mesh.wait_running()).await else {
            return Ok(());
        };
        self.serve_sync(&node);
        let mut changes = node.watch_peers();
        let mut sub = node
            .subscribe(TOPIC)
            .await
            .map_err(|e| format!("cannot subscribe to {TOPIC}: {e}"))?;
        for p in node.peers() {
            match p.state {
                PeerState::Alive => self.catch_up(&node, p.id),
                PeerState::Down => self.inner.book.locked().set_down(p.id, true),
                PeerState::Suspect => {}
            }
        }
        let mut health = self.inner.health.subscribe();
        loop {
            let wake_at = self.act(&ctx, &node, &storage).await;
            let resync = self.inner.book.locked().in_progress(unix_now());
            let timer = async {
                let wait = wake_at.map(|t| Duration::from_secs(t.saturating_sub(unix_now())));
                match (wait, resync) {
                    (Some(w), true) => tokio::time::sleep(w.min(RESYNC)).await,
                    (Some(w), false) => tokio::time::sleep(w).await,
                    (None, true) => tokio::time::sleep(RESYNC).await,
                    (None, false) => std::future::pending().await,
                }
            };
            let next = ctx.wait(async {
                tokio::select! {
                    p = sub.recv() => Heard::Record(p),
                    c = changes.recv() => Heard::Peer(c),
                    _ = health.changed() => Heard::Wake,
                    () = self.inner.wake.notified() => Heard::Wake,
                    () = timer => Heard::Timer,
                }
            });
            match next.await {
                None | Some(Heard::Record(None)) => return Ok(()),
                Some(Heard::Record(Some(p))) => {
                    if p.publisher == node.id() {
                        continue;
                    }
                    match Message::decode(&p.payload) {
                        Ok(m) => {
                            if self.offer(&node, m) {
                                self.save();
                            }
                        }
                        Err(e) => tracing::warn!(target: "macula::update", from = %p.publisher,
                            error = %e, "rollout message ignored"),
                    }
                }
                Some(Heard::Peer(Ok(c))) => {
                    let down = c.peer.state == PeerState::Down;
                    self.inner.book.locked().set_down(c.peer.id, down);
                    if c.peer.state == PeerState::Alive && !c.left {
                        self.catch_up(&node, c.peer.id);
                    }
                }
                Some(Heard::Peer(Err(RecvError::Lagged(n)))) => {
                    ctx.error(format!("{n} peer changes missed"));
                }
                Some(Heard::Peer(Err(RecvError::Closed))) => return Ok(()),
                Some(Heard::Wake) => {}
                Some(Heard::Timer) => {
                    if self.inner.book.locked().in_progress(unix_now()) {
                        for p in node.peers() {
                            if p.state == PeerState::Alive {
                                self.catch_up(&node, p.id);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Does this node's part now; returns when to look again without an event (unix s).
    async fn act(&self, ctx: &WorkerCtx, node: &MeshNode, storage: &StorageGlue) -> Option<u64> {
        if self
            .inner
            .rebooting
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        let rauc = self.rauc().await;
        if let Some(pending) = self.read_pending() {
            self.after_boot(ctx, node, rauc.as_ref(), pending).await;
            return None;
        }
        let (compatible, running, booted) = match &rauc {
            Some(r) => (
                r.compatible().await.ok(),
                r.booted_version().await.ok().flatten(),
                r.booted().await.ok(),
            ),
            None => (None, None, None),
        };
        let next = self.inner.book.locked().next_step(
            &self.inner.me,
            compatible.as_deref(),
            running.as_deref(),
            unix_now(),
        );
        match next {
            NextStep::Nothing => None,
            NextStep::WakeAt(t) => Some(t),
            NextStep::ReportGood => {
                let version = running.unwrap_or_default();
                let slot = booted.unwrap_or_else(|| "-".into());
                self.report(node, Step::Good { version, slot }).await;
                None
            }
            NextStep::Install { id, rollout } => {
                self.install(ctx, node, storage, rauc.as_ref(), id, &rollout, booted)
                    .await;
                Some(unix_now())
            }
        }
    }

    fn read_pending(&self) -> Option<Pending> {
        let bytes = std::fs::read(self.pending_path()).ok()?;
        match wire::decode(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(target: "macula::update", error = %e, "pending installation record unreadable; removed");
                let _ = std::fs::remove_file(self.pending_path());
                None
            }
        }
    }

    /// The outcome of the installation this node rebooted into.
    async fn after_boot(&self, ctx: &WorkerCtx, node: &MeshNode, rauc: Option<&Rauc>, p: Pending) {
        let Some(rauc) = rauc else {
            return;
        };
        let booted = match rauc.booted().await {
            Ok(b) => b,
            Err(e) => {
                ctx.error(format!("cannot read the booted slot: {e}"));
                return;
            }
        };
        let healthy = *self.inner.health.borrow();
        let Some(step) = rollout::after_boot(&p.version, &p.target, &booted, healthy) else {
            return;
        };
        let current = self.inner.book.locked().current().map(|(id, _)| id);
        let back = matches!(step, Step::Failed { .. }) && booted == p.target;
        if current == Some(p.rollout) {
            self.report(node, step).await;
        }
        if let Err(e) = std::fs::remove_file(self.pending_path()) {
            ctx.error(format!(
                "cannot remove the pending installation record: {e}"
            ));
        }
        if back {
            // unconfirmed: the boot loader returns to the previous slot
            self.reboot(ctx);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn install(
        &self,
        ctx: &WorkerCtx,
        node: &MeshNode,
        storage: &StorageGlue,
        rauc: Option<&Rauc>,
        id: RolloutId,
        r: &Rollout,
        booted: Option<String>,
    ) {
        self.report(node, Step::Fetching).await;
        let result = self.fetch_and_install(node, storage, rauc, id, r).await;
        let _ = std::fs::remove_file(self.bundle_path());
        match result {
            Ok(()) => self.reboot(ctx),
            Err(reason) => {
                tracing::warn!(target: "macula::update", %reason, "rollout installation failed");
                let slot = booted.unwrap_or_else(|| "-".into());
                self.report(node, Step::Failed { reason, slot }).await;
            }
        }
    }

    async fn fetch_and_install(
        &self,
        node: &MeshNode,
        storage: &StorageGlue,
        rauc: Option<&Rauc>,
        id: RolloutId,
        r: &Rollout,
    ) -> Result<(), String> {
        self.ensure_dir().map_err(|e| error_text(&e))?;
        let path = self.bundle_path();
        let _ = std::fs::remove_file(&path);
        let file = macula_core::fsutil::create_new(&path, 0o600)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let got = storage
            .get_file_paced(
                &r.bundle,
                file,
                "rollout bundle".into(),
                self.inner.config.fetch_bytes_per_s,
            )
            .await
            .map_err(|e| format!("fetching the bundle: {}", error_text(&e)))?;
        let check = path.clone();
        let (hash, len) =
            tokio::task::spawn_blocking(move || rollout::hash_bundle(std::fs::File::open(&check)?))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading the fetched bundle: {e}"))?;
        if got != r.bundle_len || len != got || hash != r.bundle_hash {
            return Err(format!(
                "the fetched bundle ({got} bytes) does not match the rollout's hash and size ({} bytes)",
                r.bundle_len
            ));
        }
        tracing::info!(target: "macula::update", bytes = got, "rollout bundle fetched and checked");
        self.report(node, Step::Installing).await;
        let rauc = rauc.ok_or_else(|| {
            "updates need RAUC on the system bus, which this system does not have".to_owned()
        })?;
        let timeout = Duration::from_secs(self.inner.config.install_timeout_s);
        rauc.install(&path, timeout, |p| {
            tracing::debug!(target: "macula::update", percent = p.percent, message = %p.message, "rollout install");
        })
        .await
        .map_err(|e| e.to_string())?;
        let target = rauc.primary_bootname().await.map_err(|e| e.to_string())?;
        let pending = Pending {
            rollout: id,
            version: r.version.clone(),
            target: target.clone(),
        };
        macula_core::fsutil::write_atomic(&self.pending_path(), &wire::encode(&pending), 0o600)
            .map_err(|e| format!("cannot record the pending installation: {e}"))?;
        self.report(node, Step::Rebooting { slot: target }).await;
        Ok(())
    }

    /// Runs `[update] reboot_command`.
    fn reboot(&self, ctx: &WorkerCtx) {
        self.inner
            .rebooting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let Some((prog, args)) = self.inner.config.reboot_command.split_first() else {
            ctx.error("[update] reboot_command is empty: reboot by hand to go on");
            return;
        };
        tracing::info!(target: "macula::update", command = ?self.inner.config.reboot_command, "rebooting for the rollout");
        match std::process::Command::new(prog).args(args).status() {
            Ok(s) if s.success() => {}
            Ok(s) => ctx.error(format!("{prog} exited with {s}: reboot by hand to go on")),
            Err(e) => ctx.error(format!("cannot run {prog}: {e}; reboot by hand to go on")),
        }
    }

    /// `Update1.Publish`.
    pub async fn publish(
        &self,
        mut file: std::fs::File,
        waves: String,
        mut version: String,
        mut compatible: String,
        deadline_s: u64,
    ) -> Result<String, Error> {
        let (mesh, storage) = self
            .inner
            .parts
            .get()
            .ok_or_else(|| Error::Unavailable("the agent is starting; try again".into()))?;
        let node = mesh.running_node().ok_or_else(|| {
            Error::Unavailable(
                "the mesh is off: a rollout needs this node to be a member of a realm".into(),
            )
        })?;
        match mesh.cert_role() {
            Some(Role::Hub) => {}
            role => {
                return Err(Error::PermissionDenied(format!(
                    "only a hub publishes rollouts; this node's certificate says {}; publish \
                     from a hub",
                    role.map_or_else(|| "nothing yet".into(), |r| r.to_string())
                )));
            }
        }
        let waves = rollout::parse_waves(if waves.is_empty() {
            DEFAULT_WAVES
        } else {
            &waves
        })
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let (file_back, hash, len) = tokio::task::spawn_blocking(move || {
            let (hash, len) = rollout::hash_bundle(&mut file)?;
            file.rewind()?;
            Ok::<_, std::io::Error>((file, hash, len))
        })
        .await
        .map_err(failed)?
        .map_err(|e| Error::InvalidArgument(format!("cannot read the bundle: {e}")))?;
        file = file_back;
        if version.is_empty() || compatible.is_empty() {
            let (c, v) = self.bundle_info(&mut file).await?;
            if version.is_empty() {
                version = v;
            }
            if compatible.is_empty() {
                compatible = c;
            }
        }
        let cap = storage.put_spooled(file, "rollout bundle".into()).await?;
        let mut members: Vec<NodeId> = node.peers().into_iter().map(|p| p.id).collect();
        members.push(self.inner.me);
        let r = Rollout {
            publisher: self.inner.me,
            published_at: unix_now(),
            version,
            compatible,
            bundle: cap,
            bundle_hash: hash,
            bundle_len: len,
            waves,
            wave_deadline_s: if deadline_s == 0 {
                DEFAULT_WAVE_DEADLINE.as_secs()
            } else {
                deadline_s
            },
            nodes: Rollout::order(&hash, members),
        };
        let signed = SignedRollout::sign(&self.inner.key, &r)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let id = signed.id();
        self.inner
            .book
            .locked()
            .offer_rollout(signed.clone(), |_| Ok(()))
            .map_err(failed)?;
        self.save();
        node.publish(TOPIC, Message::Rollout(signed).encode())
            .await
            .map_err(|e| failed(format!("cannot spread the rollout: {e}")))?;
        self.inner.wake.notify_one();
        tracing::info!(target: "macula::update", rollout = %rollout::short_id(&id), version = %r.version,
            nodes = r.nodes.len(), waves = r.waves.len(), "rollout published");
        Ok(rollout::short_id(&id))
    }

    /// The bundle's compatible and version, read by RAUC from a copy in the state directory.
    async fn bundle_info(&self, file: &mut std::fs::File) -> Result<(String, String), Error> {
        let rauc = crate::update::connect_rauc(&self.inner.rauc)
            .await
            .map_err(|_| {
                Error::Unavailable(
                    "no RAUC here to read the bundle's version and compatible: give --version \
                     and --compatible"
                        .into(),
                )
            })?;
        self.ensure_dir()?;
        let copy = self.inner.dir.join("publish.raucb");
        let _ = std::fs::remove_file(&copy);
        let mut out = macula_core::fsutil::create_new(&copy, 0o600)
            .map_err(|e| failed(format!("cannot create {}: {e}", copy.display())))?;
        std::io::copy(file, &mut out)
            .and_then(|_| out.flush())
            .and_then(|()| file.rewind())
            .map_err(|e| failed(format!("cannot copy the bundle: {e}")))?;
        let info = rauc
            .info(&copy)
            .await
            .map_err(|e| Error::InvalidArgument(e.to_string()));
        let _ = std::fs::remove_file(&copy);
        info
    }

    /// `Update1.Rollout`.
    pub fn status(&self) -> RolloutStatus {
        let Some(v) = self.inner.book.locked().view(unix_now()) else {
            return RolloutStatus::default();
        };
        let r = &v.rollout;
        let mut s = RolloutStatus {
            id: rollout::short_id(&v.id),
            version: r.version.clone(),
            compatible: r.compatible.clone(),
            publisher: r.publisher.to_string(),
            published_at: r.published_at,
            bundle_bytes: r.bundle_len,
            waves: r
                .waves
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            ..RolloutStatus::default()
        };
        match &v.phase {
            Phase::Wave { wave, deadline, .. } => {
                s.phase = "wave".into();
                s.wave = *wave as u32 + 1;
                s.deadline = *deadline;
            }
            Phase::Done => s.phase = "done".into(),
            Phase::Halted { node, reason } => {
                s.phase = "halted".into();
                s.halted_by = node.to_string();
                s.reason = reason.clone();
            }
        }
        s.nodes = v
            .nodes
            .iter()
            .map(|l| {
                let detail = match &l.step {
                    Some(Step::Good { version, slot }) => format!("{slot} {version}"),
                    Some(Step::Failed { reason, .. }) => reason.clone(),
                    Some(Step::Rebooting { slot }) => slot.clone(),
                    _ => "-".into(),
                };
                format!(
                    "{} {} {} {} {detail}",
                    l.node,
                    l.wave.map_or_else(|| "-".into(), |w| (w + 1).to_string()),
                    l.step.as_ref().map_or("-", Step::word),
                    l.at.map_or_else(|| "-".into(), |t| t.to_string()),
                )
            })
            .collect();
        s
    }
}

enum Heard {
    Record(Option<macula_mesh::pubsub::Publication>),
    Peer(Result<macula_mesh::node::PeerChanged, RecvError>),
    /// Something of this node changed (health verdict, own publication).
    Wake,
    /// A wave deadline or the resync interval.
    Timer,
}

fn error_text(e: &Error) -> String {
    use zbus::DBusError;
    e.description()
        .map_or_else(|| e.name().to_string(), str::to_owned)
}
