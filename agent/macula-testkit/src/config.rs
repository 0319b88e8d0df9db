//! The `agent.toml` of a test agent, built one way ([`AgentConfig`]).

use std::fmt;
use std::path::Path;

pub use macula_core::config::Role;

/// An `agent.toml` for a test agent: `[node]` name and role, `[mesh]` listen address, bootstrap
/// contacts, certificate and further `[mesh]` lines, a `[storage]` section, then further sections,
/// in that order. Only what is set is written (the agent's defaults hold for the rest).
///
/// ```
/// use macula_testkit::config::AgentConfig;
/// let text = AgentConfig::loopback(4433).name("n1").bootstrap_port(4434).to_string();
/// assert_eq!(
///     text,
///     "[node]\nname = \"n1\"\n[mesh]\nlisten = \"127.0.0.1:4433\"\nbootstrap = [\"127.0.0.1:4434\"]\n"
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    name: Option<String>,
    role: Option<Role>,
    listen: Option<String>,
    bootstrap: Vec<String>,
    cert: Option<String>,
    mesh: String,
    storage: Option<String>,
    sections: String,
}

impl AgentConfig {
    /// The mesh listening on `addr` (`ip:port`).
    pub fn listen(addr: &str) -> Self {
        Self {
            listen: Some(addr.into()),
            ..Self::default()
        }
    }

    /// The mesh listening on 127.0.0.1:`port`.
    pub fn loopback(port: u16) -> Self {
        Self::listen(&format!("127.0.0.1:{port}"))
    }

    /// `[node] name`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `[node] role`.
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// One more `[mesh] bootstrap` contact (`host:port`).
    pub fn bootstrap(mut self, contact: &str) -> Self {
        self.bootstrap.push(contact.into());
        self
    }

    /// One more `[mesh] bootstrap` contact at 127.0.0.1:`port`.
    pub fn bootstrap_port(self, port: u16) -> Self {
        self.bootstrap(&format!("127.0.0.1:{port}"))
    }

    /// [`AgentConfig::bootstrap_port`] when `port` is given.
    pub fn bootstrap_opt(self, port: Option<u16>) -> Self {
        match port {
            Some(p) => self.bootstrap_port(p),
            None => self,
        }
    }

    /// `[mesh] cert`: where the agent keeps its realm certificate.
    pub fn cert(mut self, path: &Path) -> Self {
        self.cert = Some(path.display().to_string());
        self
    }

    /// Further `[mesh]` lines (each ending in a newline).
    pub fn mesh(mut self, lines: &str) -> Self {
        self.mesh.push_str(lines);
        self
    }

    /// A `[storage]` section holding `lines` (each ending in a newline; they may start further
    /// sections).
    pub fn storage(mut self, lines: &str) -> Self {
        self.storage = Some(lines.into());
        self
    }

    /// Further sections, written last as they are (e.g. `"[log]\nlevel = \"debug\"\n"`).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push_str(text);
        self
    }
}

impl fmt::Display for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_some() || self.role.is_some() {
            f.write_str("[node]\n")?;
            if let Some(name) = &self.name {
                writeln!(f, "name = \"{name}\"")?;
            }
            if let Some(role) = self.role {
                writeln!(f, "role = \"{role}\"")?;
            }
        }
        let mesh = self.listen.is_some()
            || !self.bootstrap.is_empty()
            || self.cert.is_some()
            || !self.mesh.is_empty();
        if mesh {
            f.write_str("[mesh]\n")?;
            if let Some(listen) = &self.listen {
                writeln!(f, "listen = \"{listen}\"")?;
            }
            if !self.bootstrap.is_empty() {
                let list: Vec<String> = self.bootstrap.iter().map(|b| format!("\"{b}\"")).collect();
                writeln!(f, "bootstrap = [{}]", list.join(", "))?;
            }
            if let Some(cert) = &self.cert {
                writeln!(f, "cert = \"{cert}\"")?;
            }
            f.write_str(&self.mesh)?;
        }
        if let Some(storage) = &self.storage {
            write!(f, "[storage]\n{storage}")?;
        }
        f.write_str(&self.sections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_in_its_section_in_order() {
        let text = AgentConfig::loopback(5000)
            .name("alpha")
            .role(Role::Hub)
            .bootstrap_port(5001)
            .bootstrap("localhost:5002")
            .cert(Path::new("/tmp/a.cert"))
            .mesh("lan_beacon = [\"eth0\"]\n")
            .storage("enabled = true\n")
            .section("[log]\nlevel = \"debug\"\n")
            .to_string();
        assert_eq!(
            text,
            "[node]\nname = \"alpha\"\nrole = \"hub\"\n\
             [mesh]\nlisten = \"127.0.0.1:5000\"\n\
             bootstrap = [\"127.0.0.1:5001\", \"localhost:5002\"]\ncert = \"/tmp/a.cert\"\n\
             lan_beacon = [\"eth0\"]\n\
             [storage]\nenabled = true\n\
             [log]\nlevel = \"debug\"\n"
        );
        assert_eq!(
            AgentConfig::default().storage("k = 1\n").to_string(),
            "[storage]\nk = 1\n",
            "no empty [node] or [mesh] section"
        );
    }
}
