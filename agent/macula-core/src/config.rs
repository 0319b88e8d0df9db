//! Config loading and the sections `macula-core` owns (`[node]`, `[log]`).
//!
//! Every crate owns its own section struct (`#[serde(default, deny_unknown_fields)]`, a documented
//! default for every key); `maculad` lists the sections in its top-level `AgentConfig` and loads it
//! with [`load_file`]. Errors name the file, line, column and key, so an operator can fix them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Default config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/macula/agent.toml";
/// Default state directory (identity, data).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/macula";
/// Largest config file we read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
}

/// Reads and parses a config file. A missing file is an error (the caller decides whether a
/// missing default path means "all defaults").
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    use std::io::Read;
    let read_err = |reason: String| ConfigError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| read_err(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(read_err(format!(
            "larger than {MAX_CONFIG_BYTES} bytes; is this the right file?"
        )));
    }
    parse_str(&text, path)
}

/// Parses config text; `origin` is only used in error messages.
pub fn parse_str<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let (line, column) = line_col(text, offset);
        // toml's message sometimes ends with a newline; keep one line per error.
        let message = e.message().trim().replace('\n', " ");
        ConfigError::Invalid {
            path: origin.to_owned(),
            line,
            column,
            key: key_at(text, offset),
            message,
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The dotted key at `offset`: the nearest `[table]` header above it plus the key on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    let key = line.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

/// The role of a node in its realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary node at the edge (the default).
    #[default]
    Edge,
    /// A hub: relays for nodes behind NAT, may admit members when delegated.
    Hub,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Hub => "hub",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human-readable node name: 1–63 characters, letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 63 {
            return Err(format!(
                "a node name has 1 to 63 characters, got {}",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "a node name may only use letters, digits, '-', '_' and '.', found {c:?}"
            ));
        }
        Ok(Self(s))
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[node]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Name shown to people. Default: the host name.
    pub name: Option<NodeName>,
    /// `edge` (default) or `hub`.
    pub role: Role,
}

impl NodeSection {
    /// The configured name, else the host name, else `macula`.
    pub fn effective_name(&self) -> NodeName {
        if let Some(n) = &self.name {
            return n.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| NodeName::try_from(h.trim().to_owned()).ok())
            .unwrap_or_else(|| NodeName("macula".into()))
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: LogLevel,
    /// `text` (default) or `json`; `--log-format` overrides it.
    pub format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Doc {
        node: NodeSection,
        log: LogSection,
    }

    fn parse(text: &str) -> Result<Doc, ConfigError> {
        parse_str(text, Path::new("/etc/macula/agent.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let d = parse("").unwrap();
        assert_eq!(d.node, NodeSection::default());
        assert_eq!(d.node.role, Role::Edge);
        assert_eq!(d.log.level, LogLevel::Info);
    }

    #[test]
    fn values_parse() {
        let d =
            parse("[node]\nname = \"hub-1\"\nrole = \"hub\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(d.node.name.unwrap().as_str(), "hub-1");
        assert_eq!(d.node.role, Role::Hub);
        assert_eq!(d.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("[node]\nname = \"a\"\ncolour = \"red\"\n").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("/etc/macula/agent.toml:3:1: key `node.colour`:"),
            "{s}"
        );
        assert!(s.contains("unknown field `colour`"), "{s}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = parse("# comment\n[node]\nrole = 5\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains(":3:8: key `node.role`:"), "{s}");
        let e = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert!(e.to_string().contains("key `log.level`"), "{e}");
    }

    #[test]
    fn bad_name_is_explained() {
        let e = parse("[node]\nname = \"no spaces\"\n").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("key `node.name`") && s.contains("found ' '"),
            "{s}"
        );
    }

    #[test]
    fn unknown_section_is_rejected() {
        let e = parse("[nodes]\nname = \"a\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `nodes`"), "{e}");
        assert!(e.to_string().contains(":1:"), "{e}");
    }
}
