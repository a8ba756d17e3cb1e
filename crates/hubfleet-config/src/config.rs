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
    /// `scheme://host[:port]` of the configured public URL (whose path is `base_url`), for
    /// absolute URLs in API models; `None` when no public URL is configured.
    pub public_origin: Option<String>,
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
    pub purge_expired_every: Duration,
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
    /// Users admitted by name (besides admins and `allow_all`).
    pub allowed_users: Vec<UserName>,
    /// Never admitted.
    pub blocked_users: Vec<UserName>,
    /// Everyone who authenticates is admitted (resolved: for form logins, `true` when
    /// `allowed_users` is empty unless set).
    pub allow_all: bool,
    /// Users already in the database are admitted (resolved: `true` when `allowed_users` is set,
    /// unless set).
    pub allow_existing_users: bool,
}

#[derive(Debug, Clone)]
pub enum AuthMethod {
    SharedPassword {
        password: Secret,
        /// After this, the configured password is refused (`shared_password_expires_at`).
        expires_at: Option<hubfleet_types::Timestamp>,
    },
    /// Any password is accepted; only ever allowed on loopback addresses.
    Dummy,
    /// A generic OpenID Connect provider.
    Oidc(OAuthSettings),
    /// GitHub OAuth.
    Github(OAuthSettings),
    /// CILogon (OpenID Connect with identity-provider rules).
    Cilogon(OAuthSettings),
    /// Anonymous, ephemeral users (`tmp-<random>`).
    Tmp,
    /// Sign-up accounts that admins approve.
    Native,
}

impl AuthMethod {
    /// The OAuth settings of redirect-based methods.
    pub fn oauth(&self) -> Option<&OAuthSettings> {
        match self {
            AuthMethod::Oidc(s) | AuthMethod::Github(s) | AuthMethod::Cilogon(s) => Some(s),
            AuthMethod::SharedPassword { .. }
            | AuthMethod::Dummy
            | AuthMethod::Tmp
            | AuthMethod::Native => None,
        }
    }
}

/// Settings shared by the OAuth2 / OpenID Connect login methods.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Absolute URL ending in `hub/oauth_callback`; `None` means derived from the request.
    pub callback_url: Option<String>,
    /// OIDC issuer (discovery), without a trailing slash.
    pub issuer: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userdata_url: Option<String>,
    pub jwks_url: Option<String>,
    /// GitHub REST API base, without a trailing slash.
    pub api_url: Option<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: Option<String>,
    pub allowed_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    pub manage_groups: bool,
    pub manage_roles: bool,
    pub roles_claim: String,
    pub required_scopes: Vec<String>,
    /// GitHub: `org` or `org:team`, lowercased.
    pub allowed_organizations: Vec<String>,
    /// CILogon: identity provider entity id → rules. Empty for other methods.
    pub allowed_idps: BTreeMap<String, IdpRule>,
    /// `Some` iff `enable_auth_state`: the 32-byte encryption key.
    pub auth_state_key: Option<AuthStateKey>,
}

/// CILogon: how one identity provider's users are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpRule {
    pub username_claim: String,
    /// Lowercased; empty means any domain.
    pub allowed_domains: Vec<String>,
    pub strip_domain: bool,
}

/// A 32-byte key for encrypting `auth_state`. `Debug` is redacted.
#[derive(Clone)]
pub struct AuthStateKey(pub [u8; 32]);

impl fmt::Debug for AuthStateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthStateKey(***)")
    }
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
