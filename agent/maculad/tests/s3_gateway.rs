//! The S3 gateway with a real client: four `maculad` form a realm with storage (2 + 1 coding),
//! node 0 serves S3 on loopback; boto3 (installed into a venv under the target dir on first
//! run) creates a bucket, puts, gets byte-identical and by Range, lists by prefix, delimiter and
//! pages, fetches a presigned URL, checks the error codes (NoSuchKey, NoSuchBucket,
//! BucketNotEmpty, SignatureDoesNotMatch, InvalidPart, EntityTooSmall…), multipart, copies,
//! batch deletes, overwrites and deletes
//! everything (`agent/maculad/tests/s3_gateway.py`); aws-cli (same venv) makes a bucket, copies
//! a 20 MiB file up (multipart) and down, syncs a tree both ways, lists, presigns (fetched with
//! curl) and removes it all. Afterwards no shard is left on any node:
//! deleting and overwriting objects deleted their bodies.

use std::path::{Path, PathBuf};
use std::process::Command;

use macula_testkit::check::{free_tcp_port, ok, output_text, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode, s3_curl};

/// A venv with boto3 under the target dir (made once; pip needs PyPI the first time).
fn boto3_python() -> PathBuf {
    macula_testkit::check::python_venv(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("s3-venv"),
        "boto3, awscli",
        &["boto3", "awscli"],
    )
}

#[test]
fn boto3_against_a_realm() {
    let python = boto3_python();
    let (port, port2) = (free_tcp_port(), free_tcp_port());
    let mut nodes = AgentRealm::new(4)
        .coded(2, 1)
        .storage_extra(|i| match i {
            0 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
            3 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port2}\"\n"),
            _ => String::new(),
        })
        .start();
    // The second gateway is down while the key, buckets and objects are made.
    nodes[3].agent.kill();
    let gw = &nodes[0];
    // Placement skips it once membership says it is down (puts to it would wait for timeouts).
    wait_until("the others see node 3 down", 30, || gw.alive_peers() == 2);
    let (kid, secret) = gw.s3_key(&["--name", "boto3"]);
    assert!(!gw.agent.log().contains(&secret), "the secret was logged");
    wait_until("the gateway listens", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let run = |phase: &str, log_of: &RealmNode, env: &[(&str, &str)]| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_gateway.py");
        let out = Command::new(&python)
            .arg(&script)
            .arg(phase)
            .env("EP", format!("http://127.0.0.1:{port}"))
            .env("EP2", format!("http://127.0.0.1:{port2}"))
            .env("KID", &kid)
            .env("SEC", &secret)
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .envs(env.iter().copied())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 script ({phase}) failed:\n{}\n--- gateway log ---\n{}",
            output_text(&out),
            log_of.agent.log()
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{stdout}");
        stdout
    };
    run("main", gw, &[]);
    run("tls", gw, &[]);
    let st = macula_testkit::check::json(gw.agent.ctl(&["s3", "status", "--json"]));
    assert_eq!(st["serving"], true, "{st}");
    assert!(st["requests"].as_u64().unwrap() > 50, "{st}");
    assert!(st["errors"].as_u64().unwrap() >= 10, "{st}");
    assert!(st["bytes_in"].as_u64().unwrap() > 8 << 20, "{st}");
    assert!(st["bytes_out"].as_u64().unwrap() > 8 << 20, "{st}");
    assert_eq!(
        (
            st["buckets"].as_u64(),
            st["objects"].as_u64(),
            st["keys"].as_u64()
        ),
        (Some(0), Some(0), Some(1)),
        "{st}"
    );
    let listed = ok(&gw.agent.ctl(&["s3", "key", "list"]));
    assert!(
        listed.contains(&kid) && listed.contains("boto3") && !listed.contains(&secret),
        "{listed}"
    );
    wait_until("every object's shards are deleted", 20, || {
        nodes.iter().map(RealmNode::shard_count).sum::<usize>() == 0
    });
    // Deletes and overwrites are not losses: no node tried to rebuild a deleted segment.
    for n in &nodes[..3] {
        let repair = &n.storage_status()["repair"];
        assert_eq!(
            (repair["failed"].as_u64(), repair["repaired"].as_u64()),
            (Some(0), Some(0)),
            "{}: {repair}",
            n.name
        );
    }
    // Multipart uploads in progress survive a restart of their gateway: one is completed after
    // it, the other aborted (its part's shards deleted).
    let begun = serde_json::from_str::<serde_json::Value>(&run("mp-start", gw, &[])).unwrap();
    {
        let n0 = &mut nodes[0];
        n0.agent.stop(std::time::Duration::from_secs(10));
        n0.agent.start(&n0.bus).expect("the gateway restarts");
    }
    let gw = &nodes[0];
    wait_until("the restarted gateway listens", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let id = |k: &str| begun[k].as_str().unwrap().to_string();
    run(
        "mp-finish",
        gw,
        &[("RESUME", &id("resume")), ("GONE", &id("gone"))],
    );
    wait_until("the aborted upload's shards are deleted", 20, || {
        nodes.iter().map(RealmNode::shard_count).sum::<usize>() == 0
    });
    // aws-cli: cp up (a 20 MiB file goes multipart: 8 MiB parts) and down, ls, sync, presign.
    let work = tempfile::tempdir().unwrap();
    let aws_as = |kid: &str, secret: &str, args: &[&str]| {
        Command::new(python.with_file_name("aws"))
            .args(["--endpoint-url", &format!("http://127.0.0.1:{port}")])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", kid)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", "macula")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("aws")
    };
    let aws = |args: &[&str]| {
        let out = aws_as(&kid, &secret, args);
        assert!(
            out.status.success(),
            "aws {args:?}:\n{}\n--- gateway log ---\n{}",
            output_text(&out),
            gw.agent.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    let mut big = vec![0u8; 20 << 20];
    pseudo_random(&mut big);
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    for i in 0..5 {
        std::fs::write(tree.join("d").join(format!("{i}.txt")), format!("{i}")).unwrap();
    }
    let t = std::time::Instant::now();
    aws(&["s3", "mb", "s3://cli"]);
    aws(&[
        "s3",
        "cp",
        tree.join("big.bin").to_str().unwrap(),
        "s3://cli/big.bin",
    ]);
    let up = t.elapsed();
    let down = work.path().join("down.bin");
    aws(&["s3", "cp", "s3://cli/big.bin", down.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&down).unwrap(),
        big,
        "aws s3 cp down is not byte-identical"
    );
    let head = aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli",
        "--key",
        "big.bin",
    ]);
    assert!(
        head.contains("-3\\\""),
        "a 20 MiB upload in 8 MiB parts: {head}"
    );
    aws(&["s3", "sync", tree.to_str().unwrap(), "s3://cli/tree"]);
    let ls = aws(&["s3", "ls", "s3://cli/tree/d/"]);
    assert_eq!(ls.lines().count(), 5, "{ls}");
    let synced = work.path().join("synced");
    aws(&["s3", "sync", "s3://cli/tree", synced.to_str().unwrap()]);
    assert_eq!(std::fs::read(synced.join("d/3.txt")).unwrap(), b"3");
    let url = aws(&["s3", "presign", "s3://cli/tree/d/4.txt"]);
    let curl = Command::new("curl")
        .args(["-sf", url.trim()])
        .output()
        .expect("curl");
    assert_eq!(
        curl.stdout,
        b"4",
        "presigned GET with curl: {}",
        output_text(&curl)
    );
    // A key for bucket `cli` only, read-only: it lists only that bucket, reads from it, and is
    // refused writes and other buckets (AccessDenied), on the same gateway.
    aws(&["s3", "mb", "s3://other"]);
    let (skid, ssec) = gw.s3_key(&["--name", "reader", "--bucket", "cli", "--read-only"]);
    let listed = ok(&gw.agent.ctl(&["s3", "key", "list"]));
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&skid) && l.contains("cli") && l.contains("read ")),
        "{listed}"
    );
    let reader = |args: &[&str]| aws_as(&skid, &ssec, args);
    let out = reader(&["s3", "ls"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let buckets = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        buckets.contains("cli") && !buckets.contains("other"),
        "{buckets}"
    );
    let got = work.path().join("scoped.txt");
    let out = reader(&["s3", "cp", "s3://cli/tree/d/2.txt", got.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(std::fs::read(&got).unwrap(), b"2");
    for denied in [
        vec!["s3", "cp", got.to_str().unwrap(), "s3://cli/new.txt"],
        vec!["s3", "rm", "s3://cli/tree/d/2.txt"],
        vec!["s3", "ls", "s3://other"],
        vec!["s3", "mb", "s3://third"],
    ] {
        let out = reader(&denied);
        assert!(
            !out.status.success() && output_text(&out).contains("AccessDenied"),
            "{denied:?} with a read-only key for cli: {}",
            output_text(&out)
        );
    }
    ok(&gw.agent.ctl(&["s3", "key", "revoke", &skid]));
    aws(&["s3", "rb", "s3://other"]);
    aws(&["s3", "rm", "--recursive", "s3://cli"]);
    aws(&["s3", "rb", "s3://cli"]);
    eprintln!("aws-cli: 20 MiB multipart cp up in {up:?} (mb included)");
    wait_until("aws-cli's objects' shards are deleted", 20, || {
        nodes.iter().map(RealmNode::shard_count).sum::<usize>() == 0
    });
    run("seed", gw, &[]);
    // The second gateway comes back and catches up from its peers.
    let n3 = &mut nodes[3];
    n3.agent.start(&n3.bus).expect("restart n3");
    wait_until("the second gateway listens", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", port2)).is_ok()
    });
    run("second", &nodes[3], &[]);
    assert_eq!(
        ok(&nodes[0].agent.ctl(&["s3", "key", "revoke", &kid])).trim(),
        format!("revoked {kid}")
    );
    let again = nodes[0].agent.ctl(&["s3", "key", "revoke", &kid]);
    assert_eq!(
        again.status.code(),
        Some(6),
        "a second revoke: {}",
        output_text(&again)
    );
    run("revoked", &nodes[3], &[]);
    for n in &nodes {
        assert!(
            !n.agent.log().contains(&secret),
            "{}: the secret was logged",
            n.name
        );
    }
}

/// Two of five storage nodes — m of the automatic 2 + 2 — killed (-9) in the middle of an
/// `aws s3 sync`: a reader GETting, again and again, every object already there never gets
/// wrong bytes (errors are allowed while membership catches up); the sync, run again as a user
/// would when it reports failures, completes; the whole tree syncs back byte-identical.
#[test]
fn a_sync_survives_m_nodes_killed_midway() {
    let python = boto3_python();
    let port = free_tcp_port();
    let mut nodes = AgentRealm::new(5)
        .auto_coding()
        .storage_extra(|i| match i {
            0 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
            _ => String::new(),
        })
        .start();
    let gw = &nodes[0];
    let (kid, secret) = gw.s3_key(&["--name", "sync"]);
    wait_until("the gateway listens", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("small")).unwrap();
    std::fs::create_dir_all(tree.join("large")).unwrap();
    let mut seed = [0u8; 8];
    for i in 0..40 {
        let mut b = vec![0u8; 1024 + i * 1597];
        seed[0] = i as u8;
        pseudo_random(&mut b);
        b[..8].copy_from_slice(&seed);
        std::fs::write(tree.join("small").join(format!("{i}.bin")), b).unwrap();
    }
    for (i, mib) in [3usize, 3, 3, 12].into_iter().enumerate() {
        let mut b = vec![0u8; mib << 20];
        pseudo_random(&mut b);
        b[..8].copy_from_slice(&[0xee, i as u8, 0, 0, 0, 0, 0, 0]);
        std::fs::write(tree.join("large").join(format!("{i}.bin")), b).unwrap();
    }
    let aws = |args: &[&str]| {
        let mut c = Command::new(python.with_file_name("aws"));
        c.args(["--endpoint-url", &format!("http://127.0.0.1:{port}")])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &kid)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_DEFAULT_REGION", "macula")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        c
    };
    let out = aws(&["s3", "mb", "s3://tree"]).output().unwrap();
    assert!(out.status.success(), "mb: {}", output_text(&out));
    let stop = work.path().join("stop");
    let reader = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_gateway.py"))
        .arg("reader")
        .env("EP", format!("http://127.0.0.1:{port}"))
        .env("KID", &kid)
        .env("SEC", &secret)
        .env("TREE", &tree)
        .env("STOP", &stop)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the reader");
    let sync = || aws(&["s3", "sync", tree.to_str().unwrap(), "s3://tree"]);
    let first = sync()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("aws s3 sync");
    let objects = || {
        macula_testkit::check::json(gw.agent.ctl(&["s3", "status", "--json"]))["objects"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_until("the sync has stored a few objects", 60, || objects() >= 8);
    let at_kill = objects();
    let killed = std::time::Instant::now();
    nodes[3].agent.kill();
    nodes[4].agent.kill();
    let gw = &nodes[0];
    let first = first.wait_with_output().expect("aws s3 sync");
    let mut attempts = vec![first.status.success()];
    while !attempts.last().unwrap() {
        assert!(
            attempts.len() < 5,
            "the sync still fails after {} attempts:\n{}\n--- gateway log ---\n{}",
            attempts.len(),
            output_text(&first),
            gw.agent.log()
        );
        let again = sync().output().unwrap();
        attempts.push(again.status.success());
    }
    let whole_after = killed.elapsed();
    let back = work.path().join("back");
    let out = aws(&["s3", "sync", "s3://tree", back.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "sync down: {}", output_text(&out));
    for dir in ["small", "large"] {
        for f in std::fs::read_dir(tree.join(dir)).unwrap().flatten() {
            let got = std::fs::read(back.join(dir).join(f.file_name()))
                .unwrap_or_else(|e| panic!("{dir}/{:?} not synced back: {e}", f.file_name()));
            assert!(
                got == std::fs::read(f.path()).unwrap(),
                "{dir}/{:?} differs",
                f.file_name()
            );
        }
    }
    std::fs::write(&stop, b"").unwrap();
    let read = reader.wait_with_output().expect("the reader");
    assert!(read.status.success(), "reader: {}", output_text(&read));
    let summary = macula_testkit::check::json(read);
    assert_eq!(summary["corrupt"], serde_json::json!([]), "{summary}");
    assert!(summary["got"].as_u64().unwrap() > 0, "{summary}");
    eprintln!(
        "m nodes killed with {at_kill} of 44 objects stored: sync attempts {attempts:?}, whole \
         {:.1} s after the kill; reader: {summary}",
        whole_after.as_secs_f64()
    );
}

/// restic (Debian; minio-go inside: GetBucketLocation, MakeBucket with a location body, and
/// PutObject as `aws-chunked` with chunk signatures over plain HTTP): init, backup, check
/// --read-data, restore — byte-identical; then rclone syncs the same tree up and back.
#[test]
fn restic_and_rclone() {
    let port = free_tcp_port();
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|i| match i {
            0 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
            _ => String::new(),
        })
        .start();
    let gw = &nodes[0];
    let (kid, secret) = gw.s3_key(&["--name", "restic"]);
    wait_until("the gateway listens", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let mut big = vec![0u8; 6 << 20];
    pseudo_random(&mut big);
    std::fs::write(data.join("big.bin"), &big).unwrap();
    for i in 0..20 {
        std::fs::write(
            data.join("sub").join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(["-r", &format!("s3:http://127.0.0.1:{port}/restic-repo")])
            .args(["-o", "s3.region=macula", "--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD", "test password")
            .env("AWS_ACCESS_KEY_ID", &kid)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .output()
            .expect("restic (tests/deps/s3.list; run tests/install-deps.sh)");
        assert!(
            out.status.success(),
            "restic {args:?}:\n{}\n--- gateway log ---\n{}",
            output_text(&out),
            gw.agent.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    restic(&["init"]);
    restic(&["backup", data.to_str().unwrap()]);
    let check = restic(&["check", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
    let out = dir.path().join("out");
    restic(&["restore", "latest", "--target", out.to_str().unwrap()]);
    let restored = out.join(data.strip_prefix("/").unwrap());
    rclone(port, &kid, &secret, &data, gw);
    assert_eq!(std::fs::read(restored.join("big.bin")).unwrap(), big);
    for i in 0..20 {
        assert_eq!(
            std::fs::read_to_string(restored.join("sub").join(format!("f{i}.txt"))).unwrap(),
            format!("file {i}\n").repeat(i + 1)
        );
    }
}

/// rclone (Debian; provider Other: ListObjects v1, mtime in `X-Amz-Meta-Mtime`): sync a tree
/// up, `check` it (sizes and MD5 ETags), sync it back down byte-identical, `purge`.
fn rclone(port: u16, kid: &str, secret: &str, tree: &Path, gw: &RealmNode) {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("rclone")
            .args(args)
            .env("RCLONE_CONFIG", dir.path().join("none.conf"))
            // rclone's S3 client refuses a custom CA bundle with its own transport.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_M_TYPE", "s3")
            .env("RCLONE_CONFIG_M_PROVIDER", "Other")
            .env("RCLONE_CONFIG_M_ACCESS_KEY_ID", kid)
            .env("RCLONE_CONFIG_M_SECRET_ACCESS_KEY", secret)
            .env(
                "RCLONE_CONFIG_M_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("RCLONE_CONFIG_M_REGION", "macula")
            .output()
            .expect("rclone (tests/deps/s3.list; run tests/install-deps.sh)");
        assert!(
            out.status.success(),
            "rclone {args:?}:\n{}\n--- gateway log ---\n{}",
            output_text(&out),
            gw.agent.log()
        );
    };
    let src = tree.to_str().unwrap();
    run(&["mkdir", "m:rcl"]);
    run(&["sync", src, "m:rcl/tree"]);
    run(&["check", src, "m:rcl/tree"]);
    let back = dir.path().join("back");
    run(&["sync", "m:rcl/tree", back.to_str().unwrap()]);
    run(&["check", src, back.to_str().unwrap()]);
    // A second sync finds nothing to do; purge removes the objects and the bucket.
    run(&["sync", src, "m:rcl/tree"]);
    run(&["purge", "m:rcl"]);
}

fn pseudo_random(b: &mut [u8]) {
    // Deterministic but incompressible enough: xorshift.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for v in b.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = x as u8;
    }
}

/// `[s3] enabled` unset: a hub that stores shards serves S3, an edge or a hub without storage
/// does not (`maculactl s3 status --json`'s `enabled`, what the agent decided at start).
#[test]
fn the_gateway_is_on_by_default_for_hubs_that_store_shards() {
    use macula_testkit::agent::{Agent, AgentOptions};
    use macula_testkit::config::{AgentConfig, Role};
    use macula_testkit::dbus::DbusDaemon;
    let bus = DbusDaemon::start();
    for (role, storage, serves) in [
        (Role::Hub, true, true),
        (Role::Hub, false, false),
        (Role::Edge, true, false),
    ] {
        let port = free_tcp_port();
        let config = AgentConfig::loopback(0)
            .role(role)
            .storage(&format!("enabled = {storage}\nquota_bytes = 1048576\n"))
            .section(&format!("[s3]\nlisten = \"127.0.0.1:{port}\"\n"));
        let agent = Agent::spawn(
            &bus,
            AgentOptions {
                config: Some(config.to_string()),
                ..Default::default()
            },
        );
        let status: serde_json::Value =
            serde_json::from_str(&ok(&agent.ctl(&["s3", "status", "--json"]))).unwrap();
        assert_eq!(
            status["enabled"], serves,
            "{role:?}, storage {storage}: {status}"
        );
        drop(agent);
    }
}

/// Multipart uploads are realm-wide: with curl, an upload created through node 0's gateway
/// gets part 1 there and part 2 through node 2's, is listed and completed through node 2's and
/// reads back through node 0's; another gets parts through both and is aborted: no shard of it
/// is left on any node (each gateway deletes the parts it wrote). Then `[s3]
/// abort_incomplete_uploads_secs`: an upload nobody completes is aborted once its time is past.
#[test]
fn multipart_uploads_span_gateways_and_expire() {
    let (port, port2) = (free_tcp_port(), free_tcp_port());
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|i| match i {
            0 => format!(
                "[s3]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
                 abort_incomplete_uploads_secs = 20\n"
            ),
            2 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port2}\"\n"),
            _ => String::new(),
        })
        .start();
    let gw = &nodes[0];
    let (kid, secret) = gw.s3_key(&["--name", "curl"]);
    for p in [port, port2] {
        wait_until("the gateways listen", 30, || {
            std::net::TcpStream::connect(("127.0.0.1", p)).is_ok()
        });
    }
    // -i: the response's head too (UploadPart's ETag).
    let curl = |args: &[&str]| {
        let out = s3_curl(&kid, &secret)
            .args(["-i", "--fail-with-body"])
            .args(args)
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {args:?}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tag = |text: &str, name: &str| {
        text.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|s| s.split(&format!("</{name}>")).next())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let etag = |text: &str| {
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("etag").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no ETag in {text}"))
    };
    let (a, b) = (
        format!("http://127.0.0.1:{port}/span"),
        format!("http://127.0.0.1:{port2}/span"),
    );
    curl(&["-X", "PUT", &a]);
    let work = tempfile::tempdir().unwrap();
    let mut one = vec![0u8; 6 << 20];
    pseudo_random(&mut one);
    let two: Vec<u8> = one[..1 << 20].iter().map(|x| x ^ 0x5a).collect();
    let (f1, f2) = (work.path().join("one"), work.path().join("two"));
    std::fs::write(&f1, &one).unwrap();
    std::fs::write(&f2, &two).unwrap();
    // `?uploads=`, not `?uploads`: curl 7.88 signs a parameter without a value as `uploads`
    // where SigV4's canonical query has `uploads=` (the gateway, like S3, checks the latter).
    let create = |base: &str, key: &str| {
        tag(
            &curl(&["-X", "POST", &format!("{base}/{key}?uploads=")]),
            "UploadId",
        )
    };
    let upload = |base: &str, key: &str, id: &str, n: u32, f: &Path| {
        etag(&curl(&[
            "-T",
            f.to_str().unwrap(),
            &format!("{base}/{key}?partNumber={n}&uploadId={id}"),
        ]))
    };
    let id = create(&a, "joined");
    let e1 = upload(&a, "joined", &id, 1, &f1);
    // Node 2's gateway hears of the upload from the realm index (within a moment).
    let mut e2 = String::new();
    wait_until("node 2's gateway knows the upload", 10, || {
        let out = s3_curl(&kid, &secret)
            .args(["-i", "-T"])
            .arg(&f2)
            .arg(format!("{b}/joined?partNumber=2&uploadId={id}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The last status line (curl shows the `100 Continue` before it).
        let done = text
            .lines()
            .rfind(|l| l.starts_with("HTTP/"))
            .is_some_and(|l| l.starts_with("HTTP/1.1 200"));
        if done {
            e2 = etag(&text);
        }
        done
    });
    let parts = curl(&[&format!("{b}/joined?uploadId={id}")]);
    assert_eq!(parts.matches("<Part>").count(), 2, "{parts}");
    assert!(curl(&[&format!("{b}?uploads=")]).contains(&id));
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{e1}</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>{e2}</ETag></Part></CompleteMultipartUpload>"
    );
    let done = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &complete,
        &format!("{b}/joined?uploadId={id}"),
    ]);
    assert!(
        tag(&done, "ETag").ends_with("-2&quot;") || tag(&done, "ETag").ends_with("-2\""),
        "{done}"
    );
    let back = work.path().join("back");
    wait_until("node 0's gateway serves the completed object", 10, || {
        s3_curl(&kid, &secret)
            .args(["--fail", "-o"])
            .arg(&back)
            .arg(format!("{a}/joined"))
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        std::fs::read(&back).unwrap() == [one.as_slice(), two.as_slice()].concat(),
        "the object read through node 0 differs"
    );
    assert!(
        !curl(&[&format!("{a}?uploads=")]).contains(&id),
        "still listed"
    );
    // An upload with parts through both gateways, aborted: nothing of it stays.
    let shards = || nodes.iter().map(RealmNode::shard_count).sum::<usize>();
    let before = shards();
    let gone = create(&b, "gone");
    upload(&b, "gone", &gone, 1, &f1);
    wait_until("node 0's gateway knows the upload", 10, || {
        curl(&[&format!("{a}?uploads=")]).contains(&gone)
    });
    upload(&a, "gone", &gone, 2, &f2);
    assert!(shards() > before);
    curl(&["-X", "DELETE", &format!("{a}/gone?uploadId={gone}")]);
    wait_until(
        "the aborted upload's parts are deleted on every node",
        20,
        || shards() == before,
    );
    // The lifecycle: an upload nobody ends, aborted 20 s after its creation.
    let idle = create(&a, "idle");
    upload(&a, "idle", &idle, 1, &f1);
    assert!(shards() > before);
    assert!(
        curl(&[&format!("{b}?uploads=")]).contains(&idle) || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            curl(&[&format!("{b}?uploads=")]).contains(&idle)
        }
    );
    wait_until("the idle upload is aborted after its time", 60, || {
        !curl(&[&format!("{a}?uploads=")]).contains(&idle)
    });
    wait_until("its part's shards are deleted", 20, || shards() == before);
    assert!(
        gw.agent
            .log()
            .contains("aborted an incomplete multipart upload"),
        "the abort was not logged"
    );
    // An upload that a gateway of the version before kept in `<state>/s3/uploads` is entered
    // into the realm index at the next start, and the file removed.
    let legacy: std::collections::BTreeMap<String, macula_s3::multipart::Upload> = [(
        "0123456789abcdef0123456789abcdef".to_string(),
        macula_s3::multipart::Upload {
            bucket: "span".into(),
            key: "legacy".into(),
            created_ms: u64::MAX / 2,
            content_type: None,
            user_meta: vec![],
            parts: Default::default(),
        },
    )]
    .into();
    let mut nodes = nodes;
    let n0 = &mut nodes[0];
    n0.agent.stop(std::time::Duration::from_secs(10));
    let file = n0.agent.state_dir().join("s3").join("uploads");
    std::fs::write(&file, macula_core::wire::encode(&legacy)).unwrap();
    n0.agent.start(&n0.bus).expect("the gateway restarts");
    wait_until(
        "the old upload is listed through node 2's gateway",
        30,
        || curl(&[&format!("{b}?uploads=")]).contains("0123456789abcdef0123456789abcdef"),
    );
    assert!(!file.exists(), "{} was not removed", file.display());
}
