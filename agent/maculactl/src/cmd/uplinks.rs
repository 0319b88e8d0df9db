//! `maculactl uplinks`: uplink health and the active uplink.

use clap::Args;
use macula_bus::uplinks::Uplinks1Proxy;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct UplinksArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(conn: &zbus::Connection, args: &UplinksArgs) -> Result<(), CliError> {
    let proxy = Uplinks1Proxy::new(conn).await?;
    let links = proxy.links().await?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        links.iter().map(super::map_to_json).collect();
    if args.json {
        return super::print_json(&rows);
    }
    println!(
        "{:<2}{:<12} {:<16} {:>8} {:<9} {:>10} {:>8} {:>8}",
        "", "UPLINK", "INTERFACE", "PRIORITY", "STATE", "RTT", "SENT", "RECV"
    );
    for r in &rows {
        let b = |k: &str| r.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let t = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let state = match (b("carrier"), b("healthy")) {
            (false, _) => "no-link",
            (true, true) => "up",
            (true, false) => "down",
        };
        let rtt = match n("rtt_us") {
            0 => "-".to_string(),
            us => format!("{:.1} ms", us as f64 / 1000.0),
        };
        println!(
            "{:<2}{:<12} {:<16} {:>8} {:<9} {:>10} {:>8} {:>8}",
            if b("active") { "*" } else { "" },
            t("name"),
            t("interface"),
            n("priority"),
            state,
            rtt,
            n("sent"),
            n("received")
        );
    }
    Ok(())
}
