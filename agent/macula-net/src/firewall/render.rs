//! The pure renderer: config (+ the current quarantine) → nft ruleset text for `table inet macula`.
//!
//! Layout of the table (golden files in `tests/golden/` show it in full):
//! - `quarantine_in` / `quarantine_fwd` (priority filter − 10): packets from a quarantined overlay
//!   address beyond its rate (`quarantine_kbytes_per_s`, burst `quarantine_burst_kbytes`, one
//!   limiter per address in the dynamic set `quarantine_rate`) are dropped, even on established
//!   connections; below it they go on to the main chains.
//! - `input` (policy drop): established/related accept; invalid drop; loopback; essential ICMPv6;
//!   the management rule (fixed, before zone dispatch); then `iifname vmap` to one chain per zone.
//! - `forward` (policy drop): established/related accept; invalid drop; zone-to-zone accepts.
//! - `zone_<z>_in`: the zone's ports; in the overlay zone also one rule per peer group on `@grp_<g>`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv6Addr;

use super::config::{FirewallConfig, Validated, ValidationError, ZoneConfig};

/// The only table the agent creates, replaces or deletes.
pub const TABLE: &str = "inet macula";

/// Renders the table definition (`table inet macula { … }`).
pub fn render(
    cfg: &FirewallConfig,
    quarantine: &BTreeSet<Ipv6Addr>,
) -> Result<String, ValidationError> {
    let v = cfg.validated()?;
    Ok(render_table(&v, quarantine))
}

/// Renders the one-transaction replace script: create-if-missing, delete, define. `nft -f` runs it
/// atomically; an error anywhere leaves the previous ruleset untouched.
pub fn render_replace(
    cfg: &FirewallConfig,
    quarantine: &BTreeSet<Ipv6Addr>,
) -> Result<String, ValidationError> {
    Ok(replace_script(&render(cfg, quarantine)?))
}

/// Wraps a table definition (rendered or listed by `nft list table`) into the replace script.
pub(crate) fn replace_script(table: &str) -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n{table}")
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    v.join(", ")
}

fn ports(p: &[u16]) -> String {
    let set: BTreeSet<u16> = p.iter().copied().collect();
    if set.len() == 1 {
        set.first().unwrap().to_string()
    } else {
        format!("{{ {} }}", list(set))
    }
}

fn ifnames(names: &[String]) -> String {
    let set: BTreeSet<&String> = names.iter().collect();
    if set.len() == 1 {
        format!("\"{}\"", set.first().unwrap())
    } else {
        format!("{{ {} }}", list(set.iter().map(|n| format!("\"{n}\""))))
    }
}

fn set_def(out: &mut String, name: &str, ty: &str, interval: bool, elems: &[String]) {
    let _ = writeln!(out, "\tset {name} {{");
    let _ = writeln!(out, "\t\ttype {ty}");
    if interval {
        let _ = writeln!(out, "\t\tflags interval");
    }
    if !elems.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
    }
    let _ = writeln!(out, "\t}}\n");
}

fn zone_rules(out: &mut String, cfg: &FirewallConfig, z: &ZoneConfig) {
    let mut udp: Vec<u16> = z.udp_ports.clone();
    if z.wireguard {
        udp.push(cfg.wireguard_port);
    }
    if z.mesh {
        udp.push(cfg.mesh_port);
    }
    if !z.tcp_ports.is_empty() {
        let _ = writeln!(out, "\t\ttcp dport {} accept", ports(&z.tcp_ports));
    }
    if !udp.is_empty() {
        let _ = writeln!(out, "\t\tudp dport {} accept", ports(&udp));
    }
    if z.ping {
        let _ = writeln!(out, "\t\ticmp type echo-request accept");
        let _ = writeln!(out, "\t\ticmpv6 type echo-request accept");
    }
}

fn render_table(v: &Validated<'_>, quarantine: &BTreeSet<Ipv6Addr>) -> String {
    let cfg = v.cfg;
    let mut o = String::new();
    let _ = writeln!(o, "table {TABLE} {{");

    let mgmt4: Vec<String> = v.mgmt4.iter().map(|n| n.to_string()).collect();
    let mgmt6: Vec<String> = v.mgmt6.iter().map(|n| n.to_string()).collect();
    set_def(&mut o, "mgmt4", "ipv4_addr", true, &mgmt4);
    set_def(&mut o, "mgmt6", "ipv6_addr", true, &mgmt6);
    let q: Vec<String> = quarantine.iter().map(|a| a.to_string()).collect();
    set_def(&mut o, "quarantine", "ipv6_addr", false, &q);
    // One rate limiter per quarantined address, created by the first packet, gone a minute after
    // the last.
    let _ = writeln!(o, "\tset quarantine_rate {{");
    let _ = writeln!(o, "\t\ttype ipv6_addr");
    let _ = writeln!(o, "\t\tsize 65535");
    let _ = writeln!(o, "\t\tflags dynamic,timeout");
    let _ = writeln!(o, "\t\ttimeout 1m");
    let _ = writeln!(o, "\t}}\n");
    for (name, g) in &cfg.groups {
        let members: BTreeSet<&Ipv6Addr> = g.members.iter().collect();
        let m: Vec<String> = members.iter().map(|a| a.to_string()).collect();
        set_def(&mut o, &format!("grp_{name}"), "ipv6_addr", false, &m);
    }

    let overlay = &cfg.zones.overlay.interfaces;
    for (chain, hook) in [("quarantine_in", "input"), ("quarantine_fwd", "forward")] {
        let _ = writeln!(o, "\tchain {chain} {{");
        let _ = writeln!(
            o,
            "\t\ttype filter hook {hook} priority filter - 10; policy accept;"
        );
        if !overlay.is_empty() {
            let _ = writeln!(
                o,
                "\t\tiifname {} ip6 saddr @quarantine update @quarantine_rate {{ ip6 saddr limit rate over {} kbytes/second burst {} kbytes }} counter drop",
                ifnames(overlay),
                cfg.quarantine_kbytes_per_s,
                cfg.quarantine_burst_kbytes
            );
        }
        let _ = writeln!(o, "\t}}\n");
    }

    let _ = writeln!(o, "\tchain input {{");
    let _ = writeln!(
        o,
        "\t\ttype filter hook input priority filter; policy drop;"
    );
    let _ = writeln!(o, "\t\tct state established,related accept");
    let _ = writeln!(o, "\t\tct state invalid drop");
    let _ = writeln!(o, "\t\tiifname \"lo\" accept");
    let _ = writeln!(
        o,
        "\t\ticmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem, \
         nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }} accept"
    );
    let _ = writeln!(
        o,
        "\t\ticmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept"
    );
    let _ = writeln!(o, "\t\t# management access: fixed, before zone dispatch");
    if !cfg.mgmt.interfaces.is_empty() {
        let _ = writeln!(o, "\t\tiifname {} accept", ifnames(&cfg.mgmt.interfaces));
    }
    if !cfg.mgmt.tcp_ports.is_empty() {
        let p = ports(&cfg.mgmt.tcp_ports);
        let _ = writeln!(o, "\t\tip saddr @mgmt4 tcp dport {p} accept");
        let _ = writeln!(o, "\t\tip6 saddr @mgmt6 tcp dport {p} accept");
    }
    let dispatch: Vec<String> = cfg
        .zones
        .iter()
        .iter()
        .flat_map(|(zone, z)| {
            let set: BTreeSet<&String> = z.interfaces.iter().collect();
            set.into_iter()
                .map(move |i| format!("\"{i}\" : jump zone_{zone}_in"))
        })
        .collect();
    if !dispatch.is_empty() {
        let _ = writeln!(o, "\t\tiifname vmap {{ {} }}", dispatch.join(", "));
    }
    let _ = writeln!(o, "\t}}\n");

    let _ = writeln!(o, "\tchain forward {{");
    let _ = writeln!(
        o,
        "\t\ttype filter hook forward priority filter; policy drop;"
    );
    let _ = writeln!(o, "\t\tct state established,related accept");
    let _ = writeln!(o, "\t\tct state invalid drop");
    for (zone, z) in cfg.zones.iter() {
        if z.interfaces.is_empty() {
            continue;
        }
        let targets: BTreeSet<&String> = z.forward_to.iter().collect();
        for t in targets {
            let dst = cfg
                .zones
                .iter()
                .into_iter()
                .find(|(n, _)| n == t)
                .map(|(_, d)| d)
                .expect("validated");
            if dst.interfaces.is_empty() {
                continue;
            }
            let _ = writeln!(
                o,
                "\t\tiifname {} oifname {} accept comment \"{zone} -> {t}\"",
                ifnames(&z.interfaces),
                ifnames(&dst.interfaces)
            );
        }
    }
    let _ = writeln!(o, "\t}}");

    for (zone, z) in cfg.zones.iter() {
        let _ = writeln!(o, "\n\tchain zone_{zone}_in {{");
        zone_rules(&mut o, cfg, z);
        if zone == "overlay" {
            for (name, g) in &cfg.groups {
                if !g.tcp_ports.is_empty() {
                    let _ = writeln!(
                        o,
                        "\t\tip6 saddr @grp_{name} tcp dport {} accept",
                        ports(&g.tcp_ports)
                    );
                }
                if !g.udp_ports.is_empty() {
                    let _ = writeln!(
                        o,
                        "\t\tip6 saddr @grp_{name} udp dport {} accept",
                        ports(&g.udp_ports)
                    );
                }
            }
        }
        let _ = writeln!(o, "\t}}");
    }
    let _ = writeln!(o, "}}");
    o
}

/// `add element` / `delete element` commands for one set; the caller checks the set exists.
pub(crate) fn element_command(add: bool, set: &str, addrs: &[Ipv6Addr]) -> String {
    let verb = if add { "add" } else { "delete" };
    format!(
        "{verb} element {TABLE} {set} {{ {} }}\n",
        list(addrs.iter())
    )
}
