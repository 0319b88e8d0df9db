//! Storage benchmarks: `cargo bench -p macula-store`.
//!
//! Single thread, thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, so other load on the machine does
//! not count), best of several rounds. Throughput is MiB/s of original data. Every figure is
//! printed next to baselines measured in the same run (memcpy, BLAKE3, AEAD), so the ratios stay
//! meaningful on a noisy or different machine. `MACULA_BENCH_QUICK=1` shortens the rounds.

use std::hint::black_box;

use macula_core::NodeKey;
use macula_store::codec::{CodecId, DEFAULT_CODEC};
use macula_store::crypto::{self, AeadId, ObjectKey};
use macula_store::header::SegmentKind;
use macula_store::segment::{SegmentParams, Shard, Trust, decode_segment, encode_segment};

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
            black_box(seg.shard(i).to_bytes());
        }
    });
    let seg = encode_segment(&plain, &p, &key, &owner).unwrap();
    let id = seg.segment_id();
    let wire: Vec<Vec<u8>> = (0..6).map(|i| seg.shard(i).to_bytes()).collect();
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
}
