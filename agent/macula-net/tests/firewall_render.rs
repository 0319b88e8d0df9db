//! Golden tests: each `tests/golden/<name>.toml` (a `[firewall]` section) renders to exactly
//! `tests/golden/<name>.nft`. Regenerate after an intended change with `UPDATE_GOLDEN=1`.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;

use macula_net::firewall::{FirewallConfig, render};

fn golden(name: &str, quarantine: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
    let cfg: FirewallConfig = toml::from_str(&text).unwrap();
    let q: BTreeSet<Ipv6Addr> = quarantine.iter().map(|a| a.parse().unwrap()).collect();
    let out = render(&cfg, &q).unwrap();
    let path = dir.join(format!("{name}.nft"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        out,
        want,
        "rendered ruleset differs from {}",
        path.display()
    );
}

#[test]
fn golden_empty() {
    golden("empty", &[]);
}

#[test]
fn golden_gateway() {
    golden("gateway", &["fd12:3456:789a::66"]);
}

#[test]
fn mgmt_rule_survives_any_zone_config() {
    // Zone config has no way to drop the management rule: it is rendered before dispatch
    // whatever the zones say, and an interface cannot be both mgmt and a zone.
    let mut cfg = FirewallConfig::default();
    cfg.mgmt.interfaces = vec!["eth9".into()];
    for z in [
        &mut cfg.zones.lan,
        &mut cfg.zones.wan,
        &mut cfg.zones.overlay,
    ] {
        z.ping = false;
        z.wireguard = false;
        z.mesh = false;
        z.interfaces = vec![];
    }
    let out = render(&cfg, &BTreeSet::new()).unwrap();
    let input = &out[out.find("chain input").unwrap()..];
    let mgmt = input.find("iifname \"eth9\" accept").expect("mgmt rule");
    assert!(mgmt < input.find("\t}").unwrap());
    cfg.zones.wan.interfaces = vec!["eth9".into()];
    assert!(render(&cfg, &BTreeSet::new()).is_err());
}

#[test]
fn established_related_is_the_first_rule() {
    let cfg: FirewallConfig = toml::from_str("[zones.lan]\ninterfaces = [\"eth0\"]\n").unwrap();
    let out = render(&cfg, &BTreeSet::new()).unwrap();
    for chain in ["chain input {", "chain forward {"] {
        let body = &out[out.find(chain).unwrap()..];
        let rules: Vec<&str> = body.lines().skip(2).take(1).collect();
        assert_eq!(
            rules,
            ["\t\tct state established,related accept"],
            "{chain}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<FirewallConfig>("[zones.dmz]\ninterfaces = []\n").unwrap_err();
    assert!(err.to_string().contains("dmz"), "{err}");
}
