//! `maculactl status`, `maculactl node status|log-level`.

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
    Ok(())
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
}
