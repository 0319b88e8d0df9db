//! `[uplinks]` without `[[uplinks.links]]`: maculad discovers its uplinks from the default routes
//! (interfaces with a default route in the main table, metric = priority) and probes them;
//! `maculactl uplinks` shows them.

use std::time::Duration;

use macula_net::cmd::Host;
use macula_net::uplinks::monitor::open_responder;
use macula_net::uplinks::probe;
use macula_testkit::check::json;
use macula_testkit::netns::Topology;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplinks_discovered_from_default_routes() {
    let mut topo = Topology::new("ud");
    let na = topo.add_ns("a");
    let nb = topo.add_ns("b");
    let (a1, _) = topo.link("a", "198.51.100.1/24", "b", "198.51.100.2/24");
    let (a2, _) = topo.link("a", "203.0.113.1/24", "b", "203.0.113.2/24");
    for (gw, dev, metric) in [("198.51.100.2", &a1, "20"), ("203.0.113.2", &a2, "10")] {
        let o = topo.exec(
            "a",
            &[
                "ip", "route", "add", "default", "via", gw, "dev", dev, "metric", metric,
            ],
        );
        assert!(o.status.success());
    }
    let responder = tokio::spawn(probe::serve(
        open_responder(&Host::netns(&nb), probe::DEFAULT_PORT).unwrap(),
    ));
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some("[uplinks]\nenabled = true\nprobe = \"198.51.100.2:51821\"\n".into()),
            netns: Some(na),
            ..Default::default()
        },
    );
    let links = wait_for(Duration::from_secs(3), || {
        let j = json(agent.ctl(&["uplinks", "--json"]));
        (j[0]["healthy"] == true && j[1]["healthy"] == true && j[1]["received"].as_u64() > Some(2))
            .then_some(j)
    })
    .expect("discovered uplinks probed and healthy");
    assert_eq!(links.as_array().unwrap().len(), 2, "{links}");
    assert_eq!(
        links[0]["interface"],
        a2.as_str(),
        "lowest metric first: {links}"
    );
    assert_eq!(links[0]["priority"], 10);
    assert_eq!(links[0]["active"], true);
    assert_eq!(links[1]["interface"], a1.as_str());
    assert_eq!(links[1]["name"], a1.as_str());
    responder.abort();
    drop(agent);
}

/// Neither links nor a probe: a clear configuration error, the agent does not start.
#[test]
fn no_links_and_no_probe_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("mcl-ud-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(&path, "[uplinks]\nenabled = true\n").unwrap();
    let bus = DbusDaemon::start();
    let out = std::process::Command::new(macula_testkit::bin("maculad"))
        .args(["--bus", bus.address(), "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[uplinks] probe"), "{text}");
}
