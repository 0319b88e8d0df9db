//! `maculactl status`, `maculactl node status|workers|log-level`.

use clap::{Args, Subcommand};
use macula_bus::node::Node1Proxy;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show the node's status.
    Status(StatusArgs),
    /// List the agent's background workers: name, state (running, idle, stopped, failed),
    /// errors reported and the last one.
    Workers(StatusArgs),
    /// This node's resource report as the realm sees it: uptime, processors, load, CPU, memory,
    /// swap, disk offered (sR) and taken (sT), traffic per interface (`[proofs] enabled`).
    Resources(StatusArgs),
    /// Show or change the log level (error, warn, info, debug, trace). Changing needs root or
    /// the `macula` group.
    LogLevel {
        #[arg(value_parser = ["error", "warn", "info", "debug", "trace"])]
        level: Option<String>,
    },
}

pub async fn run(conn: &zbus::Connection, cmd: NodeCommand) -> Result<(), CliError> {
    match cmd {
        NodeCommand::Status(args) => status(conn, &args).await,
        NodeCommand::Workers(args) => workers(conn, &args).await,
        NodeCommand::Resources(args) => resources(conn, &args).await,
        NodeCommand::LogLevel { level } => {
            let proxy = Node1Proxy::new(conn).await?;
            match level {
                Some(level) => {
                    proxy.set_log_level(&level).await?;
                    println!("log level set to {level}");
                }
                None => println!("{}", proxy.log_level().await?),
            }
            Ok(())
        }
    }
}

pub async fn status(conn: &zbus::Connection, args: &StatusArgs) -> Result<(), CliError> {
    let proxy = Node1Proxy::new(conn).await?;
    let map = proxy.status().await?;
    // The membership certificate, while the mesh runs.
    let cert = macula_bus::mesh::Mesh1Proxy::new(conn)
        .await?
        .certificate()
        .await
        .ok();
    if args.json {
        let mut obj = super::map_to_json(&map);
        if let Some((realm, expires, renew_at, renewed_at, error)) = &cert {
            obj.insert(
                "certificate".into(),
                serde_json::json!({
                    "realm": realm,
                    "expires": expires,
                    "renew_at": renew_at,
                    "renewed_at": renewed_at,
                    "renew_error": error,
                }),
            );
        }
        return super::print_json(&obj);
    }
    let s = |k: &str| super::get_str(&map, k);
    let uptime = map
        .get("uptime_s")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    println!("Macula node {} ({})", s("name"), s("node_id_short"));
    println!("  Node ID    {}", s("node_id"));
    println!("  Role       {}", s("role"));
    println!("  Version    {}", s("version"));
    println!("  Uptime     {}", human_duration(uptime));
    println!("  Log level  {}", s("log_level"));
    if let Some(line) = clock_line(&map) {
        println!("  Clock      {line}");
    }
    match &cert {
        Some(c) => println!("  Realm cert {}", cert_line(c, now_unix())),
        None => println!("  Realm cert none (the mesh is off)"),
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `maculactl status`'s certificate line from `Mesh1.Certificate()`, e.g. `realm 442ou3bl,
/// expires in 90d 0h (renewed automatically from in 60d 0h)`.
fn cert_line(c: &(String, u64, u64, u64, String), now: u64) -> String {
    let (realm, expires, renew_at, _, error) = c;
    let when = |t: u64| {
        if t > now {
            format!("in {}", human_duration(t - now))
        } else {
            format!("{} ago", human_duration(now - t))
        }
    };
    let realm_short: String = realm.chars().take(8).collect();
    let mut line = if *expires <= now {
        format!("realm {realm_short}, EXPIRED {}", when(*expires))
    } else if *renew_at > now {
        format!(
            "realm {realm_short}, expires {} (renewed automatically from {})",
            when(*expires),
            when(*renew_at)
        )
    } else {
        format!(
            "realm {realm_short}, expires {} (renewal due)",
            when(*expires)
        )
    };
    if !error.is_empty() {
        line.push_str(&format!("; last renewal failed: {error}"));
    }
    line
}

pub async fn workers(conn: &zbus::Connection, args: &StatusArgs) -> Result<(), CliError> {
    let list = Node1Proxy::new(conn).await?.workers().await?;
    if args.json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.name,
                    "state": w.state.as_str(),
                    "errors": w.errors,
                    "last_error": w.last_error,
                })
            })
            .collect();
        return super::print_json(&rows);
    }
    let width = list.iter().map(|w| w.name.len()).max().unwrap_or(0).max(6);
    println!(
        "{:width$}  {:8}  {:>6}  LAST ERROR",
        "WORKER", "STATE", "ERRORS"
    );
    for w in &list {
        println!(
            "{:width$}  {:8}  {:>6}  {}",
            w.name,
            w.state.as_str(),
            w.errors,
            if w.last_error.is_empty() {
                "-"
            } else {
                &w.last_error
            }
        );
    }
    Ok(())
}

pub async fn resources(conn: &zbus::Connection, args: &StatusArgs) -> Result<(), CliError> {
    let r = Node1Proxy::new(conn).await?.resources().await?;
    if args.json {
        return super::print_json(&resources_json(&r));
    }
    if r.seq == 0 {
        println!(
            "no resource report yet: the monitor runs with `[proofs] enabled = true` \
             (docs/configuration.md)"
        );
        return Ok(());
    }
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            "-".to_string()
        } else {
            format!("{:.1} %", part as f64 * 100.0 / whole as f64)
        }
    };
    println!(
        "Resources of {} (report {}, {} ms old)",
        r.node_id, r.seq, r.age_ms
    );
    println!("  Uptime      {}", human_duration(r.uptime_s));
    println!(
        "  Processors  P = {}, Q = {} cores per processor",
        r.processors, r.cores_per_processor
    );
    println!(
        "  Load        {:.2} {:.2} {:.2}",
        f64::from(r.load_1_milli) / 1000.0,
        f64::from(r.load_5_milli) / 1000.0,
        f64::from(r.load_15_milli) / 1000.0
    );
    println!(
        "  CPU busy    {:.1} %",
        f64::from(r.cpu_busy_permille) / 10.0
    );
    println!(
        "  Memory      {} available of {}",
        human_bytes(r.mem_available),
        human_bytes(r.mem_total)
    );
    println!(
        "  Swap        {} used of {}",
        human_bytes(r.swap_used),
        human_bytes(r.swap_total)
    );
    println!(
        "  Disk        {} taken (sT) of {} offered (sR), {}",
        human_bytes(r.disk_taken),
        human_bytes(r.disk_reported),
        pct(r.disk_taken, r.disk_reported)
    );
    for i in &r.interfaces {
        println!(
            "  {:<11} rx {}/s tx {}/s (total rx {} tx {})",
            i.name,
            human_bytes(i.rx_bytes_per_s),
            human_bytes(i.tx_bytes_per_s),
            human_bytes(i.rx_bytes),
            human_bytes(i.tx_bytes)
        );
    }
    Ok(())
}

/// A resource report as JSON (the D-Bus keys).
pub fn resources_json(r: &macula_bus::node::Resources) -> serde_json::Value {
    serde_json::json!({
        "node_id": r.node_id,
        "seq": r.seq,
        "age_ms": r.age_ms,
        "uptime_s": r.uptime_s,
        "processors": r.processors,
        "cores_per_processor": r.cores_per_processor,
        "load_1_milli": r.load_1_milli,
        "load_5_milli": r.load_5_milli,
        "load_15_milli": r.load_15_milli,
        "cpu_busy_permille": r.cpu_busy_permille,
        "mem_total": r.mem_total,
        "mem_available": r.mem_available,
        "swap_total": r.swap_total,
        "swap_used": r.swap_used,
        "disk_reported": r.disk_reported,
        "disk_taken": r.disk_taken,
        "rx_bytes_per_s": r.rx_bytes_per_s,
        "tx_bytes_per_s": r.tx_bytes_per_s,
        "interfaces": r.interfaces.iter().map(|i| serde_json::json!({
            "name": i.name,
            "rx_bytes": i.rx_bytes,
            "tx_bytes": i.tx_bytes,
            "rx_bytes_per_s": i.rx_bytes_per_s,
            "tx_bytes_per_s": i.tx_bytes_per_s,
        })).collect::<Vec<_>>(),
    })
}

/// Bytes as a person reads them (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// What the realm said about this node's clock: `behind by 3h 0m, learnt from realm (2 hub
/// clocks)`; `None` while nothing is known.
fn clock_line(
    map: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> Option<String> {
    let int = |k: &str| map.get(k).and_then(|v| i64::try_from(v).ok());
    let flag = |k: &str| {
        map.get(k)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    let offset = int("clock_offset_ms")?;
    let peers = map
        .get("clock_peers")
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let ntp = flag("clock_ntp");
    let plural = if peers == 1 { "" } else { "s" };
    let sources = if ntp {
        format!("{peers} NTP server{plural}")
    } else {
        let kind = if flag("clock_hubs") { "hub" } else { "peer" };
        format!("{peers} {kind} clock{plural}")
    };
    let whose = if ntp { "NTP" } else { "the realm" };
    let human = |ms: i64| {
        let ms = ms.unsigned_abs();
        if ms < 60_000 {
            format!("{}.{} s", ms / 1000, ms % 1000 / 100)
        } else {
            human_duration(ms / 1000)
        }
    };
    let stepped = int("clock_stepped_ms").unwrap_or(0);
    let mut line = if flag("clock_wrong") {
        format!(
            "{} by {}, learnt from {} ({sources})",
            if offset > 0 { "behind" } else { "ahead" },
            human(offset),
            if ntp { "NTP" } else { "realm" }
        )
    } else {
        format!("agrees with {whose} ({sources})")
    };
    if stepped != 0 {
        line += &format!(
            "; set {} by {} from {whose}'s time",
            if stepped > 0 { "forward" } else { "back" },
            human(stepped)
        );
    }
    Some(line)
}

pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_certificate_line_says_when_it_expires_and_renews() {
        use super::cert_line;
        let realm = "442ou3blmjl544rvlzdsvic2jreh422ghqbj5uyg34xqdnldnnma".to_string();
        let day = 86_400;
        let c = (realm.clone(), 100 * day, 70 * day, 0, String::new());
        assert_eq!(
            cert_line(&c, 10 * day),
            "realm 442ou3bl, expires in 90d 0h (renewed automatically from in 60d 0h)"
        );
        let c = (
            realm.clone(),
            100 * day,
            70 * day,
            0,
            "no member is alive".to_string(),
        );
        assert_eq!(
            cert_line(&c, 80 * day),
            "realm 442ou3bl, expires in 20d 0h (renewal due); last renewal failed: no member is alive"
        );
        let c = (realm, 100 * day, 70 * day, 0, String::new());
        assert_eq!(
            cert_line(&c, 101 * day),
            "realm 442ou3bl, EXPIRED 1d 0h ago"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(super::human_duration(5), "5s");
        assert_eq!(super::human_duration(65), "1m 5s");
        assert_eq!(super::human_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(super::human_duration(2 * 86400 + 3600), "2d 1h");
    }

    #[test]
    fn the_clock_line_says_what_the_realm_said() {
        use zbus::zvariant::{OwnedValue, Value};
        let map = |kv: &[(&str, Value<'_>)]| -> std::collections::HashMap<String, OwnedValue> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), v.try_to_owned().unwrap()))
                .collect()
        };
        assert_eq!(super::clock_line(&map(&[])), None);
        let behind = map(&[
            ("clock_offset_ms", Value::from(3 * 3_600_000i64 + 5)),
            ("clock_wrong", Value::from(true)),
            ("clock_peers", Value::from(2u32)),
            ("clock_hubs", Value::from(false)),
            ("clock_stepped_ms", Value::from(0i64)),
        ]);
        assert_eq!(
            super::clock_line(&behind).unwrap(),
            "behind by 3h 0m, learnt from realm (2 peer clocks)"
        );
        let stepped = map(&[
            ("clock_offset_ms", Value::from(-20i64)),
            ("clock_wrong", Value::from(false)),
            ("clock_peers", Value::from(1u32)),
            ("clock_hubs", Value::from(true)),
            ("clock_stepped_ms", Value::from(86_400_000i64 * 20_000)),
        ]);
        assert_eq!(
            super::clock_line(&stepped).unwrap(),
            "agrees with the realm (1 hub clock); set forward by 20000d 0h from the realm's time"
        );
        let ntp = map(&[
            ("clock_offset_ms", Value::from(-20i64)),
            ("clock_wrong", Value::from(false)),
            ("clock_peers", Value::from(1u32)),
            ("clock_hubs", Value::from(false)),
            ("clock_ntp", Value::from(true)),
            ("clock_stepped_ms", Value::from(3 * 3_600_000i64)),
        ]);
        assert_eq!(
            super::clock_line(&ntp).unwrap(),
            "agrees with NTP (1 NTP server); set forward by 3h 0m from NTP's time"
        );
    }
}
