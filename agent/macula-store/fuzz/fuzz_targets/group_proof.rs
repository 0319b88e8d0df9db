#![no_main]
//! The group-proof verifier takes everything from an untrusted holder: it must never panic.
//! Input: shard length (u32) ‖ group (u16) ‖ proof entry count (u8) ‖ proof ‖ root ‖ data.

use libfuzzer_sys::fuzz_target;
use macula_store::tree::verify_proof;

fuzz_target!(|input: &[u8]| {
    if input.len() < 7 + 32 {
        return;
    }
    let len = u32::from_le_bytes(input[0..4].try_into().unwrap()) as usize % (16 << 20);
    let group = usize::from(u16::from_le_bytes([input[4], input[5]]));
    let count = usize::from(input[6] % 32);
    let rest = &input[7..];
    if rest.len() < 32 * count + 32 {
        return;
    }
    let proof: Vec<[u8; 32]> = rest[..32 * count]
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    let root: [u8; 32] = rest[32 * count..32 * count + 32].try_into().unwrap();
    let data = &rest[32 * count + 32..];
    let _ = verify_proof(&root, len, group, data, &proof);
});
