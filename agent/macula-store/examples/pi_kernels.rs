//! The storage data path's kernels, one at a time, over `N` segments of 1 MiB: the workload
//! whose instructions `make pi-estimate` counts for the aarch64 build under qemu-user
//! (`tests/insn_count.py`; docs/storage.md "The Pi 4 on paper"). Counting with two values of
//! `N` and taking the difference leaves the instructions per segment, without the start-up.
//!
//! `pi_kernels <op> <N>`; ops: `none` (start-up only), `seal` (ChaCha20-Poly1305 over 1 MiB),
//! `blake3` (the shard tree of 1 MiB), `encode` (4 + 2 parity of 1 MiB), `decode1` (one lost
//! data shard of a 4 + 2 segment rebuilt), `put` (a whole segment: encrypt, code, the 6 shards'
//! trees, sign), `get` (what a reader does with k = 4 shards: hash each against its root,
//! decode, decrypt).

use std::hint::black_box;

use macula_core::NodeKey;
use macula_store::codec::DEFAULT_CODEC;
use macula_store::crypto::{self, AeadId, ObjectKey};
use macula_store::header::SegmentKind;
use macula_store::segment::{SegmentParams, decode_segment, encode_segment};
use macula_store::tree;

const SEG: usize = 1 << 20;
const K: u16 = 4;
const M: u16 = 2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(op), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: pi_kernels none|seal|blake3|encode|decode1|put|get <segments>");
        std::process::exit(2);
    };
    let plain: Vec<u8> = (0..SEG).map(|i| (i * 131 + i / 977) as u8).collect();
    let key = ObjectKey([7; 32]);
    let owner = NodeKey::from_seed([9; 32]);
    let params = SegmentParams {
        kind: SegmentKind::Data,
        codec: DEFAULT_CODEC,
        aead: AeadId::ChaCha20Poly1305,
        k: K,
        m: M,
        segment_index: 0,
        segment_count: 1,
    };
    let shard = SEG / usize::from(K);
    let codec = DEFAULT_CODEC.codec();
    match op.as_str() {
        "none" => {}
        "seal" => {
            let mut buf = plain.clone();
            for i in 0..n {
                crypto::seal_in_place(
                    AeadId::ChaCha20Poly1305,
                    &key,
                    crypto::nonce_for(SegmentKind::Data, i as u32),
                    b"",
                    &mut buf[..SEG - 16],
                );
            }
            black_box(&buf);
        }
        "blake3" => {
            for _ in 0..n {
                black_box(tree::build(black_box(&plain)));
            }
        }
        "encode" => {
            let mut parity = vec![vec![0u8; shard]; usize::from(M)];
            for _ in 0..n {
                let data: Vec<&[u8]> = plain.chunks_exact(shard).collect();
                let mut out: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
                codec.encode_into(&data, &mut out).expect("encode");
                black_box(&parity);
            }
        }
        "decode1" => {
            let mut parity = vec![vec![0u8; shard]; usize::from(M)];
            let data: Vec<&[u8]> = plain.chunks_exact(shard).collect();
            let mut out: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            codec.encode_into(&data, &mut out).expect("encode");
            let mut present: Vec<Option<&[u8]>> = data.iter().map(|d| Some(*d)).collect();
            present.extend(parity.iter().map(|p| Some(p.as_slice())));
            present[0] = None;
            let mut lost = vec![0u8; shard];
            for _ in 0..n {
                let mut want = [(0usize, lost.as_mut_slice())];
                codec
                    .reconstruct_into(usize::from(K), &present, &mut want)
                    .expect("reconstruct");
                black_box(&lost);
            }
            assert_eq!(lost, data[0], "the rebuilt shard differs");
        }
        "put" => {
            for _ in 0..n {
                black_box(encode_segment(&plain, &params, &key, &owner).expect("encode_segment"));
            }
        }
        "get" => {
            let seg = encode_segment(&plain, &params, &key, &owner).expect("encode_segment");
            let desc = &seg.signed.desc;
            for _ in 0..n {
                let shards: Vec<Option<Vec<u8>>> = (0..usize::from(K + M))
                    .map(|i| {
                        (i < usize::from(K)).then(|| {
                            let (root, _) = tree::build(seg.data(i));
                            assert!(root == desc.roots[i], "shard {i} does not verify");
                            seg.data(i).to_vec()
                        })
                    })
                    .collect();
                let back = decode_segment(desc, shards, &key).expect("decode_segment");
                assert_eq!(back.len(), SEG);
                black_box(back);
            }
        }
        other => {
            eprintln!("pi_kernels: unknown op {other:?}");
            std::process::exit(2);
        }
    }
}
