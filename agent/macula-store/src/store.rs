//! The local shard store: a directory on the data partition.
//!
//! ```text
//! <root>/shards/<first two hex digits>/<segment id hex>.<index>   header ‖ data ‖ outboard
//! <root>/tmp/                                                    writes in progress
//! <root>/tombstones/<segment id hex>                             owner-signed deletes
//! <root>/purged/<owner node id>                                   owners an admin purged
//! ```
//!
//! Space is counted per owner (the key that signed the shard headers): an owner quota caps what
//! one owner may hold here, and an admin purge removes every shard of one owner and refuses its
//! shards from then on.
//!
//! A shard is verified completely (signature, length, outboard, data root) before it is accepted,
//! written to `tmp/`, fsync'd, renamed into place and its directory fsync'd: after a crash a shard
//! file either holds a complete verified shard or does not exist. `tmp/` is emptied on open. Every
//! read is verified again; a shard that fails is removed and reported so repair can replace it.

use macula_core::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::Signature;
use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey};

use crate::header::{MAX_HEADER_LEN, MAX_SHARD_LEN, SegmentId, ShardHeader};
use crate::segment::{Shard, ShardError, Trust};
use crate::tree;

/// Largest file a shard can be.
pub const MAX_SHARD_FILE: u64 = MAX_HEADER_LEN as u64
    + MAX_SHARD_LEN as u64
    + 32 * (MAX_SHARD_LEN as u64).div_ceil(tree::GROUP_LEN as u64);

/// Errors of the local store. Each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source} ({})", io_hint(.source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("shard rejected: {0}")]
    Invalid(#[from] ShardError),
    #[error("shard {segment}.{index} not found on this node")]
    NotFound { segment: SegmentId, index: u16 },
    #[error(
        "shard {segment}.{index} was corrupt on disk and has been removed; repair will restore it from other holders"
    )]
    Corrupt { segment: SegmentId, index: u16 },
    #[error(
        "storage quota exceeded: shard needs {need} bytes, {free} of {quota} free; raise the quota or add nodes"
    )]
    QuotaExceeded { need: u64, free: u64, quota: u64 },
    #[error(
        "per-owner quota exceeded for {owner}: shard needs {need} bytes, the owner holds {used} of {quota} here; the owner must delete objects, or the admin raise storage.owner_quota_bytes"
    )]
    OwnerQuotaExceeded {
        owner: NodeId,
        need: u64,
        used: u64,
        quota: u64,
    },
    #[error(
        "shard owner {0} is not a member this node knows; a holder keeps the shards of realm members only"
    )]
    UnknownOwner(NodeId),
    #[error("the shards of {0} were purged from this node by its admin; they are refused here")]
    Purged(NodeId),
    #[error("segment {0} was deleted by its owner; it cannot be stored again")]
    Deleted(SegmentId),
    #[error("delete request for {0} is not signed by the segment's owner")]
    NotOwner(SegmentId),
    #[error("chunk group {group} out of range for shard {segment}.{index}")]
    NoSuchGroup {
        segment: SegmentId,
        index: u16,
        group: usize,
    },
}

/// The first 8 bytes of a segment ID (uniformly random: a hash).
fn prefix(seg: &SegmentId) -> u64 {
    seg.0.iter().take(8).fold(0, |a, &b| a << 8 | u64::from(b))
}

/// What to do about a failed file operation of the store.
fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the disk is full: free space on the data partition or lower [storage] quota_bytes"
        }
        _ => "check the data partition is mounted and writable",
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Whether a put stored a new shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    AlreadyPresent,
}

/// What garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Leftover temporary files of interrupted writes.
    pub removed_tmp: usize,
    /// Shards that failed verification (repair should restore them).
    pub removed_corrupt: Vec<(SegmentId, u16)>,
    /// Shards of segments their owner deleted.
    pub removed_deleted: usize,
    /// Shards kept (all verified).
    pub kept: usize,
}

/// An owner-signed request to delete every shard of a segment:
/// Ed25519 over `"macula/v1/shard-delete" ‖ 0x00 ‖ "MDEL" ‖ segment ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub segment: SegmentId,
    pub signature: [u8; 64],
}

impl DeleteRequest {
    fn message(segment: &SegmentId) -> Vec<u8> {
        let mut m = b"MDEL".to_vec();
        m.extend_from_slice(&segment.0);
        m
    }

    pub fn sign(segment: SegmentId, owner: &NodeKey) -> Self {
        let signature = owner
            .sign(Domain::ShardDelete, &Self::message(&segment))
            .to_bytes();
        Self { segment, signature }
    }

    pub fn verify(&self, owner: &NodeId) -> bool {
        owner
            .verify(
                Domain::ShardDelete,
                &Self::message(&self.segment),
                &Signature::from_bytes(&self.signature),
            )
            .is_ok()
    }

    /// `segment ‖ signature`, as stored in a tombstone.
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.segment.0.to_vec();
        b.extend_from_slice(&self.signature);
        b
    }

    /// The inverse of [`DeleteRequest::to_bytes`] (`None` for anything but 96 bytes).
    fn from_bytes(b: &[u8]) -> Option<Self> {
        let (segment, signature) = b.split_first_chunk::<32>()?;
        Some(Self {
            segment: SegmentId(*segment),
            signature: signature.try_into().ok()?,
        })
    }
}

/// A directory of verified shards.
pub struct LocalStore {
    root: PathBuf,
    quota: u64,
    used: Mutex<u64>,
    /// Bytes held per owner (0 = no limit for one owner), and the per-owner limit.
    owners: Mutex<HashMap<NodeId, u64>>,
    owner_quota: AtomicU64,
    tmp_counter: AtomicU64,
    /// Names of the files in `tmp/` being written right now (GC leaves them alone).
    writing: Mutex<HashSet<OsString>>,
    /// Moves whenever a shard is stored or removed; watchers wake on every move.
    changes: tokio::sync::watch::Sender<u64>,
    /// The first 8 bytes of every tombstoned segment's ID: which tombstone files to read when
    /// another node's inventory is checked against them ([`LocalStore::maybe_deleted`]).
    tombstoned: Mutex<HashSet<u64>>,
    /// Every segment whose owner-signed delete this store applied ([`LocalStore::watch_deletes`]).
    deletes: tokio::sync::broadcast::Sender<SegmentId>,
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root` with a quota in bytes. Removes leftovers of
    /// interrupted writes and counts the space in use.
    pub fn open(root: &Path, quota: u64) -> Result<Self, StoreError> {
        for d in ["shards", "tmp", "tombstones", "purged"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        }
        let store = Self {
            root: root.to_path_buf(),
            quota,
            used: Mutex::new(0),
            owners: Mutex::new(HashMap::new()),
            owner_quota: AtomicU64::new(0),
            tmp_counter: AtomicU64::new(0),
            writing: Mutex::new(HashSet::new()),
            changes: tokio::sync::watch::Sender::new(0),
            tombstoned: Mutex::new(HashSet::new()),
            deletes: tokio::sync::broadcast::Sender::new(1024),
        };
        store.load_tombstones()?;
        store.clean_tmp()?;
        store.recount()?;
        Ok(store)
    }

    /// Recomputes the space in use, in total and per owner, from the files on disk.
    fn recount(&self) -> Result<(), StoreError> {
        let mut used = 0;
        let mut owners = HashMap::new();
        for (seg, idx) in self.list()? {
            let p = self.shard_path(&seg, idx);
            let len = fs::metadata(&p).map_err(io_err("cannot stat", &p))?.len();
            used += len;
            if let Some(owner) = self.owner_of(&seg, idx) {
                *owners.entry(owner).or_insert(0) += len;
            }
        }
        *self.used.locked() = used;
        *self.lock_owners() = owners;
        Ok(())
    }

    fn lock_owners(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, u64>> {
        self.owners.locked()
    }

    /// The owner of a stored shard, from its header (`None` if the file is gone or corrupt).
    fn owner_of(&self, seg: &SegmentId, index: u16) -> Option<NodeId> {
        self.header(seg, index)
            .ok()
            .and_then(|h| h.signed.owner().ok())
    }

    /// Caps the bytes one owner may hold in this store (0: no per-owner limit).
    pub fn set_owner_quota(&self, bytes: u64) {
        self.owner_quota.store(bytes, Ordering::Relaxed);
    }

    pub fn owner_quota(&self) -> u64 {
        self.owner_quota.load(Ordering::Relaxed)
    }

    /// Bytes each owner holds here.
    pub fn usage_by_owner(&self) -> HashMap<NodeId, u64> {
        self.lock_owners().clone()
    }

    fn purged_path(&self, owner: &NodeId) -> PathBuf {
        self.root.join("purged").join(owner.to_string())
    }

    /// Whether the admin purged `owner` from this store.
    pub fn is_purged(&self, owner: &NodeId) -> bool {
        self.purged_path(owner).exists()
    }

    /// Admin purge: removes every shard signed by `owner` and refuses its shards from now on
    /// (recorded in `purged/`, so also after a restart and against repairs by other members).
    /// Returns the shards and bytes removed.
    pub fn purge_owner(&self, owner: &NodeId) -> Result<(usize, u64), StoreError> {
        self.purge_owner_recording(owner, b"")
    }

    /// As [`LocalStore::purge_owner`], keeping `record` (a realm-wide purge order, see
    /// [`crate::purge`]) in the owner's `purged/` entry; a recorded order is not replaced by an
    /// empty record of a later local purge.
    pub fn purge_owner_recording(
        &self,
        owner: &NodeId,
        record: &[u8],
    ) -> Result<(usize, u64), StoreError> {
        let path = self.purged_path(owner);
        let kept = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        if !(record.is_empty() && kept) {
            self.write_atomically(&path, record)?;
        }
        let (mut n, mut bytes) = (0, 0);
        for (seg, idx) in self.list()? {
            if self.owner_of(&seg, idx).as_ref() == Some(owner) {
                bytes += self.remove(&seg, idx)?;
                n += 1;
            }
        }
        Ok((n, bytes))
    }

    /// The records kept with purged owners (empty ones left out).
    pub fn purge_records(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let dir = self.root.join("purged");
        let entries = std::fs::read_dir(&dir).map_err(io_err("cannot list", &dir))?;
        let mut out = Vec::new();
        for e in entries {
            let path = e.map_err(io_err("cannot list", &dir))?.path();
            let bytes = std::fs::read(&path).map_err(io_err("cannot read", &path))?;
            if !bytes.is_empty() {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A counter that moves whenever a shard is stored or removed through this handle (so the
    /// inventory is re-published only after a change).
    pub fn changes(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Wakes on every change of [`LocalStore::changes`] (free space, inventory), without polling.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The segments whose owner-signed deletes this store applies from now on (a receiver
    /// that falls more than 1 024 behind misses the oldest: its planner learns of those from
    /// the next inventory).
    pub fn watch_deletes(&self) -> tokio::sync::broadcast::Receiver<SegmentId> {
        self.deletes.subscribe()
    }

    /// Bytes of shards stored.
    pub fn used(&self) -> u64 {
        *self.used.locked()
    }

    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Free bytes under the quota.
    pub fn free(&self) -> u64 {
        self.quota.saturating_sub(self.used())
    }

    fn shard_path(&self, seg: &SegmentId, index: u16) -> PathBuf {
        let hex = seg.to_hex();
        self.root
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }

    fn tombstone_path(&self, seg: &SegmentId) -> PathBuf {
        self.root.join("tombstones").join(seg.to_hex())
    }

    /// Removes leftovers of interrupted writes from `tmp/` (not the writes in progress).
    fn clean_tmp(&self) -> Result<usize, StoreError> {
        let dir = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let e = e.map_err(io_err("cannot list", &dir))?;
            if self.lock_writing().contains(&e.file_name()) {
                continue;
            }
            let p = e.path();
            match fs::remove_file(&p) {
                Ok(()) => n += 1,
                // Renamed into place (or cleaned up) by its writer since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &p)(e)),
            }
        }
        Ok(n)
    }

    fn lock_writing(&self) -> std::sync::MutexGuard<'_, HashSet<OsString>> {
        self.writing.locked()
    }

    /// Creates a uniquely named file in `tmp/`, registered as a write in progress until the
    /// returned guard is dropped (which also removes the file unless it was renamed away).
    fn tmp_file(&self, stem: &str) -> Result<(TmpFile<'_>, File), StoreError> {
        let name = OsString::from(format!(
            "{stem}.{}.{}",
            std::process::id(),
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        self.lock_writing().insert(name.clone());
        let guard = TmpFile {
            store: self,
            path: self.root.join("tmp").join(&name),
            name,
        };
        let f = macula_core::fsutil::create_new(&guard.path, 0o600)
            .map_err(io_err("cannot create", &guard.path))?;
        Ok((guard, f))
    }

    /// Every shard file present, as `(segment, index)`, sorted.
    pub fn list(&self) -> Result<Vec<(SegmentId, u16)>, StoreError> {
        let dir = self.root.join("shards");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let sub = e.map_err(io_err("cannot list", &dir))?.path();
            list_dir(&sub, |_| true, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    /// Indices of the shards of one segment stored here (reads one subdirectory).
    pub fn indices_of(&self, seg: &SegmentId) -> Result<Vec<u16>, StoreError> {
        let hex = seg.to_hex();
        let sub = self.root.join("shards").join(&hex[..2]);
        if !sub.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        list_dir(&sub, |s| s == seg, &mut out)?;
        let mut idx: Vec<u16> = out.into_iter().map(|(_, i)| i).collect();
        idx.sort_unstable();
        Ok(idx)
    }

    /// Verifies and stores a serialised shard (`header ‖ data ‖ outboard`).
    pub fn put(&self, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        self.put_accepting(bytes, |_| true)
    }

    /// As [`LocalStore::put`], if `accept` takes the shard's owner (else
    /// [`StoreError::UnknownOwner`]): a holder keeps shards of realm members only.
    pub fn put_accepting(
        &self,
        bytes: &[u8],
        accept: impl FnOnce(&NodeId) -> bool,
    ) -> Result<PutOutcome, StoreError> {
        let shard = Shard::from_bytes(bytes, Trust::Signature)?;
        let seg = shard.header.segment_id();
        let index = shard.header.index;
        // `from_bytes` checked the signature, so the owner key is valid.
        let owner = shard
            .header
            .signed
            .owner()
            .map_err(|e| StoreError::Invalid(e.into()))?;
        if self.tombstone_path(&seg).exists() {
            return Err(StoreError::Deleted(seg));
        }
        if self.is_purged(&owner) {
            return Err(StoreError::Purged(owner));
        }
        if !accept(&owner) {
            return Err(StoreError::UnknownOwner(owner));
        }
        let path = self.shard_path(&seg, index);
        if path.exists() {
            match self.get(&seg, index) {
                Ok(_) => return Ok(PutOutcome::AlreadyPresent),
                // `get` removed the corrupt file (and its bytes from `used`).
                Err(StoreError::Corrupt { .. }) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let need = bytes.len() as u64;
        self.check_quota(*self.used.locked(), need)?;
        self.check_owner_quota(&owner, need)?;
        let dir = path.parent().expect("shard path has a parent");
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
            sync_dir(&self.root.join("shards"))?;
        }
        let (tmp, mut f) = self.tmp_file(&format!("{}.{index}", seg.to_hex()))?;
        f.write_all(bytes)
            .map_err(io_err("cannot write", &tmp.path))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp.path))?;
        drop(f);
        {
            // Concurrent puts: the existence check, quota and rename happen under the lock, so
            // the first complete copy wins and the space is counted once.
            let mut used = self.used.locked();
            let outcome = if path.exists() {
                Ok(PutOutcome::AlreadyPresent)
            } else {
                self.check_quota(*used, need)
                    .and_then(|()| self.check_owner_quota(&owner, need))
                    .map(|()| PutOutcome::Stored)
            };
            if !matches!(outcome, Ok(PutOutcome::Stored)) {
                return outcome;
            }
            fs::rename(&tmp.path, &path).map_err(io_err("cannot rename into place", &path))?;
            *used += need;
            *self.lock_owners().entry(owner).or_insert(0) += need;
            self.changes.send_modify(|c| *c += 1);
        }
        sync_dir(dir)?;
        Ok(PutOutcome::Stored)
    }

    fn check_quota(&self, used: u64, need: u64) -> Result<(), StoreError> {
        let free = self.quota.saturating_sub(used);
        if need > free {
            return Err(StoreError::QuotaExceeded {
                need,
                free,
                quota: self.quota,
            });
        }
        Ok(())
    }

    fn check_owner_quota(&self, owner: &NodeId, need: u64) -> Result<(), StoreError> {
        let quota = self.owner_quota();
        let used = self.lock_owners().get(owner).copied().unwrap_or(0);
        if quota != 0 && used + need > quota {
            return Err(StoreError::OwnerQuotaExceeded {
                owner: *owner,
                need,
                used,
                quota,
            });
        }
        Ok(())
    }

    /// Removes a shard file that failed verification and accounts for its space.
    fn drop_corrupt(&self, seg: &SegmentId, index: u16) -> Result<StoreError, StoreError> {
        let path = self.shard_path(seg, index);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &path)(e)),
        }
        let mut used = self.used.locked();
        *used -= len.min(*used);
        self.changes.send_modify(|c| *c += 1);
        Ok(StoreError::Corrupt {
            segment: *seg,
            index,
        })
    }

    /// Reads and fully verifies a shard; returns its serialised bytes. A corrupt shard is removed
    /// and reported as [`StoreError::Corrupt`].
    pub fn get(&self, seg: &SegmentId, index: u16) -> Result<Vec<u8>, StoreError> {
        self.read_verified(seg, index).map(|(bytes, _)| bytes)
    }

    /// As [`LocalStore::get`], the shard parsed into header, data and outboard (to send it in
    /// wire order, or to use it here).
    pub fn get_shard(&self, seg: &SegmentId, index: u16) -> Result<Shard, StoreError> {
        self.read_verified(seg, index).map(|(_, shard)| shard)
    }

    fn read_verified(&self, seg: &SegmentId, index: u16) -> Result<(Vec<u8>, Shard), StoreError> {
        let path = self.shard_path(seg, index);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    segment: *seg,
                    index,
                });
            }
            Err(e) => return Err(io_err("cannot open", &path)(e)),
        };
        let len = f.metadata().map_err(io_err("cannot stat", &path))?.len();
        if len > MAX_SHARD_FILE {
            return Err(self.drop_corrupt(seg, index)?);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes)
            .map_err(io_err("cannot read", &path))?;
        match Shard::from_bytes(&bytes, Trust::SegmentId(*seg)) {
            Ok(s) if s.header.index == index => Ok((bytes, s)),
            _ => Err(self.drop_corrupt(seg, index)?),
        }
    }

    /// Opens a shard file and parses its header from a bounded prefix; checks that the header
    /// belongs to this file and that the file length matches it. Does not read the data.
    fn open_header(&self, seg: &SegmentId, index: u16) -> Result<(File, ShardHeader), StoreError> {
        let path = self.shard_path(seg, index);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    segment: *seg,
                    index,
                });
            }
            Err(e) => return Err(io_err("cannot open", &path)(e)),
        };
        let file_len = f.metadata().map_err(io_err("cannot stat", &path))?.len();
        let mut head = vec![0u8; (MAX_HEADER_LEN as u64).min(file_len) as usize];
        f.read_exact(&mut head)
            .map_err(io_err("cannot read", &path))?;
        match ShardHeader::parse(&head) {
            Ok((h, _))
                if h.segment_id() == *seg
                    && h.index == index
                    && file_len == Shard::total_len(&h) as u64 =>
            {
                Ok((f, h))
            }
            _ => Err(self.drop_corrupt(seg, index)?),
        }
    }

    /// The header of a stored shard, read from the file's prefix (for inventory reports). The
    /// data is not verified here; [`LocalStore::get`] and [`LocalStore::gc`] do that.
    pub fn header(&self, seg: &SegmentId, index: u16) -> Result<ShardHeader, StoreError> {
        self.open_header(seg, index).map(|(_, h)| h)
    }

    /// Reads one 16 KiB chunk group of a shard, verified against the shard's root through the
    /// outboard without reading the rest of the data.
    pub fn read_group(
        &self,
        seg: &SegmentId,
        index: u16,
        group: usize,
    ) -> Result<Vec<u8>, StoreError> {
        self.read_group_with_proof(seg, index, group)
            .map(|(data, _)| data)
    }

    /// Like [`LocalStore::read_group`], plus the group's Merkle proof ([`tree::proof`]) so a
    /// remote reader or auditor holding only the shard's root can check the group.
    pub fn read_group_with_proof(
        &self,
        seg: &SegmentId,
        index: u16,
        group: usize,
    ) -> Result<(Vec<u8>, Vec<[u8; 32]>), StoreError> {
        let path = self.shard_path(seg, index);
        let (mut f, header) = self.open_header(seg, index)?;
        let sl = header.desc().shard_len as usize;
        if group >= tree::group_count(sl) {
            return Err(StoreError::NoSuchGroup {
                segment: *seg,
                index,
                group,
            });
        }
        let hlen = header.encoded_len() as u64;
        let mut outboard = vec![0u8; tree::outboard_len(sl)];
        f.seek(SeekFrom::Start(hlen + sl as u64))
            .map_err(io_err("cannot seek", &path))?;
        f.read_exact(&mut outboard)
            .map_err(io_err("cannot read", &path))?;
        let start = group * tree::GROUP_LEN;
        let end = (start + tree::GROUP_LEN).min(sl);
        let mut data = vec![0u8; end - start];
        f.seek(SeekFrom::Start(hlen + start as u64))
            .map_err(io_err("cannot seek", &path))?;
        f.read_exact(&mut data)
            .map_err(io_err("cannot read", &path))?;
        let root = header.root();
        if !tree::verify_outboard(&root, sl, &outboard)
            || !tree::verify_group(&root, sl, &outboard, group, &data)
        {
            return Err(self.drop_corrupt(seg, index)?);
        }
        Ok((data, tree::proof(&outboard, sl, group)))
    }

    /// Deletes every local shard of a segment if the request is signed by the segment's owner,
    /// and records a tombstone so the segment is not stored again. Returns how many shards were
    /// removed. Without a local shard the owner is unknown and nothing is recorded.
    pub fn delete(&self, req: &DeleteRequest) -> Result<usize, StoreError> {
        let local = self.indices_of(&req.segment)?;
        let mut owner = None;
        for &i in &local {
            if let Some(id) = self
                .header(&req.segment, i)
                .ok()
                .and_then(|h| h.signed.owner().ok())
            {
                owner = Some(id);
                break;
            }
        }
        let Some(owner) = owner else { return Ok(0) };
        if !req.verify(&owner) {
            return Err(StoreError::NotOwner(req.segment));
        }
        let tomb = self.tombstone_path(&req.segment);
        self.write_atomically(&tomb, &req.to_bytes())?;
        self.tombstoned.locked().insert(prefix(&req.segment));
        for &i in &local {
            self.remove(&req.segment, i)?;
        }
        // Nobody listening is fine.
        let _ = self.deletes.send(req.segment);
        Ok(local.len())
    }

    fn load_tombstones(&self) -> Result<(), StoreError> {
        let dir = self.root.join("tombstones");
        let mut set = self.tombstoned.locked();
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let e = e.map_err(io_err("cannot list", &dir))?;
            if let Some(seg) = e.file_name().to_str().and_then(SegmentId::from_hex) {
                set.insert(prefix(&seg));
            }
        }
        Ok(())
    }

    /// Those of `segments` that may have a tombstone here (an in-memory check of 8-byte ID
    /// prefixes, no I/O; [`LocalStore::deletes_of`] reads the tombstones of the few it returns).
    pub fn maybe_deleted<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a SegmentId>,
    ) -> Vec<SegmentId> {
        let set = self.tombstoned.locked();
        segments
            .into_iter()
            .filter(|s| set.contains(&prefix(s)))
            .copied()
            .collect()
    }

    /// The owner-signed deletes recorded here for any of `segments` (another node's inventory
    /// still lists them: it was down when the owner deleted them, so it is sent the request).
    pub fn deletes_of(&self, segments: &[SegmentId]) -> Vec<DeleteRequest> {
        segments
            .iter()
            .filter_map(|seg| {
                let req = DeleteRequest::from_bytes(&fs::read(self.tombstone_path(seg)).ok()?)?;
                (req.segment == *seg).then_some(req)
            })
            .collect()
    }

    /// Removes a stored shard; returns its size.
    fn remove(&self, seg: &SegmentId, index: u16) -> Result<u64, StoreError> {
        let path = self.shard_path(seg, index);
        // Read before the size: a corrupt header makes `owner_of` remove the file itself.
        let owner = self.owner_of(seg, index);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("cannot remove", &path)(e)),
        }
        let mut used = self.used.locked();
        *used -= len.min(*used);
        if let Some(owner) = owner
            && let Some(held) = self.lock_owners().get_mut(&owner)
        {
            *held -= len.min(*held);
        }
        self.changes.send_modify(|c| *c += 1);
        Ok(len)
    }

    /// Writes a small file (a tombstone) through `tmp/`: fsync, rename, fsync of the directory.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("f");
        let (tmp, mut f) = self.tmp_file(stem)?;
        f.write_all(bytes)
            .map_err(io_err("cannot write", &tmp.path))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp.path))?;
        fs::rename(&tmp.path, path).map_err(io_err("cannot rename into place", path))?;
        sync_dir(path.parent().expect("has parent"))
    }

    /// Garbage collection and audit: removes leftovers of interrupted writes, shards of deleted
    /// segments and shards that fail verification.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            removed_tmp: self.clean_tmp()?,
            ..GcReport::default()
        };
        for (seg, idx) in self.list()? {
            if self.tombstone_path(&seg).exists() {
                self.remove(&seg, idx)?;
                report.removed_deleted += 1;
                continue;
            }
            match self.get(&seg, idx) {
                Ok(_) => report.kept += 1,
                Err(StoreError::Corrupt { .. }) => report.removed_corrupt.push((seg, idx)),
                Err(e) => return Err(e),
            }
        }
        // Files changed behind our back (truncated, replaced) make the running count drift.
        self.recount()?;
        Ok(report)
    }
}

/// Appends the `(segment, index)` of every shard file in `dir` whose segment passes `keep`.
fn list_dir(
    dir: &Path,
    keep: impl Fn(&SegmentId) -> bool,
    out: &mut Vec<(SegmentId, u16)>,
) -> Result<(), StoreError> {
    for f in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let name = f.map_err(io_err("cannot list", dir))?.file_name();
        let parsed = name.to_str().and_then(|n| {
            let (hex, idx) = n.split_once('.')?;
            Some((SegmentId::from_hex(hex)?, idx.parse::<u16>().ok()?))
        });
        if let Some(x) = parsed
            && keep(&x.0)
        {
            out.push(x);
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot fsync directory", dir))
}

/// A file in `tmp/` being written; dropping it forgets the write and removes the file if it is
/// still there (an error before the rename, or the rename made it someone else's).
struct TmpFile<'a> {
    store: &'a LocalStore,
    path: PathBuf,
    name: OsString,
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        self.store.lock_writing().remove(&self.name);
    }
}
