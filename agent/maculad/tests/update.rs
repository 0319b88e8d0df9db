//! `io.macula.Update1` wiring on a private bus. RAUC itself only runs in the QEMU images
//! (tests/qemu/test_image.py drives install, reboot, mark-good and fallback there); here the
//! daemon has no RAUC, so every operation must fail cleanly with the documented exit codes.

use macula_testkit::{Agent, AgentOptions, DbusDaemon};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn update_without_rauc_fails_clearly() {
    let bus = DbusDaemon::start();
    let agent = Agent::spawn(&bus, AgentOptions::default());

    let intro = bus.busctl(&["introspect", "io.macula.Agent", "/io/macula/Agent"]);
    let intro = String::from_utf8_lossy(&intro.stdout).into_owned();
    assert!(intro.contains("io.macula.Update1"), "{intro}");
    assert!(intro.contains(".Install"), "{intro}");
    assert!(intro.contains(".Completed"), "{intro}");

    // no RAUC: unavailable (exit 7), and the message says what is missing
    let out = agent.ctl(&["update", "status"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("RAUC"), "{}", stderr(&out));
    let out = agent.ctl(&["update", "mark-good"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // a bundle that does not exist is an invalid argument (exit 5), checked before RAUC
    let out = agent.ctl(&["update", "install", "/nonexistent/update.raucb"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/update.raucb"),
        "{}",
        stderr(&out)
    );

    // an existing file, relative path: maculactl makes it absolute; then RAUC is missing
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("update.raucb");
    std::fs::write(&bundle, b"not a bundle").unwrap();
    let out = std::process::Command::new(macula_testkit::bin("maculactl"))
        .current_dir(dir.path())
        .args(["--bus", bus.address(), "update", "install", "update.raucb"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("RAUC"), "{}", stderr(&out));

    // the agent is still serving afterwards
    let out = agent.ctl(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
