//! mwan3-style policy routing, rendered as `ip` argument lists by pure functions and applied by
//! [`apply_tables`] / [`activate`].
//!
//! Uplink `i` gets its own table `table_base + i` with a default route through it and a rule
//! `from <source> lookup <table>`, so probes (bound to the source) and replies use the right
//! uplink whatever the main table says. Failover rewrites the main table's default route.

use super::config::{UplinkConfig, UplinksConfig};
use crate::cmd::{CmdError, Host};

fn family(l: &UplinkConfig) -> &'static str {
    if l.source.is_ipv4() { "-4" } else { "-6" }
}

fn default_route(l: &UplinkConfig) -> Vec<String> {
    let mut v = vec![
        family(l).into(),
        "route".into(),
        "replace".into(),
        "default".into(),
    ];
    if let Some(gw) = l.gateway {
        v.extend(["via".into(), gw.to_string()]);
    }
    v.extend(["dev".into(), l.interface.clone()]);
    v
}

/// `ip` argument lists that install uplink `i`'s table and rule (idempotent as a whole:
/// the rule is deleted first, ignoring "not found").
pub fn table_commands(cfg: &UplinksConfig, i: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let l = &cfg.links[i];
    let table = (cfg.table_base + i as u32).to_string();
    let prio = (cfg.rule_priority_base + i as u32).to_string();
    let mut route = default_route(l);
    route.extend(["table".into(), table.clone()]);
    let rule = |verb: &str| -> Vec<String> {
        [
            family(l),
            "rule",
            verb,
            "from",
            &l.source.to_string(),
            "lookup",
            &table,
            "priority",
            &prio,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    (route, rule("del"), rule("add"))
}

/// The main-table default route through uplink `i`.
pub fn activate_command(cfg: &UplinksConfig, i: usize) -> Vec<String> {
    default_route(&cfg.links[i])
}

async fn ip(host: &Host, args: &[String]) -> Result<String, CmdError> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    host.run("ip", &a, b"").await
}

/// Installs uplink `i`'s table and rule. The kernel drops a table's routes through a link that
/// goes down, so this runs again whenever the carrier returns.
pub async fn apply_link(host: &Host, cfg: &UplinksConfig, i: usize) -> Result<(), CmdError> {
    let (route, del, add) = table_commands(cfg, i);
    ip(host, &route).await?;
    // Absent on first install: "No such file or directory" is expected.
    let _ = ip(host, &del).await;
    ip(host, &add).await.map(|_| ())
}

/// Installs every uplink's table and rule; tries all and reports the first failure (a link
/// without carrier cannot take its route yet — [`apply_link`] runs again when it comes up).
pub async fn apply_tables(host: &Host, cfg: &UplinksConfig) -> Result<(), CmdError> {
    let mut first = None;
    for i in 0..cfg.links.len() {
        if let Err(e) = apply_link(host, cfg, i).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Points the main default route at uplink `i`.
pub async fn activate(host: &Host, cfg: &UplinksConfig, i: usize) -> Result<(), CmdError> {
    ip(host, &activate_command(cfg, i)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_rules_and_default_route() {
        let cfg: UplinksConfig = toml::from_str(
            r#"
            [[links]]
            name = "eth"
            interface = "eth1"
            source = "198.51.100.1"
            gateway = "198.51.100.254"
            probe = "192.0.2.1:51821"
            [[links]]
            name = "lte"
            interface = "wwan0"
            priority = 20
            source = "2001:db8::5"
            probe = "[2001:db8::1]:51821"
            "#,
        )
        .unwrap();
        let (route, del, add) = table_commands(&cfg, 0);
        assert_eq!(
            route.join(" "),
            "-4 route replace default via 198.51.100.254 dev eth1 table 100"
        );
        assert_eq!(
            del.join(" "),
            "-4 rule del from 198.51.100.1 lookup 100 priority 1000"
        );
        assert_eq!(
            add.join(" "),
            "-4 rule add from 198.51.100.1 lookup 100 priority 1000"
        );
        let (route, _, add) = table_commands(&cfg, 1);
        assert_eq!(
            route.join(" "),
            "-6 route replace default dev wwan0 table 101"
        );
        assert_eq!(
            add.join(" "),
            "-6 rule add from 2001:db8::5 lookup 101 priority 1001"
        );
        assert_eq!(
            activate_command(&cfg, 1).join(" "),
            "-6 route replace default dev wwan0"
        );
    }
}
