//! The config file's schema, exactly as written in YAML.
//!
//! These types are the single source of the reference docs and the JSON schema: their `///`
//! comments become descriptions and their `Default` impls the documented defaults. They are
//! strict (`deny_unknown_fields`) and hold raw values; `validate` turns them into [`crate::Config`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::Secret;
use crate::config::{RunAsSetting, SpawnerKind};
use crate::duration::DurationSetting;

/// `hub:` with nothing under it (all its keys commented out) is YAML null; read it as "all defaults"
/// rather than as a type error. The JSON schema still documents the canonical non-null form.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The hubfleet configuration file. Every key is optional; an empty file runs a hub on one machine.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "hubfleet configuration")]
pub(crate) struct FileConfig {
    /// Public address that browsers connect to: the proxy's listener.
    #[schemars(extend("x-value-type" = "address"))]
    pub listen: SocketAddr,
    /// URL prefix under which every route lives, e.g. `/jupyter/`. Must start with `/`; a trailing `/` is added.
    pub base_url: String,
    /// The URL people use to reach the hub, including `base_url`, e.g. `https://hub.example.org/jupyter/` (JupyterHub's `public_url`). A trailing `/` is added, and `base_url` too when the URL has no path. When set, API models carry absolute URLs (`full_url`, `full_progress_url`, a share code's `full_accept_url`); unset, those fields are null.
    pub public_url: Option<String>,
    /// Directory for the database, cookie secret and other state. Relative paths resolve against the config file's directory.
    #[schemars(extend("x-value-type" = "path"))]
    pub data_dir: PathBuf,
    /// The hub process: REST API and pages.
    #[serde(deserialize_with = "null_as_default")]
    pub hub: HubSection,
    /// The routing proxy in front of the hub and the single-user servers.
    #[serde(deserialize_with = "null_as_default")]
    pub proxy: ProxySection,
    /// How users log in, and who is allowed and admin.
    #[serde(deserialize_with = "null_as_default")]
    pub auth: AuthSection,
    /// How single-user servers are started.
    #[serde(deserialize_with = "null_as_default")]
    pub spawner: SpawnerSection,
    /// API clients with tokens, as JupyterHub services.
    #[serde(deserialize_with = "null_as_default")]
    pub services: Vec<ServiceSection>,
    /// The database.
    #[serde(deserialize_with = "null_as_default")]
    pub db: DbSection,
    /// The built-in idle culler (same rules as jupyterhub-idle-culler).
    #[serde(deserialize_with = "null_as_default")]
    pub cull: CullSection,
    /// Roles: named sets of scopes granted to users, groups and services (JupyterHub's
    /// `load_roles`). The default roles `user` (every user), `admin` (admins), `server` and
    /// `token` always exist; defining `user`, `server` or `token` here replaces their scopes.
    #[serde(deserialize_with = "null_as_default")]
    pub roles: Vec<RoleSection>,
    /// Let users have named servers besides their default one (`/user/<name>/<server>/`).
    pub allow_named_servers: bool,
    /// How many named servers one user may have; 0 means no limit.
    pub named_server_limit_per_user: u32,
}

/// One role.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleSection {
    /// Role name: lowercase letters, digits, `-`, `_`, `~` and `.`, starting with a letter and ending with a letter or digit, 3–255 characters.
    pub name: String,
    /// What the role is for; shown by the API.
    #[serde(default)]
    pub description: String,
    /// Scopes the role grants, e.g. `read:users`, `admin:servers!group=teachers`, `list:users`. Unknown scopes are an error.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scopes: Vec<String>,
    /// Users holding the role; they are created if they do not exist.
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<String>,
    /// Groups holding the role (their members get its scopes); created if they do not exist.
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<String>,
    /// Services (from `services`) holding the role.
    #[serde(default, deserialize_with = "null_as_default")]
    pub services: Vec<String>,
}

/// The built-in idle culler: stops servers nobody has used for `timeout` (activity is what the
/// proxy sees plus what single-user servers report), with the semantics of jupyterhub-idle-culler.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CullSection {
    /// Run the culler.
    pub enabled: bool,
    /// Stop a server after this long without activity.
    pub timeout: DurationSetting,
    /// How often to look for idle servers.
    pub every: DurationSetting,
    /// Stop servers older than this even if they are active; 0 means no limit.
    pub max_age: DurationSetting,
    /// Also delete users who have no running server and have been inactive for `timeout`.
    pub users: bool,
}

impl Default for CullSection {
    fn default() -> Self {
        CullSection {
            enabled: true,
            timeout: DurationSetting(Duration::from_secs(3600)),
            every: DurationSetting(Duration::from_secs(600)),
            max_age: DurationSetting(Duration::ZERO),
            users: false,
        }
    }
}

/// The database.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DbSection {
    /// Database URL: `postgres://user@host:port/database` for PostgreSQL, or `sqlite://<path>`.
    /// Unset means SQLite at `<data_dir>/hubfleet.sqlite`. A password in the URL is never logged;
    /// prefer `url_file` for it.
    pub url: Option<Secret>,
    /// File holding the database URL, read at load time; one trailing newline is trimmed.
    #[schemars(extend("x-value-type" = "path"))]
    pub url_file: Option<PathBuf>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: loopback(8000),
            base_url: "/".to_string(),
            public_url: None,
            data_dir: PathBuf::from("./hubfleet-data"),
            hub: HubSection::default(),
            proxy: ProxySection::default(),
            auth: AuthSection::default(),
            spawner: SpawnerSection::default(),
            services: Vec::new(),
            db: DbSection::default(),
            cull: CullSection::default(),
            roles: Vec::new(),
            allow_named_servers: false,
            named_server_limit_per_user: 0,
        }
    }
}

/// The hub process: REST API and pages.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HubSection {
    /// Internal address of the hub (API and pages); the proxy and single-user servers reach it here.
    #[schemars(extend("x-value-type" = "address"))]
    pub listen: SocketAddr,
    /// How long a login cookie stays valid.
    pub cookie_max_age: DurationSetting,
    /// Serve `/hub/metrics` to anyone. By default it needs a token with the `read:metrics` scope.
    pub public_metrics: bool,
    /// How often to delete expired API tokens, OAuth codes, login sessions and share codes from the database (also done at every start). Expired ones are never accepted; this only removes them.
    pub purge_expired_every: DurationSetting,
}

impl Default for HubSection {
    fn default() -> Self {
        HubSection {
            listen: loopback(8081),
            cookie_max_age: DurationSetting(Duration::from_secs(14 * 86_400)),
            public_metrics: false,
            purge_expired_every: DurationSetting(Duration::from_secs(3600)),
        }
    }
}

/// The routing proxy in front of the hub and the single-user servers.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProxySection {
    /// Address of the proxy's configurable-http-proxy-compatible REST API.
    #[schemars(extend("x-value-type" = "address"))]
    pub api_listen: SocketAddr,
    /// Serve `listen` over HTTPS with this certificate and key. Unset means plain HTTP.
    pub tls: Option<TlsSection>,
    /// Optional address of a listener that redirects plain HTTP to HTTPS.
    #[schemars(extend("x-value-type" = "address"))]
    pub redirect_http_from: Option<SocketAddr>,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            api_listen: loopback(8001),
            tls: None,
            redirect_http_from: None,
        }
    }
}

/// TLS certificate and private key (PEM). Both are required. The proxy reloads them when the
/// files change (it checks every 5 s) and on SIGHUP; a broken pair keeps the previous one serving.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// Certificate chain file (PEM). Relative paths resolve against the config file's directory.
    #[serde(default)]
    #[schemars(extend("x-value-type" = "path"))]
    pub cert: Option<PathBuf>,
    /// Private key file (PEM). Relative paths resolve against the config file's directory.
    #[serde(default)]
    #[schemars(extend("x-value-type" = "path"))]
    pub key: Option<PathBuf>,
}

/// Login methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthKind {
    /// Any user name with one password shared by everyone (`shared_password` or `shared_password_file`).
    SharedPassword,
    /// Any user name with any password. Refused unless `listen` and `hub.listen` are loopback addresses.
    #[default]
    Dummy,
    /// Any OpenID Connect provider (authorization code flow with PKCE): `issuer` (discovery) or explicit endpoints.
    Oidc,
    /// GitHub OAuth (no ID token: the user, organisations and teams come from GitHub's REST API).
    Github,
    /// CILogon: OpenID Connect with an allow-list of identity providers (`allowed_idps`).
    Cilogon,
    /// Anonymous users with generated names (`tmp-<random>`): the login page has a "Start a session" button instead of the form, and each user is deleted, with their home directory and Unix account (if one was made), when their server stops.
    Tmp,
    /// Accounts with passwords (argon2-hashed in the database): people sign up at `/hub/signup`, and an admin approves each account on the admin page before it can log in. Names in `admin_users` are approved at sign-up. One client address can create at most 100 accounts per 10 minutes.
    Native,
}

/// How users log in, and who is allowed and admin.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthSection {
    /// Login method.
    pub kind: AuthKind,
    /// The password for `shared-password` (at least 8 characters). Give this or `shared_password_file`, not both.
    pub shared_password: Option<Secret>,
    /// File holding the password for `shared-password`, read at load time; one trailing newline is trimmed.
    #[schemars(extend("x-value-type" = "path"))]
    pub shared_password_file: Option<PathBuf>,
    /// `shared-password`: when the configured password stops working, as an RFC 3339 time (`2026-03-01T17:00:00Z`); logins with it are then refused with a message saying it expired. Unset means never. An admin who rotates the password at runtime sets a new expiry with it.
    pub shared_password_expires_at: Option<String>,
    /// Users with admin rights. Names are lowercased.
    #[serde(deserialize_with = "null_as_default")]
    pub admin_users: Vec<String>,
    /// Users who may log in (besides admins and those admitted by `allow_all`, `allowed_groups` or `allowed_organizations`). For `shared-password` and `dummy`, empty means everyone who authenticates.
    #[serde(deserialize_with = "null_as_default")]
    pub allowed_users: Vec<String>,
    /// Users who may never log in, whatever else admits them.
    #[serde(deserialize_with = "null_as_default")]
    pub blocked_users: Vec<String>,
    /// Admit everyone the identity provider vouches for (JupyterHub 5's `allow_all`). For `oidc`, `github` and `cilogon` the default is `false`, and some allow rule (`allow_all`, `allowed_users`, `admin_users`, `allowed_groups`, `allowed_organizations`) is required. For `shared-password` and `dummy` the default is `true` when `allowed_users` is empty.
    pub allow_all: Option<bool>,
    /// Admit users who already exist in the hub's database (created by an admin or through the
    /// REST API) even when no other rule admits them (JupyterHub 5's `allow_existing_users`).
    /// Defaults to `true` when `allowed_users` is set, `false` otherwise.
    pub allow_existing_users: Option<bool>,
    /// OAuth: the absolute callback URL registered with the provider, ending in `hub/oauth_callback`. Unset means derived from the browser's request (`http(s)://<host><base_url>hub/oauth_callback`).
    pub callback_url: Option<String>,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret. Give this or `client_secret_file`, not both.
    pub client_secret: Option<Secret>,
    /// File holding the OAuth client secret; one trailing newline is trimmed.
    #[schemars(extend("x-value-type" = "path"))]
    pub client_secret_file: Option<PathBuf>,
    /// `oidc`: the issuer URL; endpoints come from `<issuer>/.well-known/openid-configuration`. `cilogon` defaults to `https://cilogon.org`.
    pub issuer: Option<String>,
    /// Explicit authorization endpoint (instead of discovery; with `github`, defaults to GitHub's).
    pub authorize_url: Option<String>,
    /// Explicit token endpoint (instead of discovery; with `github`, defaults to GitHub's).
    pub token_url: Option<String>,
    /// Explicit userinfo endpoint (instead of discovery).
    pub userdata_url: Option<String>,
    /// Explicit JWKS endpoint for ID token signatures (instead of discovery).
    pub jwks_url: Option<String>,
    /// `github`: the REST API's base URL.
    pub api_url: Option<String>,
    /// Scopes to request. Default: `openid profile email` for `oidc`, `openid email org.cilogon.userinfo` for `cilogon`, `read:org` for `github`. With `offline_access`, the login also sends `prompt=consent` (OpenID Connect Core §11) so that the provider issues a refresh token.
    pub scopes: Option<Vec<String>>,
    /// Claim (from the ID token merged with userinfo) that becomes the user name. Default: `preferred_username` (`oidc`), `email` (`cilogon`, unless set per identity provider).
    pub username_claim: Option<String>,
    /// Claim holding the user's groups (a list of strings).
    pub groups_claim: Option<String>,
    /// Members of these groups (from `groups_claim`, or `github` teams as `org:team`) may log in.
    #[serde(deserialize_with = "null_as_default")]
    pub allowed_groups: Vec<String>,
    /// Members of these groups are admins; other users from this authenticator lose admin rights at login unless listed in `admin_users`.
    #[serde(deserialize_with = "null_as_default")]
    pub admin_groups: Vec<String>,
    /// Make the hub's groups for each user exactly the provider's groups at every login.
    pub manage_groups: bool,
    /// `oidc`, `cilogon`: make each user's roles exactly the role names in `roles_claim` at every
    /// login (JupyterHub's `manage_roles`). Only roles defined under `roles:` are assigned.
    pub manage_roles: bool,
    /// Claim holding the user's role names, for `manage_roles`.
    pub roles_claim: String,
    /// Refuse logins unless the provider granted all these scopes.
    #[serde(deserialize_with = "null_as_default")]
    pub required_scopes: Vec<String>,
    /// `github`: members of these organisations (`org`) or teams (`org:team`) may log in.
    #[serde(deserialize_with = "null_as_default")]
    pub allowed_organizations: Vec<String>,
    /// `cilogon`: identity providers (by their `idp` entity id) that may log in, each with its user name rules: `username_claim` (default `email`), `allowed_domains` (the user name's domain must be one of these; empty means any) and `strip_domain` (drop `@domain`). Required for `cilogon`; other identity providers are refused.
    #[serde(deserialize_with = "null_as_default")]
    pub allowed_idps: BTreeMap<String, IdpSection>,
    /// Keep provider tokens and claims (`auth_state`), encrypted with `auth_state_key`, and refresh them before spawning.
    pub enable_auth_state: bool,
    /// 32-byte key for `auth_state`, as 64 hex digits or base64. Give this, `auth_state_key_file`, or the `HUBFLEET_AUTH_STATE_KEY` environment variable.
    pub auth_state_key: Option<Secret>,
    /// File holding `auth_state_key`.
    #[schemars(extend("x-value-type" = "path"))]
    pub auth_state_key_file: Option<PathBuf>,
}

/// User name rules for one CILogon identity provider.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdpSection {
    /// Claim that becomes the user name for this provider's users (`email`, `eppn`, `sub`, …).
    #[serde(default = "email_claim")]
    pub username_claim: String,
    /// If not empty, the user name's domain (after `@`) must be one of these.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_domains: Vec<String>,
    /// Remove `@domain` from the user name.
    #[serde(default)]
    pub strip_domain: bool,
}

fn email_claim() -> String {
    "email".into()
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            kind: AuthKind::Dummy,
            shared_password: None,
            shared_password_file: None,
            shared_password_expires_at: None,
            admin_users: Vec::new(),
            allowed_users: Vec::new(),
            blocked_users: Vec::new(),
            allow_all: None,
            allow_existing_users: None,
            callback_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            issuer: None,
            authorize_url: None,
            token_url: None,
            userdata_url: None,
            jwks_url: None,
            api_url: None,
            scopes: None,
            username_claim: None,
            groups_claim: None,
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            manage_groups: false,
            manage_roles: false,
            roles_claim: "roles".to_string(),
            required_scopes: Vec::new(),
            allowed_organizations: Vec::new(),
            allowed_idps: BTreeMap::new(),
            enable_auth_state: false,
            auth_state_key: None,
            auth_state_key_file: None,
        }
    }
}

/// How single-user servers are started.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SpawnerSection {
    /// Spawner implementation.
    pub kind: SpawnerKind,
    /// Command that starts a single-user server. Unset means the provisioned default environment's `jupyterhub-singleuser`.
    pub cmd: Option<Vec<String>>,
    /// Extra arguments appended to `cmd`.
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Page a freshly started server opens, relative to the server's URL. Must start with `/`.
    pub default_url: String,
    /// How long a server may take to start before the spawn fails.
    pub start_timeout: DurationSetting,
    /// How long the hub waits for a started server to answer HTTP.
    pub http_timeout: DurationSetting,
    /// Extra environment variables for single-user servers.
    #[serde(deserialize_with = "null_as_default")]
    pub environment: BTreeMap<String, String>,
    /// Which Unix account servers run as.
    pub run_as: RunAsSetting,
    /// Prefix of the system account names used with `run_as: system-users`.
    pub system_user_prefix: String,
    /// How many servers may be starting at once. Further starts wait in a first-come, first-served
    /// queue whose position people see on the pending page.
    pub concurrent_starts: u32,
    /// How many starts may wait in the queue. Past that a start is refused with 429 and `Retry-After`.
    pub max_queue: u32,
    /// How many servers may be running or starting at once; 0 means no limit. Starts past it wait in
    /// the queue until a server stops.
    pub active_server_limit: u32,
}

impl Default for SpawnerSection {
    fn default() -> Self {
        SpawnerSection {
            kind: SpawnerKind::Local,
            cmd: None,
            args: Vec::new(),
            default_url: "/lab".to_string(),
            start_timeout: DurationSetting(Duration::from_secs(120)),
            http_timeout: DurationSetting(Duration::from_secs(30)),
            environment: BTreeMap::new(),
            run_as: RunAsSetting::Auto,
            system_user_prefix: "hf-".to_string(),
            concurrent_starts: 20,
            max_queue: 2000,
            active_server_limit: 0,
        }
    }
}

/// An API client, as a JupyterHub service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceSection {
    /// Unique service name: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub name: String,
    /// The service's API token, at least 32 characters. Tokens are stored as unsalted SHA-256, so they must be random. Give this or `api_token_file`, not both.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// File holding the API token, read at load time; one trailing newline is trimmed.
    #[serde(default)]
    #[schemars(extend("x-value-type" = "path"))]
    pub api_token_file: Option<PathBuf>,
    /// Scopes granted to the token, e.g. `list:users`, `read:users`, `admin:servers`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scopes: Vec<String>,
    /// Grant the service every admin scope.
    #[serde(default)]
    pub admin: bool,
    /// Run the service as a process the hub manages (JupyterHub's hub-managed services): started
    /// with the `JUPYTERHUB_SERVICE_*` environment and the service's token, restarted if it dies.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Where the service listens, e.g. `http://127.0.0.1:10101`. The proxy routes
    /// `<base_url>services/<name>/` there, and the hub registers an OAuth client for it.
    #[serde(default)]
    pub url: Option<String>,
    /// Extra environment variables for a managed service.
    #[serde(default, deserialize_with = "null_as_default")]
    pub environment: BTreeMap<String, String>,
    /// Skip the OAuth confirmation page people otherwise see before this service first gets a token for them (for services the hub operator trusts).
    #[serde(default)]
    pub oauth_no_confirm: bool,
}
