#![no_main]
//! The streaming shard receiver takes everything from an untrusted holder, in pieces of any size.
//! Input: one mode/split byte, then either
//! * (even) raw wire bytes, expected to be the shard their own header names: the receiver must
//!   never panic, and must accept exactly what `Shard::from_bytes` accepts in disk order with
//!   both kinds of trust (the same shard), or
//! * (odd) edits `(offset u24 LE, xor byte)` to a valid shard's wire bytes (and, with a set top
//!   bit in the offset, a cut there): the receiver must accept exactly the unedited bytes.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use macula_core::NodeKey;
use macula_store::codec::CodecId;
use macula_store::crypto::{AeadId, ObjectKey};
use macula_store::header::{SegmentId, SegmentKind, ShardHeader};
use macula_store::receive::{ShardReceiver, wire_chunks};
use macula_store::segment::{SegmentParams, Shard, Trust, encode_segment};
use macula_store::tree;

/// A valid 5-group shard (70 000 bytes of plaintext, 1 + 1) and its wire bytes.
fn valid() -> &'static (SegmentId, Shard, Vec<u8>) {
    static V: OnceLock<(SegmentId, Shard, Vec<u8>)> = OnceLock::new();
    V.get_or_init(|| {
        let p = SegmentParams {
            kind: SegmentKind::Data,
            codec: CodecId::RsGf16Leopard,
            aead: AeadId::preferred(),
            k: 1,
            m: 1,
            segment_index: 0,
            segment_count: 1,
        };
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let seg = encode_segment(&plain, &p, &ObjectKey([1; 32]), &NodeKey::from_seed([2; 32]))
            .unwrap();
        let shard = seg.shard(1);
        let wire = wire_chunks(&shard, 1 << 16).flatten().collect();
        (seg.segment_id(), shard, wire)
    })
}

/// Feeds `bytes` in pieces whose sizes come from `seed`; the shard if every step succeeded.
fn receive(seg: SegmentId, index: u16, bytes: &[u8], seed: u8) -> Option<Shard> {
    let mut r = ShardReceiver::new(seg, index, usize::MAX);
    let mut x = u64::from(seed) | 0x100;
    let mut rest = bytes;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x as usize % 20_000 + 1).min(rest.len());
        r.feed(&rest[..n]).ok()?;
        rest = &rest[n..];
    }
    r.finish().ok()
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, rest)) = input.split_first() else {
        return;
    };
    if seed % 2 == 0 {
        let (seg, index, disk) = match ShardHeader::parse(rest) {
            Ok((h, hlen)) => {
                let sl = h.desc().shard_len as usize;
                let ob = tree::outboard_len(sl);
                // The same bytes in disk order, when the length fits.
                let disk = (rest.len() == Shard::total_len(&h)).then(|| {
                    let mut d = rest[..hlen].to_vec();
                    d.extend_from_slice(&rest[hlen + ob..]);
                    d.extend_from_slice(&rest[hlen..hlen + ob]);
                    d
                });
                (h.segment_id(), h.index, disk)
            }
            Err(_) => (SegmentId([0; 32]), 0, None),
        };
        let got = receive(seg, index, rest, seed);
        let by_sig = disk.as_ref().and_then(|d| Shard::from_bytes(d, Trust::Signature).ok());
        let by_id = disk.as_ref().and_then(|d| Shard::from_bytes(d, Trust::SegmentId(seg)).ok());
        assert_eq!(got.is_some(), by_sig.is_some());
        if let Some(s) = got {
            assert_eq!(Some(&s), by_sig.as_ref());
            assert_eq!(Some(&s), by_id.as_ref());
            assert_eq!(wire_chunks(&s, 4096).flatten().collect::<Vec<u8>>(), rest);
        }
    } else {
        let (seg, shard, wire) = valid();
        let mut bytes = wire.clone();
        for edit in rest.chunks_exact(4) {
            let at = u32::from_le_bytes([edit[0], edit[1], edit[2], 0]) as usize;
            if edit[2] & 0x80 != 0 {
                bytes.truncate(at & 0x7f_ffff);
            } else if let Some(b) = bytes.get_mut(at) {
                *b ^= edit[3];
            } else {
                bytes.push(edit[3]);
            }
        }
        let got = receive(*seg, shard.header.index, &bytes, seed);
        assert_eq!(got.is_some(), bytes == *wire);
        if let Some(s) = got {
            assert_eq!(&s, shard);
        }
    }
});
