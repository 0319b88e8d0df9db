//! `maculactl card provision`: writes a card's boot-partition `macula/` folder on an admin machine
//! (node key, certificate issued by a realm key held in a directory, `agent.toml`; or, with a
//! join code, the code and `agent.toml`, the node making its own key), which the image's first
//! boot moves into `/data/macula` (`overlay/usr/libexec/macula/provision`, docs/flashing.md). Runs without an agent: it only writes files (docs/ARCHITECTURE.md,
//! "Departure from CONVENTIONS: commands that run without the agent").

use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};

use clap::Args;
use macula_core::NodeKey;
use macula_core::config::{NodeName, Role};
use macula_core::fsutil::write_atomic;
use macula_mesh::join::JoinCode;
use macula_mesh::realm::{CertBody, MembershipCert};
use macula_mesh::transport::unix_now;

use super::realm::load_realm_key;
use crate::exit::{CliError, INVALID_ARGUMENT, UNAVAILABLE};

/// What the image's default `agent.toml` (`overlay/etc/macula/agent.toml`) sets: the base of a
/// provisioned one, which replaces it on the node. (A copy, not `include_str!`: the agent's
/// source tarball holds no `overlay/`; the test `base_is_the_image_default` keeps them equal.)
const IMAGE_AGENT_TOML: &str = "[mesh]\nset_clock = true\nntp = [\"pool.ntp.org\"]\n";

/// The folder on the boot partition that the image's provisioning reads.
pub const CARD_FOLDER: &str = "macula";
/// The files it moves into the state directory, in this order.
pub const CARD_FILES: [&str; 4] = ["node.key", "realm.cert", "agent.toml", "join.code"];

/// The mesh port a node listens on when `[mesh] listen` is not set.
const DEFAULT_MESH_PORT: u16 = 4433;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The card's boot partition, mounted (e.g. /media/$USER/esp), or an image file or a card's
    /// block device (/dev/sdX): then its partition 1 (`esp`) is written with mtools, unmounted
    /// (a block device needs root).
    pub target: PathBuf,
    /// The node's name (agent.toml `[node] name` and its certificate): letters, digits, `-`,
    /// `_`, `.`, at most 63.
    #[arg(long)]
    pub name: String,
    /// `edge` or `hub`.
    #[arg(long)]
    pub role: String,
    /// Directory holding the realm key (`node.key` in it): made by `maculactl realm keygen DIR`,
    /// or the `realm/` directory of the node that ran `maculactl realm create`.
    #[arg(
        long,
        required_unless_present = "join_code",
        conflicts_with = "join_code"
    )]
    pub realm: Option<PathBuf>,
    /// Instead of --realm: a one-time join code (`maculactl realm invite --name N --role R` on a
    /// node holding the realm key). The card gets the code and agent.toml, no key: the node makes
    /// its own key at first boot and redeems the code at the code's issuer, found through
    /// --bootstrap or the LAN beacon.
    #[arg(long, value_name = "CODE")]
    pub join_code: Option<String>,
    /// A hub to join through, `<node-id>@host:port` (repeat for several). Written to `[mesh]
    /// bootstrap`.
    #[arg(long = "bootstrap", value_name = "NODE_ID@HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Address the node's mesh listens on (`[mesh] listen`; default 0.0.0.0:4433). A hub's
    /// edges dial it.
    #[arg(long)]
    pub listen: Option<String>,
    /// Base configuration: an agent.toml whose sections are kept (`[node] name`/`role`, `[mesh]
    /// bootstrap`/`listen` are set from the flags). Default: the image's /etc/macula/agent.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Validity of the certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace a `macula/` folder that is already provisioned (its node key is lost).
    #[arg(long)]
    pub force: bool,
}

fn invalid(msg: String) -> CliError {
    CliError::Local(INVALID_ARGUMENT, msg)
}

/// What `provision` wrote: a node key and its certificate, or a join code.
#[derive(Debug)]
pub struct Provisioned {
    pub folder: PathBuf,
    pub identity: Identity,
}

#[derive(Debug)]
pub enum Identity {
    /// A new node key and its certificate (`--realm`).
    Cert(Box<MembershipCert>),
    /// A join code the node redeems at first boot (`--join-code`).
    Code(JoinCode),
}

pub fn provision(args: &ProvisionArgs) -> Result<Provisioned, CliError> {
    // Arguments first, then the realm key, then the card: nothing is written before all hold.
    let name = NodeName::try_from(args.name.clone())
        .map_err(|e| invalid(format!("--name `{}`: {e}", args.name)))?;
    let role = match args.role.as_str() {
        "edge" => Role::Edge,
        "hub" => Role::Hub,
        other => return Err(invalid(format!("--role `{other}`: use `edge` or `hub`"))),
    };
    for b in &args.bootstrap {
        check_bootstrap(b)?;
    }
    if let Some(l) = &args.listen {
        l.parse::<std::net::SocketAddr>().map_err(|e| {
            invalid(format!(
                "--listen `{l}`: {e}; write an IP address and port, e.g. 0.0.0.0:4433"
            ))
        })?;
    }
    let config = agent_toml(args, &name, role)?;
    let code = args
        .join_code
        .as_deref()
        .map(|c| JoinCode::from_text(c).map_err(|e| invalid(format!("--join-code: {e}"))))
        .transpose()?;
    let realm = match (&args.realm, &code) {
        (Some(dir), _) => Some(load_realm_key(dir)?),
        (None, Some(_)) => None,
        (None, None) => return Err(invalid("give --realm DIR or --join-code CODE".into())),
    };
    let meta = std::fs::metadata(&args.target)
        .map_err(|e| invalid(format!("{}: {e}", args.target.display())))?;
    // An image file or a card's block device: the files are written to a private staging
    // directory first, then copied onto its boot partition.
    let image = if meta.is_dir() {
        None
    } else if meta.is_file() || meta.file_type().is_block_device() {
        let part = ImagePartition::locate(&args.target)?;
        let (present, cert) = part.present();
        if !present.is_empty() && !args.force {
            return Err(provisioned_already(
                &format!("{} (partition 1, {CARD_FOLDER}/)", args.target.display()),
                &present,
                cert,
            ));
        }
        Some((part, Staging::new()?))
    } else {
        return Err(invalid(format!(
            "{} is neither a directory (the mounted boot partition), an image file nor a block \
             device",
            args.target.display()
        )));
    };
    let boot = image
        .as_ref()
        .map_or(args.target.as_path(), |(_, staging)| staging.0.as_path());
    let folder = card_folder(boot, args.force)?;

    let write = |file: &str, bytes: &[u8]| {
        let path = folder.join(file);
        write_atomic(&path, bytes, 0o600)
            .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))
    };
    let identity = match (realm, code) {
        (Some(realm), _) => {
            let key = NodeKey::generate();
            let body = CertBody::admitted(
                realm.id(),
                key.node_id(),
                role,
                name.to_string(),
                args.days,
                unix_now(),
            )
            .map_err(|e| invalid(format!("--name `{name}`: {e}")))?;
            let cert = realm.issue(body);
            write("node.key", key.to_key_file().as_bytes())?;
            write("realm.cert", cert.to_text().as_bytes())?;
            Identity::Cert(Box::new(cert))
        }
        (None, Some(code)) => {
            write("join.code", format!("{}\n", code.to_text()).as_bytes())?;
            Identity::Code(code)
        }
        (None, None) => unreachable!("checked above"),
    };
    write("agent.toml", config.as_bytes())?;
    std::fs::File::open(&folder)
        .and_then(|d| d.sync_all())
        .map_err(|e| CliError::Other(format!("cannot sync {}: {e}", folder.display())))?;
    let folder = match image {
        Some((part, _staging)) => {
            part.copy_in(&folder)?;
            PathBuf::from(format!(
                "{} (partition 1, {CARD_FOLDER}/)",
                args.target.display()
            ))
        }
        None => folder,
    };
    Ok(Provisioned { folder, identity })
}

/// Runs a system tool and returns its standard output.
fn tool(program: &str, args: &[&str]) -> Result<String, CliError> {
    let out = std::process::Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|e| {
            CliError::Other(format!(
                "cannot run {program}: {e}; an image file or block device needs sfdisk \
                 (util-linux) and mtools, or mount its boot partition and give the mount point"
            ))
        })?;
    if !out.status.success() {
        return Err(CliError::Other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The boot partition (partition 1, `esp`, FAT) of an image file or a card's block device,
/// written with mtools at its byte offset: no mount, no loop device (a block device needs write
/// access to it, i.e. root).
struct ImagePartition {
    /// `<path>@@<offset>`: mtools' name of the partition.
    spec: String,
}

impl ImagePartition {
    fn locate(target: &Path) -> Result<Self, CliError> {
        let path = target
            .to_str()
            .ok_or_else(|| invalid(format!("{}: not a UTF-8 path", target.display())))?;
        let table: serde_json::Value = serde_json::from_str(&tool("sfdisk", &["-J", path])?)
            .map_err(|e| CliError::Other(format!("sfdisk -J {path}: {e}")))?;
        let table = &table["partitiontable"];
        let first = table["partitions"]
            .as_array()
            .and_then(|p| p.first())
            .filter(|p| p["node"].as_str().is_some_and(|n| n.ends_with('1')))
            .ok_or_else(|| invalid(format!("{path} has no partition 1: not a Macula image")))?;
        if let Some(name) = first["name"].as_str().filter(|n| *n != "esp") {
            return Err(invalid(format!(
                "partition 1 of {path} is named `{name}`, not `esp`: not a Macula image"
            )));
        }
        let sector = table["sectorsize"].as_u64().unwrap_or(512);
        let start = first["start"]
            .as_u64()
            .ok_or_else(|| CliError::Other(format!("sfdisk -J {path}: no start")))?;
        let part = Self {
            spec: format!("{path}@@{}", start * sector),
        };
        tool("minfo", &["-i", &part.spec, "::"]).map_err(|e| {
            invalid(format!(
                "partition 1 of {path} holds no FAT file system ({}): not a Macula image, or \
                 not written completely",
                match e {
                    CliError::Other(m) | CliError::Local(_, m) => m,
                    other => format!("{other:?}"),
                }
            ))
        })?;
        Ok(part)
    }

    /// The provisioning files present in its `macula/` folder, and the certificate's text.
    fn present(&self) -> (Vec<&'static str>, Option<String>) {
        let listing = tool("mdir", &["-b", "-i", &self.spec, "::/macula"]).unwrap_or_default();
        let present: Vec<&str> = CARD_FILES
            .into_iter()
            .filter(|f| {
                listing
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("::/macula/{f}")))
            })
            .collect();
        let cert = tool("mtype", &["-i", &self.spec, "::/macula/realm.cert"]).ok();
        (present, cert)
    }

    /// Copies the files of `folder` into its `macula/` folder (created when missing), replacing
    /// files of the same name and removing the other provisioning files (from an earlier
    /// provisioning replaced with `--force`).
    fn copy_in(&self, folder: &Path) -> Result<(), CliError> {
        if tool("mdir", &["-b", "-i", &self.spec, "::/macula"]).is_err() {
            tool("mmd", &["-i", &self.spec, "::/macula"])?;
        }
        let (present, _) = self.present();
        for f in present.iter().filter(|f| !folder.join(f).exists()) {
            tool("mdel", &["-i", &self.spec, &format!("::/macula/{f}")])?;
        }
        let files: Vec<String> = CARD_FILES
            .iter()
            .map(|f| folder.join(f))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let mut args = vec!["-o", "-i", &self.spec];
        args.extend(files.iter().map(String::as_str));
        args.push("::/macula/");
        tool("mcopy", &args)?;
        Ok(())
    }
}

/// A private directory (0700) where the files for an image are written first; removed on drop.
struct Staging(PathBuf);

impl Staging {
    fn new() -> Result<Self, CliError> {
        let dir = std::env::temp_dir().join(format!("maculactl-card-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `<node-id>@host:port` or `host:port`, the syntax of `[mesh] bootstrap` (host names allowed:
/// the node resolves them).
fn check_bootstrap(entry: &str) -> Result<(), CliError> {
    let bad = |why: String| {
        invalid(format!(
            "--bootstrap `{entry}`: {why}; write `<node-id>@host:port`, the hub's node ID as \
             `card provision` printed it"
        ))
    };
    let addr = match entry.split_once('@') {
        Some((id, addr)) => {
            id.parse::<macula_core::NodeId>()
                .map_err(|e| bad(format!("node ID: {e}")))?;
            addr
        }
        None => entry,
    };
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port".into()))?;
    port.parse::<u16>()
        .map_err(|_| bad(format!("port `{port}` is not a number up to 65535")))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(bad(format!(
            "`{host}` is neither an IP address nor a host name"
        )));
    }
    Ok(())
}

/// The node's `agent.toml`: the base (the image's default or `--config`) with `[node] name`,
/// `role` and `[mesh] bootstrap`, `listen` set.
fn agent_toml(args: &ProvisionArgs, name: &NodeName, role: Role) -> Result<String, CliError> {
    let (base, origin) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("--config {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => (
            IMAGE_AGENT_TOML.to_owned(),
            "the image's default".to_owned(),
        ),
    };
    let mut doc: toml::Table = base
        .parse()
        .map_err(|e| invalid(format!("--config {origin}: {e}")))?;
    let section = |doc: &mut toml::Table, key: &str| -> Result<toml::Table, CliError> {
        match doc.remove(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => Err(invalid(format!(
                "--config {origin}: `{key}` is not a section"
            ))),
        }
    };
    let mut node = section(&mut doc, "node")?;
    node.insert("name".into(), name.to_string().into());
    node.insert("role".into(), role.as_str().into());
    doc.insert("node".into(), node.into());
    let mut mesh = section(&mut doc, "mesh")?;
    if !args.bootstrap.is_empty() {
        mesh.insert("bootstrap".into(), args.bootstrap.clone().into());
    }
    if let Some(l) = &args.listen {
        mesh.insert("listen".into(), l.clone().into());
    }
    doc.insert("mesh".into(), mesh.into());
    let body = toml::to_string(&doc)
        .map_err(|e| CliError::Other(format!("cannot write agent.toml: {e}")))?;
    Ok(format!(
        "# Written by `maculactl card provision` for {name} ({role}), based on {origin}.\n\
         # Moved to /data/macula/agent.toml at boot; reference: docs/configuration.md\n\n{body}"
    ))
}

/// The refusal to overwrite a provisioned `macula/` folder (`where`), naming what it holds.
fn provisioned_already(place: &str, present: &[&str], cert: Option<String>) -> CliError {
    let cert = cert
        .and_then(|t| MembershipCert::from_text(&t).ok())
        .map(|c| {
            format!(
                " (certificate of {} `{}` in realm {})",
                c.body.node.short(),
                c.body.name,
                c.body.realm
            )
        })
        .unwrap_or_default();
    CliError::Local(
        UNAVAILABLE,
        format!(
            "{place} is provisioned already: it holds {}{cert}. Give --force to replace it (its \
             node key is lost)",
            present.join(", ")
        ),
    )
}

/// `<boot>/macula`, created (0700) when missing; refused when it already holds provisioning
/// files, unless `force` (then they are removed).
fn card_folder(boot: &Path, force: bool) -> Result<PathBuf, CliError> {
    let folder = boot.join(CARD_FOLDER);
    let present: Vec<&str> = CARD_FILES
        .into_iter()
        .filter(|f| folder.join(f).exists())
        .collect();
    if !present.is_empty() {
        if !force {
            let cert = std::fs::read_to_string(folder.join("realm.cert")).ok();
            return Err(provisioned_already(
                &folder.display().to_string(),
                &present,
                cert,
            ));
        }
        for f in present {
            let path = folder.join(f);
            std::fs::remove_file(&path)
                .map_err(|e| CliError::Other(format!("cannot remove {}: {e}", path.display())))?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && folder.is_dir() => {}
        Err(e) => {
            return Err(CliError::Other(format!(
                "cannot create {}: {e}",
                folder.display()
            )));
        }
    }
    Ok(folder)
}

/// The lines `card provision` prints: what was written and, for a hub, how edges name it.
pub fn report(args: &ProvisionArgs, p: &Provisioned) -> String {
    let c = match &p.identity {
        Identity::Cert(cert) => &cert.body,
        Identity::Code(code) => {
            return format!(
                "provisioned {} ({}) in {} with a join code of realm {}: at first boot the node \
                 makes its key and redeems the code at {} (found through --bootstrap or its LAN \
                 beacon); the code works once and expires as `realm invite` said\n",
                args.name,
                args.role,
                p.folder.display(),
                code.realm,
                code.issuer
            );
        }
    };
    let mut out = format!(
        "provisioned {} ({}) in {}: node {}\nrealm {}, certificate valid until {} (unix)\n",
        c.name,
        c.role,
        p.folder.display(),
        c.node,
        c.realm,
        c.expires
    );
    if c.role == Role::Hub {
        let port = args
            .listen
            .as_deref()
            .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
            .map_or(DEFAULT_MESH_PORT, |a| a.port());
        out.push_str(&format!(
            "edges join through this hub with --bootstrap {}@<its address>:{port}\n",
            c.node
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: &Path, realm: &Path) -> ProvisionArgs {
        ProvisionArgs {
            target: target.to_owned(),
            name: "edge-1".into(),
            role: "edge".into(),
            realm: Some(realm.to_owned()),
            join_code: None,
            bootstrap: vec![],
            listen: None,
            config: None,
            days: 365,
            force: false,
        }
    }

    fn realm_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        NodeKey::load_or_create(dir.path()).unwrap();
        dir
    }

    fn code(r: Result<Provisioned, CliError>) -> (u8, String) {
        match r {
            Err(CliError::Local(code, m)) => (code, m),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn writes_key_cert_and_config_that_belong_together() {
        let (card, realm) = (tempfile::tempdir().unwrap(), realm_dir());
        let mut a = args(card.path(), realm.path());
        a.bootstrap = vec![format!("{}@hub.lan:4433", NodeKey::generate().node_id())];
        let p = provision(&a).unwrap();
        let folder = card.path().join("macula");
        let key = NodeKey::load(&folder.join("node.key")).unwrap();
        let cert =
            MembershipCert::from_text(&std::fs::read_to_string(folder.join("realm.cert")).unwrap())
                .unwrap();
        assert_eq!(cert.body.node, key.node_id());
        let Identity::Cert(issued) = &p.identity else {
            panic!("a certificate");
        };
        assert_eq!(&cert, issued.as_ref());
        let realm_id = macula_mesh::realm::RealmKey::from_node_key(
            NodeKey::load(&realm.path().join("node.key")).unwrap(),
        )
        .id();
        cert.verify(&realm_id, unix_now()).unwrap();
        assert_eq!(cert.body.role, Role::Edge);
        let config: toml::Table = std::fs::read_to_string(folder.join("agent.toml"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(config["node"]["name"].as_str(), Some("edge-1"));
        assert_eq!(config["node"]["role"].as_str(), Some("edge"));
        assert_eq!(
            config["mesh"]["bootstrap"][0].as_str(),
            Some(a.bootstrap[0].as_str())
        );
        // The image's defaults are kept: a Pi has no real-time clock.
        assert_eq!(config["mesh"]["set_clock"].as_bool(), Some(true));
        use std::os::unix::fs::PermissionsExt;
        assert!(!folder.join("join.code").exists());
        for f in ["node.key", "realm.cert", "agent.toml"] {
            let mode = std::fs::metadata(folder.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn base_is_the_image_default() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlay/etc/macula/agent.toml");
        let image: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let base: toml::Table = IMAGE_AGENT_TOML.parse().unwrap();
        // Sections that only hold comments in the image's file are empty tables.
        let set: toml::Table = image
            .into_iter()
            .filter(|(_, v)| v.as_table().is_none_or(|t| !t.is_empty()))
            .collect();
        assert_eq!(set, base);
    }

    #[test]
    fn refuses_a_provisioned_card_unless_forced() {
        let (card, realm) = (tempfile::tempdir().unwrap(), realm_dir());
        let mut a = args(card.path(), realm.path());
        let first = provision(&a).unwrap();
        let (c, m) = code(provision(&a));
        assert_eq!(c, UNAVAILABLE);
        assert!(
            m.contains("provisioned already") && m.contains("--force"),
            "{m}"
        );
        let (Identity::Cert(first), folder) = (&first.identity, &first.folder) else {
            panic!("a certificate");
        };
        assert!(m.contains(&first.body.realm.to_string()), "{m}");
        a.force = true;
        let Identity::Cert(second) = provision(&a).unwrap().identity else {
            panic!("a certificate");
        };
        assert_ne!(first.body.node, second.body.node);
        // Replaced by a join code: the key and certificate go, the code comes.
        let realm = macula_mesh::realm::RealmKey::from_node_key(
            NodeKey::load(&realm.path().join("node.key")).unwrap(),
        );
        let issuer = NodeKey::generate().node_id();
        let join = JoinCode {
            version: macula_mesh::join::JOIN_VERSION,
            realm: realm.id(),
            issuer,
            secret: macula_mesh::join::Secret([7; 16]),
        };
        a.realm = None;
        a.join_code = Some(join.to_text());
        let p = provision(&a).unwrap();
        assert!(matches!(p.identity, Identity::Code(ref c) if *c == join));
        for gone in ["node.key", "realm.cert"] {
            assert!(!folder.join(gone).exists(), "{gone}");
        }
        let text = std::fs::read_to_string(folder.join("join.code")).unwrap();
        assert_eq!(JoinCode::from_text(&text).unwrap(), join);
        assert!(report(&a, &p).contains(&issuer.to_string()));
        a.join_code = Some("macula-join-nonsense".into());
        let (c, m) = code(provision(&a));
        assert_eq!(c, INVALID_ARGUMENT);
        assert!(m.contains("--join-code"), "{m}");
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let (card, realm) = (tempfile::tempdir().unwrap(), realm_dir());
        let mut a = args(card.path(), realm.path());
        a.name = "no spaces".into();
        let (c, m) = code(provision(&a));
        assert_eq!(c, INVALID_ARGUMENT);
        assert!(m.contains("--name `no spaces`"), "{m}");
        a.name = "ok".into();
        a.role = "boss".into();
        assert!(code(provision(&a)).1.contains("use `edge` or `hub`"));
        a.role = "hub".into();
        a.bootstrap = vec!["notanid@1.2.3.4:4433".into()];
        assert!(code(provision(&a)).1.contains("node ID"));
        a.bootstrap = vec!["hub.lan".into()];
        assert!(code(provision(&a)).1.contains("no port"));
        assert!(!card.path().join("macula").exists());
        let file = card.path().join("notes.txt");
        std::fs::write(&file, b"").unwrap();
        a.bootstrap.clear();
        a.target = file;
        match provision(&a) {
            Err(CliError::Local(INVALID_ARGUMENT, m)) => {
                assert!(m.contains("no partition 1"), "{m}")
            }
            // Without sfdisk or root: the tool's error, never a write.
            Err(CliError::Other(m)) => assert!(m.contains("sfdisk"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
