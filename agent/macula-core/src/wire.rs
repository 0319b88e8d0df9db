//! The one wire encoding for frames, records and headers: a version byte followed by the
//! value in postcard 1.x (see `docs/protocol.md`). Encoding is deterministic, so signed bytes are
//! exactly the encoded bytes; decoding rejects other versions, oversize input and trailing bytes.

use serde::{Serialize, de::DeserializeOwned};

/// Version byte of the current encoding.
pub const VERSION: u8 = 1;
/// Default upper bound for one encoded value (frames may set a smaller one).
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty input: expected a version byte")]
    Empty,
    #[error(
        "unsupported encoding version {0} (this build speaks version {VERSION}); upgrade the older node"
    )]
    Version(u8),
    #[error("encoded value is {len} bytes, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("malformed value: {0}")]
    Malformed(String),
    #[error("{0} unexpected trailing bytes after the value")]
    Trailing(usize),
}

/// Encodes `value` as version byte + postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    postcard::to_io(value, &mut out).expect("encoding into a Vec cannot fail");
    out
}

/// Decodes a value of at most [`MAX_FRAME`] bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    decode_with_limit(bytes, MAX_FRAME)
}

/// Decodes a value of at most `max` bytes (version byte included).
pub fn decode_with_limit<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(value)
}

/// `#[serde(with = "macula_core::wire::bytes")]` for `Vec<u8>` fields that carry bulk data:
/// the same encoding as a plain `Vec<u8>` (postcard writes a `u8` as itself, so a sequence of
/// bytes and a byte string are both varint length ‖ the bytes), but encoded and decoded as one
/// block instead of one serde call per byte.
pub mod bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u32,
        b: String,
        c: Vec<u8>,
    }

    #[test]
    fn vector_and_roundtrip() {
        let s = Sample {
            a: 300,
            b: "hi".into(),
            c: vec![1, 2],
        };
        let bytes = encode(&s);
        // version 1, varint(300) = ac 02, len 2 "hi", len 2 [1,2]  (docs/protocol.md)
        assert_eq!(bytes, [1, 0xac, 0x02, 2, b'h', b'i', 2, 1, 2]);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = encode(&Sample {
            a: 1,
            b: String::new(),
            c: vec![],
        });
        assert_eq!(decode::<Sample>(&[]), Err(WireError::Empty));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode::<Sample>(&v2), Err(WireError::Version(2)));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode::<Sample>(&long), Err(WireError::Trailing(1)));
        assert!(matches!(
            decode::<Sample>(&bytes[..2]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode_with_limit::<Sample>(&bytes, 2),
            Err(WireError::TooLong { .. })
        ));
        // A huge declared length must not allocate: postcard borrows from the input.
        assert!(decode::<Sample>(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn byte_fields_encode_like_plain_vectors() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Fast {
            a: u32,
            #[serde(with = "super::bytes")]
            c: Vec<u8>,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Plain {
            a: u32,
            c: Vec<u8>,
        }
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let c: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let fast = encode(&Fast { a: 5, c: c.clone() });
            assert_eq!(fast, encode(&Plain { a: 5, c: c.clone() }), "len {len}");
            assert_eq!(
                decode_with_limit::<Fast>(&fast, 1 << 20),
                Ok(Fast { a: 5, c: c.clone() })
            );
            assert_eq!(
                decode_with_limit::<Plain>(&fast, 1 << 20),
                Ok(Plain { a: 5, c })
            );
        }
        // A length beyond the input is refused, not allocated.
        assert!(decode::<Fast>(&[VERSION, 5, 0xff, 0xff, 0x03, 1, 2]).is_err());
    }
}
