//! `maculactl card provision` on an admin machine (no agent), then the image's first boot: the real
//! `overlay/usr/libexec/macula/provision` script moves the card's `macula/` folder into the state
//! directory, and real `maculad` processes started on it form a realm. The realm key lives in a
//! directory made by `maculactl realm keygen`; no node holds it. A node booted without a card
//! folder is admitted with `maculactl realm admit --realm` and `realm join`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use macula_testkit::check::{free_udp_port, ok, wait_until};
use macula_testkit::config::AgentConfig;
use macula_testkit::{Agent, AgentOptions, DbusDaemon, bin};

/// `maculactl ARGS` without a bus: the admin machine runs no agent.
fn ctl(args: &[&str]) -> Output {
    Command::new(bin("maculactl"))
        .args(args)
        .env("MACULA_BUS", "unix:path=/nonexistent/no-agent-here")
        .output()
        .expect("run maculactl")
}

fn refused(args: &[&str], code: i32, says: &str) {
    let out = ctl(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: expected `{says}` in: {err}");
}

fn provision_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlay/usr/libexec/macula/provision")
}

/// What the image's rcS does before the agent starts: `/data/macula` (0700), then the provision
/// script moving the boot partition's `macula/` folder into it. Returns what it printed.
fn first_boot(card: &Path, state: &Path) -> String {
    std::fs::create_dir_all(state).unwrap();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let console = card.with_extension("console");
    let out = Command::new("sh")
        .arg(provision_script())
        .arg(card)
        .arg(state)
        .env("MACULA_CONSOLE", &console)
        .output()
        .expect("run the provision script");
    assert!(out.status.success(), "provision: {out:?}");
    std::fs::read_to_string(&console).unwrap_or_default()
}

/// An agent whose state directory is seeded from `card` by the first boot and whose
/// `--config` is the provisioned `/data/macula/agent.toml`, as `maculad-run` picks it.
fn boot(bus: &DbusDaemon, card: &Path) -> (Agent, String) {
    let mut agent = Agent::prepare(bus, AgentOptions::default());
    let console = first_boot(card, &agent.state_dir());
    let config = agent.state_dir().join("agent.toml");
    agent.options_mut().args = vec!["--config".into(), config.display().to_string()];
    agent.start(bus).unwrap_or_else(|e| panic!("{e}"));
    (agent, console)
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image file like the ones `make image` builds, reduced to what provisioning touches: a GPT
/// whose partition 1, named `esp`, holds a FAT file system.
fn image_with_esp(img: &Path) {
    let img = img.display();
    sh(&format!(
        "truncate -s 48M {img}
         printf 'label: gpt\\nstart=2048, size=65536, name=esp, type=uefi\\n' | sfdisk -q {img}
         mkfs.vfat --offset 2048 {img} 32768 >/dev/null 2>&1"
    ));
}

/// Copies the `macula/` folder of `img`'s boot partition to `dir/macula` (as the node's rcS sees
/// it at `/esp`), with mtools.
fn boot_partition_of(img: &Path, dir: &Path) {
    sh(&format!(
        "mcopy -s -i {img}@@1M ::/macula {dir}/",
        img = img.display(),
        dir = dir.display()
    ));
}

fn alive(agent: &Agent) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&agent.ctl(&["peers", "--json"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "alive")
        .map(|p| {
            format!(
                "{}/{}",
                p["name"].as_str().unwrap(),
                p["role"].as_str().unwrap()
            )
        })
        .collect()
}

fn status_id(agent: &Agent) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&agent.ctl(&["status", "--json"]))).unwrap();
    v["node_id"].as_str().unwrap().to_owned()
}

/// The `node <id>` of `card provision`'s report.
fn provisioned_id(report: &str) -> String {
    report
        .split_whitespace()
        .skip_while(|w| *w != "node")
        .nth(1)
        .expect("node ID in the report")
        .to_owned()
}

#[test]
fn provisioned_cards_boot_into_a_realm_whose_key_no_node_holds() {
    let admin = tempfile::tempdir().unwrap();
    let realm_dir = admin.path().join("realm");
    let realm_arg = realm_dir.to_str().unwrap();
    let realm_id = ok(&ctl(&["realm", "keygen", realm_arg])).trim().to_owned();
    let mode = std::fs::metadata(realm_dir.join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    refused(
        &["realm", "keygen", realm_arg],
        7,
        "already holds the key of realm",
    );

    // The test's base agent.toml: the system clock and NTP are left alone.
    let base = admin.path().join("fleet.toml");
    std::fs::write(&base, "[mesh]\nset_clock = false\nntp = []\n").unwrap();
    let base = base.to_str().unwrap();
    let hub_port = free_udp_port();
    let hub_listen = format!("127.0.0.1:{hub_port}");
    let hub_card = admin.path().join("hub-card");
    let edge_card = admin.path().join("edge-card");
    std::fs::create_dir_all(&hub_card).unwrap();
    std::fs::create_dir_all(&edge_card).unwrap();
    let hub_card_arg = hub_card.to_str().unwrap();
    let edge_card_arg = edge_card.to_str().unwrap();

    let report = ok(&ctl(&[
        "card",
        "provision",
        hub_card_arg,
        "--name",
        "hub-1",
        "--role",
        "hub",
        "--realm",
        realm_arg,
        "--listen",
        &hub_listen,
        "--config",
        base,
    ]));
    assert!(report.contains(&format!("realm {realm_id}")), "{report}");
    let hub_id = provisioned_id(&report);
    assert!(
        report.contains(&format!("--bootstrap {hub_id}@<its address>:{hub_port}")),
        "{report}"
    );
    let edge_report = ok(&ctl(&[
        "card",
        "provision",
        edge_card_arg,
        "--name",
        "edge-1",
        "--role",
        "edge",
        "--realm",
        realm_arg,
        "--bootstrap",
        &format!("{hub_id}@{hub_listen}"),
        "--listen",
        "127.0.0.1:0",
        "--config",
        base,
    ]));
    let edge_id = provisioned_id(&edge_report);

    // Refusals, before anything is written.
    let edge_args = |card: &str, name: &str, realm: &str| {
        vec![
            "card".to_string(),
            "provision".into(),
            card.into(),
            "--name".into(),
            name.into(),
            "--role".into(),
            "edge".into(),
            "--realm".into(),
            realm.into(),
        ]
    };
    let run = |a: Vec<String>, code: i32, says: &str| {
        refused(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            code,
            says,
        )
    };
    run(
        edge_args(edge_card_arg, "edge-1", realm_arg),
        7,
        "provisioned already",
    );
    let fresh = admin.path().join("fresh-card");
    std::fs::create_dir_all(&fresh).unwrap();
    let fresh_arg = fresh.to_str().unwrap();
    run(
        edge_args(fresh_arg, "edge 2", realm_arg),
        5,
        "--name `edge 2`",
    );
    let nowhere = admin.path().join("no-realm");
    run(
        edge_args(fresh_arg, "edge-2", nowhere.to_str().unwrap()),
        6,
        "realm keygen",
    );
    assert!(
        !fresh.join("macula").exists(),
        "nothing written on a refusal"
    );

    // First boot of both cards: the files move into the state directories, 0600.
    let bus_hub = DbusDaemon::start();
    let bus_edge = DbusDaemon::start();
    let (hub, console) = boot(&bus_hub, &hub_card);
    for f in ["node.key", "realm.cert", "agent.toml"] {
        assert!(
            console.contains(&format!("provisioned {f} from the boot partition")),
            "{console}"
        );
        assert!(
            !hub_card.join("macula").join(f).exists(),
            "{f} left on the card"
        );
        let mode = std::fs::metadata(hub.state_dir().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        status_id(&hub),
        hub_id,
        "the hub runs with the provisioned key"
    );
    // A node's state directory is not a realm key.
    run(
        edge_args(fresh_arg, "edge-2", hub.state_dir().to_str().unwrap()),
        5,
        "not a realm key",
    );

    let (edge, _) = boot(&bus_edge, &edge_card);
    assert_eq!(status_id(&edge), edge_id);
    wait_until("hub and edge see each other alive", 30, || {
        alive(&hub) == ["edge-1/edge"] && alive(&edge) == ["hub-1/hub"]
    });

    // Admission after first boot with the same offline key: `realm admit --realm`, then
    // `realm join` on the node.
    let bus_late = DbusDaemon::start();
    let late = Agent::spawn(
        &bus_late,
        AgentOptions {
            config: Some(
                AgentConfig::loopback(free_udp_port())
                    .name("edge-2")
                    .bootstrap(&format!("{hub_id}@{hub_listen}"))
                    .mesh("set_clock = false\nntp = []\n")
                    .to_string(),
            ),
            ..Default::default()
        },
    );
    let cert = admin.path().join("edge-2.cert");
    ok(&ctl(&[
        "realm",
        "admit",
        &status_id(&late),
        "--name",
        "edge-2",
        "--realm",
        realm_arg,
        "-o",
        cert.to_str().unwrap(),
    ]));
    ok(&late.ctl(&["realm", "join", cert.to_str().unwrap()]));
    wait_until("the late edge is admitted", 30, || {
        let mut names = alive(&hub);
        names.sort();
        names == ["edge-1/edge", "edge-2/edge"]
    });

    // An image file (as written to a card): its boot partition written with mtools (no mount);
    // the node booted from it joins.
    let img = admin.path().join("sdcard.img");
    image_with_esp(&img);
    let img_arg = img.to_str().unwrap();
    let report = ok(&ctl(&[
        "card",
        "provision",
        img_arg,
        "--name",
        "edge-3",
        "--role",
        "edge",
        "--realm",
        realm_arg,
        "--bootstrap",
        &format!("{hub_id}@{hub_listen}"),
        "--listen",
        "127.0.0.1:0",
        "--config",
        base,
    ]));
    assert!(report.contains("(partition 1, macula/)"), "{report}");
    assert_eq!(
        sh(&format!("losetup -j {img_arg}")),
        "",
        "loop device left attached"
    );
    refused(
        &[
            "card",
            "provision",
            img_arg,
            "--name",
            "edge-3",
            "--role",
            "edge",
            "--realm",
            realm_arg,
        ],
        7,
        "provisioned already",
    );
    assert_eq!(
        sh(&format!("losetup -j {img_arg}")),
        "",
        "loop device left after a refusal"
    );
    let img_card = admin.path().join("img-card");
    std::fs::create_dir_all(&img_card).unwrap();
    boot_partition_of(&img, &img_card);
    let bus_img = DbusDaemon::start();
    let (from_img, _) = boot(&bus_img, &img_card);
    assert_eq!(status_id(&from_img), provisioned_id(&report));
    wait_until("the node from the image joins", 30, || {
        alive(&hub).contains(&"edge-3/edge".to_string())
    });

    // A card provisioned again for a node that has an identity: the key is refused, the rest
    // taken.
    ok(&ctl(&[
        "card",
        "provision",
        hub_card_arg,
        "--name",
        "hub-1",
        "--role",
        "hub",
        "--realm",
        realm_arg,
        "--listen",
        &hub_listen,
        "--config",
        base,
    ]));
    let console = first_boot(&hub_card, &hub.state_dir());
    assert!(
        console.contains("node.key ignored: this node already has an identity"),
        "{console}"
    );
    assert!(
        hub_card.join("macula/node.key").exists(),
        "the refused key stays on the card"
    );
    assert!(!hub_card.join("macula/realm.cert").exists());
}

/// `card provision --join-code`: the card carries the code a hub's `realm invite` printed and no
/// key; at first boot the node makes its key, redeems the code at the hub (through the card's
/// `--bootstrap`) and is a member, named and with the role the invite gave.
#[test]
fn a_card_with_a_join_code_joins_at_first_boot() {
    let hub_port = free_udp_port();
    let hub_bus = DbusDaemon::start();
    let hub = Agent::spawn(
        &hub_bus,
        AgentOptions {
            config: Some(
                AgentConfig::loopback(hub_port)
                    .role(macula_testkit::config::Role::Hub)
                    .to_string(),
            ),
            ..Default::default()
        },
    );
    ok(&hub.ctl(&["realm", "create", "--name", "hub-1"]));
    let hub_id = status_id(&hub);
    let code = ok(&hub.ctl(&[
        "realm", "invite", "--name", "edge-1", "--role", "edge", "--no-qr",
    ]))
    .trim()
    .to_owned();

    let admin = tempfile::tempdir().unwrap();
    let base = admin.path().join("fleet.toml");
    std::fs::write(&base, "[mesh]\nset_clock = false\nntp = []\n").unwrap();
    let card = admin.path().join("card");
    std::fs::create_dir_all(&card).unwrap();
    let card_arg = card.to_str().unwrap();
    let edge_listen = format!("127.0.0.1:{}", free_udp_port());
    let bootstrap = format!("{hub_id}@127.0.0.1:{hub_port}");
    let args = [
        "card",
        "provision",
        card_arg,
        "--name",
        "edge-1",
        "--role",
        "edge",
        "--bootstrap",
        &bootstrap,
        "--listen",
        &edge_listen,
        "--config",
        base.to_str().unwrap(),
    ];
    let with_code = [&args[..], &["--join-code", &code]].concat();
    // Either a realm key or a code.
    let out = ctl(&args);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let with_both = [&with_code[..], &["--realm", "/tmp"]].concat();
    assert_eq!(ctl(&with_both).status.code(), Some(2));
    refused(
        &[&args[..], &["--join-code", "macula-join-garbage"]].concat(),
        5,
        "--join-code",
    );
    let report = ok(&ctl(&with_code));
    assert!(report.contains(&hub_id), "{report}");
    let folder = card.join("macula");
    assert!(folder.join("join.code").exists() && folder.join("agent.toml").exists());
    assert!(!folder.join("node.key").exists() && !folder.join("realm.cert").exists());

    let bus = DbusDaemon::start();
    let (edge, _) = boot(&bus, &card);
    wait_until("the edge redeemed its code and is a member", 30, || {
        alive(&hub).contains(&"edge-1/edge".to_string())
            && alive(&edge).contains(&"hub-1/hub".to_string())
    });
    // Used once: the code is gone from the node, and the hub refuses it to anyone else.
    assert!(!edge.state_dir().join("join.code").exists());
    let other_bus = DbusDaemon::start();
    let other = Agent::spawn(
        &other_bus,
        AgentOptions {
            config: Some(
                AgentConfig::loopback(free_udp_port())
                    .bootstrap_port(hub_port)
                    .to_string(),
            ),
            ..Default::default()
        },
    );
    let out = other.ctl(&["realm", "join", "--code", &code]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("used already"));
}
