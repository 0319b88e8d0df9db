//! `make bench-s3`: the S3 gateway against `maculactl put/get` on the same realm, in the same
//! run. Four real `maculad` (release build) with 2 + 1 coding; node 0 serves S3 on loopback and
//! is the node `maculactl` talks to. boto3 (`s3_bench.py`, in a venv under the target dir) times
//! its own requests in-process; `maculactl` is timed as the process it is.
//!
//! Printed: a 64 MiB PUT (curl, and boto3 with a signed payload, as it sends over HTTP, and
//! UNSIGNED-PAYLOAD, as over HTTPS) and GET (curl and boto3; median of 3) in MiB/s and as a
//! ratio of maculactl's (goal ≥ 0.9); 4 KiB objects per second, put then got one at a time (maculactl: one process per
//! object, so its figure carries a process start each); the agent's RSS before and at its peak
//! while boto3 uploads 1 GiB (multipart, 8 MiB parts, boto3's default 10 threads).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use macula_testkit::check::{free_tcp_port, json, ok, output_text, python_venv};
use macula_testkit::realm::{AgentRealm, s3_curl};

const RUNS: usize = 3;
const LARGE: usize = 64 << 20;
const SMALL: usize = 1000;
const HUGE: u64 = 1 << 30;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_s(bytes: f64, secs: f64) -> f64 {
    bytes / secs / f64::from(1 << 20)
}

fn main() {
    let python = python_venv(
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("s3-venv"),
        "boto3, awscli",
        &["boto3", "awscli"],
    );
    let port = free_tcp_port();
    let nodes = AgentRealm::new(4)
        .coded(2, 1)
        .quota(2 << 30)
        .storage_extra(|i| match i {
            0 => format!("[s3]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
            _ => String::new(),
        })
        .start();
    let gw = &nodes[0];
    let (kid, secret) = gw.s3_key(&["--name", "bench"]);
    let boto = |phase: &str, env: &[(&str, String)]| {
        let out = std::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/s3_bench.py"))
            .arg(phase)
            .env("EP", format!("http://127.0.0.1:{port}"))
            .env("KID", &kid)
            .env("SEC", &secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "s3_bench.py {phase}: {}\n--- gateway log ---\n{}",
            output_text(&out),
            gw.agent.log()
        );
        json(out)
    };
    let work = tempfile::tempdir().expect("a temporary directory");

    // Large objects: the same 64 MiB file through maculactl and through S3.
    let file = work.path().join("large.bin");
    let mut data = vec![0u8; LARGE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    std::fs::write(&file, &data).expect("write the file");
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        let cap = ok(&gw.agent.ctl(&["put", "-q", file.to_str().expect("UTF-8")]));
        puts.push(t.elapsed());
        let back = work.path().join("back.bin");
        let t = Instant::now();
        ok(&gw
            .agent
            .ctl(&["get", "-q", cap.trim(), "-o", back.to_str().expect("UTF-8")]));
        gets.push(t.elapsed());
        assert!(
            std::fs::read(&back).expect("read back") == data,
            "maculactl get differs"
        );
        ok(&gw.agent.ctl(&["storage", "delete", cap.trim()]));
    }
    let (ctl_put, ctl_get) = (median(puts).as_secs_f64(), median(gets).as_secs_f64());
    let large = boto(
        "large",
        &[
            ("FILE", file.display().to_string()),
            ("RUNS", RUNS.to_string()),
        ],
    );
    let (s3_put, s3_put_unsigned, s3_get) = (
        large["put_s"].as_f64().expect("put_s"),
        large["put_unsigned_s"].as_f64().expect("put_unsigned_s"),
        large["get_s"].as_f64().expect("get_s"),
    );
    // The same PUT and GET by curl (a C client signing with `--aws-sigv4`, the payload
    // UNSIGNED as over HTTPS), timed as the process it is, like maculactl: the gateway's cost
    // without the Python client's on the same two cores.
    let url = format!("http://127.0.0.1:{port}/bench/large-curl");
    let curl = |args: &[&str]| {
        let out = s3_curl(&kid, &secret)
            .arg("--fail-with-body")
            .args(args)
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {args:?}: {}", output_text(&out));
    };
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        curl(&["-o", "/dev/null", "-T", file.to_str().expect("UTF-8"), &url]);
        puts.push(t.elapsed());
        let back = work.path().join("back.bin");
        let t = Instant::now();
        curl(&["-o", back.to_str().expect("UTF-8"), &url]);
        gets.push(t.elapsed());
        assert!(
            std::fs::read(&back).expect("read back") == data,
            "curl's GET differs"
        );
    }
    curl(&["-o", "/dev/null", "-X", "DELETE", &url]);
    let (curl_put, curl_get) = (median(puts).as_secs_f64(), median(gets).as_secs_f64());
    let b = LARGE as f64;
    println!("S3 gateway vs maculactl, same realm (4 x maculad, 2 + 1), median of {RUNS}:");
    println!(
        "  64 MiB PUT, curl: S3 {:7.1} MiB/s   ratio {:.2} (goal >= 0.9)",
        mib_s(b, curl_put),
        ctl_put / curl_put
    );
    println!(
        "  64 MiB GET, curl: S3 {:7.1} MiB/s   ratio {:.2} (goal >= 0.9)",
        mib_s(b, curl_get),
        ctl_get / curl_get
    );
    println!(
        "  64 MiB PUT: S3 {:7.1} MiB/s   maculactl {:7.1} MiB/s   ratio {:.2} (goal >= 0.9)",
        mib_s(b, s3_put),
        mib_s(b, ctl_put),
        ctl_put / s3_put
    );
    println!(
        "  64 MiB PUT, UNSIGNED-PAYLOAD (as over HTTPS): S3 {:7.1} MiB/s   ratio {:.2} (goal >= 0.9)",
        mib_s(b, s3_put_unsigned),
        ctl_put / s3_put_unsigned
    );
    println!(
        "  64 MiB GET: S3 {:7.1} MiB/s   maculactl {:7.1} MiB/s   ratio {:.2} (goal >= 0.9)",
        mib_s(b, s3_get),
        mib_s(b, ctl_get),
        ctl_get / s3_get
    );

    // Small objects, one request at a time.
    let small = boto("small", &[("COUNT", SMALL.to_string())]);
    let count = small["count"].as_f64().expect("count");
    let ctl_count = SMALL / 10;
    let piece = work.path().join("small.bin");
    std::fs::write(&piece, [7u8; 4096]).expect("write");
    let t = Instant::now();
    let caps: Vec<String> = (0..ctl_count)
        .map(|_| {
            ok(&gw.agent.ctl(&["put", "-q", piece.to_str().expect("UTF-8")]))
                .trim()
                .to_string()
        })
        .collect();
    let ctl_small_put = t.elapsed().as_secs_f64();
    let back = work.path().join("small.back");
    let t = Instant::now();
    for cap in &caps {
        ok(&gw
            .agent
            .ctl(&["get", "-q", cap, "-o", back.to_str().expect("UTF-8")]));
    }
    let ctl_small_get = t.elapsed().as_secs_f64();
    for cap in &caps {
        ok(&gw.agent.ctl(&["storage", "delete", cap]));
    }
    println!(
        "  4 KiB objects: S3 {:6.1} PUT/s {:6.1} GET/s ({SMALL});   maculactl {:6.1} put/s \
         {:6.1} get/s ({ctl_count}, a process each)",
        count / small["put_s"].as_f64().expect("put_s"),
        count / small["get_s"].as_f64().expect("get_s"),
        ctl_count as f64 / ctl_small_put,
        ctl_count as f64 / ctl_small_get,
    );

    // The agent's memory while 1 GiB streams in.
    let pid = gw.agent.pid().expect("the gateway runs");
    let before = rss_kib(pid);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let huge = boto("huge", &[("SIZE", HUGE.to_string())]);
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("the sampler");
    println!(
        "  1 GiB upload (multipart, 8 MiB parts, 10 threads): {:.1} MiB/s; agent RSS {} MiB \
         before, {} MiB at its peak",
        mib_s(HUGE as f64, huge["put_s"].as_f64().expect("put_s")),
        before / 1024,
        peak / 1024
    );
}
