//! `maculactl overlay`: the WireGuard overlay and its peers.

use std::collections::HashMap;

use clap::Args;
use macula_bus::overlay::Overlay1Proxy;
use zbus::zvariant::OwnedValue;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct OverlayArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn s(m: &HashMap<String, OwnedValue>, k: &str) -> String {
    match m.get(k) {
        Some(v) => match super::to_json(v) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        None => String::new(),
    }
}

pub async fn run(conn: &zbus::Connection, args: &OverlayArgs) -> Result<(), CliError> {
    let proxy = Overlay1Proxy::new(conn).await?;
    let status = proxy.status().await?;
    let peers = proxy.peers().await?;
    let obj = super::map_to_json;
    if args.json {
        let mut o = obj(&status);
        o.insert(
            "peer_list".into(),
            serde_json::Value::Array(peers.iter().map(|p| obj(p).into()).collect()),
        );
        return super::print_json(&o);
    }
    println!(
        "Overlay {} ({})",
        s(&status, "interface"),
        s(&status, "address")
    );
    println!("  Public key   {}", s(&status, "public_key"));
    println!("  Listen port  {}", s(&status, "listen_port"));
    println!();
    println!(
        "{:<40} {:<24} {:<12} {:>12} {:>12}  MODE",
        "PEER ADDRESS", "ENDPOINT", "HANDSHAKE", "RX", "TX"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for p in &peers {
        let hs = p
            .get("last_handshake_s")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        let hs = if hs == 0 {
            "never".to_string()
        } else {
            format!("{} s ago", now.saturating_sub(hs))
        };
        let endpoint = match s(p, "endpoint") {
            e if e.is_empty() => "-".to_string(),
            e => e,
        };
        println!(
            "{:<40} {:<24} {:<12} {:>12} {:>12}  {}",
            s(p, "address"),
            endpoint,
            hs,
            s(p, "rx_bytes"),
            s(p, "tx_bytes"),
            if s(p, "redundant") == "true" {
                "redundant"
            } else {
                "single"
            }
        );
    }
    Ok(())
}
