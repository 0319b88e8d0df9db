//! `GET /metrics` (`[metrics] listen`, `docs/metrics.md`): every figure is read from the
//! backends the D-Bus interfaces read (their `*Control` traits), encoded by
//! `macula_core::metrics`, and served over the S3 gateway's HTTP/1.1 head parser.

use std::net::SocketAddr;
use std::sync::Arc;

use macula_bus::firewall::FirewallControl;
use macula_bus::mesh::MeshControl;
use macula_bus::overlay::OverlayControl;
use macula_bus::proofs::ProofsControl;
use macula_bus::s3::S3Control;
use macula_bus::storage::StorageControl;
use macula_bus::update::UpdateControl;
use macula_bus::uplinks::UplinksControl;
use macula_core::metrics::{CONTENT_TYPE, Encoder, Kind, process_usage};
use macula_s3::http;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::worker::{WorkerCtx, WorkerResult};

/// The backends whose figures `/metrics` shows.
pub struct Sources {
    pub started_at: u64,
    pub mesh: crate::mesh::MeshGlue,
    pub storage: crate::storage::StorageGlue,
    pub firewall: Box<dyn FirewallControl>,
    pub overlay: Box<dyn OverlayControl>,
    pub uplinks: Box<dyn UplinksControl>,
    pub update: Arc<crate::update::UpdateGlue>,
    pub s3: crate::s3::S3Glue,
    pub proofs: Box<dyn ProofsControl>,
}

impl Sources {
    /// The page, as of now.
    async fn render(&self) -> String {
        let mut e = Encoder::new();

        let peers = self.mesh.peers();
        e.family(
            "macula_mesh_members",
            Kind::Gauge,
            "Members of the realm this node knows of (itself excluded), by membership state.",
        );
        for state in ["alive", "suspect", "down"] {
            let n = peers.iter().filter(|p| p.state == state).count() as u32;
            e.sample(&[("state", state)], n);
        }

        // The mesh's own figures, since it started (absent while it does not run).
        if let Some(stats) = self.mesh.running_node().map(|n| n.stats()) {
            let sides = [("caller", &stats.rpc_out), ("callee", &stats.rpc_in)];
            e.family(
                "macula_mesh_rpc_calls_total",
                Kind::Counter,
                "RPC calls that ended, made by this node (side caller) or served by it (callee).",
            );
            for (side, table) in sides {
                for (procedure, f) in table {
                    e.sample(&[("side", side), ("procedure", procedure)], f.calls as f64);
                }
            }
            e.family(
                "macula_mesh_rpc_errors_total",
                Kind::Counter,
                "RPC calls that ended with an error, by error code.",
            );
            for (side, table) in sides {
                for (procedure, f) in table {
                    for (code, n) in &f.errors {
                        e.sample(
                            &[("side", side), ("procedure", procedure), ("code", code)],
                            *n as f64,
                        );
                    }
                }
            }
            e.family(
                "macula_mesh_rpc_duration_seconds",
                Kind::Histogram,
                "Time from an RPC request to the end of its reply.",
            );
            for (side, table) in sides {
                for (procedure, f) in table {
                    e.histogram(&[("side", side), ("procedure", procedure)], &f.latency);
                }
            }
            e.family(
                "macula_mesh_pubsub_published_total",
                Kind::Counter,
                "Publications this node published.",
            )
            .value(stats.published as f64);
            e.family(
                "macula_mesh_pubsub_delivered_total",
                Kind::Counter,
                "Publications handed to this node's subscribers (one per subscription).",
            )
            .value(stats.delivered as f64);
            e.family(
                "macula_mesh_pubsub_dropped_total",
                Kind::Counter,
                "Publications dropped from this node's subscription queues (a subscriber behind).",
            )
            .value(stats.dropped as f64);
            e.family(
                "macula_mesh_peer_limited_total",
                Kind::Counter,
                "Times a member was held to a [mesh.limits] limit (waiting calls, messages or reads; closed connections).",
            );
            for (limit, n) in &stats.limited {
                e.sample(&[("limit", limit)], *n as f64);
            }
        }

        let st = self.storage.stats();
        e.family(
            "macula_storage_enabled",
            Kind::Gauge,
            "1 when this node stores shards ([storage] on).",
        )
        .value(u8::from(st.enabled));
        if let (Some(shards), Some(used), Some(free)) = (st.shards, st.used_bytes, st.free_bytes) {
            e.family(
                "macula_storage_shards",
                Kind::Gauge,
                "Shards held by this node.",
            )
            .value(shards as f64);
            e.family(
                "macula_storage_used_bytes",
                Kind::Gauge,
                "Bytes of shards held by this node.",
            )
            .value(used as f64);
            e.family(
                "macula_storage_free_bytes",
                Kind::Gauge,
                "Bytes this node can still take.",
            )
            .value(free as f64);
        }
        e.family(
            "macula_storage_put_bytes_total",
            Kind::Counter,
            "Object bytes stored by puts through this node.",
        )
        .value(st.put_bytes as f64);
        e.family(
            "macula_storage_get_bytes_total",
            Kind::Counter,
            "Object bytes read by gets through this node.",
        )
        .value(st.get_bytes as f64);
        let (put, get) = self.storage.latency();
        e.family(
            "macula_storage_put_duration_seconds",
            Kind::Histogram,
            "Time of the puts through this node that stored their object.",
        )
        .histogram(&[], &put);
        e.family(
            "macula_storage_get_duration_seconds",
            Kind::Histogram,
            "Time of the gets through this node that read their object.",
        )
        .histogram(&[], &get);
        let rq = self.storage.repair_queue();
        e.family(
            "macula_storage_degraded_segments",
            Kind::Gauge,
            "Segments this node holds a shard of that miss at least one shard.",
        )
        .value(rq.degraded as f64);
        e.family(
            "macula_storage_unrecoverable_segments",
            Kind::Gauge,
            "Segments with fewer than k reachable shards.",
        )
        .value(rq.unrecoverable.len() as u32);
        e.family(
            "macula_storage_repairs_total",
            Kind::Counter,
            "Shards rebuilt by this node.",
        )
        .value(rq.repaired as f64);
        e.family(
            "macula_storage_repair_failures_total",
            Kind::Counter,
            "Failed repair attempts of this node.",
        )
        .value(rq.failed as f64);

        e.family(
            "macula_firewall_up",
            Kind::Gauge,
            "1 when the firewall runs and answers ([firewall] enabled).",
        );
        match self.firewall.status().await {
            Ok(fw) => {
                e.value(1u8);
                e.family(
                    "macula_firewall_applies_total",
                    Kind::Counter,
                    "Firewall applies that changed the ruleset.",
                )
                .value(fw.applies as f64);
                e.family(
                    "macula_firewall_rollbacks_total",
                    Kind::Counter,
                    "Automatic rollbacks of unconfirmed applies.",
                )
                .value(fw.rollbacks as f64);
                e.family(
                    "macula_firewall_quarantined_addresses",
                    Kind::Gauge,
                    "Overlay addresses in the quarantine set.",
                )
                .value(fw.quarantined);
                e.family(
                    "macula_firewall_pending_confirm",
                    Kind::Gauge,
                    "1 while an apply waits for its confirm.",
                )
                .value(u8::from(fw.pending != 0));
            }
            Err(_) => {
                e.value(0u8);
            }
        }

        // Overlay off: `Overlay1.Peers()` is unavailable and these families are absent.
        if let Ok(peers) = self.overlay.peers().await {
            let name = |p: &macula_bus::overlay::OverlayPeer| {
                if p.address.is_empty() {
                    p.public_key.clone()
                } else {
                    p.address.clone()
                }
            };
            e.family(
                "macula_overlay_peer_received_bytes_total",
                Kind::Counter,
                "Bytes received from each WireGuard peer (its overlay address).",
            );
            for p in &peers {
                e.sample(&[("peer", &name(p))], p.rx_bytes as f64);
            }
            e.family(
                "macula_overlay_peer_sent_bytes_total",
                Kind::Counter,
                "Bytes sent to each WireGuard peer.",
            );
            for p in &peers {
                e.sample(&[("peer", &name(p))], p.tx_bytes as f64);
            }
            e.family(
                "macula_overlay_peer_last_handshake_timestamp_seconds",
                Kind::Gauge,
                "Last handshake with each peer, Unix time (0 = never); its age is time() - this.",
            );
            for p in &peers {
                e.sample(&[("peer", &name(p))], p.last_handshake_s as f64);
            }
        }

        // Uplinks off: `Uplinks1.Links()` fails or lists none, and these families are absent.
        if let Ok(links) = self.uplinks.links().await
            && !links.is_empty()
        {
            for (metric, help, pick) in [
                (
                    "macula_uplinks_active",
                    "1 for the uplink carrying traffic now.",
                    (|l: &macula_bus::uplinks::UplinkStatus| l.active) as fn(&_) -> bool,
                ),
                (
                    "macula_uplinks_healthy",
                    "1 when the uplink's probes get answers.",
                    |l| l.healthy,
                ),
                (
                    "macula_uplinks_carrier",
                    "1 when the uplink's interface has carrier.",
                    |l| l.carrier,
                ),
            ] {
                e.family(metric, Kind::Gauge, help);
                for l in &links {
                    e.sample(&[("uplink", &l.name)], u8::from(pick(l)));
                }
            }
            e.family(
                "macula_uplinks_rtt_seconds",
                Kind::Gauge,
                "Round trip of the uplink's last answered probe (absent before the first).",
            );
            for l in links.iter().filter(|l| l.rtt_us > 0) {
                e.sample(&[("uplink", &l.name)], l.rtt_us as f64 / 1e6);
            }
            e.family(
                "macula_uplinks_probes_sent_total",
                Kind::Counter,
                "Probes sent on each uplink.",
            );
            for l in &links {
                e.sample(&[("uplink", &l.name)], l.sent as f64);
            }
            e.family(
                "macula_uplinks_probes_received_total",
                Kind::Counter,
                "Probe answers received on each uplink.",
            );
            for l in &links {
                e.sample(&[("uplink", &l.name)], l.received as f64);
            }
        }

        e.family(
            "macula_update_rauc_up",
            Kind::Gauge,
            "1 when RAUC answers on the system bus.",
        );
        match self.update.status().await {
            Ok(u) => {
                e.value(1u8);
                e.family(
                    "macula_update_slot_info",
                    Kind::Gauge,
                    "The slot booted now, the slot booted next and the health check's state.",
                )
                .sample(
                    &[
                        ("booted", &u.booted),
                        ("primary", &u.primary),
                        ("operation", &u.operation),
                        ("health", &u.health),
                    ],
                    1u8,
                );
            }
            Err(_) => {
                e.value(0u8);
            }
        }

        let s3 = self.s3.status();
        e.family(
            "macula_s3_serving",
            Kind::Gauge,
            "1 while the S3 gateway listens ([s3] enabled).",
        )
        .value(u8::from(s3.serving));
        if s3.enabled {
            e.family(
                "macula_s3_requests_total",
                Kind::Counter,
                "S3 requests served.",
            )
            .value(s3.requests as f64);
            e.family(
                "macula_s3_errors_total",
                Kind::Counter,
                "S3 requests answered with an S3 error.",
            )
            .value(s3.errors as f64);
            e.family(
                "macula_s3_received_bytes_total",
                Kind::Counter,
                "Object bytes received (PUT bodies and parts).",
            )
            .value(s3.bytes_in as f64);
            e.family(
                "macula_s3_sent_bytes_total",
                Kind::Counter,
                "Object bytes sent (GET bodies).",
            )
            .value(s3.bytes_out as f64);
            e.family(
                "macula_s3_objects",
                Kind::Gauge,
                "Objects in this node's copy of the index.",
            )
            .value(s3.objects as f64);
        }

        if let Some(p) = self.proofs.status() {
            e.family(
                "macula_proofs_quarantined_nodes",
                Kind::Gauge,
                "Members quarantined by the realm's proofs.",
            )
            .value(p.quarantined);
            e.family(
                "macula_proofs_ledger_records",
                Kind::Gauge,
                "Records in this node's copy of the ledger.",
            )
            .value(p.records as f64);
            e.family(
                "macula_proofs_verified_total",
                Kind::Counter,
                "Proofs this node verified.",
            )
            .value(p.verified as f64);
        }

        if let Some((rss, cpu)) = process_usage() {
            e.family(
                "macula_process_resident_memory_bytes",
                Kind::Gauge,
                "Resident memory of maculad.",
            )
            .value(rss as f64);
            e.family(
                "macula_process_cpu_seconds_total",
                Kind::Counter,
                "User and system CPU time of maculad.",
            )
            .value(cpu);
        }
        e.family(
            "macula_process_start_time_seconds",
            Kind::Gauge,
            "When maculad started, Unix time.",
        )
        .value(self.started_at as f64);
        e.finish()
    }
}

/// The worker `metrics.http`: serves `/metrics` on `listen` until stopped.
pub async fn serve(ctx: WorkerCtx, listen: SocketAddr, sources: Arc<Sources>) -> WorkerResult {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}; change [metrics] listen"))?;
    tracing::info!(target: "macula::metrics", %listen, "serving /metrics");
    while let Some(accepted) = ctx.wait(listener.accept()).await {
        match accepted {
            Ok((sock, _)) => {
                let sources = sources.clone();
                tokio::spawn(async move { connection(sock, &sources).await });
            }
            Err(e) => ctx.error(format!("accept: {e}")),
        }
    }
    Ok(())
}

/// One client: requests (keep-alive) until it closes or sends what is not a bodiless request.
async fn connection(mut sock: TcpStream, sources: &Sources) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head = match crate::s3::read_head(&mut sock, &mut buf).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let _ = respond(&mut sock, 400, "text/plain", e.to_string(), false).await;
                return;
            }
        };
        // A body is never read here: the connection closes after the answer when one came.
        let keep = head.keep_alive && head.content_length == 0 && !head.chunked;
        let (status, body) = match (head.method.as_str(), head.raw_path.as_str()) {
            ("GET", "/metrics") => (200, sources.render().await),
            (_, "/metrics") => (405, "only GET /metrics\n".to_owned()),
            _ => (404, "not found: the metrics are at /metrics\n".to_owned()),
        };
        let ctype = if status == 200 {
            CONTENT_TYPE
        } else {
            "text/plain"
        };
        if respond(&mut sock, status, ctype, body, keep).await.is_err() || !keep {
            return;
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: String,
    keep: bool,
) -> std::io::Result<()> {
    let mut out = http::response_head(
        status,
        &[("Content-Type", ctype.to_owned())],
        body.len() as u64,
        keep,
    );
    out.extend_from_slice(body.as_bytes());
    sock.write_all(&out).await
}
