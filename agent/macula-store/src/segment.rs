//! The segment pipeline: encrypt → erasure-code → BLAKE3 tree per shard → signed header, and back.
//!
//! Memory is bounded by the segment: one buffer of `(k + m) × shard_len` for the ciphertext and
//! the parity (the codec writes into it: no buffer per shard), plus the shards' outboards.

use macula_core::NodeKey;

use crate::codec::{CodecError, CodecId};
use crate::crypto::{self, AeadError, AeadId, ObjectKey};
use crate::header::{
    Descriptor, HeaderError, MAX_SHARD_LEN, SegmentId, SegmentKind, ShardHeader, SignedDescriptor,
    TAG_LEN, shard_len_for,
};
use crate::tree;

/// Largest segment (plaintext bytes) this build writes or accepts.
pub const MAX_SEGMENT_LEN: u32 = 16 << 20;

/// Everything about a segment that is fixed before its data is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentParams {
    pub kind: SegmentKind,
    pub codec: CodecId,
    pub aead: AeadId,
    pub k: u16,
    pub m: u16,
    pub segment_index: u32,
    pub segment_count: u32,
}

/// Why a segment could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Aead(#[from] AeadError),
    #[error(
        "segment of {0} bytes is larger than the maximum {MAX_SEGMENT_LEN}; use a smaller segment size"
    )]
    TooLarge(usize),
    #[error(
        "reconstructed shard {0} does not match its root; a source shard was wrong, repair from other holders"
    )]
    Mismatch(usize),
    #[error("shard {index} has {have} bytes, the header says {want}")]
    ShardLen {
        index: usize,
        have: usize,
        want: usize,
    },
}

/// One shard: header, coded data and the outboard of its BLAKE3 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub header: ShardHeader,
    pub data: Vec<u8>,
    pub outboard: Vec<u8>,
}

/// How a shard's descriptor is trusted when parsing.
#[derive(Debug, Clone, Copy)]
pub enum Trust {
    /// Check the owner's signature (storage nodes, repair without a capability).
    Signature,
    /// Check that the descriptor hashes to this segment ID (readers that hold the capability).
    SegmentId(SegmentId),
}

impl Shard {
    /// Serialised shard: `header ‖ data ‖ outboard` (the same bytes on disk and on the wire).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.header.encode();
        b.reserve(self.data.len() + self.outboard.len());
        b.extend_from_slice(&self.data);
        b.extend_from_slice(&self.outboard);
        b
    }

    /// Length of a serialised shard with this header.
    pub fn total_len(header: &ShardHeader) -> usize {
        let sl = header.desc().shard_len as usize;
        header.encoded_len() + sl + tree::outboard_len(sl)
    }

    /// Parses and fully verifies a serialised shard: header, trust, exact length, outboard and
    /// data against the shard's root.
    pub fn from_bytes(bytes: &[u8], trust: Trust) -> Result<Self, ShardError> {
        let (header, hlen) = ShardHeader::parse(bytes)?;
        match trust {
            Trust::Signature => header.signed.verify()?,
            Trust::SegmentId(id) => {
                if header.segment_id() != id {
                    return Err(ShardError::WrongSegment);
                }
            }
        }
        let want = Self::total_len(&header);
        if bytes.len() != want {
            return Err(ShardError::Length {
                have: bytes.len(),
                want,
            });
        }
        let sl = header.desc().shard_len as usize;
        let data = &bytes[hlen..hlen + sl];
        let outboard = &bytes[hlen + sl..];
        let root = header.root();
        if !tree::verify_outboard(&root, sl, outboard) || blake3::hash(data).as_bytes() != &root {
            return Err(ShardError::Corrupt);
        }
        Ok(Self {
            header,
            data: data.to_vec(),
            outboard: outboard.to_vec(),
        })
    }
}

/// Why serialised bytes are not a valid shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("shard is {have} bytes, its header says {want}: incomplete or padded shard")]
    Length { have: usize, want: usize },
    #[error(
        "shard data does not match its BLAKE3 root: the shard is corrupt; repair it from other holders"
    )]
    Corrupt,
    #[error("shard belongs to another segment than requested")]
    WrongSegment,
}

/// A segment encoded into `k + m` shards.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub signed: SignedDescriptor,
    /// The data of every shard, back to back (`k + m` × `shard_len`).
    coded: Vec<u8>,
    /// The outboard of each shard's BLAKE3 tree.
    outboards: Vec<Vec<u8>>,
}

impl EncodedSegment {
    pub fn segment_id(&self) -> SegmentId {
        self.signed.segment_id()
    }

    /// Number of shards (`k + m`).
    pub fn n(&self) -> usize {
        self.outboards.len()
    }

    /// The coded data of shard `index`.
    pub fn data(&self, index: usize) -> &[u8] {
        let sl = self.signed.desc.shard_len as usize;
        &self.coded[index * sl..(index + 1) * sl]
    }

    /// The outboard of shard `index`.
    pub fn outboard(&self, index: usize) -> &[u8] {
        &self.outboards[index]
    }

    pub fn shard(&self, index: usize) -> Shard {
        Shard {
            header: ShardHeader {
                signed: self.signed.clone(),
                index: index as u16,
            },
            data: self.data(index).to_vec(),
            outboard: self.outboards[index].clone(),
        }
    }

    /// Serialised shard `index` (`header ‖ data ‖ outboard`), built with a single copy.
    pub fn shard_bytes(&self, index: usize) -> Vec<u8> {
        let (data, outboard) = (self.data(index), self.outboard(index));
        let header = ShardHeader {
            signed: self.signed.clone(),
            index: index as u16,
        };
        let mut b = Vec::with_capacity(header.encoded_len() + data.len() + outboard.len());
        b.extend_from_slice(&header.encode());
        b.extend_from_slice(data);
        b.extend_from_slice(outboard);
        b
    }
}

/// Encrypts, codes and signs one segment of plaintext.
pub fn encode_segment(
    plain: &[u8],
    p: &SegmentParams,
    key: &ObjectKey,
    owner: &NodeKey,
) -> Result<EncodedSegment, SegmentError> {
    if plain.len() > MAX_SEGMENT_LEN as usize {
        return Err(SegmentError::TooLarge(plain.len()));
    }
    let plain_len = plain.len() as u32;
    let shard_len = shard_len_for(plain_len, p.k);
    debug_assert!(shard_len <= u64::from(MAX_SHARD_LEN));
    let shard_len = shard_len as usize;
    let k = usize::from(p.k);
    let n = k + usize::from(p.m);
    // Ciphertext (zero-padded to k shards), then the parity the codec writes behind it.
    let mut coded = vec![0u8; n * shard_len];
    let cipher_len = plain.len() + TAG_LEN as usize;
    coded[..plain.len()].copy_from_slice(plain);
    let nonce = crypto::nonce_for(p.kind, p.segment_index);
    let aad = crypto::aad_for(p.kind, p.segment_index, p.segment_count, plain_len);
    crypto::seal_in_place(p.aead, key, nonce, &aad, &mut coded[..cipher_len]);

    {
        let (data, parity) = coded.split_at_mut(k * shard_len);
        let data: Vec<&[u8]> = data.chunks_exact(shard_len).collect();
        let mut parity: Vec<&mut [u8]> = parity.chunks_exact_mut(shard_len).collect();
        p.codec.codec().encode_into(&data, &mut parity)?;
    }
    let (roots, outboards): (Vec<_>, Vec<_>) =
        coded.chunks_exact(shard_len).map(tree::build).unzip();
    let desc = Descriptor {
        kind: p.kind,
        codec: p.codec,
        aead: p.aead,
        k: p.k,
        m: p.m,
        shard_len: shard_len as u32,
        segment_index: p.segment_index,
        segment_count: p.segment_count,
        plain_len,
        nonce,
        owner: *owner.node_id().as_bytes(),
        roots,
    };
    Ok(EncodedSegment {
        signed: SignedDescriptor::sign(desc, owner),
        coded,
        outboards,
    })
}

/// `(data, outboard)` of a shard [`rebuild`] made.
pub type RebuiltShard = (Vec<u8>, Vec<u8>);

/// Rebuilds the shards `targets` of a segment from at least `k` other verified ones
/// (`shards[i]` is the data of shard `i`, if present; present targets are not used as sources)
/// and checks each against its root: returns `(data, outboard)` per target, in order. Only the
/// targets are coded, each straight into its own buffer, and each is hashed once (its tree).
pub fn rebuild(
    desc: &Descriptor,
    shards: &[Option<Vec<u8>>],
    targets: &[usize],
) -> Result<Vec<RebuiltShard>, SegmentError> {
    check_lengths(desc, shards)?;
    let mut bufs = vec![vec![0u8; desc.shard_len as usize]; targets.len()];
    {
        let sources: Vec<Option<&[u8]>> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_deref().filter(|_| !targets.contains(&i)))
            .collect();
        let mut out: Vec<(usize, &mut [u8])> = targets
            .iter()
            .copied()
            .zip(bufs.iter_mut().map(Vec::as_mut_slice))
            .collect();
        desc.codec
            .codec()
            .reconstruct_into(usize::from(desc.k), &sources, &mut out)?;
    }
    bufs.into_iter()
        .zip(targets)
        .map(|(data, &i)| {
            let (root, outboard) = tree::build(&data);
            if root != desc.roots[i] {
                return Err(SegmentError::Mismatch(i));
            }
            Ok((data, outboard))
        })
        .collect()
}

/// `k + m` slots, each present one of the descriptor's shard length.
fn check_lengths(desc: &Descriptor, shards: &[Option<Vec<u8>>]) -> Result<(), SegmentError> {
    if shards.len() != desc.n() {
        return Err(CodecError::ShardLength.into());
    }
    for (index, s) in shards.iter().enumerate() {
        if let Some(s) = s
            && s.len() != desc.shard_len as usize
        {
            return Err(SegmentError::ShardLen {
                index,
                have: s.len(),
                want: desc.shard_len as usize,
            });
        }
    }
    Ok(())
}

/// Decodes a segment from at least `k` verified shards and decrypts it. The data shards are
/// copied into one segment buffer and missing ones are decoded straight into their place in it.
pub fn decode_segment(
    desc: &Descriptor,
    shards: Vec<Option<Vec<u8>>>,
    key: &ObjectKey,
) -> Result<Vec<u8>, SegmentError> {
    check_lengths(desc, &shards)?;
    let k = usize::from(desc.k);
    let sl = desc.shard_len as usize;
    let mut buf = vec![0u8; k * sl];
    let mut missing = Vec::new();
    for (i, chunk) in buf.chunks_exact_mut(sl).enumerate() {
        match &shards[i] {
            Some(s) => chunk.copy_from_slice(s),
            None => missing.push((i, chunk)),
        }
    }
    if !missing.is_empty() {
        let present: Vec<Option<&[u8]>> = shards.iter().map(Option::as_deref).collect();
        desc.codec
            .codec()
            .reconstruct_into(k, &present, &mut missing)?;
    }
    drop(shards);
    let cipher_len = desc.cipher_len();
    buf.truncate(cipher_len);
    let aad = crypto::aad_for(
        desc.kind,
        desc.segment_index,
        desc.segment_count,
        desc.plain_len,
    );
    let len = crypto::open_in_place(desc.aead, key, desc.nonce, &aad, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(codec: CodecId) -> SegmentParams {
        SegmentParams {
            kind: SegmentKind::Data,
            codec,
            aead: AeadId::preferred(),
            k: 4,
            m: 2,
            segment_index: 0,
            segment_count: 1,
        }
    }

    #[test]
    fn segment_round_trip_with_losses_and_corruption() {
        let owner = NodeKey::from_seed([7; 32]);
        let key = ObjectKey([9; 32]);
        for codec in [CodecId::RsGf8Matrix, CodecId::RsGf16Leopard] {
            for len in [0usize, 1, 63, 1000, 70_000] {
                let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let seg = encode_segment(&plain, &params(codec), &key, &owner).unwrap();
                let id = seg.segment_id();
                // Every serialised shard parses and verifies both ways.
                for i in 0..6 {
                    let bytes = seg.shard(i).to_bytes();
                    assert_eq!(seg.shard_bytes(i), bytes);
                    assert_eq!(
                        Shard::from_bytes(&bytes, Trust::Signature).unwrap(),
                        seg.shard(i)
                    );
                    assert_eq!(
                        Shard::from_bytes(&bytes, Trust::SegmentId(id)).unwrap(),
                        seg.shard(i)
                    );
                    let mut bad = bytes.clone();
                    let last = bad.len() - 1 - seg.outboard(i).len();
                    bad[last] ^= 1;
                    assert_eq!(
                        Shard::from_bytes(&bad, Trust::Signature),
                        Err(ShardError::Corrupt)
                    );
                    assert!(
                        Shard::from_bytes(&bytes[..bytes.len() - 1], Trust::Signature).is_err()
                    );
                }
                let all: Vec<Option<Vec<u8>>> =
                    (0..seg.n()).map(|i| Some(seg.data(i).to_vec())).collect();
                for lost in [vec![0], vec![1, 3], vec![4, 5], vec![0, 5]] {
                    let mut s = all.clone();
                    for &l in &lost {
                        s[l] = None;
                    }
                    let got = decode_segment(&seg.signed.desc, s.clone(), &key).unwrap();
                    assert_eq!(got, plain);
                    let rebuilt = rebuild(&seg.signed.desc, &s, &lost).unwrap();
                    for (&l, (data, outboard)) in lost.iter().zip(rebuilt) {
                        assert_eq!((&data[..], &outboard[..]), (seg.data(l), seg.outboard(l)));
                    }
                }
                let wrong = ObjectKey([1; 32]);
                assert_eq!(
                    decode_segment(&seg.signed.desc, all.clone(), &wrong),
                    Err(SegmentError::Aead(AeadError))
                );
            }
        }
    }
}
