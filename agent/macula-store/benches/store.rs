//! Storage benchmarks: `cargo bench -p macula-store`.
//!
//! Single thread, thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, so other load on the machine does
//! not count), best of several rounds. Throughput is MiB/s of original data. Every figure is
//! printed next to baselines measured in the same run (memcpy, BLAKE3, AEAD), so the ratios stay
//! meaningful on a noisy or different machine. `MACULA_BENCH_QUICK=1` shortens the rounds.
//!
//! The codec table has ISA-L (Debian `libisal-dev`, linked into this bench only) as its baseline.

use std::hint::black_box;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use macula_core::{NodeId, NodeKey};
use macula_store::codec::{CodecId, DEFAULT_CODEC};
use macula_store::crypto::{self, AeadId, ObjectKey};
use macula_store::header::SegmentKind;
use macula_store::network::{
    Client, FetchRequest, InProcessNetwork, PutConfig, StorageNetwork, TransferError,
};
use macula_store::placement::NodeInfo;
use macula_store::repair::RepairConfig;
use macula_store::segment::{self, SegmentParams, Shard, Trust, decode_segment, encode_segment};
use macula_store::store::{DeleteRequest, LocalStore};

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

/// ISA-L's erasure code (`isa-l/erasure_code.h`): the fastest widely used GF(2^8) matrix code,
/// with runtime dispatch to SSE/AVX2/AVX-512/GFNI (NEON on aarch64). The bench's baseline.
mod isal {
    #[link(name = "isal")]
    unsafe extern "C" {
        fn gf_gen_cauchy1_matrix(a: *mut u8, m: i32, k: i32);
        fn gf_invert_matrix(input: *mut u8, out: *mut u8, n: i32) -> i32;
        fn ec_init_tables(k: i32, rows: i32, a: *mut u8, gftbls: *mut u8);
        fn ec_encode_data(
            len: i32,
            k: i32,
            rows: i32,
            gftbls: *mut u8,
            data: *mut *mut u8,
            coding: *mut *mut u8,
        );
    }

    /// A systematic Cauchy code with `k` data and `m` parity rows.
    pub struct Isal {
        k: usize,
        m: usize,
        /// `(k + m) × k` encoding matrix, identity on top.
        matrix: Vec<u8>,
        encode_tables: Vec<u8>,
    }

    impl Isal {
        pub fn new(k: usize, m: usize) -> Self {
            let mut matrix = vec![0u8; (k + m) * k];
            let mut encode_tables = vec![0u8; 32 * k * m];
            // SAFETY: both buffers have the sizes the functions document.
            unsafe {
                gf_gen_cauchy1_matrix(matrix.as_mut_ptr(), (k + m) as i32, k as i32);
                ec_init_tables(
                    k as i32,
                    m as i32,
                    matrix[k * k..].as_mut_ptr(),
                    encode_tables.as_mut_ptr(),
                );
            }
            Self {
                k,
                m,
                matrix,
                encode_tables,
            }
        }

        fn run(tables: &[u8], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
            let len = inputs[0].len();
            assert!(inputs.iter().all(|i| i.len() == len));
            assert!(outputs.iter().all(|o| o.len() == len));
            assert_eq!(tables.len(), 32 * inputs.len() * outputs.len());
            let mut src: Vec<*mut u8> = inputs.iter().map(|i| i.as_ptr().cast_mut()).collect();
            let mut dst: Vec<*mut u8> = outputs.iter_mut().map(|o| o.as_mut_ptr()).collect();
            // SAFETY: every pointer covers `len` bytes; ISA-L only reads the sources and tables.
            unsafe {
                ec_encode_data(
                    len as i32,
                    inputs.len() as i32,
                    outputs.len() as i32,
                    tables.as_ptr().cast_mut(),
                    src.as_mut_ptr(),
                    dst.as_mut_ptr(),
                );
            }
        }

        /// Parity of `data` into `parity` (caller-owned buffers).
        pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) {
            assert_eq!((data.len(), parity.len()), (self.k, self.m));
            Self::run(&self.encode_tables, data, parity);
        }

        /// Rebuilds the data shards `lost` from the `k` surviving shards `survivors` (indices into
        /// the code, with their data), the way ISA-L's own `erasure_code_test` decodes: invert the
        /// survivors' rows, build tables, run.
        pub fn decode(&self, survivors: &[(usize, &[u8])], lost: &[usize], out: &mut [&mut [u8]]) {
            let k = self.k;
            assert_eq!(survivors.len(), k);
            let mut sub = vec![0u8; k * k];
            for (r, (i, _)) in survivors.iter().enumerate() {
                sub[r * k..(r + 1) * k].copy_from_slice(&self.matrix[i * k..(i + 1) * k]);
            }
            let mut inv = vec![0u8; k * k];
            // SAFETY: k × k matrices.
            let rc = unsafe { gf_invert_matrix(sub.as_mut_ptr(), inv.as_mut_ptr(), k as i32) };
            assert_eq!(rc, 0, "singular");
            let mut rows = Vec::with_capacity(lost.len() * k);
            for &l in lost {
                rows.extend_from_slice(&inv[l * k..(l + 1) * k]);
            }
            let mut tables = vec![0u8; 32 * k * lost.len()];
            // SAFETY: sizes as documented.
            unsafe {
                ec_init_tables(
                    k as i32,
                    lost.len() as i32,
                    rows.as_mut_ptr(),
                    tables.as_mut_ptr(),
                )
            };
            let inputs: Vec<&[u8]> = survivors.iter().map(|(_, d)| *d).collect();
            Self::run(&tables, &inputs, out);
        }
    }
}

/// MiB/s of one codec: encode, decode 1 lost, decode m lost.
type Rates = [f64; 3];

/// `reed-solomon-erasure` (the implementation of rs-gf8-matrix before `gf8`), fresh buffers as
/// the old trait had them; decode figures exclude cloning the surviving shards.
fn rse_rates(data: &[Vec<u8>], m: usize) -> Rates {
    use reed_solomon_erasure::galois_8::ReedSolomon;
    let (k, shard) = (data.len(), data[0].len());
    let rs = ReedSolomon::new(k, m).unwrap();
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut parity = vec![vec![0u8; shard]; m];
    rs.encode_sep(&refs, &mut parity).unwrap();
    let full: Vec<Option<Vec<u8>>> = data.iter().chain(&parity).cloned().map(Some).collect();
    let mut r = [0.0; 3];
    r[0] = mibs(
        k * shard,
        measure(|| {
            let mut p = vec![vec![0u8; shard]; m];
            rs.encode_sep(black_box(&refs), &mut p).unwrap();
            black_box(p);
        }),
    );
    for (slot, n) in [(1, 1), (2, m)] {
        let mut lost = full.clone();
        for s in lost.iter_mut().take(n) {
            *s = None;
        }
        let dec = measure(|| {
            let mut s = lost.clone();
            rs.reconstruct_data(&mut s).unwrap();
            black_box(s);
        });
        // Subtract the cost of exactly the clone each decode starts from.
        let clone_cost = measure(|| {
            black_box(lost.clone());
        });
        r[slot] = mibs(k * shard, (dec - clone_cost).max(1e-9));
    }
    r
}

/// A codec of this crate coding into buffers allocated once (`encode_into`,
/// `reconstruct_into`), as the segment pipeline does.
fn codec_rates(id: CodecId, data: &[Vec<u8>], m: usize) -> Rates {
    let codec = id.codec();
    let (k, shard) = (data.len(), data[0].len());
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut parity = vec![vec![0u8; shard]; m];
    let mut r = [0.0; 3];
    {
        let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        r[0] = mibs(
            k * shard,
            measure(|| {
                codec.encode_into(black_box(&refs), &mut outs).unwrap();
                black_box(&outs);
            }),
        );
    }
    let mut bufs = vec![vec![0u8; shard]; m.min(k)];
    for (slot, n) in [(1, 1), (2, m)] {
        let present: Vec<Option<&[u8]>> = data
            .iter()
            .chain(&parity)
            .enumerate()
            .map(|(i, s)| (i >= n).then_some(s.as_slice()))
            .collect();
        let mut out: Vec<(usize, &mut [u8])> = bufs
            .iter_mut()
            .take(n.min(k))
            .enumerate()
            .map(|(i, b)| (i, b.as_mut_slice()))
            .collect();
        r[slot] = mibs(
            k * shard,
            measure(|| {
                codec
                    .reconstruct_into(k, black_box(&present), &mut out)
                    .unwrap();
                black_box(&out);
            }),
        );
        assert!(
            out.iter().all(|(i, b)| **b == data[*i][..]),
            "{id:?} round trip"
        );
    }
    r
}

/// ISA-L into buffers allocated once.
fn isal_rates(data: &[Vec<u8>], m: usize) -> Rates {
    let (k, shard) = (data.len(), data[0].len());
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let isal = isal::Isal::new(k, m);
    let mut parity = vec![vec![0u8; shard]; m];
    let mut r = [0.0; 3];
    {
        let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        r[0] = mibs(
            k * shard,
            measure(|| {
                isal.encode(black_box(&refs), &mut outs);
                black_box(&outs);
            }),
        );
    }
    let mut bufs = vec![vec![0u8; shard]; m.min(k)];
    for (slot, n) in [(1, 1), (2, m)] {
        // The first `n` shards are lost (data shards first: at 29+51 all 29 data shards and 22
        // parity shards); the next `k` shards survive and the lost data shards are rebuilt.
        let survivors: Vec<(usize, &[u8])> = (n..n + k)
            .map(|i| {
                let d: &[u8] = if i < k { &data[i] } else { &parity[i - k] };
                (i, d)
            })
            .collect();
        let lost: Vec<usize> = (0..n.min(k)).collect();
        let mut outs: Vec<&mut [u8]> = bufs
            .iter_mut()
            .take(lost.len())
            .map(Vec::as_mut_slice)
            .collect();
        r[slot] = mibs(
            k * shard,
            measure(|| {
                isal.decode(black_box(&survivors), &lost, &mut outs);
                black_box(&outs);
            }),
        );
        assert!(
            outs.iter().zip(data).all(|(o, d)| **o == d[..]),
            "ISA-L round trip"
        );
    }
    r
}

/// One row per geometry: `[gf8, gf16]` rates of this crate's codecs.
fn codec_table() -> Vec<(usize, usize, [Rates; 2])> {
    println!("## Erasure codecs: 1 MiB shards, MiB/s of original data (single thread)");
    println!();
    println!(
        "ISA-L and this crate's codecs code into buffers allocated once; reed-solomon-erasure \
         (rs-gf8-matrix's implementation before `gf8`, the same code) allocates its results, its \
         decode figures exclude cloning the surviving shards. Decode rebuilds the lost data shards."
    );
    println!();
    println!(
        "| k+m | op | ISA-L | before: rs-gf8-matrix (reed-solomon-erasure) | rs-gf8-matrix (gf8) | rs-gf16-leopard (reed-solomon-simd) | gf8 ÷ ISA-L | gf16 ÷ ISA-L |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let shard = 1 << 20;
    let mut rows = Vec::new();
    for (k, m) in [(4usize, 2usize), (10, 4), (29, 51)] {
        let data: Vec<Vec<u8>> = (0..k).map(|i| pseudo_random(shard, i as u64 + 1)).collect();
        let isal = isal_rates(&data, m);
        let rse = rse_rates(&data, m);
        let gf8 = codec_rates(CodecId::RsGf8Matrix, &data, m);
        let gf16 = codec_rates(CodecId::RsGf16Leopard, &data, m);
        for (op, i) in [
            ("encode", 0),
            ("decode, 1 lost", 1),
            (&*format!("decode, {m} lost"), 2),
        ] {
            println!(
                "| {k}+{m} | {op} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
                isal[i],
                rse[i],
                gf8[i],
                gf16[i],
                gf8[i] / isal[i],
                gf16[i] / isal[i]
            );
        }
        rows.push((k, m, [gf8, gf16]));
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
    // (Pi 3/4 use ChaCha20-Poly1305) and for the other codec.
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
    let other = match codec {
        CodecId::RsGf8Matrix => CodecId::RsGf16Leopard,
        CodecId::RsGf16Leopard => CodecId::RsGf8Matrix,
    };
    let put_other = variant(aead, other);
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
    let get2 = get(2);
    // Repair of one lost shard (a node died): verify the 4 first surviving shards, rebuild the
    // missing one, check it against its root. MiB/s of segment data.
    let repair = measure(|| {
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; 6];
        for (i, w) in wire.iter().enumerate().skip(1).take(4) {
            shards[i] = Some(
                Shard::from_bytes(black_box(w), Trust::SegmentId(id))
                    .unwrap()
                    .data,
            );
        }
        black_box(segment::rebuild(&seg.signed.desc, &shards, &[0]).unwrap());
    });

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
    let get1_t = row("get, 1 data shard lost: verify + decode + decrypt", get1);
    let get2_t = row("get, 2 data shards lost: verify + decode + decrypt", get2);
    row(
        "repair one lost shard: verify 4 shards + rebuild + check root",
        repair,
    );
    row(
        "put with chacha20-poly1305 (boards without AES)",
        put_chacha,
    );
    row(&format!("put with {}", other.name()), put_other);
    println!();
    println!(
        "degraded get ÷ healthy get: 1 lost {:.2}, 2 lost {:.2} — goal ≥ 0.80 with m lost {}",
        get1_t / get_t,
        get2_t / get_t,
        if get2_t / get_t >= 0.8 {
            "met"
        } else {
            "NOT met"
        }
    );
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
    println!(
        "time to restore redundancy for {mib} MiB after a node loss: {repair:.1} s — goal ≤ 60 s {}",
        if repair <= 60.0 { "met" } else { "NOT met" }
    );
    println!(
        "(single-threaded, unthrottled, one disk; the default throttle of 32 MiB/s would bound it at {:.1} s)",
        (lost_bytes as f64) / (32.0 * MIB)
    );
    println!();
    slow_holders(&dir);
}

/// Holders that answer a store `HOLDER_LATENCY` late (an SD card's fsync is milliseconds to tens
/// of them): a put keeps several segments' stores in flight, so it takes a fraction of the
/// `segments × latency` a put storing one segment at a time could not go below.
fn slow_holders(dir: &tempfile::TempDir) {
    const HOLDER_LATENCY: std::time::Duration = std::time::Duration::from_millis(20);
    const MIB: usize = 64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let net = SlowHolders {
        net: InProcessNetwork::default(),
        latency: HOLDER_LATENCY,
    };
    let mut nodes = Vec::new();
    for i in 0..6u8 {
        let id = NodeKey::from_seed([i + 60; 32]).node_id();
        let store = LocalStore::open(&dir.path().join(format!("slow{i}")), 1 << 40).unwrap();
        net.net.add_node(id, Arc::new(store));
        nodes.push(NodeInfo {
            id,
            capacity_bytes: 1 << 40,
            free_bytes: 1 << 40,
            site: format!("s{i}"),
            power: "p".into(),
        });
    }
    let client = Client::new(net, NodeKey::from_seed([5; 32]), PutConfig::default());
    let data = pseudo_random(MIB << 20, 78);
    let t = Instant::now();
    rt.block_on(client.put(&nodes, &mut &data[..], data.len() as u64))
        .unwrap();
    let put = t.elapsed().as_secs_f64();
    // The data segments and the manifest, each stored after the holders' latency.
    let floor = (MIB + 1) as f64 * HOLDER_LATENCY.as_secs_f64();
    println!(
        "Holders answering every store {} ms late, {MIB} MiB object: put {put:.2} s; one segment stored at a time needs ≥ {floor:.2} s ({:.2}× of that)",
        HOLDER_LATENCY.as_millis(),
        put / floor
    );
    println!();
}

/// An in-process network whose holders answer stores late.
struct SlowHolders {
    net: InProcessNetwork,
    latency: std::time::Duration,
}

impl StorageNetwork for SlowHolders {
    async fn store_shards(&self, shards: Vec<(NodeId, Vec<u8>)>) -> Vec<Result<(), TransferError>> {
        tokio::time::sleep(self.latency).await;
        self.net.store_shards(shards).await
    }

    async fn fetch_shards(&self, requests: Vec<FetchRequest>) -> Vec<Result<Shard, TransferError>> {
        self.net.fetch_shards(requests).await
    }

    async fn delete_segments(
        &self,
        requests: Vec<(NodeId, DeleteRequest)>,
    ) -> Vec<Result<usize, TransferError>> {
        self.net.delete_segments(requests).await
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let rows = codec_table();
    println!("## Codec choice per geometry");
    println!();
    for (k, m, [gf8, gf16]) in &rows {
        let faster = |i: usize| {
            if gf16[i] > gf8[i] {
                "rs-gf16-leopard"
            } else {
                "rs-gf8-matrix"
            }
        };
        println!(
            "- {k}+{m}: faster encode {}, faster 1-lost decode {}, faster {m}-lost decode {}",
            faster(0),
            faster(1),
            faster(2),
        );
    }
    println!("- DEFAULT_CODEC = {}", DEFAULT_CODEC.name());
    println!();
    pipeline();
    cluster();
}
