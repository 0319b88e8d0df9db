//! Node identity: the Ed25519 key that says who a node is, and the node ID derived from it.
//!
//! The key lives in `<state dir>/node.key` (see `docs/identity.md`). It is created once, atomically,
//! with mode 0600, and never silently replaced: a corrupt key file or one that others can read is
//! refused, because a new key would make the node somebody else.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::{Zeroize, Zeroizing};

use crate::base32;
use crate::domains::Domain;

/// File name of the node key inside the state directory.
pub const KEY_FILE: &str = "node.key";
/// First line of a key file; names the format version.
const KEY_MAGIC: &str = "macula-node-key v1";
/// Largest key file we read (the real one is ~140 bytes).
const KEY_FILE_MAX: u64 = 4096;

/// Errors about the node identity. Each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "node key {path} is readable or writable by group/others (mode {mode:o}); it is secret. \
         Fix it with `chmod 600 {path}` if you trust the file, or restore it from a backup"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "node key {path} is corrupt ({reason}); refusing to start, since a new key would change \
         this node's identity. Restore the file from a backup, or remove it deliberately to make \
         this a new node"
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// A node ID: the node's Ed25519 public key.
///
/// Text form: RFC 4648 base32, lowercase, no padding (52 characters). The short form (first 8
/// characters) is for people only, never for authentication.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

/// Why a string is not a node ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("a node ID is 52 lowercase base32 characters (a-z, 2-7); got {0} characters")]
    Length(usize),
    #[error("a node ID is lowercase base32 (a-z, 2-7): {0}")]
    Encoding(String),
    #[error("not a valid Ed25519 public key")]
    NotAKey,
}

impl NodeId {
    /// Length of the text form.
    pub const TEXT_LEN: usize = 52;

    /// Wraps 32 bytes as a node ID. Checks that they are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, NodeIdError> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| NodeIdError::NotAKey)?;
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.0).expect("NodeId holds a valid key by construction")
    }

    /// The short form for people: the first 8 characters of the text form.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }

    /// Verifies `sig` over `msg` in the given signature domain.
    pub fn verify(
        &self,
        domain: Domain,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError> {
        self.verifying_key()
            .verify(&domain.signed_message(msg), sig)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self)
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::TEXT_LEN {
            return Err(NodeIdError::Length(s.chars().count()));
        }
        let bytes = base32::decode(s).map_err(NodeIdError::Encoding)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| NodeIdError::Length(s.len()))?;
        Self::from_bytes(bytes)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = <[u8; 32]>::deserialize(d)?;
            Self::from_bytes(b).map_err(serde::de::Error::custom)
        }
    }
}

/// The node's secret key. Zeroized on drop.
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// Builds a key from a 32-byte Ed25519 seed (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = Zeroizing::new(seed);
        let signing = SigningKey::from_bytes(&seed);
        seed.zeroize();
        Self { signing }
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the OS random number generator failed");
        Self::from_seed(*seed)
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Signs `msg` in the given signature domain.
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        self.signing.sign(&domain.signed_message(msg))
    }

    /// Opens `<state_dir>/node.key`, creating the state dir (0700) and a new key (0600) when
    /// there is none. Returns the key and whether it was created now.
    pub fn load_or_create(state_dir: &Path) -> Result<(Self, bool), IdentityError> {
        let path = state_dir.join(KEY_FILE);
        match Self::load(&path) {
            Ok(key) => Ok((key, false)),
            Err(IdentityError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                create_state_dir(state_dir)?;
                let key = Self::generate();
                key.write_new(&path)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads an existing key file, checking its mode and contents.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io_err = |action, source| IdentityError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io_err("open node key", e))?;
        let meta = file.metadata().map_err(|e| io_err("inspect node key", e))?;
        if !meta.is_file() {
            return Err(IdentityError::Corrupt {
                path: path.to_owned(),
                reason: "not a regular file".into(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.take(KEY_FILE_MAX)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => IdentityError::Corrupt {
                    path: path.to_owned(),
                    reason: "not UTF-8 text".into(),
                },
                _ => io_err("read node key", e),
            })?;
        Self::parse_key_file(&text).map_err(|reason| IdentityError::Corrupt {
            path: path.to_owned(),
            reason,
        })
    }

    /// The key file's text (`docs/identity.md`), e.g. for a key generated on an admin machine and
    /// written to a card (`maculactl card provision`). The node ID line lets a damaged seed be
    /// detected instead of silently becoming another identity. Secret: write it 0600.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let mut seed_hex = Zeroizing::new(String::with_capacity(64));
        for b in self.signing.as_bytes() {
            seed_hex.push_str(&format!("{b:02x}"));
        }
        Zeroizing::new(format!(
            "{KEY_MAGIC}\nseed {}\nid {}\n",
            seed_hex.as_str(),
            self.node_id()
        ))
    }

    /// Parses the text of a key file (see `docs/identity.md`); the error says what is wrong.
    pub fn parse_key_file(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(KEY_MAGIC) {
            return Err(format!("first line is not `{KEY_MAGIC}`"));
        }
        let seed_hex = lines
            .next()
            .and_then(|l| l.strip_prefix("seed "))
            .ok_or("second line is not `seed <64 hex digits>`")?;
        let id = lines
            .next()
            .and_then(|l| l.strip_prefix("id "))
            .ok_or("third line is not `id <node id>`")?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("unexpected text after the `id` line".into());
        }
        if seed_hex.len() != 64 {
            return Err("seed is not 64 hex digits".into());
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        for (i, chunk) in seed_hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|_| "seed is not hex")?;
            seed[i] = u8::from_str_radix(s, 16).map_err(|_| "seed is not hex")?;
        }
        let key = Self::from_seed(*seed);
        let id: NodeId = id.parse().map_err(|e| format!("id line: {e}"))?;
        if id != key.node_id() {
            return Err("seed does not match the recorded node ID".into());
        }
        Ok(key)
    }

    /// Writes the key to `path`, which must not exist: temp file (0600) → fsync → hard link
    /// into place (fails if something appeared meanwhile) → fsync the directory.
    fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{KEY_FILE}.tmp-{}", std::process::id()));
        let io_err = |action, p: &Path, source| IdentityError::Io {
            action,
            path: p.to_owned(),
            source,
        };
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| io_err("create", &tmp, e))?;
            f.write_all(self.to_key_file().as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err("write", &tmp, e))?;
            fs::hard_link(&tmp, path).map_err(|e| io_err("install node key at", path, e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("sync directory", dir, e))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }
}

fn create_state_dir(dir: &Path) -> Result<(), IdentityError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| IdentityError::Io {
            action: "create state directory",
            path: dir.to_owned(),
            source,
        })
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vector from docs/identity.md (RFC 8032 test 1 secret key).
    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const ID: &str = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena";

    fn seed() -> [u8; 32] {
        let mut s = [0u8; 32];
        for i in 0..32 {
            s[i] = u8::from_str_radix(&SEED_HEX[2 * i..2 * i + 2], 16).unwrap();
        }
        s
    }

    #[test]
    fn test_vector() {
        let key = NodeKey::from_seed(seed());
        assert_eq!(key.node_id().to_string(), ID);
        assert_eq!(key.node_id().short(), &ID[..8]);
        assert_eq!(ID.parse::<NodeId>().unwrap(), key.node_id());
    }

    #[test]
    fn node_id_text_is_strict() {
        assert!(matches!(
            "abc".parse::<NodeId>(),
            Err(NodeIdError::Length(3))
        ));
        let upper = ID.to_uppercase();
        assert!(matches!(
            upper.parse::<NodeId>(),
            Err(NodeIdError::Encoding(_))
        ));
        // Non-zero trailing bits would give a second spelling of the same key.
        let mut alias = ID.to_string();
        alias.pop();
        alias.push('b');
        assert!(alias.parse::<NodeId>().is_err());
    }

    #[test]
    fn sign_and_verify_are_domain_separated() {
        let key = NodeKey::from_seed(seed());
        let sig = key.sign(Domain::RealmCert, b"hello");
        key.node_id()
            .verify(Domain::RealmCert, b"hello", &sig)
            .unwrap();
        assert!(
            key.node_id()
                .verify(Domain::DhtRecord, b"hello", &sig)
                .is_err()
        );
        assert!(
            key.node_id()
                .verify(Domain::RealmCert, b"hellp", &sig)
                .is_err()
        );
    }

    #[test]
    fn create_then_load_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, created) = NodeKey::load_or_create(&state).unwrap();
        assert!(created);
        let (b, created) = NodeKey::load_or_create(&state).unwrap();
        assert!(!created);
        assert_eq!(a.node_id(), b.node_id());
        let mode = fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        NodeKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeKey::load_or_create(dir.path()).err().unwrap();
        assert!(
            matches!(err, IdentityError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = NodeKey::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        // Flip one seed digit: the recorded ID no longer matches.
        let mut bytes = text.into_bytes();
        let i = KEY_MAGIC.len() + 1 + "seed ".len();
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        fs::write(&path, &bytes).unwrap();
        let err = NodeKey::load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("does not match"), "{err}");
        // The damaged file is left as it was for the operator to inspect.
        assert_eq!(fs::read(&path).unwrap(), bytes);
        fs::write(&path, b"garbage").unwrap();
        let err = NodeKey::load_or_create(dir.path()).err().unwrap();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        drop(key);
    }
}
