//! The management node's configuration: a TOML file (`node.toml`), with command-line flags
//! that override it.
//!
//! ```toml
//! genesis = "genesis.toml"        # the consortium's genesis file
//! key = "node.key"                # this member's ed25519 key file
//! data_dir = "data"               # where the node's database lives
//! listen = "0.0.0.0:7100"         # optional; default: this member's genesis address
//! metrics = "127.0.0.1:9100"      # optional Prometheus endpoint (GET /metrics)
//! log_format = "human"            # or "json"
//! log_level = "info"              # a tracing filter, e.g. "info,tieline_net=debug"
//! area_model = "area.m"           # optional MATPOWER model of this member's area
//! max_frame_mib = 64              # largest frame on the wire, in MiB (1 to 64)
//! ```
//!
//! Relative paths in the file are relative to the file's directory; relative paths in flags
//! are relative to the working directory. Unknown fields are refused, so a typo is an error
//! that names the field rather than a silently ignored setting.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::transport::MAX_FRAME_LEN;

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format (human or json)")),
        }
    }
}

/// The settings as written in the file or given as flags; every field optional, so flags can
/// override the file one by one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The genesis file.
    pub genesis: Option<PathBuf>,
    /// This member's key file.
    pub key: Option<PathBuf>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// The QUIC listen address.
    pub listen: Option<String>,
    /// The metrics endpoint's address.
    pub metrics: Option<String>,
    /// `human` or `json`.
    pub log_format: Option<LogFormat>,
    /// A tracing filter.
    pub log_level: Option<String>,
    /// A MATPOWER model of this member's area, for its private security check.
    pub area_model: Option<PathBuf>,
    /// The largest frame, in MiB.
    pub max_frame_mib: Option<usize>,
}

/// The node's configuration, complete and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The genesis file.
    pub genesis: PathBuf,
    /// This member's key file.
    pub key: PathBuf,
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// The QUIC listen address; `None`: this member's genesis address.
    pub listen: Option<SocketAddr>,
    /// The metrics endpoint's address, if any.
    pub metrics: Option<SocketAddr>,
    /// How logs are written.
    pub log_format: LogFormat,
    /// A tracing filter.
    pub log_level: String,
    /// A MATPOWER model of this member's area: the node's private grid security check (spec
    /// 3.8). Without one the node checks no grid and objects to nothing.
    pub area_model: Option<PathBuf>,
    /// The largest frame on the wire, in bytes.
    pub max_frame_len: usize,
}

/// Why a configuration cannot be used. Every variant names the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the node configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown field, or a field of the wrong type.
    #[error("node configuration {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// A required field is given neither in the file nor as a flag.
    #[error("node configuration: field `{0}` is required (in the file or as --{flag})", flag = .0.replace('_', "-"))]
    Missing(&'static str),
    /// A field has an unusable value.
    #[error("node configuration: field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Parses `host:port` into one socket address.
pub fn parse_address(field: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| {
            invalid(
                field,
                format!("`{s}` is not a usable host:port address ({e})"),
            )
        })?
        .next()
        .ok_or_else(|| invalid(field, format!("`{s}` resolves to no address")))
}

impl ConfigFile {
    /// Reads a configuration file; relative paths in it become relative to its directory.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut file.genesis,
            &mut file.key,
            &mut file.data_dir,
            &mut file.area_model,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// `self` with every field that `flags` sets replaced by the flag's value.
    pub fn overridden_by(self, flags: ConfigFile) -> Self {
        ConfigFile {
            genesis: flags.genesis.or(self.genesis),
            key: flags.key.or(self.key),
            data_dir: flags.data_dir.or(self.data_dir),
            listen: flags.listen.or(self.listen),
            metrics: flags.metrics.or(self.metrics),
            log_format: flags.log_format.or(self.log_format),
            log_level: flags.log_level.or(self.log_level),
            area_model: flags.area_model.or(self.area_model),
            max_frame_mib: flags.max_frame_mib.or(self.max_frame_mib),
        }
    }

    /// Checks the settings and fills in defaults.
    pub fn finish(self) -> Result<NodeConfig, ConfigError> {
        let max_frame_mib = self.max_frame_mib.unwrap_or(MAX_FRAME_LEN >> 20);
        if max_frame_mib == 0 || max_frame_mib << 20 > MAX_FRAME_LEN {
            return Err(invalid(
                "max_frame_mib",
                format!("must be between 1 and {}", MAX_FRAME_LEN >> 20),
            ));
        }
        let log_level = self.log_level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid(
                "log_level",
                format!("`{log_level}` is not a log filter"),
            ));
        }
        Ok(NodeConfig {
            genesis: self.genesis.ok_or(ConfigError::Missing("genesis"))?,
            key: self.key.ok_or(ConfigError::Missing("key"))?,
            data_dir: self.data_dir.ok_or(ConfigError::Missing("data_dir"))?,
            listen: self
                .listen
                .map(|s| parse_address("listen", &s))
                .transpose()?,
            metrics: self
                .metrics
                .map(|s| parse_address("metrics", &s))
                .transpose()?,
            log_format: self.log_format.unwrap_or_default(),
            log_level,
            area_model: self.area_model,
            max_frame_len: max_frame_mib << 20,
        })
    }
}

impl NodeConfig {
    /// Reads the file at `path` (if any), applies `flags` over it and checks the result.
    pub fn load(path: Option<&Path>, flags: ConfigFile) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => ConfigFile::read(p)?,
            None => ConfigFile::default(),
        };
        file.overridden_by(flags).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("node.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_paths_are_relative_to_the_file_and_flags_override() {
        let dir = std::env::temp_dir().join(format!("tieline-config-{}", std::process::id()));
        let p = write(
            &dir,
            "genesis = \"g.toml\"\nkey = \"/abs/n.key\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:7100\"\nlog_format = \"json\"\n",
        );
        let c = NodeConfig::load(Some(&p), ConfigFile::default()).unwrap();
        assert_eq!(c.genesis, dir.join("g.toml"));
        assert_eq!(c.key, PathBuf::from("/abs/n.key"));
        assert_eq!(c.listen, Some("127.0.0.1:7100".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.max_frame_len, MAX_FRAME_LEN);
        let flags = ConfigFile {
            listen: Some("127.0.0.1:7200".into()),
            data_dir: Some("elsewhere".into()),
            ..ConfigFile::default()
        };
        let c = NodeConfig::load(Some(&p), flags).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:7200".parse().unwrap()));
        assert_eq!(c.data_dir, PathBuf::from("elsewhere"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_configs_name_the_field() {
        let dir = std::env::temp_dir().join(format!("tieline-config-bad-{}", std::process::id()));
        let p = write(&dir, "genesis = \"g.toml\"\nlisten_on = \"x\"\n");
        let e = NodeConfig::load(Some(&p), ConfigFile::default()).unwrap_err();
        assert!(e.to_string().contains("listen_on"), "{e}");
        let p = write(&dir, "genesis = \"g.toml\"\nkey = \"k\"\n");
        let e = NodeConfig::load(Some(&p), ConfigFile::default()).unwrap_err();
        assert!(e.to_string().contains("`data_dir`"), "{e}");
        let p = write(
            &dir,
            "genesis = \"g\"\nkey = \"k\"\ndata_dir = \"d\"\nlisten = \"nowhere\"\n",
        );
        let e = NodeConfig::load(Some(&p), ConfigFile::default()).unwrap_err();
        assert!(e.to_string().contains("`listen`"), "{e}");
        let p = write(
            &dir,
            "genesis = \"g\"\nkey = \"k\"\ndata_dir = \"d\"\nmax_frame_mib = 65\n",
        );
        let e = NodeConfig::load(Some(&p), ConfigFile::default()).unwrap_err();
        assert!(e.to_string().contains("`max_frame_mib`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
