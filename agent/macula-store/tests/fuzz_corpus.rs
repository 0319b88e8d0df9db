//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_store::fuzzing;
use macula_testkit::fuzz::replay;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn group_proof() {
    replay(DIR, "group_proof", fuzzing::group_proof);
}

#[test]
fn inventory() {
    replay(DIR, "inventory", fuzzing::inventory);
}

#[test]
fn manifest_capability() {
    replay(DIR, "manifest_capability", fuzzing::manifest_capability);
}

#[test]
fn purge_order() {
    replay(DIR, "purge_order", fuzzing::purge_order);
    std::fs::remove_dir_all(fuzzing::purge_order_store()).unwrap();
}

#[test]
fn shard() {
    replay(DIR, "shard", fuzzing::shard);
}

#[test]
fn shard_header() {
    replay(DIR, "shard_header", fuzzing::shard_header);
}

#[test]
fn shard_receive() {
    replay(DIR, "shard_receive", fuzzing::shard_receive);
}

/// Seeds made by the real encoders: a small shard (on disk, its header, on the wire), edits of
/// the target's own shard, a group proof, a manifest and a capability, an inventory and a purge
/// order signed by the target's realm key.
#[test]
fn seeds_are_current() {
    use macula_core::{NodeKey, wire};
    use macula_mesh::realm::RealmKey;
    use macula_store::codec::CodecId;
    use macula_store::crypto::{AeadId, ObjectKey};
    use macula_store::header::{SegmentId, SegmentKind};
    use macula_store::inventory;
    use macula_store::object::{Capability, Manifest};
    use macula_store::receive::wire_chunks;
    use macula_store::repair::HeldShard;
    use macula_store::segment::{SegmentParams, encode_segment};
    use macula_store::tree::{self, GROUP_LEN};
    use macula_testkit::fuzz::seed;

    let p = SegmentParams {
        kind: SegmentKind::Data,
        codec: CodecId::RsGf16Leopard,
        aead: AeadId::preferred(),
        k: 2,
        m: 1,
        segment_index: 0,
        segment_count: 1,
    };
    let plain: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let seg = encode_segment(
        &plain,
        &p,
        &ObjectKey([1; 32]),
        &NodeKey::from_seed([2; 32]),
    )
    .unwrap();
    let shard = seg.shard(2);
    seed(DIR, "shard", "parity_of_3000", &shard.to_bytes());
    seed(
        DIR,
        "shard_header",
        "parity_of_3000",
        &shard.header.encode(),
    );
    let mut wire = vec![0];
    wire.extend(wire_chunks(&shard, 1024).flatten());
    seed(DIR, "shard_receive", "wire_parity_of_3000", &wire);
    // Odd first byte: edits of the target's own 70 000-byte shard (none, a flip, a cut).
    seed(DIR, "shard_receive", "own_unedited", &[1]);
    seed(
        DIR,
        "shard_receive",
        "own_flip",
        &[3, 0x10, 0x00, 0x00, 0x01],
    );
    seed(
        DIR,
        "shard_receive",
        "own_cut",
        &[5, 0x00, 0x10, 0x80, 0x00],
    );

    // group_proof: len u32 ‖ group u16 ‖ count u8 ‖ proof ‖ root ‖ group bytes, for group 1 of
    // a shard of three groups.
    let data: Vec<u8> = (0..(2 * GROUP_LEN + 100) as u32).map(|i| i as u8).collect();
    let (root, outboard) = tree::build(&data);
    let proof = tree::proof(&outboard, data.len(), 1);
    let mut input = (data.len() as u32).to_le_bytes().to_vec();
    input.extend_from_slice(&1u16.to_le_bytes());
    input.push(proof.len() as u8);
    input.extend(proof.iter().flatten());
    input.extend_from_slice(&root);
    input.extend_from_slice(&data[GROUP_LEN..2 * GROUP_LEN]);
    assert!(tree::verify_proof(
        &root,
        data.len(),
        1,
        &data[GROUP_LEN..2 * GROUP_LEN],
        &proof
    ));
    seed(DIR, "group_proof", "group_1_of_3", &input);

    let manifest = Manifest {
        object_len: 3_000_000,
        segment_len: 1 << 20,
        segments: vec![SegmentId([1; 32]), SegmentId([2; 32]), SegmentId([3; 32])],
    };
    seed(DIR, "manifest_capability", "manifest", &manifest.encode());
    let cap = Capability {
        object_id: seg.segment_id(),
        key: ObjectKey([1; 32]),
        codec: CodecId::RsGf16Leopard,
        k: 2,
        m: 1,
    };
    seed(
        DIR,
        "manifest_capability",
        "capability",
        cap.to_string().as_bytes(),
    );

    let held: Vec<HeldShard> = (0..3u16)
        .map(|index| HeldShard {
            segment: seg.segment_id(),
            index,
            k: 2,
            m: 1,
            shard_bytes: shard.to_bytes().len() as u64,
        })
        .collect();
    let parts = inventory::encode(1, &held);
    assert_eq!(parts.len(), 1);
    seed(DIR, "inventory", "three_shards", &parts[0]);

    let order = RealmKey::from_seed([1; 32]).purge(NodeKey::from_seed([5; 32]).node_id(), 1_000);
    seed(DIR, "purge_order", "signed", &wire::encode(&order));
}
