//! The fuzz smoke (docs/fuzzing.md): each cargo-fuzz target's committed corpus and a few
//! thousand mutations of it, through the same function the target calls.

use macula_s3::fuzzing;
use macula_testkit::fuzz::{replay, seed};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn http_head() {
    replay(DIR, "http_head", fuzzing::http_head);
}

#[test]
fn aws_chunked() {
    replay(DIR, "aws_chunked", fuzzing::aws_chunked);
}

#[test]
fn xml_bodies() {
    replay(DIR, "xml_bodies", fuzzing::xml_bodies);
}

#[test]
fn index_records() {
    replay(DIR, "index_records", fuzzing::index_records);
}

/// The committed `index_records` seed is the encoding of a bucket, an object and an access key
/// (so the fuzzer starts from records that decode).
#[test]
fn index_records_seed_is_three_changes() {
    use macula_s3::index::{AccessKey, Change, ObjectMeta, Part, Record, Version};
    let v = |counter| Version {
        counter,
        node: [7; 32],
    };
    let records = vec![
        Record {
            version: v(1),
            change: Change::Bucket {
                name: "photos".into(),
                created_ms: Some(1_700_000_000_000),
            },
        },
        Record {
            version: v(2),
            change: Change::Object {
                bucket: "photos".into(),
                key: "2024/a.jpg".into(),
                meta: Some(ObjectMeta {
                    parts: vec![Part {
                        cap: "cap1".into(),
                        size: 10,
                    }],
                    size: 10,
                    etag: "\"0c78aef83f66abc1fa1e8477f296d394\"".into(),
                    modified_ms: 1_700_000_000_001,
                    content_type: Some("image/jpeg".into()),
                    user_meta: vec![("x-amz-meta-a".into(), "b".into())],
                }),
            },
        },
        Record {
            version: v(3),
            change: Change::Key {
                id: "AKIAEXAMPLE".into(),
                key: Some(AccessKey {
                    name: "restic".into(),
                    secret: "secret".into(),
                    created_ms: 1_700_000_000_002,
                }),
            },
        },
    ];
    seed(
        DIR,
        "index_records",
        "three_changes",
        &macula_core::wire::encode(&records),
    );
}

/// Found by the smoke: bytes after the final chunk were refused when they came in the same
/// read as the final chunk and accepted when they came in a later one (the decoder answered
/// `Done` without looking at them). Both are refused now.
#[test]
fn aws_chunked_bytes_after_the_final_chunk_in_a_later_read() {
    let input = std::fs::read(format!(
        "{DIR}/tests/fuzz_crashes/aws_chunked_bytes_after_final_chunk"
    ))
    .unwrap();
    fuzzing::aws_chunked(&input);
}

/// Found by `make fuzz`: a chunk header line of exactly 256 bytes was accepted when its CRLF came
/// in the same read and refused ("too long") when a read ended before it, and a longer one was
/// not refused for its length when whole in the input. Both are decided alike now.
#[test]
fn aws_chunked_header_line_length_independent_of_the_reads() {
    let input = std::fs::read(format!(
        "{DIR}/tests/fuzz_crashes/aws_chunked_header_line_of_256_bytes"
    ))
    .unwrap();
    fuzzing::aws_chunked(&input);
}
