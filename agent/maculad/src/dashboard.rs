//! The hub dashboard (`[dashboard] listen`, `docs/dashboard.md`): the page and its assets from
//! `macula_web`, its figures read from the same backends as D-Bus and `/metrics`
//! ([`crate::metrics::Sources`], `Node1`'s [`NodeControl`]), served over the agent's one
//! request-head reader (`crate::s3::read_head`). Live updates are server-sent events; admin
//! actions call the backends the D-Bus methods call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use macula_bus::Error;
use macula_bus::dashboard::DashboardControl;
use macula_bus::firewall::BoxFuture;
use macula_bus::mesh::MeshControl;
use macula_bus::node::{NodeControl, NodeInfo};
use macula_bus::s3::S3Control;
use macula_bus::storage::StorageControl;
use macula_bus::update::{ProgressSink, UpdateControl};
use macula_core::sync::Locked;
use macula_s3::http::{self, Head};
use macula_web::action::{self, Action};
use macula_web::auth::{self, Auth, Refused};
use macula_web::{MAX_BODY, PUSH_INTERVAL, REPORTS_EVERY, assets};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::worker::{WorkerCtx, WorkerResult};

/// Verdicts the proofs page lists (the latest ones of the ledger).
const VERDICTS_SHOWN: usize = 20;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The login token (its hash in `<state>/dashboard/token`) and the open sessions; serves
/// `Dashboard1.IssueToken()`.
#[derive(Clone)]
pub struct DashboardGlue {
    file: PathBuf,
    auth: Arc<Mutex<Auth>>,
}

impl DashboardGlue {
    /// Loads the stored token hash, if a token was issued.
    pub fn open(state_dir: &std::path::Path) -> anyhow::Result<Self> {
        let file = state_dir.join("dashboard").join("token");
        let hash = match std::fs::read_to_string(&file) {
            Ok(text) => Some(auth::parse_hash(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not a dashboard token hash; remove it and issue a new token with \
                     `maculactl dashboard token`",
                    file.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
        };
        Ok(Self {
            file,
            auth: Arc::new(Mutex::new(Auth::new(hash))),
        })
    }
}

impl DashboardControl for DashboardGlue {
    fn issue_token(&self) -> Result<String, Error> {
        let (token, hash) = auth::new_token();
        let fail = |e: std::io::Error| {
            Error::Failed(format!(
                "cannot store the dashboard token hash in {}: {e}",
                self.file.display()
            ))
        };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = format!("{}\n", auth::hex(&hash));
        macula_core::fsutil::write_atomic(&self.file, text.as_bytes(), 0o600).map_err(fail)?;
        self.auth.locked().set_token(hash);
        tracing::info!(target: "macula::dashboard", "dashboard token issued; earlier sessions ended");
        Ok(token)
    }
}

/// What the dashboard's pages show and its actions drive.
pub struct Page {
    pub sources: Arc<crate::metrics::Sources>,
    pub info: NodeInfo,
    pub node: Arc<crate::node::NodeGlue>,
    pub started: Instant,
    pub site: String,
    pub power: String,
    pub glue: DashboardGlue,
    pub open_on_loopback: bool,
    /// The members' reports (`Mesh1.Reports`) and views (`node.view`).
    pub reports: Asked,
    pub views: Asked,
}

/// A figure asked of every alive member over RPC (up to its deadline): asked again in the
/// background when older than `REPORTS_EVERY`, so a push never waits for it; clients share the
/// answer (null before the first).
#[derive(Clone, Default)]
pub struct Asked(Arc<Mutex<(Option<Instant>, Value)>>);

impl Asked {
    fn get<F>(&self, ask: impl FnOnce() -> F) -> Value
    where
        F: std::future::Future<Output = Value> + Send + 'static,
    {
        let mut cached = self.0.locked();
        if cached.0.is_none_or(|at| at.elapsed() >= REPORTS_EVERY) {
            cached.0 = Some(Instant::now());
            let (cache, asking) = (self.0.clone(), ask());
            tokio::spawn(async move {
                let v = asking.await;
                cache.locked().1 = v;
            });
        }
        cached.1.clone()
    }
}

impl Page {
    /// The node's state as the page shows it: the D-Bus types, serialised with their D-Bus keys
    /// (`docs/dbus.md`).
    async fn state(&self) -> Value {
        macula_web::plain(self.gather().await)
    }

    /// Every member's report of itself (uptime, booted slot, last update result), as
    /// `maculactl realm status` asks them (`Mesh1.Reports`).
    fn reports(&self) -> Value {
        let mesh = self.sources.mesh.clone();
        self.reports.get(|| async move {
            let rows = mesh.reports().await.unwrap_or_default();
            rows.into_iter()
                .map(|(node_id, uptime_s, slot, last_update, known)| {
                    json!({
                        "node_id": node_id,
                        "uptime_s": uptime_s,
                        "slot": slot,
                        "last_update": known.then_some(last_update),
                    })
                })
                .collect()
        })
    }

    /// Whom each member sees (RPC `node.view`): the map of who sees whom.
    fn views(&self) -> Value {
        let mesh = self.sources.mesh.clone();
        self.views.get(|| async move {
            let text = |ids: Vec<[u8; 32]>| -> Vec<String> {
                ids.into_iter()
                    .filter_map(|b| macula_core::NodeId::from_bytes(b).ok())
                    .map(|id| id.to_string())
                    .collect()
            };
            mesh.views()
                .await
                .into_iter()
                .map(|(id, v)| {
                    json!({
                        "node_id": id.to_string(),
                        "alive": text(v.alive),
                        "suspect": text(v.suspect),
                        "down": text(v.down),
                    })
                })
                .collect()
        })
    }

    async fn gather(&self) -> Value {
        let s = &self.sources;
        let overlay = match (s.overlay.status().await, s.overlay.peers().await) {
            (Ok(status), Ok(peers)) => json!({ "status": status, "peers": peers }),
            _ => Value::Null,
        };
        let proofs = s.proofs.status().map(|status| {
            let history = s.proofs.history("");
            let from = history.len().saturating_sub(VERDICTS_SHOWN);
            json!({
                "status": status,
                "ledger": s.proofs.balances(),
                "quarantined": s.proofs.quarantined(),
                "history": history[from..].iter().rev().collect::<Vec<_>>(),
            })
        });
        json!({
            "node": self.info.status(&*self.node, self.started.elapsed().as_secs()),
            "site": self.site,
            "power": self.power,
            "peers": s.mesh.peers(),
            "resources": self.node.peer_resources(),
            "reports": self.reports(),
            "views": self.views(),
            "storage": { "stats": s.storage.stats(), "repair": s.storage.repair_queue() },
            "s3": s.s3.status(),
            "firewall": s.firewall.status().await.ok(),
            "overlay": overlay,
            "uplinks": s.uplinks.links().await.ok(),
            "update": s.update.status().await.ok(),
            "rollout": UpdateControl::rollout(&*s.update).ok().filter(|r| !r.id.is_empty()),
            "proofs": proofs,
        })
    }

    /// Carries out an admin action through the backend its D-Bus method calls.
    async fn act(&self, action: Action) -> Result<Value, Error> {
        let s = &self.sources;
        Ok(match action {
            Action::Revoke { node_id } => {
                s.mesh.revoke(node_id.clone())?;
                json!({ "message": format!("{node_id} revoked; the realm learns it now") })
            }
            Action::ConfirmFirewall => {
                let generation = s.firewall.confirm().await?;
                json!({ "message": format!("firewall generation {generation} confirmed") })
            }
            Action::Update { path } => {
                s.update.check_install(&path).await?;
                let install = s.update.install(path.clone(), Arc::new(LogProgress));
                let message = format!("installing {path}; the operation shows here");
                tokio::spawn(async move {
                    match install.await {
                        Ok(()) => tracing::info!(target: "macula::dashboard", %path,
                            "update installed; reboot into the other slot to run it"),
                        Err(e) => tracing::warn!(target: "macula::dashboard", %path,
                            error = %e, "update failed"),
                    }
                });
                json!({ "message": message })
            }
            Action::Invite {
                name,
                role,
                valid_days,
                expires_s,
            } => {
                let code = s.mesh.invite(name.clone(), role, valid_days, expires_s)?;
                json!({
                    "message": format!("join code for {name}: run `maculactl realm join --code CODE` on it"),
                    "code": code,
                })
            }
        })
    }
}

/// Update progress from the dashboard goes to the log (the page shows RAUC's operation).
struct LogProgress;

impl ProgressSink for LogProgress {
    fn progress(&self, percent: i32, message: String) -> BoxFuture<'_, ()> {
        tracing::info!(target: "macula::dashboard", percent, %message, "update progress");
        Box::pin(async {})
    }
}

/// The worker `dashboard.http`: serves the dashboard on `listen` until stopped.
pub async fn serve(ctx: WorkerCtx, listen: SocketAddr, page: Arc<Page>) -> WorkerResult {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}; change [dashboard] listen"))?;
    tracing::info!(target: "macula::dashboard", %listen, "serving the dashboard");
    while let Some(accepted) = ctx.wait(listener.accept()).await {
        match accepted {
            Ok((sock, peer)) => {
                let page = page.clone();
                tokio::spawn(async move { connection(sock, peer, &page).await });
            }
            Err(e) => ctx.error(format!("accept: {e}")),
        }
    }
    Ok(())
}

/// A response: status, extra headers, content type and body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    ctype: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            ctype: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, json!({ "error": message.to_string() }))
    }
}

fn refused(r: Refused) -> Reply {
    Reply::error(if r == Refused::Csrf { 403 } else { 401 }, r)
}

fn bus_error(e: Error) -> Reply {
    match e {
        Error::InvalidArgument(m) => Reply::error(400, m),
        Error::NotFound(m) => Reply::error(404, m),
        Error::PermissionDenied(m) | Error::RemoteRefused(m) => Reply::error(403, m),
        Error::Unavailable(m) => Reply::error(503, m),
        Error::Busy(m) => Reply::error(409, m),
        Error::Failed(m) => Reply::error(500, m),
        Error::ZBus(e) => Reply::error(500, e),
    }
}

/// One client: requests (keep-alive) until it closes, sends a bad request, or asks for events.
async fn connection(mut sock: TcpStream, peer: SocketAddr, page: &Page) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head = match crate::s3::read_head(&mut sock, &mut buf).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let _ = respond(&mut sock, Reply::error(400, e), false).await;
                return;
            }
        };
        if head.chunked {
            let r = Reply::error(411, "send the body with a Content-Length");
            let _ = respond(&mut sock, r, false).await;
            return;
        }
        if head.content_length > MAX_BODY {
            let r = Reply::error(413, format!("the body is over {MAX_BODY} bytes"));
            let _ = respond(&mut sock, r, false).await;
            return;
        }
        let Some(body) = read_body(&mut sock, &mut buf, &head).await else {
            return;
        };
        if head.method == "GET" && head.raw_path == "/api/events" {
            let open = viewer(page, &head, peer);
            match open {
                Ok(()) => events(&mut sock, page, &head).await,
                Err(r) => {
                    let _ = respond(&mut sock, refused(r), false).await;
                }
            }
            return;
        }
        let reply = handle(page, &head, &body, peer).await;
        if respond(&mut sock, reply, head.keep_alive).await.is_err() || !head.keep_alive {
            return;
        }
    }
}

/// The body of `head` (bounded by `MAX_BODY` before): what `buf` holds of it, then the socket.
async fn read_body(sock: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> Option<Vec<u8>> {
    let len = head.content_length as usize;
    if head.expect_continue && len > 0 {
        sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf.drain(..len).collect())
}

/// May this request see the read-only pages: a session, or `open_on_loopback` and a loopback
/// client.
fn viewer(page: &Page, head: &Head, peer: SocketAddr) -> Result<(), Refused> {
    if page.open_on_loopback && peer.ip().is_loopback() {
        return Ok(());
    }
    page.glue
        .auth
        .locked()
        .session(head.header("cookie"), now_s())
        .map(|_| ())
}

/// A POST from a page of another origin (its `Origin` names another host) is refused.
fn same_origin(head: &Head) -> bool {
    match (head.header("origin"), head.header("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    }
}

async fn handle(page: &Page, head: &Head, body: &[u8], peer: SocketAddr) -> Reply {
    let path = head.raw_path.as_str();
    if head.method == "GET"
        && let Some(asset) = assets::asset(path)
    {
        let mut headers = vec![
            ("Content-Security-Policy", assets::CSP.to_owned()),
            ("X-Content-Type-Options", "nosniff".to_owned()),
            ("Cache-Control", "no-cache".to_owned()),
            ("Vary", "Accept-Encoding".to_owned()),
        ];
        // Compressed at build time: served as they are to browsers that take gzip.
        let body = if assets::accepts_gzip(head.header("accept-encoding")) {
            headers.push(("Content-Encoding", "gzip".to_owned()));
            asset.gzip
        } else {
            asset.body.as_bytes()
        };
        return Reply {
            status: 200,
            headers,
            ctype: asset.content_type,
            body: body.to_vec(),
        };
    }
    if head.method == "POST" && !same_origin(head) {
        return Reply::error(403, "cross-origin request refused");
    }
    let now = now_s();
    match (head.method.as_str(), path) {
        ("GET", "/api/session") => {
            let session = page.glue.auth.locked().session(head.header("cookie"), now);
            let open = page.open_on_loopback && peer.ip().is_loopback();
            Reply::json(
                200,
                json!({
                    "logged_in": session.is_ok(),
                    "csrf": session.ok().map(|s| s.csrf),
                    "open": open,
                }),
            )
        }
        ("GET", "/api/state") => match viewer(page, head, peer) {
            Ok(()) => Reply::json(200, page.state().await),
            Err(r) => refused(r),
        },
        ("POST", "/api/login") => {
            let token = match action::login_token(body) {
                Ok(t) => t,
                Err(e) => return Reply::error(400, e),
            };
            match page.glue.auth.locked().login(&token, now) {
                Ok(id) => {
                    tracing::info!(target: "macula::dashboard", %peer, "dashboard login");
                    let mut r = Reply::json(200, json!({ "message": "logged in" }));
                    r.headers.push(("Set-Cookie", auth::set_cookie(&id)));
                    r
                }
                Err(e) => {
                    tracing::warn!(target: "macula::dashboard", %peer, "dashboard login refused: {e}");
                    refused(e)
                }
            }
        }
        ("POST", "/api/logout") => {
            page.glue.auth.locked().logout(head.header("cookie"));
            let mut r = Reply::json(200, json!({ "message": "logged out" }));
            r.headers.push(("Set-Cookie", auth::clear_cookie()));
            r
        }
        ("POST", _) => {
            let action = match Action::parse(path, body) {
                Ok(Some(a)) => a,
                Ok(None) => return Reply::error(404, format!("no action at {path}")),
                Err(e) => return Reply::error(400, e),
            };
            let admitted = page.glue.auth.locked().admin(
                head.header("cookie"),
                head.header("x-csrf-token"),
                now,
            );
            if let Err(r) = admitted {
                return refused(r);
            }
            let name = action.name();
            tracing::info!(target: "macula::dashboard", %peer, action = name, "dashboard action");
            match page.act(action).await {
                Ok(v) => Reply::json(200, v),
                Err(e) => bus_error(e),
            }
        }
        (_, "/api/state" | "/api/session" | "/api/events") => {
            Reply::error(405, format!("{path} takes GET"))
        }
        _ if assets::asset(path).is_some() => Reply::error(405, format!("{path} takes GET")),
        _ => Reply::error(404, format!("nothing at {path}; the dashboard is at /")),
    }
}

/// `GET /api/events`: the state every `PUSH_INTERVAL` until the client leaves or its session
/// ends (a new token, logout, expiry).
async fn events(sock: &mut TcpStream, page: &Page, head: &Head) {
    let start = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                 X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
    if sock.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    let peer = match sock.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let mut tick = tokio::time::interval(PUSH_INTERVAL);
    loop {
        tick.tick().await;
        if viewer(page, head, peer).is_err() {
            return;
        }
        let event = format!("data: {}\n\n", page.state().await);
        if sock.write_all(event.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn respond(sock: &mut TcpStream, r: Reply, keep: bool) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type", r.ctype.to_owned())];
    headers.extend(r.headers);
    if r.ctype == "application/json" {
        headers.push(("Cache-Control", "no-store".to_owned()));
    }
    let mut out = http::response_head(r.status, &headers, r.body.len() as u64, keep);
    out.extend_from_slice(&r.body);
    sock.write_all(&out).await
}
