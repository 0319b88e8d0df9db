//! `maculactl peers`, `maculactl pub`, `maculactl sub`, `maculactl ping`: realm membership,
//! pub/sub and an RPC round trip.

use clap::Args;
use futures_lite::StreamExt;
use macula_bus::mesh::Mesh1Proxy;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Show every member's resource report (uptime, CPU, memory, disk, traffic) instead of
    /// membership (`[proofs] enabled`).
    #[arg(long)]
    resources: bool,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// Realm topic, e.g. `site/alerts`.
    topic: String,
    /// Message text (sent as UTF-8 bytes).
    message: String,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// Realm topic to follow.
    topic: String,
    /// Exit after this many publications (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn peers(conn: &zbus::Connection, args: &PeersArgs) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    let peers = proxy.peers().await?;
    if args.resources {
        return peer_resources(conn, &peers, args.json).await;
    }
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> =
        peers.iter().map(super::map_to_json).collect();
    let t = |r: &serde_json::Map<String, serde_json::Value>, k: &str| {
        r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    rows.sort_by_key(|r| (t(r, "name"), t(r, "node_id")));
    if args.json {
        return super::print_json(&rows);
    }
    if !proxy.enabled().await? {
        println!("mesh is off: this node has no membership certificate (see docs/realms.md)");
        return Ok(());
    }
    println!(
        "{:<16} {:<8} {:<5} {:<12} {:<10} {:>10} {:<8} {:<22} NODE ID",
        "NAME", "STATE", "ROLE", "SITE", "POWER", "FREE", "VERSION", "ADDRESS"
    );
    for r in &rows {
        let addr = r
            .get("addrs")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .unwrap_or("-")
            .to_string();
        let id = t(r, "node_id");
        let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let dash = |s: String| if s.is_empty() { "-".into() } else { s };
        println!(
            "{:<16} {:<8} {:<5} {:<12} {:<10} {:>10} {:<8} {:<22} {}",
            t(r, "name"),
            t(r, "state"),
            t(r, "role"),
            dash(t(r, "site")),
            dash(t(r, "power")),
            free_space(n("storage_free"), n("storage_total")),
            t(r, "version"),
            addr,
            &id[..id.len().min(8)]
        );
    }
    Ok(())
}

/// `peers --resources`: every member's last report, named as `peers` names them.
async fn peer_resources(
    conn: &zbus::Connection,
    peers: &[std::collections::HashMap<String, zbus::zvariant::OwnedValue>],
    json: bool,
) -> Result<(), CliError> {
    use super::node::{human_bytes, human_duration, resources_json};
    let node = macula_bus::node::Node1Proxy::new(conn).await?;
    let list = node.peer_resources().await?;
    if json {
        let rows: Vec<serde_json::Value> = list.iter().map(resources_json).collect();
        return super::print_json(&rows);
    }
    if list.is_empty() {
        println!(
            "no resource reports: the monitor runs with `[proofs] enabled = true` \
             (docs/configuration.md)"
        );
        return Ok(());
    }
    let own_name = node.name().await?;
    let own_id = node.node_id().await?;
    let name_of = |id: &str| {
        if id == own_id {
            return own_name.clone();
        }
        peers
            .iter()
            .find(|p| super::get_str(p, "node_id") == id)
            .map(|p| super::get_str(p, "name"))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "{:<16} {:>9} {:>5} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} NODE ID",
        "NAME",
        "UPTIME",
        "P/Q",
        "CPU",
        "LOAD",
        "MEM AVAIL",
        "DISK sR",
        "DISK sT",
        "RX/s",
        "TX/s",
        "AGE"
    );
    for r in &list {
        println!(
            "{:<16} {:>9} {:>5} {:>5.1}% {:>6.2} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6.1}s {}",
            name_of(&r.node_id),
            human_duration(r.uptime_s),
            format!("{}/{}", r.processors, r.cores_per_processor),
            f64::from(r.cpu_busy_permille) / 10.0,
            f64::from(r.load_1_milli) / 1000.0,
            human_bytes(r.mem_available),
            human_bytes(r.disk_reported),
            human_bytes(r.disk_taken),
            human_bytes(r.rx_bytes_per_s),
            human_bytes(r.tx_bytes_per_s),
            r.age_ms as f64 / 1000.0,
            &r.node_id[..r.node_id.len().min(8)]
        );
    }
    Ok(())
}

/// Free storage as a person reads it (binary units, one decimal); `-` for a node offering none.
pub fn free_space(free: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    super::node::human_bytes(free)
}

#[derive(Debug, Args)]
pub struct PingArgs {
    /// The member to call: its node ID or its name as `maculactl peers` shows it.
    node: String,
}

/// The node ID of member `node`: a name as `peers` shows it, else the argument is taken as a
/// node ID (checked by maculad).
async fn member_id(proxy: &Mesh1Proxy<'_>, node: &str) -> Result<String, CliError> {
    let peers = proxy.peers().await?;
    let named: Vec<String> = peers
        .iter()
        .filter(|p| {
            p.get("name")
                .and_then(|v| <&str>::try_from(v).ok())
                .is_some_and(|n| n == node)
        })
        .filter_map(|p| {
            p.get("node_id")
                .and_then(|v| String::try_from(v.clone()).ok())
        })
        .collect();
    match named.as_slice() {
        [] => Ok(node.to_owned()),
        [one] => Ok(one.clone()),
        _ => Err(CliError::Other(format!(
            "several members are named `{node}`; give the node ID"
        ))),
    }
}

/// `maculactl --node NODE`: a connection on which every command's proxies reach member NODE
/// (a name or node ID) through this node's agent (`Mesh1.Remote`, docs/security.md "Remote
/// administration").
pub async fn remote(conn: &zbus::Connection, node: &str) -> Result<zbus::Connection, CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    let id = member_id(&proxy, node).await?;
    macula_bus::remote::forwarder(move |call| {
        let (proxy, id) = (proxy.clone(), id.clone());
        async move { proxy.remote(&id, &call).await }
    })
    .await
    .map_err(|e| CliError::Other(format!("cannot set up the remote connection: {e}")))
}

/// Calls the RPC procedure `mesh.ping` on a member and prints the round-trip time.
pub async fn ping(conn: &zbus::Connection, args: &PingArgs) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    let id = member_id(&proxy, &args.node).await?;
    let (name, rtt_us) = proxy.ping(&id).await?;
    println!(
        "mesh.ping answered by {name} ({}…) in {:.1} ms",
        &id[..8.min(id.len())],
        rtt_us as f64 / 1000.0
    );
    Ok(())
}

pub async fn publish(conn: &zbus::Connection, args: &PubArgs) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    let seq = proxy.publish(&args.topic, args.message.as_bytes()).await?;
    println!("published on {} (seq {seq})", args.topic);
    Ok(())
}

pub async fn subscribe(conn: &zbus::Connection, args: &SubArgs) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    // Listen before subscribing so nothing published in between is missed.
    let mut stream = proxy.receive_publication().await?;
    let acked = proxy.subscribe(&args.topic).await?;
    eprintln!("subscribed to {} ({acked} peers acknowledged)", args.topic);
    let mut seen = 0u64;
    while let Some(sig) = stream.next().await {
        let a = sig.args()?;
        if a.topic != args.topic {
            continue;
        }
        let text = String::from_utf8_lossy(&a.payload);
        if args.json {
            println!(
                "{}",
                serde_json::json!({"topic": a.topic, "publisher": a.publisher, "seq": a.seq, "message": text})
            );
        } else {
            println!(
                "{} #{} {}: {}",
                &a.publisher[..8.min(a.publisher.len())],
                a.seq,
                a.topic,
                text
            );
        }
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_space_reads_well() {
        assert_eq!(super::free_space(0, 0), "-");
        assert_eq!(super::free_space(0, 1), "0 B");
        assert_eq!(super::free_space(1023, 4096), "1023 B");
        assert_eq!(super::free_space(3 << 29, 1 << 40), "1.5 GiB");
        assert_eq!(super::free_space(5 << 40, 6 << 40), "5.0 TiB");
        assert_eq!(super::free_space(u64::MAX, u64::MAX), "16777216.0 TiB");
    }
}
