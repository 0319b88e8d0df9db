//! Storage benchmarks: `cargo bench -p macula-store`.
//!
//! Single thread, thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, so other load on the machine does
//! not count), best of several rounds. Throughput is MiB/s of original data. Every figure is
//! printed next to baselines measured in the same run (memcpy, BLAKE3, AEAD), so the ratios stay
//! meaningful on a noisy or different machine. `MACULA_BENCH_QUICK=1` shortens the rounds.

use std::hint::black_box;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use macula_core::NodeKey;
use macula_store::codec::{CodecId, DEFAULT_CODEC};
use macula_store::crypto::{self, AeadId, ObjectKey};
use macula_store::header::SegmentKind;
use macula_store::network::{Client, InProcessNetwork, PutConfig};
use macula_store::placement::NodeInfo;
use macula_store::repair::RepairConfig;
use macula_store::segment::{SegmentParams, Shard, Trust, decode_segment, encode_segment};
use macula_store::store::LocalStore;

#[path = "../tests/common/planners.rs"]
mod planners;
use planners::Planners;

const MIB: f64 = 1024.0 * 1024.0;

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best per-iteration time of `rounds` rounds, each running `f` until at least `min_secs`.
fn measure(mut f: impl FnMut()) -> f64 {
    let quick = std::env::var_os("MACULA_BENCH_QUICK").is_some();
    let (rounds, min_secs) = if quick { (2, 0.05) } else { (5, 0.3) };
    f(); // warm up (caches, lazily built matrices)
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = thread_cpu_secs();
        let mut iters = 0u32;
        loop {
            f();
            iters += 1;
            let el = thread_cpu_secs() - start;
            if el >= min_secs {
                best = best.min(el / f64::from(iters));
                break;
            }
        }
    }
    best
}

fn mibs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / MIB / secs
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn codec_table() -> Vec<(usize, usize, [f64; 6])> {
    println!("## Erasure codecs: 1 MiB shards, MiB/s of original data (single thread)");
    println!();
    println!(
        "| k+m | op | rs-gf8-matrix (reed-solomon-erasure) | rs-gf16-leopard (reed-solomon-simd) | gf16 / gf8 |"
    );
    println!("|---|---|---|---|---|");
    let shard = 1 << 20;
    let mut rows = Vec::new();
    for (k, m) in [(4usize, 2usize), (10, 4), (29, 51)] {
        let data: Vec<Vec<u8>> = (0..k).map(|i| pseudo_random(shard, i as u64 + 1)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut res = [0.0; 6];
        for (ci, id) in [CodecId::RsGf8Matrix, CodecId::RsGf16Leopard]
            .into_iter()
            .enumerate()
        {
            let codec = id.codec();
            let parity = codec.encode(&refs, m).unwrap();
            let full: Vec<Option<Vec<u8>>> =
                data.iter().chain(&parity).cloned().map(Some).collect();
            let enc = measure(|| {
                black_box(codec.encode(black_box(&refs), m).unwrap());
            });
            let lose = |n: usize| {
                let mut s = full.clone();
                for slot in s.iter_mut().take(n) {
                    *slot = None;
                }
                s
            };
            let one = lose(1);
            let dec1 = measure(|| {
                let mut s = one.clone();
                codec.reconstruct_data(k, &mut s).unwrap();
                black_box(s);
            });
            let many = lose(m);
            let decm = measure(|| {
                let mut s = many.clone();
                codec.reconstruct_data(k, &mut s).unwrap();
                black_box(s);
            });
            // The clone of the surviving shards is part of each decode measurement; subtract it.
            let clone_cost = measure(|| {
                black_box(one.clone());
            });
            res[ci * 3] = mibs(k * shard, enc);
            res[ci * 3 + 1] = mibs(k * shard, (dec1 - clone_cost).max(1e-9));
            res[ci * 3 + 2] = mibs(k * shard, (decm - clone_cost).max(1e-9));
        }
        for (op, i) in [
            ("encode", 0),
            ("decode, 1 lost", 1),
            (&*format!("decode, {m} lost"), 2),
        ] {
            println!(
                "| {k}+{m} | {op} | {:.0} | {:.0} | {:.2}× |",
                res[i],
                res[3 + i],
                res[3 + i] / res[i]
            );
        }
        rows.push((k, m, res));
    }
    println!();
    rows
}

fn pipeline() {
    println!("## Pipeline, one core: 1 MiB segments, 4+2, default codec and AEAD");
    println!();
    let seg_len = 1 << 20;
    let plain = pseudo_random(seg_len, 99);
    let owner = NodeKey::from_seed([5; 32]);
    let key = ObjectKey([6; 32]);
    let aead = AeadId::preferred();
    let codec = DEFAULT_CODEC;
    let p = SegmentParams {
        kind: SegmentKind::Data,
        codec,
        aead,
        k: 4,
        m: 2,
        segment_index: 0,
        segment_count: 1,
    };

    let mut dst = vec![0u8; seg_len];
    let memcpy = measure(|| {
        dst.copy_from_slice(black_box(&plain));
        black_box(&dst);
    });
    let b3 = measure(|| {
        black_box(blake3::hash(black_box(&plain)));
    });
    let mut buf = vec![0u8; seg_len + 16];
    let seal = measure(|| {
        crypto::seal_in_place(aead, &key, [0; 12], b"", black_box(&mut buf));
    });

    let put = measure(|| {
        let seg = encode_segment(black_box(&plain), &p, &key, &owner).unwrap();
        for i in 0..6 {
            black_box(seg.shard_bytes(i));
        }
    });
    // The same put with the other AEAD and codec choices, for boards without AES instructions
    // (Pi 3/4 use ChaCha20-Poly1305) and for the GF(2^8) codec.
    let variant = |aead: AeadId, codec: CodecId| {
        let p = SegmentParams { aead, codec, ..p };
        measure(|| {
            let seg = encode_segment(black_box(&plain), &p, &key, &owner).unwrap();
            for i in 0..6 {
                black_box(seg.shard_bytes(i));
            }
        })
    };
    let put_chacha = variant(AeadId::ChaCha20Poly1305, codec);
    let put_gf8 = variant(aead, CodecId::RsGf8Matrix);
    let seg = encode_segment(&plain, &p, &key, &owner).unwrap();
    let id = seg.segment_id();
    let wire: Vec<Vec<u8>> = (0..6).map(|i| seg.shard_bytes(i)).collect();
    let get = |lost: usize| {
        measure(|| {
            let mut shards: Vec<Option<Vec<u8>>> = vec![None; 6];
            for (i, w) in wire.iter().enumerate().skip(lost).take(4) {
                shards[i] = Some(
                    Shard::from_bytes(black_box(w), Trust::SegmentId(id))
                        .unwrap()
                        .data,
                );
            }
            black_box(decode_segment(&seg.signed.desc, shards, &key).unwrap());
        })
    };
    let get0 = get(0);
    let get1 = get(1);

    let row = |name: &str, secs: f64| {
        let t = mibs(seg_len, secs);
        println!(
            "| {name} | {t:.0} | {:.2} | {:.2} |",
            t / mibs(seg_len, memcpy),
            t / mibs(seg_len, b3)
        );
        t
    };
    println!("AEAD {} ; codec {}", aead.name(), codec.name());
    println!();
    println!("| stage | MiB/s | ÷ memcpy | ÷ BLAKE3 |");
    println!("|---|---|---|---|");
    row("baseline: memcpy", memcpy);
    row("baseline: BLAKE3 hash", b3);
    row(&format!("baseline: {} seal", aead.name()), seal);
    let put_t = row("put: encrypt + code + tree + sign + serialise", put);
    let get_t = row("get: verify 4 shards + decrypt", get0);
    row("get, 1 data shard lost: verify + decode + decrypt", get1);
    row(
        "put with chacha20-poly1305 (boards without AES)",
        put_chacha,
    );
    row("put with rs-gf8-matrix", put_gf8);
    println!();
    let goal = 1024.0;
    for (name, t) in [("put", put_t), ("get", get_t)] {
        println!(
            "{name} pipeline per core: {t:.0} MiB/s — goal ≥ {goal:.0} MiB/s {}",
            if t >= goal { "met" } else { "NOT met" }
        );
    }
    println!();
}

/// Raw disk baseline: the same number of bytes written as files of `file_len` bytes with
/// write + fsync + rename + directory fsync, like the store does.
fn raw_disk(dir: &std::path::Path, total: usize, file_len: usize) -> f64 {
    let buf = pseudo_random(file_len, 3);
    let start = Instant::now();
    let mut written = 0;
    let mut i = 0;
    while written < total {
        let tmp = dir.join(format!("t{i}"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, dir.join(format!("f{i}"))).unwrap();
        std::fs::File::open(dir).unwrap().sync_all().unwrap();
        written += file_len;
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    for j in 0..i {
        let _ = std::fs::remove_file(dir.join(format!("f{j}")));
    }
    secs
}

/// Seven in-process stores on this disk: put, get and restore-redundancy wall times for one
/// object, against the raw disk baseline. Size from `MACULA_BENCH_OBJECT_MIB` (default 1024).
fn cluster() {
    let mib: usize = std::env::var("MACULA_BENCH_OBJECT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let len = mib << 20;
    println!(
        "## In-process cluster: 7 local stores on one disk, one {mib} MiB object, 4+2, 1 MiB segments (wall time)"
    );
    println!();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = InProcessNetwork::default();
    let mut nodes = Vec::new();
    for i in 0..7u8 {
        let id = NodeKey::from_seed([i + 40; 32]).node_id();
        let store = LocalStore::open(&dir.path().join(format!("n{i}")), 1 << 40).unwrap();
        net.add_node(id, Arc::new(store));
        nodes.push(NodeInfo {
            id,
            capacity_bytes: 1 << 40,
            free_bytes: 1 << 40,
            site: format!("s{}", i % 3),
            power: "p".into(),
        });
    }
    let client = Client::new(net, NodeKey::from_seed([4; 32]), PutConfig::default());
    let data = pseudo_random(len, 77);
    let shard_file = (1 << 20) / 4 + 512;
    let raw = raw_disk(dir.path(), len * 6 / 4, shard_file);

    let t = Instant::now();
    let cap = rt
        .block_on(client.put(&nodes, &mut &data[..], len as u64))
        .unwrap();
    let put = t.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(len);
    let t = Instant::now();
    rt.block_on(client.get(&nodes, &cap, &mut out)).unwrap();
    let get = t.elapsed().as_secs_f64();
    assert!(out == data, "round trip");
    drop(out);

    // Lose one node; the nodes' planners (no grace, no throttle) drive repair until nothing is
    // degraded.
    let cfg = RepairConfig {
        grace_ms: 0,
        max_inflight: 1,
        bytes_per_sec: u64::MAX / 4000,
        burst_bytes: u64::MAX / 4,
        retry_ms: 0,
        takeover_ms: u64::MAX / 4,
    };
    let mut planners = Planners::new(&client, &nodes, cfg);
    let dead = nodes[0].id;
    let lost_bytes = client.network().store(&dead).unwrap().used();
    client.network().set_up(&dead, false);
    planners.node_down(dead, 1);
    let t = Instant::now();
    let repairs = rt.block_on(planners.run(&client, 1));
    let repair = t.elapsed().as_secs_f64();
    assert_eq!(planners.degraded(1), 0);

    let stored = len * 6 / 4;
    println!("| operation | seconds | MiB/s of object data | ÷ raw disk |");
    println!("|---|---|---|---|");
    let raw_rate = mibs(stored, raw) * 4.0 / 6.0;
    println!(
        "| baseline: raw disk, {} MiB as {shard_file}-byte files, fsync + rename | {raw:.1} | {raw_rate:.0} (per object byte) | 1.00 |",
        stored >> 20
    );
    println!(
        "| put | {put:.1} | {:.0} | {:.2} |",
        mibs(len, put),
        raw / put
    );
    println!(
        "| get (all shards healthy) | {get:.1} | {:.0} | — |",
        mibs(len, get)
    );
    println!(
        "| restore redundancy after losing 1 of 7 nodes ({} MiB of shards, {repairs} segments) | {repair:.1} | — | — |",
        lost_bytes >> 20
    );
    println!();
    println!(
        "time to restore redundancy for {mib} MiB after a node loss: {repair:.1} s — goal ≤ 60 s {}",
        if repair <= 60.0 { "met" } else { "NOT met" }
    );
    println!(
        "(single-threaded, unthrottled, one disk; the default throttle of 32 MiB/s would bound it at {:.1} s)",
        (lost_bytes as f64) / (32.0 * MIB)
    );
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let rows = codec_table();
    println!("## Codec choice per geometry (encode speed, then 1-loss decode)");
    println!();
    for (k, m, r) in &rows {
        let enc = if r[3] > r[0] {
            "rs-gf16-leopard"
        } else {
            "rs-gf8-matrix"
        };
        let dec = if r[4] > r[1] {
            "rs-gf16-leopard"
        } else {
            "rs-gf8-matrix"
        };
        println!("- {k}+{m}: faster encode {enc}, faster 1-loss decode {dec}");
    }
    println!("- DEFAULT_CODEC = {}", DEFAULT_CODEC.name());
    println!();
    pipeline();
    cluster();
}
