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
}
