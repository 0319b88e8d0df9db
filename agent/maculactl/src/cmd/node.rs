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
    if args.json {
        return super::print_json(&super::map_to_json(&map));
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
    Ok(())
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
    let sources = format!(
        "{peers} {}clock{}",
        if flag("clock_hubs") { "hub " } else { "peer " },
        if peers == 1 { "" } else { "s" }
    );
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
            "{} by {}, learnt from realm ({sources})",
            if offset > 0 { "behind" } else { "ahead" },
            human(offset)
        )
    } else {
        format!("agrees with the realm ({sources})")
    };
    if stepped != 0 {
        line += &format!(
            "; set {} by {} from the realm's time",
            if stepped > 0 { "forward" } else { "back" },
            human(stepped)
        );
    }
    Some(line)
}

fn human_duration(secs: u64) -> String {
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
    }
}
