//! Segment encryption: one random 256-bit key per object, one AEAD invocation per segment.
//!
//! The AEAD is chosen by CPU: AES-256-GCM where the CPU has AES and carry-less multiply
//! instructions (x86-64 AES-NI + PCLMULQDQ, ARMv8 AES + PMULL, e.g. Pi 5), ChaCha20-Poly1305
//! elsewhere (Pi 3/4). The choice is written into every header, so any node can decrypt either.
//! The nonce is derived from the segment kind and index; a key is never reused across objects, so
//! no (key, nonce) pair repeats.

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::header::SegmentKind;

/// AEAD identifiers as written in shard headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AeadId {
    ChaCha20Poly1305 = 0x01,
    Aes256Gcm = 0x02,
}

impl AeadId {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0x01 => Some(Self::ChaCha20Poly1305),
            0x02 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The AEAD this CPU runs fastest with constant-time hardware support.
    pub fn preferred() -> Self {
        if macula_core::cpu::has_aes() {
            Self::Aes256Gcm
        } else {
            Self::ChaCha20Poly1305
        }
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Self::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Self::Aes256Gcm => &AES_256_GCM,
        }
    }
}

/// The per-object secret key (part of the capability). Zeroized on drop.
#[derive(Clone)]
pub struct ObjectKey(pub [u8; 32]);

impl Drop for ObjectKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ObjectKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("the OS random number generator failed");
        Self(k)
    }
}

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

/// Decryption failed: wrong key (capability) or tampered ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "segment failed authentication: the capability's key does not match or the data was tampered with"
)]
pub struct AeadError;

/// The nonce of a segment: `kind ‖ 0 0 0 ‖ index (u32 LE) ‖ 0 0 0 0`.
pub fn nonce_for(kind: SegmentKind, index: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = kind as u8;
    n[4..8].copy_from_slice(&index.to_le_bytes());
    n
}

/// Associated data binding a segment's ciphertext to its position:
/// `"macula/v1/segment" ‖ kind ‖ index ‖ count ‖ plain_len` (integers u32 LE).
pub fn aad_for(kind: SegmentKind, index: u32, count: u32, plain_len: u32) -> Vec<u8> {
    let mut a = b"macula/v1/segment".to_vec();
    a.push(kind as u8);
    a.extend_from_slice(&index.to_le_bytes());
    a.extend_from_slice(&count.to_le_bytes());
    a.extend_from_slice(&plain_len.to_le_bytes());
    a
}

fn key(aead: AeadId, key: &ObjectKey) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(aead.algorithm(), &key.0).expect("32-byte key fits both AEADs"),
    )
}

/// Encrypts `buf[..buf.len() - 16]` in place and writes the tag into the last 16 bytes.
pub fn seal_in_place(aead: AeadId, k: &ObjectKey, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) {
    let split = buf.len() - 16;
    let (msg, tag_out) = buf.split_at_mut(split);
    let tag = key(aead, k)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), msg)
        .expect("segment sizes are far below the AEAD limit");
    tag_out.copy_from_slice(tag.as_ref());
}

/// Decrypts and authenticates `buf` (ciphertext ‖ tag) in place; returns the plaintext length.
pub fn open_in_place(
    aead: AeadId,
    k: &ObjectKey,
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<usize, AeadError> {
    key(aead, k)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
        .map(|p| p.len())
        .map_err(|_| AeadError)
}
