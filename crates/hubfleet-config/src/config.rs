//! The validated configuration the rest of hubfleet reads.
//!
//! Everything here is resolved: addresses parsed, paths absolute, durations typed, secrets read
//! from their files and user names normalised. Code outside this crate never sees the raw file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hubfleet_types::UserName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

#[derive(Debug, Clone)]
pub struct Config {
    /// The public address (the proxy's).
    pub listen: SocketAddr,
    /// Normalised with a leading and a trailing slash, e.g. `/` or `/jupyter/`.
    pub base_url: String,
    /// Absolute.
    pub data_dir: PathBuf,
    pub hub: HubConfig,
    pub proxy: ProxyConfig,
    pub auth: AuthConfig,
    pub spawner: SpawnerConfig,
    pub services: Vec<ServiceConfig>,
    /// Roles defined in the file (default roles are not listed unless redefined).
    pub roles: Vec<RoleConfig>,
    pub allow_named_servers: bool,
    /// 0 means no limit.
    pub named_server_limit_per_user: u32,
    pub cull: CullConfig,
    /// Database URL; `None` means SQLite in `data_dir`.
    pub db_url: Option<Secret>,
    /// Where this configuration came from, for messages.
    pub source: ConfigSource,
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub listen: SocketAddr,
    pub cookie_max_age: Duration,
    pub public_metrics: bool,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub api_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub redirect_http_from: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Absolute.
    pub cert: PathBuf,
    /// Absolute.
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub method: AuthMethod,
    pub admin_users: Vec<UserName>,
    /// Empty means everyone who authenticates is allowed.
    pub allowed_users: Vec<UserName>,
}

#[derive(Debug, Clone)]
pub enum AuthMethod {
    SharedPassword {
        password: Secret,
    },
    /// Any password is accepted; only ever allowed on loopback addresses.
    Dummy,
}

#[derive(Debug, Clone)]
pub struct SpawnerConfig {
    pub kind: SpawnerKind,
    /// `None` means the provisioned default environment's command.
    pub cmd: Option<Vec<String>>,
    pub args: Vec<String>,
    pub default_url: String,
    pub start_timeout: Duration,
    pub http_timeout: Duration,
    pub environment: BTreeMap<String, String>,
    pub run_as: RunAsSetting,
    pub system_user_prefix: String,
    /// At least 1.
    pub concurrent_starts: u32,
    pub max_queue: u32,
    /// 0 means no limit.
    pub active_server_limit: u32,
}

/// Which spawner starts single-user servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SpawnerKind {
    /// Processes on the hub's machine.
    #[default]
    Local,
}

/// Which Unix account single-user servers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunAsSetting {
    /// `system-users` when the hub runs as root, otherwise `hub-user`.
    #[default]
    Auto,
    /// Every server runs as the hub's own account (single-admin machines, development).
    HubUser,
    /// Each hub user gets a system account named `system_user_prefix` + user name.
    SystemUsers,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub api_token: Option<Secret>,
    pub scopes: Vec<String>,
    pub admin: bool,
    /// A managed service's command; `None` for external services.
    pub command: Option<Vec<String>>,
    /// Origin the proxy routes `<base_url>services/<name>/` to.
    pub url: Option<String>,
    pub environment: BTreeMap<String, String>,
    pub oauth_no_confirm: bool,
}

#[derive(Debug, Clone)]
pub struct CullConfig {
    pub enabled: bool,
    pub timeout: Duration,
    pub every: Duration,
    /// Zero means no limit.
    pub max_age: Duration,
    pub users: bool,
}

/// Where a [`Config`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("<embedded defaults>"),
        }
    }
}

/// A role from the configuration; its scopes were checked against the scope table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub users: Vec<UserName>,
    pub groups: Vec<String>,
    /// Names of configured services.
    pub services: Vec<String>,
}
