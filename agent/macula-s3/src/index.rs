//! The realm-wide bucket, key and access-key index: a last-writer-wins map replicated to every
//! gateway (sans-IO; the shell in `maculad` carries records between gateways and keeps a copy
//! on disk).
//!
//! Every change is a [`Record`] carrying a [`Version`]: a Lamport counter and the writing node's
//! ID. A record replaces what a gateway holds for the same name only if its version is greater,
//! so gateways that hear the same records in any order, any number of times, hold the same
//! index. Deletions are records too (tombstones) so a late copy of an older write cannot bring a
//! deleted object back. No clock is involved: a gateway's counter moves past every version it
//! hears, so its next write supersedes everything it has seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Code, S3Error};
use crate::multipart::{Upload, UploadedPart};

/// A clock-independent version: Lamport counter, then the writer's node ID as tie-break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub counter: u64,
    pub node: [u8; 32],
}

/// One stored body: a realm object's capability (`macula-cap1-…`) and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub cap: String,
    pub size: u64,
}

/// The parts holding bytes `first..first + len` of an object made of `parts`, and how many bytes
/// the parts before them hold (a ranged GET reads only those).
pub fn parts_covering(parts: &[Part], first: u64, len: u64) -> (&[Part], u64) {
    let (mut start, mut skipped, mut at) = (0, 0, 0u64);
    let end = first.saturating_add(len);
    let mut stop = parts.len();
    for (i, p) in parts.iter().enumerate() {
        if at + p.size <= first && len > 0 {
            start = i + 1;
            skipped = at + p.size;
        }
        if at >= end && len > 0 {
            stop = i;
            break;
        }
        at += p.size;
    }
    (&parts[start.min(stop)..stop], skipped)
}

/// An object's index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The object's bytes: one realm object (PutObject, CopyObject) or one per part
    /// (multipart), in order.
    pub parts: Vec<Part>,
    pub size: u64,
    /// Quoted, as S3 sends it.
    pub etag: String,
    pub modified_ms: u64,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` (names without the prefix, lower-case).
    pub user_meta: Vec<(String, String)>,
}

/// An access key (id, secret). The secret is what SigV4 needs to verify a request, so every
/// gateway holds it; it is never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub name: String,
    pub secret: String,
    pub created_ms: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, secret hidden)", self.name)
    }
}

/// One change of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A bucket created (`Some(created_ms)`) or deleted (`None`).
    Bucket {
        name: String,
        created_ms: Option<u64>,
    },
    /// An object written (`Some`) or deleted (`None`).
    Object {
        bucket: String,
        key: String,
        meta: Option<ObjectMeta>,
    },
    /// An access key created (`Some`) or revoked (`None`, for good: ids are random and never
    /// reused).
    Key { id: String, key: Option<AccessKey> },
    /// An access key limited to one bucket and/or to reading, created (revoked by `Key` with
    /// `None`). Its own variant, last, so the records of full keys stay as they were; a gateway
    /// older than it ignores the record (the key does not work there).
    ScopedKey {
        id: String,
        key: AccessKey,
        scope: KeyScope,
    },
    /// A multipart upload begun (`Open`) or ended (`Ended`: completed or aborted). Appended
    /// after the kinds above: a gateway older than it ignores upload records.
    Upload { id: String, state: UploadState },
    /// Part `number` of upload `id` received (by the gateway whose version it carries). A part
    /// of an upload that has ended is not kept: each gateway deletes the parts it wrote.
    UploadPart {
        id: String,
        number: u32,
        part: UploadedPart,
    },
}

/// What a gateway holds of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadState {
    /// In progress: where its object will go and what it will carry.
    Open(UploadHead),
    /// Completed (its object uses the bodies `kept`, by capability) or aborted (`kept` empty).
    /// Every other part of it is no longer used; its writer deletes it.
    Ended { kept: Vec<String> },
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHead {
    pub bucket: String,
    pub key: String,
    pub created_ms: u64,
    pub content_type: Option<String>,
    pub user_meta: Vec<(String, String)>,
}

/// What an access key may do: everything (the default), or only on one bucket, or only read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    /// The one bucket it may use (it lists only that one); `None`: every bucket.
    pub bucket: Option<String>,
    /// Only reads: list, head, get (no create, put, copy, delete, multipart writes).
    pub read_only: bool,
}

impl KeyScope {
    pub fn is_full(&self) -> bool {
        *self == KeyScope::default()
    }

    /// Whether a key of this scope may run `op` on `bucket` (`None`: no bucket, ListBuckets);
    /// the AccessDenied error says why not. A CopyObject's source bucket is checked apart
    /// ([`KeyScope::may_read`]).
    pub fn allows(&self, op: &crate::route::Op, bucket: Option<&str>) -> Result<(), S3Error> {
        use crate::route::Op::*;
        let reads = matches!(
            op,
            ListBuckets
                | HeadBucket
                | GetBucketLocation
                | ListObjectsV2
                | ListObjectsV1
                | ListObjectVersions
                | ListParts
                | ListMultipartUploads
                | GetObject
                | HeadObject
                | NotImplemented(_)
        );
        if self.read_only && !reads {
            return Err(S3Error::new(
                Code::AccessDenied,
                "Access Denied: this access key is read-only",
            ));
        }
        match (&self.bucket, bucket) {
            (Some(mine), Some(b)) if mine != b => Err(S3Error::new(
                Code::AccessDenied,
                format!("Access Denied: this access key may use bucket {mine} only"),
            )),
            (Some(mine), None) if *op != ListBuckets => Err(S3Error::new(
                Code::AccessDenied,
                format!("Access Denied: this access key may use bucket {mine} only"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a key of this scope may read from `bucket` (a CopyObject's source).
    pub fn may_read(&self, bucket: &str) -> Result<(), S3Error> {
        self.allows(&crate::route::Op::GetObject, Some(bucket))
    }

    /// Whether ListBuckets shows `bucket` to a key of this scope.
    pub fn lists(&self, bucket: &str) -> bool {
        self.bucket.as_deref().is_none_or(|b| b == bucket)
    }
}

/// A versioned change, as gateways exchange and store them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: Version,
    pub change: Change,
}

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The record was new and won; `replaced` is the object it superseded, if any, and
    /// `unused` the bodies of uploads' parts it left unused (a part sent again, the parts an
    /// ended upload did not keep), each with the version of the record that held it: their
    /// writer deletes them.
    Won {
        replaced: Option<(Version, ObjectMeta)>,
        unused: Vec<(Version, Part)>,
    },
    /// An equal or newer version was already held.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<(String, ObjectMeta)>,
    pub common_prefixes: Vec<String>,
    /// The last key or common prefix returned when the listing was cut short.
    pub next: Option<String>,
}

/// Where a sync page starts: after the record with this name (kind, then name parts), in the
/// order [`Index::records`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SyncCursor(u8, String, String);

/// One page of an index sync: records in name order, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPage {
    pub records: Vec<Record>,
    pub next: Option<SyncCursor>,
}

/// The RPC a node asks a peer's full index with, page by page (`docs/s3.md`, catch-up).
pub const SYNC_PROCEDURE: &str = "s3.index.sync";
/// Encoded bytes of records per sync page (well under an RPC frame).
pub const SYNC_PAGE_BYTES: usize = 1 << 20;
/// How long a starting gateway waits to have caught up from at least one member before it
/// serves what it holds (a realm of one has nobody to ask).
pub const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// How long one sync page may take.
pub const SYNC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl Record {
    fn cursor(&self) -> SyncCursor {
        match &self.change {
            Change::Bucket { name, .. } => SyncCursor(0, name.clone(), String::new()),
            Change::Object { bucket, key, .. } => SyncCursor(1, bucket.clone(), key.clone()),
            Change::Key { id, .. } | Change::ScopedKey { id, .. } => {
                SyncCursor(2, id.clone(), String::new())
            }
            Change::Upload { id, .. } => SyncCursor(3, id.clone(), String::new()),
            Change::UploadPart { id, number, .. } => {
                SyncCursor(4, id.clone(), format!("{number:05}"))
            }
        }
    }
}

/// Most keys in one listing page (as S3).
pub const MAX_KEYS: usize = 1000;
/// Longest key in bytes (as S3).
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Default, Clone)]
pub struct Index {
    counter: u64,
    buckets: BTreeMap<String, (Version, Option<u64>)>,
    objects: BTreeMap<String, BTreeMap<String, (Version, Option<ObjectMeta>)>>,
    keys: BTreeMap<String, (Version, Option<(AccessKey, KeyScope)>)>,
    uploads: BTreeMap<String, (Version, UploadState)>,
    /// Parts of uploads not ended (an upload's part may arrive before the upload).
    parts: BTreeMap<String, BTreeMap<u32, (Version, UploadedPart)>>,
}

impl Index {
    /// The version for this node's next change: newer than everything seen so far.
    pub fn next_version(&mut self, node: [u8; 32]) -> Version {
        self.counter += 1;
        Version {
            counter: self.counter,
            node,
        }
    }

    /// Applies a record from this gateway or another (idempotent, order-independent).
    pub fn apply(&mut self, r: Record) -> Applied {
        self.counter = self.counter.max(r.version.counter);
        let v = r.version;
        match r.change {
            Change::Bucket { name, created_ms } => {
                match self.buckets.get(&name) {
                    Some((old, _)) if *old >= v => return Applied::Stale,
                    _ => {}
                }
                self.buckets.insert(name, (v, created_ms));
                Applied::Won {
                    replaced: None,
                    unused: Vec::new(),
                }
            }
            Change::Object { bucket, key, meta } => {
                let b = self.objects.entry(bucket).or_default();
                let replaced = match b.get(&key) {
                    Some((old, _)) if *old >= v => return Applied::Stale,
                    Some((old, m)) => m.clone().map(|m| (*old, m)),
                    None => None,
                };
                b.insert(key, (v, meta));
                Applied::Won {
                    replaced,
                    unused: Vec::new(),
                }
            }
            Change::Key { id, key } => self.apply_key(v, id, key.map(|k| (k, KeyScope::default()))),
            Change::ScopedKey { id, key, scope } => self.apply_key(v, id, Some((key, scope))),
            Change::Upload { id, state } => {
                if self.uploads.get(&id).is_some_and(|(old, _)| *old >= v) {
                    return Applied::Stale;
                }
                let mut unused = Vec::new();
                if let UploadState::Ended { kept } = &state {
                    for (_, (pv, p)) in self.parts.remove(&id).unwrap_or_default() {
                        if !kept.contains(&p.part.cap) {
                            unused.push((pv, p.part));
                        }
                    }
                }
                self.uploads.insert(id, (v, state));
                Applied::Won {
                    replaced: None,
                    unused,
                }
            }
            Change::UploadPart { id, number, part } => {
                if matches!(self.uploads.get(&id), Some((_, UploadState::Ended { .. }))) {
                    // Sent while the upload ended elsewhere: nothing uses it.
                    return Applied::Won {
                        replaced: None,
                        unused: vec![(v, part.part)],
                    };
                }
                let parts = self.parts.entry(id).or_default();
                if parts.get(&number).is_some_and(|(old, _)| *old >= v) {
                    return Applied::Stale;
                }
                let unused = parts
                    .insert(number, (v, part))
                    .map(|(old, p)| (old, p.part))
                    .into_iter()
                    .collect();
                Applied::Won {
                    replaced: None,
                    unused,
                }
            }
        }
    }

    fn apply_key(&mut self, v: Version, id: String, key: Option<(AccessKey, KeyScope)>) -> Applied {
        match self.keys.get(&id) {
            Some((old, _)) if *old >= v => return Applied::Stale,
            _ => {}
        }
        self.keys.insert(id, (v, key));
        Applied::Won {
            replaced: None,
            unused: Vec::new(),
        }
    }

    /// Every record that makes up the current index (for a copy on disk or a newcomer).
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (name, (v, c)) in &self.buckets {
            out.push(Record {
                version: *v,
                change: Change::Bucket {
                    name: name.clone(),
                    created_ms: *c,
                },
            });
        }
        for (bucket, keys) in &self.objects {
            for (key, (v, meta)) in keys {
                out.push(Record {
                    version: *v,
                    change: Change::Object {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        meta: meta.clone(),
                    },
                });
            }
        }
        for (id, (v, key)) in &self.keys {
            let change = match key {
                Some((key, scope)) if !scope.is_full() => Change::ScopedKey {
                    id: id.clone(),
                    key: key.clone(),
                    scope: scope.clone(),
                },
                _ => Change::Key {
                    id: id.clone(),
                    key: key.as_ref().map(|(k, _)| k.clone()),
                },
            };
            out.push(Record {
                version: *v,
                change,
            });
        }
        for (id, (v, state)) in &self.uploads {
            out.push(Record {
                version: *v,
                change: Change::Upload {
                    id: id.clone(),
                    state: state.clone(),
                },
            });
        }
        for (id, parts) in &self.parts {
            for (number, (v, part)) in parts {
                out.push(Record {
                    version: *v,
                    change: Change::UploadPart {
                        id: id.clone(),
                        number: *number,
                        part: part.clone(),
                    },
                });
            }
        }
        out
    }

    /// Upload `id` of `bucket`/`key`, if it is in progress, with the parts received so far.
    pub fn upload(&self, id: &str, bucket: &str, key: &str) -> Option<Upload> {
        match self.uploads.get(id) {
            Some((_, UploadState::Open(h))) if h.bucket == bucket && h.key == key => {
                Some(self.upload_of(id, h))
            }
            _ => None,
        }
    }

    fn upload_of(&self, id: &str, h: &UploadHead) -> Upload {
        Upload {
            bucket: h.bucket.clone(),
            key: h.key.clone(),
            created_ms: h.created_ms,
            content_type: h.content_type.clone(),
            user_meta: h.user_meta.clone(),
            parts: self
                .parts
                .get(id)
                .map(|p| p.iter().map(|(n, (_, p))| (*n, p.clone())).collect())
                .unwrap_or_default(),
        }
    }

    /// Every upload in progress, by ID (`bucket`: only that bucket's).
    pub fn uploads(&self, bucket: Option<&str>) -> Vec<(String, Upload)> {
        self.uploads
            .iter()
            .filter_map(|(id, (_, s))| match s {
                UploadState::Open(h) if bucket.is_none_or(|b| b == h.bucket) => {
                    Some((id.clone(), self.upload_of(id, h)))
                }
                _ => None,
            })
            .collect()
    }

    /// The records after `after` (all from the start with `None`), at most `max_bytes` of them
    /// as `size` measures (at least one per page).
    pub fn sync_page(
        &self,
        after: Option<&SyncCursor>,
        max_bytes: usize,
        size: impl Fn(&Record) -> usize,
    ) -> SyncPage {
        let mut page = SyncPage {
            records: Vec::new(),
            next: None,
        };
        let mut bytes = 0;
        for r in self.records() {
            let c = r.cursor();
            if after.is_some_and(|a| c <= *a) {
                continue;
            }
            let n = size(&r);
            if !page.records.is_empty() && bytes + n > max_bytes {
                page.next = page.records.last().map(Record::cursor);
                break;
            }
            bytes += n;
            page.records.push(r);
        }
        page
    }

    /// The live access key `id` and what it may do.
    pub fn access_key(&self, id: &str) -> Option<(&AccessKey, &KeyScope)> {
        self.keys
            .get(id)
            .and_then(|(_, k)| k.as_ref())
            .map(|(k, s)| (k, s))
    }

    /// The change that revokes access key `id`; `None` when there is no such live key.
    pub fn revoke_key(&self, id: &str) -> Option<Change> {
        self.access_key(id).map(|_| Change::Key {
            id: id.to_string(),
            key: None,
        })
    }

    pub fn access_keys(&self) -> impl Iterator<Item = (&str, &AccessKey, &KeyScope)> {
        self.keys
            .iter()
            .filter_map(|(id, (_, k))| k.as_ref().map(|(k, s)| (id.as_str(), k, s)))
    }

    /// Live buckets and objects.
    pub fn counts(&self) -> (usize, usize) {
        let objects = self
            .objects
            .values()
            .flat_map(|m| m.values())
            .filter(|(_, m)| m.is_some())
            .count();
        (self.buckets().len(), objects)
    }

    pub fn bucket_exists(&self, name: &str) -> bool {
        matches!(self.buckets.get(name), Some((_, Some(_))))
    }

    pub fn buckets(&self) -> Vec<BucketInfo> {
        self.buckets
            .iter()
            .filter_map(|(n, (_, c))| {
                c.map(|created_ms| BucketInfo {
                    name: n.clone(),
                    created_ms,
                })
            })
            .collect()
    }

    fn live(&self, bucket: &str) -> impl Iterator<Item = (&String, &ObjectMeta)> {
        self.objects
            .get(bucket)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, (_, m))| m.as_ref().map(|m| (k, m)))
    }

    /// The change that creates `name` (errors: bad name, exists).
    pub fn create_bucket(&self, name: &str, now_ms: u64) -> Result<Change, S3Error> {
        check_bucket_name(name)?;
        if self.bucket_exists(name) {
            return Err(S3Error::new(
                Code::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .with_resource(format!("/{name}")));
        }
        Ok(Change::Bucket {
            name: name.to_string(),
            created_ms: Some(now_ms),
        })
    }

    /// The change that deletes `name` (errors: missing, not empty).
    pub fn delete_bucket(&self, name: &str) -> Result<Change, S3Error> {
        self.check_bucket(name)?;
        if self.live(name).next().is_some() {
            return Err(S3Error::new(
                Code::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            )
            .with_resource(format!("/{name}")));
        }
        Ok(Change::Bucket {
            name: name.to_string(),
            created_ms: None,
        })
    }

    pub fn check_bucket(&self, name: &str) -> Result<(), S3Error> {
        if self.bucket_exists(name) {
            Ok(())
        } else {
            Err(
                S3Error::new(Code::NoSuchBucket, "The specified bucket does not exist")
                    .with_resource(format!("/{name}")),
            )
        }
    }

    /// The live object `bucket/key` (errors: NoSuchBucket, NoSuchKey).
    pub fn object(&self, bucket: &str, key: &str) -> Result<&ObjectMeta, S3Error> {
        self.check_bucket(bucket)?;
        self.objects
            .get(bucket)
            .and_then(|m| m.get(key))
            .and_then(|(_, m)| m.as_ref())
            .ok_or_else(|| {
                S3Error::new(Code::NoSuchKey, "The specified key does not exist.")
                    .with_resource(format!("/{bucket}/{key}"))
            })
    }

    /// Lists `bucket` in key order: keys after `after`, starting with `prefix`, keys sharing a
    /// prefix up to `delimiter` rolled into one common prefix, at most `max` entries.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, S3Error> {
        self.check_bucket(bucket)?;
        let max = max.min(MAX_KEYS);
        let mut page = ListPage::default();
        let mut count = 0;
        for (key, meta) in self.live(bucket) {
            if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_string())
            });
            if let Some(cp) = rolled {
                if page.common_prefixes.last() == Some(&cp)
                    || after.is_some_and(|a| a.starts_with(&cp))
                {
                    continue;
                }
                if count == max {
                    page.next = last_of(&page);
                    return Ok(page);
                }
                page.common_prefixes.push(cp);
            } else {
                if count == max {
                    page.next = last_of(&page);
                    return Ok(page);
                }
                page.objects.push((key.clone(), meta.clone()));
            }
            count += 1;
        }
        Ok(page)
    }
}

/// The greatest name in a page (the key or common prefix listed last).
fn last_of(page: &ListPage) -> Option<String> {
    let k = page.objects.last().map(|(k, _)| k.clone());
    let p = page.common_prefixes.last().cloned();
    k.max(p)
}

/// The continuation token for a listing that ended at `last` (opaque to clients: hex).
pub fn continuation_token(last: &str) -> String {
    crate::sigv4::hex(last.as_bytes())
}

/// The key a continuation token resumes after.
pub fn parse_continuation(token: &str) -> Result<String, S3Error> {
    crate::sigv4::decode_hex(token)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::new(
                Code::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

/// S3's bucket naming rules (3–63 of `a-z0-9.-`, starting and ending with a letter or digit).
pub fn check_bucket_name(name: &str) -> Result<(), S3Error> {
    let b = name.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(S3Error::new(
            Code::InvalidBucketName,
            "The specified bucket is not valid (3-63 characters of a-z, 0-9, '.', '-')",
        )
        .with_resource(format!("/{name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(tag: &str) -> ObjectMeta {
        ObjectMeta {
            parts: vec![Part {
                cap: format!("cap-{tag}"),
                size: 1,
            }],
            size: 1,
            etag: format!("\"{tag}\""),
            modified_ms: 0,
            content_type: None,
            user_meta: vec![],
        }
    }

    fn put(ix: &mut Index, node: u8, b: &str, k: &str, m: Option<ObjectMeta>) -> Record {
        let r = Record {
            version: ix.next_version([node; 32]),
            change: Change::Object {
                bucket: b.into(),
                key: k.into(),
                meta: m,
            },
        };
        ix.apply(r.clone());
        r
    }

    #[test]
    fn concurrent_writers_converge_in_any_order() {
        let (mut a, mut b) = (Index::default(), Index::default());
        let c = a.create_bucket("bkt", 1).unwrap();
        let rc = Record {
            version: a.next_version([1; 32]),
            change: c,
        };
        a.apply(rc.clone());
        b.apply(rc.clone());
        // Both write the same key without seeing each other: same counter, node 2 wins.
        let ra = put(&mut a, 1, "bkt", "k", Some(meta("a")));
        let rb = put(&mut b, 2, "bkt", "k", Some(meta("b")));
        assert_eq!(ra.version.counter, rb.version.counter);
        assert_eq!(
            a.apply(rb.clone()),
            Applied::Won {
                replaced: Some((ra.version, meta("a"))),
                unused: Vec::new(),
            }
        );
        assert_eq!(b.apply(ra.clone()), Applied::Stale);
        assert_eq!(b.apply(rb.clone()), Applied::Stale);
        assert_eq!(a.object("bkt", "k").unwrap().etag, "\"b\"");
        assert_eq!(b.object("bkt", "k").unwrap().etag, "\"b\"");
        // A delete seen by a third gateway before the write it supersedes.
        let del = put(&mut a, 1, "bkt", "k", None);
        let mut c3 = Index::default();
        c3.apply(rc);
        c3.apply(del);
        c3.apply(rb);
        c3.apply(ra.clone());
        assert_eq!(c3.object("bkt", "k").unwrap_err().code, Code::NoSuchKey);
        assert_eq!(
            c3.records().len(),
            a.records().len(),
            "same records: {:?}",
            c3.records()
        );
        // The next local write is newer than everything heard.
        assert!(c3.next_version([0; 32]).counter > ra.version.counter);
    }

    #[test]
    fn uploads_through_several_gateways_converge_and_leave_no_body_unowned() {
        let (ga, gb) = ([1u8; 32], [2u8; 32]);
        let part = |cap: &str| UploadedPart {
            part: Part {
                cap: cap.into(),
                size: 5 << 20,
            },
            md5: [7; 16],
            modified_ms: 1,
        };
        let rec = |ix: &mut Index, node: [u8; 32], change: Change| {
            let r = Record {
                version: ix.next_version(node),
                change,
            };
            assert!(matches!(ix.apply(r.clone()), Applied::Won { .. }));
            r
        };
        let (mut a, mut b) = (Index::default(), Index::default());
        let id = "u1".to_string();
        let open = rec(
            &mut a,
            ga,
            Change::Upload {
                id: id.clone(),
                state: UploadState::Open(UploadHead {
                    bucket: "bkt".into(),
                    key: "k".into(),
                    created_ms: 1,
                    content_type: None,
                    user_meta: vec![],
                }),
            },
        );
        b.apply(open.clone());
        let p1 = rec(
            &mut a,
            ga,
            Change::UploadPart {
                id: id.clone(),
                number: 1,
                part: part("a1"),
            },
        );
        let p2b = rec(
            &mut b,
            gb,
            Change::UploadPart {
                id: id.clone(),
                number: 2,
                part: part("b2"),
            },
        );
        // Part 2 sent again, through gateway A after it heard B's: B's body is unused, B's to
        // delete.
        a.apply(p2b.clone());
        let p2a = Record {
            version: a.next_version(ga),
            change: Change::UploadPart {
                id: id.clone(),
                number: 2,
                part: part("a2"),
            },
        };
        match a.apply(p2a.clone()) {
            Applied::Won { unused, .. } => assert_eq!(unused, vec![(p2b.version, part("b2").part)]),
            other => panic!("{other:?}"),
        }
        // B sees both parts and completes (keeping parts 1 and 2) after a third part it got
        // itself, which the completion does not name.
        b.apply(p1.clone());
        b.apply(p2a.clone());
        let p3b = rec(
            &mut b,
            gb,
            Change::UploadPart {
                id: id.clone(),
                number: 3,
                part: part("b3"),
            },
        );
        let up = b.upload(&id, "bkt", "k").expect("in progress at B");
        assert_eq!(up.parts.len(), 3);
        assert_eq!(a.uploads(Some("bkt")).len(), 1);
        let end = Record {
            version: b.next_version(gb),
            change: Change::Upload {
                id: id.clone(),
                state: UploadState::Ended {
                    kept: vec!["a1".into(), "a2".into()],
                },
            },
        };
        match b.apply(end.clone()) {
            Applied::Won { unused, .. } => assert_eq!(unused, vec![(p3b.version, part("b3").part)]),
            other => panic!("{other:?}"),
        }
        assert!(b.upload(&id, "bkt", "k").is_none());
        // Every order gives the same index; a part heard after the end is unused at once.
        let all = [open, p1, p2b, p2a, p3b.clone(), end];
        let mut reference: Option<Vec<Record>> = None;
        for rot in 0..2 * all.len() {
            let mut order: Vec<&Record> = all.iter().cycle().skip(rot).take(all.len()).collect();
            if rot >= all.len() {
                order.reverse();
            }
            let mut ix = Index::default();
            for r in order {
                ix.apply(r.clone());
            }
            let got = ix.records();
            assert!(ix.uploads(None).is_empty(), "rotation {rot}: still open");
            match &reference {
                None => reference = Some(got),
                Some(want) => assert_eq!(&got, want, "rotation {rot}"),
            }
        }
        let mut late = Index::default();
        late.apply(all[5].clone());
        match late.apply(p3b.clone()) {
            Applied::Won { unused, .. } => assert_eq!(unused, vec![(p3b.version, part("b3").part)]),
            other => panic!("{other:?}"),
        }
        assert!(
            late.records()
                .iter()
                .all(|r| !matches!(r.change, Change::UploadPart { .. }))
        );
    }

    #[test]
    fn sync_pages_carry_everything_once() {
        let mut src = Index::default();
        let c = src.create_bucket("bkt", 0).unwrap();
        let v = src.next_version([1; 32]);
        src.apply(Record {
            version: v,
            change: c,
        });
        for k in ["a", "b", "c", "d", "e"] {
            put(&mut src, 1, "bkt", k, Some(meta(k)));
        }
        put(&mut src, 1, "bkt", "c", None);
        let mut dst = Index::default();
        let (mut after, mut pages) = (None, 0);
        loop {
            // 2 records per page.
            let page = src.sync_page(after.as_ref(), 2, |_| 1);
            assert!(page.records.len() <= 2);
            pages += 1;
            for r in page.records {
                dst.apply(r);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, 3, "6 records (a bucket, five keys), 2 per page");
        assert_eq!(dst.records(), src.records());
        assert_eq!(dst.object("bkt", "c").unwrap_err().code, Code::NoSuchKey);
        // A record larger than the page still travels, alone.
        assert_eq!(src.sync_page(None, 0, |_| 10).records.len(), 1);
    }

    #[test]
    fn ranges_read_only_the_parts_they_cover() {
        let parts: Vec<Part> = [5, 5, 3]
            .iter()
            .enumerate()
            .map(|(i, n)| Part {
                cap: i.to_string(),
                size: *n,
            })
            .collect();
        let caps = |first, len| {
            let (p, skipped) = parts_covering(&parts, first, len);
            (
                p.iter().map(|p| p.cap.as_str()).collect::<Vec<_>>(),
                skipped,
            )
        };
        assert_eq!(caps(0, 13), (vec!["0", "1", "2"], 0));
        assert_eq!(caps(0, 5), (vec!["0"], 0));
        assert_eq!(caps(4, 2), (vec!["0", "1"], 0));
        assert_eq!(caps(5, 5), (vec!["1"], 5));
        assert_eq!(caps(12, 1), (vec!["2"], 10));
        assert_eq!(caps(0, 0), (vec!["0", "1", "2"], 0));
    }

    #[test]
    fn revoked_keys_stay_revoked() {
        let mut ix = Index::default();
        let key = AccessKey {
            name: "n".into(),
            secret: "s".into(),
            created_ms: 0,
        };
        let create = Record {
            version: ix.next_version([1; 32]),
            change: Change::Key {
                id: "K".into(),
                key: Some(key.clone()),
            },
        };
        ix.apply(create.clone());
        assert_eq!(ix.access_key("K"), Some((&key, &KeyScope::default())));
        assert!(ix.revoke_key("nope").is_none());
        let revoke = Record {
            version: ix.next_version([2; 32]),
            change: ix.revoke_key("K").unwrap(),
        };
        ix.apply(revoke.clone());
        assert!(ix.access_key("K").is_none() && ix.access_keys().count() == 0);
        // A late copy of the creation does not bring it back, here or at another node.
        assert_eq!(ix.apply(create.clone()), Applied::Stale);
        let mut other = Index::default();
        other.apply(revoke);
        other.apply(create);
        assert!(other.access_key("K").is_none());
        assert!(format!("{key:?}").contains("hidden") && !format!("{key:?}").contains("\"s\""));
    }

    #[test]
    fn scoped_keys_travel_as_their_own_records_and_limit_what_a_key_does() {
        use crate::route::Op;
        let mut ix = Index::default();
        let key = AccessKey {
            name: "backup".into(),
            secret: "s".into(),
            created_ms: 0,
        };
        let scope = KeyScope {
            bucket: Some("photos".into()),
            read_only: true,
        };
        let version = ix.next_version([1; 32]);
        ix.apply(Record {
            version,
            change: Change::ScopedKey {
                id: "S".into(),
                key: key.clone(),
                scope: scope.clone(),
            },
        });
        assert_eq!(ix.access_key("S"), Some((&key, &scope)));
        // A copy made from the records has the scope; full keys keep the old record kind.
        let records = ix.records();
        assert!(matches!(
            records[..],
            [Record {
                change: Change::ScopedKey { .. },
                ..
            }]
        ));
        let mut copy = Index::default();
        for r in records {
            let bytes = macula_core::wire::encode(&r);
            copy.apply(macula_core::wire::decode(&bytes).unwrap());
        }
        assert_eq!(copy.access_key("S"), Some((&key, &scope)));
        // Revoked like any key.
        let revoke = Record {
            version: ix.next_version([1; 32]),
            change: ix.revoke_key("S").unwrap(),
        };
        copy.apply(revoke);
        assert!(copy.access_key("S").is_none());

        let denied = |r: Result<(), S3Error>| r.unwrap_err().code == Code::AccessDenied;
        assert!(scope.allows(&Op::GetObject, Some("photos")).is_ok());
        assert!(scope.allows(&Op::ListObjectsV2, Some("photos")).is_ok());
        assert!(scope.allows(&Op::ListBuckets, None).is_ok());
        assert!(denied(scope.allows(&Op::PutObject, Some("photos"))));
        assert!(denied(scope.allows(&Op::DeleteObject, Some("photos"))));
        assert!(denied(
            scope.allows(&Op::CreateMultipartUpload, Some("photos"))
        ));
        assert!(denied(scope.allows(&Op::GetObject, Some("other"))));
        assert!(denied(scope.may_read("other")));
        assert!(scope.lists("photos") && !scope.lists("other"));
        let writer = KeyScope {
            bucket: Some("photos".into()),
            read_only: false,
        };
        assert!(writer.allows(&Op::PutObject, Some("photos")).is_ok());
        assert!(denied(writer.allows(&Op::CreateBucket, Some("other"))));
        let reader = KeyScope {
            bucket: None,
            read_only: true,
        };
        assert!(reader.allows(&Op::GetObject, Some("any")).is_ok());
        assert!(denied(reader.allows(&Op::CreateBucket, Some("any"))));
        assert!(
            KeyScope::default()
                .allows(&Op::DeleteBucket, Some("any"))
                .is_ok()
        );
    }

    #[test]
    fn buckets_errors() {
        let mut ix = Index::default();
        assert_eq!(
            ix.create_bucket("A_b", 0).unwrap_err().code,
            Code::InvalidBucketName
        );
        assert_eq!(
            ix.delete_bucket("nope").unwrap_err().code,
            Code::NoSuchBucket
        );
        let c = ix.create_bucket("bkt", 5).unwrap();
        let v = ix.next_version([1; 32]);
        ix.apply(Record {
            version: v,
            change: c,
        });
        assert_eq!(
            ix.create_bucket("bkt", 6).unwrap_err().code,
            Code::BucketAlreadyOwnedByYou
        );
        put(&mut ix, 1, "bkt", "x", Some(meta("x")));
        assert_eq!(
            ix.delete_bucket("bkt").unwrap_err().code,
            Code::BucketNotEmpty
        );
        put(&mut ix, 1, "bkt", "x", None);
        let d = ix.delete_bucket("bkt").unwrap();
        let v = ix.next_version([1; 32]);
        ix.apply(Record {
            version: v,
            change: d,
        });
        assert!(ix.buckets().is_empty());
        assert_eq!(ix.counts(), (0, 0));
        assert_eq!(ix.object("bkt", "x").unwrap_err().code, Code::NoSuchBucket);
    }

    #[test]
    fn listing_prefix_delimiter_pages() {
        let mut ix = Index::default();
        let c = ix.create_bucket("bkt", 0).unwrap();
        let v = ix.next_version([1; 32]);
        ix.apply(Record {
            version: v,
            change: c,
        });
        for k in ["a/1", "a/2", "b", "c/x/1", "c/y", "d"] {
            put(&mut ix, 1, "bkt", k, Some(meta(k)));
        }
        let keys = |p: &ListPage| p.objects.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let all = ix.list("bkt", "", None, None, 1000).unwrap();
        assert_eq!(keys(&all).len(), 6);
        assert!(all.next.is_none());
        let d = ix.list("bkt", "", Some("/"), None, 1000).unwrap();
        assert_eq!(keys(&d), ["b", "d"]);
        assert_eq!(d.common_prefixes, ["a/", "c/"]);
        let c = ix.list("bkt", "c/", Some("/"), None, 1000).unwrap();
        assert_eq!(keys(&c), ["c/y"]);
        assert_eq!(c.common_prefixes, ["c/x/"]);
        // Pages of 2 through the delimited listing: a/ b | c/ d.
        let p1 = ix.list("bkt", "", Some("/"), None, 2).unwrap();
        assert_eq!(
            (keys(&p1), p1.common_prefixes.clone()),
            (vec!["b".to_string()], vec!["a/".to_string()])
        );
        let next = parse_continuation(&continuation_token(p1.next.as_deref().unwrap())).unwrap();
        assert_eq!(next, "b");
        let p2 = ix.list("bkt", "", Some("/"), Some(&next), 2).unwrap();
        assert_eq!(keys(&p2), ["d"]);
        assert_eq!(p2.common_prefixes, ["c/"]);
        assert!(p2.next.is_none());
        // Resuming after a common prefix skips all of it.
        let p3 = ix.list("bkt", "", Some("/"), Some("a/"), 1).unwrap();
        assert_eq!(keys(&p3), ["b"]);
        assert_eq!(
            ix.list("nope", "", None, None, 1).unwrap_err().code,
            Code::NoSuchBucket
        );
    }
}
