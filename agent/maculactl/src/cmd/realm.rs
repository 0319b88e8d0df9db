//! `maculactl realm create|admit|join|invite|status|revoke|keygen`: realm membership certificates
//! (docs/realms.md). `keygen` and `admit --realm DIR` run without an agent, with a realm key held
//! in a directory on the admin machine.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use macula_bus::mesh::Mesh1Proxy;
use macula_core::NodeKey;
use macula_core::identity::{IdentityError, KEY_FILE};
use macula_mesh::realm::{CertBody, RealmKey};
use macula_mesh::transport::unix_now;

use crate::exit::{CliError, INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE};

#[derive(Debug, Subcommand)]
pub enum RealmCommand {
    /// Create a realm with this node as its first member (the realm key stays on this node).
    Create {
        /// This node's name in its own certificate (default: the short node ID).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Issue a membership certificate for a node (run on the node holding the realm key).
    Admit {
        /// The node ID to admit (`maculactl status` on that node shows it).
        node_id: String,
        /// Name of the node in the realm.
        #[arg(long)]
        name: String,
        /// `edge` or `hub`.
        #[arg(long, default_value = "edge")]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Write the certificate to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Grant the admin role: the node may run commands on other members (`maculactl
        /// --node`). Give it only to nodes that administer the realm.
        #[arg(long)]
        admin: bool,
        /// Issue it here with the realm key in this directory (`realm keygen`), without an agent.
        #[arg(long)]
        realm: Option<PathBuf>,
    },
    /// Revoke a node from the realm (run on the node holding the realm key); every member
    /// learns it and cuts the node off.
    Revoke {
        /// The node ID to revoke.
        node_id: String,
    },
    /// Install this node's membership certificate and start the mesh: from a certificate file,
    /// or with a join code (`realm invite`) redeemed at the node that issued it.
    Join {
        /// Certificate file (`macula-membership-cert v1`).
        #[arg(required_unless_present = "code", conflicts_with = "code")]
        cert: Option<PathBuf>,
        /// A one-time join code (`macula-join-…`) from `maculactl realm invite`.
        #[arg(long)]
        code: Option<String>,
    },
    /// Make a one-time join code for a new node (run on a node holding the realm key, with its
    /// mesh running): the new node runs `realm join --code CODE` or finds the code in its boot
    /// partition's `macula/join.code`, and is admitted without any other file.
    Invite {
        /// Name of the new node in the realm.
        #[arg(long)]
        name: String,
        /// `edge` or `hub`.
        #[arg(long, default_value = "edge")]
        role: String,
        /// Validity of its certificate in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// How long the code may be used: `90s`, `30m`, `1h`, `7d` (at most 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        expires: u64,
        /// Print the code only, without a QR code (one is drawn when the output is a terminal).
        #[arg(long)]
        no_qr: bool,
    },
    /// Every member in one table: state, role, version, slot, uptime, free storage, last update
    /// result (what this node knows of each; see docs/realms.md "Realm status" for the sources).
    Status {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a realm key in DIR on this (admin) machine, without an agent: `card provision
    /// --realm DIR` and `realm admit --realm DIR` issue certificates with it. Keep DIR secret.
    Keygen {
        /// Directory for the key (`DIR/node.key`, 0600; DIR is created 0700).
        dir: PathBuf,
    },
}

impl RealmCommand {
    /// Whether the command runs without an agent (no bus connection).
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            RealmCommand::Keygen { .. } | RealmCommand::Admit { realm: Some(_), .. }
        )
    }
}

/// The realm key in `dir` (`dir/node.key`): a directory made by `realm keygen`, or the
/// `realm/` directory of the node that ran `realm create`.
pub fn load_realm_key(dir: &Path) -> Result<RealmKey, CliError> {
    if dir.join("realm.cert").exists() {
        // A node's state directory: its node.key is that node's identity, not a realm key.
        return Err(CliError::Local(
            INVALID_ARGUMENT,
            format!(
                "{} is a node's state directory (it holds realm.cert): its {KEY_FILE} is that \
                 node's identity, not a realm key. Give the realm key's directory: the one \
                 `maculactl realm keygen` made, or {}",
                dir.display(),
                dir.join("realm").display()
            ),
        ));
    }
    let path = dir.join(KEY_FILE);
    let key = NodeKey::load(&path).map_err(|e| match e {
        IdentityError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::Local(
                NOT_FOUND,
                format!(
                    "no realm key in {} ({} is missing): create one with `maculactl realm \
                     keygen {}`, or give the `realm/` directory of the node that ran \
                     `maculactl realm create` (/data/macula/realm on a Macula node)",
                    dir.display(),
                    path.display(),
                    dir.display()
                ),
            )
        }
        e => CliError::Local(INVALID_ARGUMENT, format!("realm key: {e}")),
    })?;
    Ok(RealmKey::from_node_key(key))
}

/// `realm keygen DIR` and `realm admit --realm DIR`.
pub fn run_offline(cmd: RealmCommand) -> Result<(), CliError> {
    match cmd {
        RealmCommand::Keygen { dir } => {
            let path = dir.join(KEY_FILE);
            if let Ok(key) = NodeKey::load(&path) {
                return Err(CliError::Local(
                    UNAVAILABLE,
                    format!(
                        "{} already holds the key of realm {}; it is kept",
                        path.display(),
                        key.node_id()
                    ),
                ));
            }
            let (key, created) = NodeKey::load_or_create(&dir)
                .map_err(|e| CliError::Other(format!("cannot create the realm key: {e}")))?;
            if !created {
                return Err(CliError::Other(format!(
                    "{} appeared meanwhile; it is kept",
                    path.display()
                )));
            }
            println!("{}", key.node_id());
            eprintln!(
                "created realm {} with its key in {}; whoever holds this file can admit nodes: \
                 keep it offline and backed up",
                key.node_id(),
                path.display()
            );
            Ok(())
        }
        RealmCommand::Admit {
            node_id,
            name,
            role,
            days,
            output,
            admin,
            realm: Some(dir),
        } => {
            let node: macula_core::NodeId = node_id.parse().map_err(|e| {
                CliError::Local(INVALID_ARGUMENT, format!("node ID `{node_id}`: {e}"))
            })?;
            let role = match role.as_str() {
                "edge" => macula_core::config::Role::Edge,
                "hub" => macula_core::config::Role::Hub,
                other => {
                    return Err(CliError::Local(
                        INVALID_ARGUMENT,
                        format!("--role `{other}`: use `edge` or `hub`"),
                    ));
                }
            };
            let invalid = |e: macula_mesh::realm::CertError| {
                CliError::Local(INVALID_ARGUMENT, format!("--name `{name}`: {e}"))
            };
            macula_mesh::realm::check_name(&name).map_err(invalid)?;
            let realm = load_realm_key(&dir)?;
            let body = CertBody::admitted(realm.id(), node, role, name.clone(), days, unix_now())
                .map_err(invalid)?;
            emit_cert(&realm.issue_as(body, admin).to_text(), &name, output)
        }
        other => unreachable!("{other:?} needs the agent"),
    }
}

/// Writes an issued certificate to `output` or standard output.
fn emit_cert(cert: &str, name: &str, output: Option<PathBuf>) -> Result<(), CliError> {
    match output {
        Some(path) => {
            std::fs::write(&path, cert)
                .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "certificate for {name} written to {}; on that node run \
                 `maculactl realm join {}`",
                path.display(),
                path.display()
            );
        }
        None => print!("{cert}"),
    }
    Ok(())
}

/// One member's row of `realm status`; `None` where this node has no figure.
#[derive(Debug, serde::Serialize)]
struct MemberRow {
    node_id: String,
    name: String,
    /// `alive`/`suspect`/`down` as membership sees the member; `self` for this node.
    state: String,
    role: String,
    version: Option<String>,
    /// The slot running now (RAUC's boot name), as the member reported it.
    slot: Option<String>,
    /// System uptime as the member reported it, else from its latest resource report.
    uptime_s: Option<u64>,
    storage_free: Option<u64>,
    storage_total: Option<u64>,
    /// RAUC's last error (`""`: the last operation succeeded), as the member reported it.
    last_update: Option<String>,
}

/// `realm status`: this node (Node1, Storage1) and every peer (Mesh1.Peers: member metadata),
/// with each member's own report (Mesh1.Reports: uptime, slot, last update result; members that
/// do not answer in time keep `-`) and uptimes from the resource reports (Node1.PeerResources)
/// for members without one.
async fn realm_status(
    conn: &zbus::Connection,
    mesh: &Mesh1Proxy<'_>,
    json: bool,
) -> Result<(), CliError> {
    use super::{get_str, get_u64};
    if !mesh.enabled().await? {
        return Err(CliError::Local(
            UNAVAILABLE,
            "the mesh is off: this node is in no realm (see docs/realms.md)".into(),
        ));
    }
    let node = macula_bus::node::Node1Proxy::new(conn).await?;
    let own = node.status().await?;
    let own_id = get_str(&own, "node_id");
    let uptimes: std::collections::HashMap<String, u64> = node
        .peer_resources()
        .await?
        .into_iter()
        .map(|r| (r.node_id, r.uptime_s))
        .collect();
    // Optional subsystems: a figure they cannot give stays empty.
    let storage = match macula_bus::storage::Storage1Proxy::new(conn).await {
        Ok(p) => p.stats().await.ok(),
        Err(_) => None,
    }
    .filter(|s| s.get("enabled").and_then(|v| bool::try_from(v).ok()) == Some(true));
    // (uptime, slot, last update) by node ID; an agent without Mesh1.Reports gives none.
    let reports: std::collections::HashMap<String, (u64, Option<String>, Option<String>)> = mesh
        .reports()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, uptime, slot, last, known)| {
            let slot = (!slot.is_empty()).then_some(slot);
            (id, (uptime, slot, known.then_some(last)))
        })
        .collect();
    let uptime = |id: &str| {
        reports
            .get(id)
            .map(|r| r.0)
            .or_else(|| uptimes.get(id).copied())
    };
    let slot = |id: &str| reports.get(id).and_then(|r| r.1.clone());
    let last_update = |id: &str| reports.get(id).and_then(|r| r.2.clone());
    let mut rows = vec![MemberRow {
        node_id: own_id.clone(),
        name: get_str(&own, "name"),
        state: "self".into(),
        role: get_str(&own, "role"),
        version: Some(get_str(&own, "version")),
        slot: slot(&own_id),
        uptime_s: uptime(&own_id),
        storage_free: storage.as_ref().map(|s| get_u64(s, "free_bytes")),
        storage_total: storage.as_ref().map(|s| get_u64(s, "quota_bytes")),
        last_update: last_update(&own_id),
    }];
    let mut peers: Vec<MemberRow> = mesh
        .peers()
        .await?
        .iter()
        .map(|p| {
            let id = get_str(p, "node_id");
            let version = get_str(p, "version");
            let total = get_u64(p, "storage_total");
            MemberRow {
                uptime_s: uptime(&id),
                slot: slot(&id),
                last_update: last_update(&id),
                node_id: id,
                name: get_str(p, "name"),
                state: get_str(p, "state"),
                role: get_str(p, "role"),
                // Empty while the member's metadata is unknown.
                version: (!version.is_empty()).then_some(version),
                storage_free: (total > 0).then(|| get_u64(p, "storage_free")),
                storage_total: (total > 0).then_some(total),
            }
        })
        .collect();
    peers.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
    rows.extend(peers);
    if json {
        return super::print_json(&rows);
    }
    let dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    println!(
        "{:<16} {:<7} {:<5} {:<8} {:<6} {:>9} {:>10} {:<12} NODE ID",
        "NAME", "STATE", "ROLE", "VERSION", "SLOT", "UPTIME", "FREE", "LAST UPDATE"
    );
    for r in &rows {
        let last = r.last_update.as_ref().map(|e| {
            if e.is_empty() {
                "ok".to_string()
            } else {
                e.chars().take(40).collect()
            }
        });
        println!(
            "{:<16} {:<7} {:<5} {:<8} {:<6} {:>9} {:>10} {:<12} {}",
            r.name,
            r.state,
            r.role,
            dash(r.version.clone()),
            dash(r.slot.clone()),
            r.uptime_s
                .map_or_else(|| "-".into(), super::node::human_duration),
            match (r.storage_free, r.storage_total) {
                (Some(f), Some(t)) => super::mesh::free_space(f, t),
                _ => "-".into(),
            },
            dash(last),
            &r.node_id[..r.node_id.len().min(8)]
        );
    }
    Ok(())
}

/// `90s`, `30m`, `1h`, `7d`, or plain seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: give a number with s, m, h or d, e.g. 1h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long"))
}

fn human_duration(s: u64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Draws `code` as a QR code with half-block characters (upper case: QR's compact
/// alphanumeric mode; `realm join --code` reads either case).
fn print_qr(code: &str) {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(code.to_ascii_uppercase()) {
        Ok(qr) => println!(
            "{}",
            qr.render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build()
        ),
        Err(e) => eprintln!("no QR code: {e}"),
    }
}

pub async fn run(conn: &zbus::Connection, cmd: RealmCommand) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    match cmd {
        RealmCommand::Create { name } => {
            let realm = proxy.create_realm(&name).await?;
            println!("created realm {realm}; this node is its first member");
        }
        RealmCommand::Admit {
            node_id,
            name,
            role,
            days,
            output,
            admin,
            realm: None,
        } => {
            let cert = proxy.admit(&node_id, &name, &role, days, admin).await?;
            emit_cert(&cert, &name, output)?;
        }
        RealmCommand::Status { json } => realm_status(conn, &proxy, json).await?,
        RealmCommand::Revoke { node_id } => {
            proxy.revoke(&node_id).await?;
            println!("revoked {node_id}; the revocation is spreading through the realm");
        }
        RealmCommand::Join {
            cert: Some(cert), ..
        } => {
            let text = std::fs::read_to_string(&cert)
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", cert.display())))?;
            let realm = proxy.join(&text).await?;
            println!("joined realm {realm}; the mesh is starting");
        }
        RealmCommand::Join {
            cert: None,
            code: Some(code),
        } => {
            eprintln!("looking for the node that issued the code (up to 30 s)…");
            let realm = proxy.join_code(&code).await?;
            println!("joined realm {realm} with the join code; the mesh is starting");
        }
        RealmCommand::Join {
            cert: None,
            code: None,
        } => unreachable!("clap requires a certificate file or --code"),
        RealmCommand::Invite {
            name,
            role,
            days,
            expires,
            no_qr,
        } => {
            let code = proxy.invite(&name, &role, days, expires).await?;
            println!("{code}");
            if !no_qr && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                print_qr(&code);
            }
            eprintln!(
                "join code for `{name}` ({role}), usable once within {}: on the new node run \
                 `maculactl realm join --code <code>`, or put it in the boot partition as \
                 macula/join.code",
                human_duration(expires)
            );
        }
        offline @ (RealmCommand::Keygen { .. } | RealmCommand::Admit { realm: Some(_), .. }) => {
            unreachable!("{offline:?} runs without the agent")
        }
    }
    Ok(())
}
