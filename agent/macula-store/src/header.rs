//! The self-describing, signed shard header (`docs/storage-format.md` is the specification).
//!
//! Every shard starts with a header that names everything needed to check and decode it: format
//! version, segment kind, codec, AEAD, `k`/`m`, shard length, segment index and count, plaintext
//! length, AEAD nonce, the owner's key and the BLAKE3 root of *every* shard of the segment. The
//! part common to all shards of a segment (the *descriptor*) is signed once by the owner; the shard
//! index follows the signature and is bound by the root at that index.
//!
//! The layout is fixed and little-endian (not postcard): a disk header must be parseable from a
//! bounded prefix read, its length must follow from `k + m` alone, and other implementations should
//! be able to read it without a serde data model. See the specification for the argument.

use std::fmt;

use ed25519_dalek::Signature;
use macula_core::NodeId;
use macula_core::domains::Domain;

use crate::codec::CodecId;
use crate::crypto::AeadId;

/// First four bytes of every shard.
pub const MAGIC: [u8; 4] = *b"MSHD";
/// The only format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Most shards (`k + m`) a segment may have.
pub const MAX_SHARDS: usize = 256;
/// Largest shard (bytes of coded data, without header and outboard).
pub const MAX_SHARD_LEN: u32 = 16 << 20;
/// Shard lengths are multiples of this (the GF(2^16) codec needs even lengths; 64 keeps SIMD aligned).
pub const SHARD_ALIGN: u32 = 64;
/// log2 of the chunk-group size of the per-shard BLAKE3 tree (16 KiB).
pub const GROUP_LOG2: u8 = 14;
/// Length of the fixed part of the descriptor (before the roots).
pub const FIXED_LEN: usize = 76;
/// Length of the signature and index that follow the descriptor.
pub const TRAILER_LEN: usize = 64 + 2;
/// Largest possible header.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + 32 * MAX_SHARDS + TRAILER_LEN;
/// Bytes an AEAD adds (both supported AEADs use 16-byte tags).
pub const TAG_LEN: u32 = 16;

/// Why bytes are not a valid shard header. Each message says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error(
        "shard header truncated: need {need} bytes, have {have} (the shard is incomplete; fetch it again)"
    )]
    Truncated { need: usize, have: usize },
    #[error("not a Macula shard (bad magic {0:02x?}); check that the file is a shard")]
    BadMagic([u8; 4]),
    #[error(
        "shard format version {0} is not supported (this build reads version {FORMAT_VERSION}); upgrade the agent"
    )]
    UnsupportedVersion(u8),
    #[error("unknown segment kind {0}; upgrade the agent or discard the shard")]
    UnknownKind(u8),
    #[error("unknown codec id {0:#04x}; upgrade the agent or discard the shard")]
    UnknownCodec(u8),
    #[error("unknown AEAD id {0:#04x}; upgrade the agent or discard the shard")]
    UnknownAead(u8),
    #[error("invalid coding parameters k={k} m={m} (need k >= 1, m >= 1, k + m <= {MAX_SHARDS})")]
    BadGeometry { k: u16, m: u16 },
    #[error("unsupported chunk group size 2^{0} (this build uses 2^{GROUP_LOG2})")]
    BadGroupSize(u8),
    #[error("reserved header bytes are not zero; the shard is corrupt or from a newer format")]
    Reserved,
    #[error(
        "shard length {shard_len} does not match plaintext length {plain_len} with k={k} (expected {expected}); the header is corrupt"
    )]
    BadShardLen {
        shard_len: u32,
        plain_len: u32,
        k: u16,
        expected: u64,
    },
    #[error("segment index {index} out of range for segment count {count}")]
    BadSegmentIndex { index: u32, count: u32 },
    #[error("shard index {index} out of range for {n} shards")]
    BadShardIndex { index: u16, n: usize },
    #[error("owner key is not a valid Ed25519 public key; the header is corrupt")]
    BadOwner,
    #[error(
        "header signature does not verify against the owner key; the shard is forged or corrupt"
    )]
    BadSignature,
}

/// Whether a segment carries object data or the object's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SegmentKind {
    Data = 0,
    Manifest = 1,
}

impl SegmentKind {
    pub fn from_u8(v: u8) -> Result<Self, HeaderError> {
        match v {
            0 => Ok(Self::Data),
            1 => Ok(Self::Manifest),
            other => Err(HeaderError::UnknownKind(other)),
        }
    }
}

/// The ID of a segment: `BLAKE3-derive_key("macula/v1/segment-id", descriptor bytes)`.
/// Shards are addressed by `(SegmentId, shard index)`; an object's ID is its manifest's segment ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub [u8; 32]);

/// `blake3::derive_key` context for segment IDs.
pub const SEGMENT_ID_CONTEXT: &str = "macula/v1/segment-id";

impl SegmentId {
    pub fn of_descriptor(bytes: &[u8]) -> Self {
        Self(blake3::derive_key(SEGMENT_ID_CONTEXT, bytes))
    }

    /// Lowercase hex, the form used in file names.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2)?;
            if pair
                .bytes()
                .any(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            {
                return None;
            }
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({})", &self.to_hex()[..16])
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The part of the header common to all shards of a segment; this is what the owner signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub kind: SegmentKind,
    pub codec: CodecId,
    pub aead: AeadId,
    pub k: u16,
    pub m: u16,
    pub shard_len: u32,
    pub segment_index: u32,
    pub segment_count: u32,
    pub plain_len: u32,
    pub nonce: [u8; 12],
    /// The owner's Ed25519 public key (node ID bytes). Checked to be a valid key when the
    /// signature is verified; readers that trust the segment ID never need to decompress it.
    pub owner: [u8; 32],
    /// BLAKE3 root of every shard, index 0..k+m.
    pub roots: Vec<[u8; 32]>,
}

/// The canonical shard length for a segment: ciphertext spread over `k` shards, rounded up to
/// [`SHARD_ALIGN`] (at least one alignment unit).
pub fn shard_len_for(plain_len: u32, k: u16) -> u64 {
    let cipher = u64::from(plain_len) + u64::from(TAG_LEN);
    let per = cipher.div_ceil(u64::from(k));
    per.div_ceil(u64::from(SHARD_ALIGN)).max(1) * u64::from(SHARD_ALIGN)
}

impl Descriptor {
    pub fn n(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 32 * self.n()
    }

    /// Ciphertext length (plaintext + AEAD tag).
    pub fn cipher_len(&self) -> usize {
        self.plain_len as usize + TAG_LEN as usize
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&MAGIC);
        b.push(FORMAT_VERSION);
        b.push(self.kind as u8);
        b.push(self.codec as u8);
        b.push(self.aead as u8);
        b.extend_from_slice(&self.k.to_le_bytes());
        b.extend_from_slice(&self.m.to_le_bytes());
        b.push(GROUP_LOG2);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&self.shard_len.to_le_bytes());
        b.extend_from_slice(&self.segment_index.to_le_bytes());
        b.extend_from_slice(&self.segment_count.to_le_bytes());
        b.extend_from_slice(&self.plain_len.to_le_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.owner);
        for r in &self.roots {
            b.extend_from_slice(r);
        }
        b
    }

    /// Parses a descriptor from the start of `bytes`; returns it and its length. Checks every
    /// field and bound before allocating.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), HeaderError> {
        let fixed = take(bytes, 0, FIXED_LEN)?;
        let magic: [u8; 4] = fixed[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        if fixed[4] != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(fixed[4]));
        }
        let kind = SegmentKind::from_u8(fixed[5])?;
        let codec = CodecId::from_u8(fixed[6]).ok_or(HeaderError::UnknownCodec(fixed[6]))?;
        let aead = AeadId::from_u8(fixed[7]).ok_or(HeaderError::UnknownAead(fixed[7]))?;
        let k = u16_at(fixed, 8);
        let m = u16_at(fixed, 10);
        if k == 0 || m == 0 || usize::from(k) + usize::from(m) > MAX_SHARDS {
            return Err(HeaderError::BadGeometry { k, m });
        }
        if fixed[12] != GROUP_LOG2 {
            return Err(HeaderError::BadGroupSize(fixed[12]));
        }
        if fixed[13..16] != [0, 0, 0] {
            return Err(HeaderError::Reserved);
        }
        let shard_len = u32_at(fixed, 16);
        let segment_index = u32_at(fixed, 20);
        let segment_count = u32_at(fixed, 24);
        let plain_len = u32_at(fixed, 28);
        let expected = shard_len_for(plain_len, k);
        if u64::from(shard_len) != expected || shard_len > MAX_SHARD_LEN {
            return Err(HeaderError::BadShardLen {
                shard_len,
                plain_len,
                k,
                expected,
            });
        }
        let index_ok = segment_index < segment_count
            && (kind == SegmentKind::Data || (segment_index == 0 && segment_count == 1));
        if !index_ok {
            return Err(HeaderError::BadSegmentIndex {
                index: segment_index,
                count: segment_count,
            });
        }
        let nonce: [u8; 12] = fixed[32..44].try_into().expect("12 bytes");
        let owner: [u8; 32] = fixed[44..76].try_into().expect("32 bytes");
        let n = usize::from(k) + usize::from(m);
        let roots_bytes = take(bytes, FIXED_LEN, 32 * n)?;
        let roots = roots_bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        let desc = Self {
            kind,
            codec,
            aead,
            k,
            m,
            shard_len,
            segment_index,
            segment_count,
            plain_len,
            nonce,
            owner,
            roots,
        };
        Ok((desc, FIXED_LEN + 32 * n))
    }
}

fn take(bytes: &[u8], at: usize, len: usize) -> Result<&[u8], HeaderError> {
    bytes.get(at..at + len).ok_or(HeaderError::Truncated {
        need: at + len,
        have: bytes.len(),
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A descriptor with the owner's signature over its encoded bytes; shared by all shards of a
/// segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDescriptor {
    pub desc: Descriptor,
    /// The exact bytes that were signed (and hashed into the segment ID).
    pub bytes: Vec<u8>,
    pub signature: [u8; 64],
}

impl SignedDescriptor {
    /// Encodes and signs `desc` with the owner's key (which must match `desc.owner`).
    pub fn sign(desc: Descriptor, owner: &macula_core::NodeKey) -> Self {
        debug_assert_eq!(owner.node_id().as_bytes(), &desc.owner);
        let bytes = desc.encode();
        let signature = owner.sign(Domain::ShardHeader, &bytes).to_bytes();
        Self {
            desc,
            bytes,
            signature,
        }
    }

    pub fn segment_id(&self) -> SegmentId {
        SegmentId::of_descriptor(&self.bytes)
    }

    /// The owner as a node ID (fails if the key bytes are not a valid Ed25519 point).
    pub fn owner(&self) -> Result<NodeId, HeaderError> {
        NodeId::from_bytes(self.desc.owner).map_err(|_| HeaderError::BadOwner)
    }

    pub fn verify(&self) -> Result<(), HeaderError> {
        self.owner()?
            .verify(
                Domain::ShardHeader,
                &self.bytes,
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| HeaderError::BadSignature)
    }
}

/// A complete shard header: signed descriptor plus this shard's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    pub signed: SignedDescriptor,
    pub index: u16,
}

impl ShardHeader {
    pub fn encoded_len(&self) -> usize {
        self.signed.bytes.len() + TRAILER_LEN
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&self.signed.bytes);
        b.extend_from_slice(&self.signed.signature);
        b.extend_from_slice(&self.index.to_le_bytes());
        b
    }

    /// Parses a header from the start of `bytes` (which may continue with shard data); returns
    /// it and its length. Does not check the signature: call [`ShardHeader::verify`].
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), HeaderError> {
        let (desc, dlen) = Descriptor::decode(bytes)?;
        let trailer = take(bytes, dlen, TRAILER_LEN)?;
        let signature: [u8; 64] = trailer[..64].try_into().expect("64 bytes");
        let index = u16_at(trailer, 64);
        if usize::from(index) >= desc.n() {
            return Err(HeaderError::BadShardIndex { index, n: desc.n() });
        }
        let signed = SignedDescriptor {
            desc,
            bytes: bytes[..dlen].to_vec(),
            signature,
        };
        Ok((Self { signed, index }, dlen + TRAILER_LEN))
    }

    /// Parses and checks the owner's signature.
    pub fn parse_verified(bytes: &[u8]) -> Result<(Self, usize), HeaderError> {
        let (h, len) = Self::parse(bytes)?;
        h.signed.verify()?;
        Ok((h, len))
    }

    pub fn desc(&self) -> &Descriptor {
        &self.signed.desc
    }

    pub fn segment_id(&self) -> SegmentId {
        self.signed.segment_id()
    }

    /// The BLAKE3 root this shard's data must hash to.
    pub fn root(&self) -> [u8; 32] {
        self.signed.desc.roots[usize::from(self.index)]
    }
}
