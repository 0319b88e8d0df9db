//! Objects: the manifest (stored as a segment of its own) and the read capability.
//!
//! There is no central metadata map. An object is its data segments plus one manifest segment
//! that lists the data segments' IDs in order; the object ID is the manifest's segment ID. The
//! capability string carries the object ID, the decryption key and the coding parameters, so a
//! holder of the capability can find, verify and decrypt everything (Tahoe-LAFS read-cap).

use std::fmt;
use std::str::FromStr;

use macula_core::base32;

use crate::codec::CodecId;
use crate::crypto::ObjectKey;
use crate::header::{MAX_SHARDS, SegmentId};
use crate::segment::MAX_SEGMENT_LEN;

/// First bytes of a manifest's plaintext.
pub const MANIFEST_MAGIC: [u8; 4] = *b"MMAN";
/// Manifest format version.
pub const MANIFEST_VERSION: u8 = 1;
/// Length of the manifest's fixed part.
pub const MANIFEST_FIXED_LEN: usize = 24;

/// Why bytes are not a valid manifest or capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "manifest is malformed: {0}; the object is damaged or the capability names something else"
    )]
    Manifest(&'static str),
    #[error(
        "not a Macula capability: {0}; copy the whole string printed by `put` (it starts with `{CAP_PREFIX}`)"
    )]
    Capability(String),
    #[error(
        "object of {len} bytes needs {segments} segments, more than one manifest can list ({max}); use a larger segment size"
    )]
    TooLarge { len: u64, segments: u64, max: u64 },
}

/// The plaintext of a manifest segment: `"MMAN" ‖ version ‖ 0 0 0 ‖ object_len u64 ‖
/// segment_len u32 ‖ segment_count u32 ‖ segment IDs (32 bytes each)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub object_len: u64,
    pub segment_len: u32,
    pub segments: Vec<SegmentId>,
}

impl Manifest {
    /// How many data segments an object of `len` bytes has with segments of `segment_len`.
    pub fn segment_count(len: u64, segment_len: u32) -> u64 {
        len.div_ceil(u64::from(segment_len))
    }

    /// Most data segments one manifest can list (the manifest is one segment of at most
    /// [`MAX_SEGMENT_LEN`] bytes): 524 287, i.e. 512 GiB with 1 MiB segments.
    pub const MAX_SEGMENTS: u64 = (MAX_SEGMENT_LEN as u64 - MANIFEST_FIXED_LEN as u64) / 32;

    /// Checks that an object of `len` bytes fits one manifest.
    pub fn check_size(len: u64, segment_len: u32) -> Result<u32, ObjectError> {
        let segments = Self::segment_count(len, segment_len);
        let max = Self::MAX_SEGMENTS;
        if segments > max {
            return Err(ObjectError::TooLarge { len, segments, max });
        }
        Ok(segments as u32)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MANIFEST_FIXED_LEN + 32 * self.segments.len());
        b.extend_from_slice(&MANIFEST_MAGIC);
        b.push(MANIFEST_VERSION);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&self.object_len.to_le_bytes());
        b.extend_from_slice(&self.segment_len.to_le_bytes());
        b.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            b.extend_from_slice(&s.0);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, ObjectError> {
        if b.len() < MANIFEST_FIXED_LEN {
            return Err(ObjectError::Manifest("shorter than its fixed part"));
        }
        if b[..4] != MANIFEST_MAGIC || b[4] != MANIFEST_VERSION || b[5..8] != [0, 0, 0] {
            return Err(ObjectError::Manifest(
                "bad magic, version or reserved bytes",
            ));
        }
        let object_len = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let segment_len = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
        let count = u32::from_le_bytes(b[20..24].try_into().expect("4 bytes"));
        if segment_len == 0 || segment_len > MAX_SEGMENT_LEN {
            return Err(ObjectError::Manifest("segment length out of range"));
        }
        if Self::segment_count(object_len, segment_len) != u64::from(count) {
            return Err(ObjectError::Manifest(
                "segment count does not match object length",
            ));
        }
        if b.len() != MANIFEST_FIXED_LEN + 32 * count as usize {
            return Err(ObjectError::Manifest("length does not match segment count"));
        }
        let segments = b[MANIFEST_FIXED_LEN..]
            .chunks_exact(32)
            .map(|c| SegmentId(c.try_into().expect("32 bytes")))
            .collect();
        Ok(Self {
            object_len,
            segment_len,
            segments,
        })
    }

    /// Plaintext length of data segment `i`.
    pub fn segment_plain_len(&self, i: usize) -> u32 {
        Self::plain_len_of(self.object_len, self.segment_len, i)
    }

    /// Plaintext length of data segment `i` of an object of `object_len` bytes.
    pub fn plain_len_of(object_len: u64, segment_len: u32, i: usize) -> u32 {
        let start = i as u64 * u64::from(segment_len);
        (object_len - start).min(u64::from(segment_len)) as u32
    }
}

/// Text prefix of a capability.
pub const CAP_PREFIX: &str = "macula-cap1-";
const CAP_VERSION: u8 = 1;
const CAP_BODY_LEN: usize = 1 + 32 + 32 + 1 + 2 + 2;
const CAP_CHECK_LEN: usize = 4;
const CAP_CHECK_CONTEXT: &str = "macula/v1/capability-check";

/// A read capability: whoever has it can find, verify and decrypt the object.
///
/// Text form: `macula-cap1-` + base32(version ‖ object ID ‖ key ‖ codec ‖ k u16 ‖ m u16 ‖ check),
/// where `check` is the first 4 bytes of `BLAKE3-derive_key("macula/v1/capability-check", body)`
/// and catches copy errors.
#[derive(Clone)]
pub struct Capability {
    pub object_id: SegmentId,
    pub key: ObjectKey,
    pub codec: CodecId,
    pub k: u16,
    pub m: u16,
}

impl Capability {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CAP_BODY_LEN + CAP_CHECK_LEN);
        b.push(CAP_VERSION);
        b.extend_from_slice(&self.object_id.0);
        b.extend_from_slice(&self.key.0);
        b.push(self.codec as u8);
        b.extend_from_slice(&self.k.to_le_bytes());
        b.extend_from_slice(&self.m.to_le_bytes());
        b
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = self.body();
        let check = blake3::derive_key(CAP_CHECK_CONTEXT, &b);
        b.extend_from_slice(&check[..CAP_CHECK_LEN]);
        write!(f, "{CAP_PREFIX}{}", base32::encode(&b))
    }
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Capability({:?}, {}+{} {})",
            self.object_id,
            self.k,
            self.m,
            self.codec.name()
        )
    }
}

impl FromStr for Capability {
    type Err = ObjectError;

    fn from_str(s: &str) -> Result<Self, ObjectError> {
        let bad = |m: &str| ObjectError::Capability(m.to_string());
        let rest = s
            .trim()
            .strip_prefix(CAP_PREFIX)
            .ok_or_else(|| bad("missing prefix"))?;
        let b = base32::decode(rest)
            .map_err(|e| ObjectError::Capability(format!("bad base32: {e}")))?;
        if b.len() != CAP_BODY_LEN + CAP_CHECK_LEN {
            return Err(bad("wrong length"));
        }
        let (body, check) = b.split_at(CAP_BODY_LEN);
        if blake3::derive_key(CAP_CHECK_CONTEXT, body)[..CAP_CHECK_LEN] != *check {
            return Err(bad("checksum mismatch (mistyped or truncated)"));
        }
        if body[0] != CAP_VERSION {
            return Err(bad("unsupported capability version"));
        }
        let codec = CodecId::from_u8(body[65]).ok_or_else(|| bad("unknown codec"))?;
        let k = u16::from_le_bytes([body[66], body[67]]);
        let m = u16::from_le_bytes([body[68], body[69]]);
        if k == 0 || m == 0 || usize::from(k) + usize::from(m) > MAX_SHARDS {
            return Err(bad("invalid coding parameters"));
        }
        Ok(Self {
            object_id: SegmentId(body[1..33].try_into().expect("32 bytes")),
            key: ObjectKey(body[33..65].try_into().expect("32 bytes")),
            codec,
            k,
            m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_round_trips_and_rejects_typos() {
        let cap = Capability {
            object_id: SegmentId([3; 32]),
            key: ObjectKey([4; 32]),
            codec: CodecId::RsGf16Leopard,
            k: 4,
            m: 2,
        };
        let text = cap.to_string();
        assert!(text.starts_with(CAP_PREFIX));
        let back: Capability = text.parse().unwrap();
        assert_eq!(back.to_string(), text);
        assert_eq!(back.key.0, [4; 32]);
        let mut typo = text.clone().into_bytes();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let err = String::from_utf8(typo)
            .unwrap()
            .parse::<Capability>()
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!("hello".parse::<Capability>().is_err());
    }

    #[test]
    fn manifest_round_trips_and_is_bounded() {
        let m = Manifest {
            object_len: 5,
            segment_len: 2,
            segments: vec![SegmentId([1; 32]); 3],
        };
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let mut wrong = m.encode();
        wrong[20] = 4;
        assert!(Manifest::decode(&wrong).is_err());
        assert!(Manifest::decode(&m.encode()[..30]).is_err());
        assert_eq!(m.segment_plain_len(2), 1);
        assert!(Manifest::check_size(1 << 40, 1 << 20).is_err());
    }
}
