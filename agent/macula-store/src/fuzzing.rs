//! The bodies of the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md), one function per target:
//! each takes arbitrary bytes and checks what the decoder promises. The fuzz targets call them,
//! and `tests/fuzz_corpus.rs` replays each target's committed corpus (and mutations of it)
//! through them in `make test`.

/// The group-proof verifier takes everything from an untrusted holder: it must never panic.
/// Input: shard length (u32) ‖ group (u16) ‖ proof entry count (u8) ‖ proof ‖ root ‖ data.
pub fn group_proof(input: &[u8]) {
    use crate::tree::verify_proof;

    if input.len() < 7 + 32 {
        return;
    }
    let len = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize % (16 << 20);
    let group = usize::from(u16::from_le_bytes([input[4], input[5]]));
    let count = usize::from(input[6] % 32);
    let rest = &input[7..];
    if rest.len() < 32 * count + 32 {
        return;
    }
    let proof: Vec<[u8; 32]> = rest[..32 * count].chunks_exact(32).map(hash).collect();
    let root = hash(&rest[32 * count..32 * count + 32]);
    let data = &rest[32 * count + 32..];
    let _ = verify_proof(&root, len, group, data, &proof);
}

/// The 32 bytes of `c` (exactly 32 long) as an array.
fn hash(c: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h.copy_from_slice(c);
    h
}

/// The inventory part decoder and the assembler must never panic on any input; a list that
/// completes re-encodes to parts the assembler accepts again.
pub fn inventory(data: &[u8]) {
    use crate::inventory::{self, Assembler};
    use macula_core::NodeKey;

    let from = NodeKey::from_seed([7; 32]).node_id();
    let mut a = Assembler::default();
    // Split the input into up to four parts fed in turn (several rounds and part numbers).
    for part in data.chunks(data.len().div_ceil(4).max(1)) {
        if let Ok(Some(list)) = a.feed(from, part) {
            let mut again = Assembler::default();
            let parts = inventory::encode(1, &list);
            let n = parts.len();
            for (i, p) in parts.iter().enumerate() {
                let got = again.feed(from, p).expect("own encoding accepted");
                assert_eq!(got.is_some(), i + 1 == n);
            }
        }
    }
}

/// Manifest and capability decoders must never panic; accepted values re-encode identically.
pub fn manifest_capability(data: &[u8]) {
    use crate::object::{Capability, Manifest};

    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cap) = text.parse::<Capability>()
    {
        assert_eq!(cap.to_string(), text.trim());
    }
}

/// Where [`purge_order`] keeps the store it purges (one per process, in the temporary directory;
/// the smoke test removes it).
pub fn purge_order_store() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("macula-fuzz-purge-{}", std::process::id()))
}

/// `store.purge` bodies: applying any input to a store never panics, and only an order the realm
/// key signed for this realm purges anything.
pub fn purge_order(data: &[u8]) {
    use std::sync::OnceLock;

    use crate::purge;
    use crate::store::LocalStore;
    use macula_core::wire;
    use macula_mesh::realm::{PurgeOrder, RealmKey};

    static STORE: OnceLock<LocalStore> = OnceLock::new();
    let store = STORE.get_or_init(|| {
        LocalStore::open(&purge_order_store(), 1 << 20).expect("a store in a temporary directory")
    });
    let realm = RealmKey::from_seed([1; 32]);
    if purge::apply(store, &realm.id(), data).is_ok() {
        let order: PurgeOrder =
            wire::decode_with_limit(data, 256).expect("an applied order decodes");
        order
            .verify(&realm.id())
            .expect("an applied order carries the realm's signature");
        assert!(store.is_purged(&order.body.owner));
    }
}

/// Whole-shard parsing (header, length, outboard, root) must never panic.
pub fn shard(data: &[u8]) {
    use crate::segment::{Shard, Trust};

    if let Ok(shard) = Shard::from_bytes(data, Trust::Signature) {
        assert_eq!(shard.to_bytes(), data);
    }
}

/// The shard header parser must never panic, and whatever it accepts must re-encode to the same
/// bytes (one spelling per header).
pub fn shard_header(data: &[u8]) {
    use crate::header::ShardHeader;

    if let Ok((header, len)) = ShardHeader::parse(data) {
        assert_eq!(header.encode(), &data[..len]);
        let _ = header.signed.verify();
    }
}

/// The streaming shard receiver takes everything from an untrusted holder, in pieces of any size.
/// Input: one mode/split byte, then either
/// * (even) raw wire bytes, expected to be the shard their own header names: the receiver must
///   never panic, and must accept exactly what `Shard::from_bytes` accepts in disk order with
///   both kinds of trust (the same shard), or
/// * (odd) edits `(offset u24 LE, xor byte)` to a valid shard's wire bytes (and, with a set top
///   bit in the offset, a cut there): the receiver must accept exactly the unedited bytes.
pub fn shard_receive(input: &[u8]) {
    use std::sync::OnceLock;

    use crate::codec::CodecId;
    use crate::crypto::{AeadId, ObjectKey};
    use crate::header::{SegmentId, SegmentKind, ShardHeader};
    use crate::receive::{ShardReceiver, wire_chunks};
    use crate::segment::{SegmentParams, Shard, Trust, encode_segment};
    use crate::tree;
    use macula_core::NodeKey;

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
            let seg = encode_segment(
                &plain,
                &p,
                &ObjectKey([1; 32]),
                &NodeKey::from_seed([2; 32]),
            )
            .expect("a segment of valid parameters encodes");
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
        let by_sig = disk
            .as_ref()
            .and_then(|d| Shard::from_bytes(d, Trust::Signature).ok());
        let by_id = disk
            .as_ref()
            .and_then(|d| Shard::from_bytes(d, Trust::SegmentId(seg)).ok());
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
}
