//! Rows as the hub sees them.
//!
//! Types that carry a hash of a secret (token, session cookie, OAuth code or client secret) have a
//! hand-written `Debug` that leaves the hash out: a hash is enough to look a credential up in the
//! database, so it must not end up in logs.

use std::fmt;

use hubfleet_types::{ServerName, SpawnerState, Timestamp, UserName};

/// Which database engine a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: UserName,
    pub admin: bool,
    pub created: Timestamp,
    pub last_activity: Option<Timestamp>,
}

/// A user with everything its JSON model shows, loaded for a whole page in one query
/// ([`crate::Store::user_details`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UserDetails {
    pub user: User,
    /// Ordered by name.
    pub servers: Vec<Server>,
    /// Names of the user's groups, sorted.
    pub groups: Vec<String>,
    /// Roles assigned to the user directly, sorted.
    pub roles: Vec<String>,
    /// Roles the user holds through groups, sorted, without repeats.
    pub group_roles: Vec<String>,
}

/// Lifecycle of one named server. Stored as lowercase text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    Stopped,
    Spawning,
    Running,
    Stopping,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Stopped => "stopped",
            ServerStatus::Spawning => "spawning",
            ServerStatus::Running => "running",
            ServerStatus::Stopping => "stopping",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "stopped" => ServerStatus::Stopped,
            "spawning" => ServerStatus::Spawning,
            "running" => ServerStatus::Running,
            "stopping" => ServerStatus::Stopping,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: i64,
    pub user_id: i64,
    /// Empty for the default server.
    pub name: ServerName,
    pub status: ServerStatus,
    pub url: Option<String>,
    pub state: SpawnerState,
    pub started: Option<Timestamp>,
    pub last_activity: Option<Timestamp>,
    pub user_options: serde_json::Value,
    /// Free text shown instead of the name (JupyterHub 6); empty means "use the name".
    pub display_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner {
    User(i64),
    Service(i64),
}

/// A token to insert. `hash` is the hex SHA-256 of the token; the store never sees the token itself.
#[derive(Clone, PartialEq)]
pub struct NewToken {
    pub hash: String,
    pub owner: TokenOwner,
    pub scopes: Vec<String>,
    pub note: String,
    pub created: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub session_id: Option<String>,
    pub oauth_client_id: Option<String>,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("hash", &"<redacted>")
            .field("owner", &self.owner)
            .field("scopes", &self.scopes)
            .field("note", &self.note)
            .field("created", &self.created)
            .field("expires_at", &self.expires_at)
            .field("session_id", &self.session_id)
            .field("oauth_client_id", &self.oauth_client_id)
            .finish()
    }
}

/// A stored token. Carries no hash, so the derived `Debug` is safe.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: i64,
    pub owner: TokenOwner,
    pub scopes: Vec<String>,
    pub note: String,
    pub created: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_activity: Option<Timestamp>,
    pub session_id: Option<String>,
    pub oauth_client_id: Option<String>,
}

#[derive(Clone, PartialEq)]
pub struct OAuthClient {
    pub identifier: String,
    pub secret_hash: String,
    pub redirect_uri: String,
    pub description: String,
    pub allowed_scopes: Vec<String>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("identifier", &self.identifier)
            .field("secret_hash", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("description", &self.description)
            .field("allowed_scopes", &self.allowed_scopes)
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct OAuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: i64,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub session_id: Option<String>,
    pub expires_at: Timestamp,
}

impl fmt::Debug for OAuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The PKCE challenge is derived from the verifier; keep it out of logs along with the code hash.
        f.debug_struct("OAuthCode")
            .field("code_hash", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field(
                "code_challenge",
                &self.code_challenge.as_ref().map(|_| "<redacted>"),
            )
            .field("code_challenge_method", &self.code_challenge_method)
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A browser login session to insert. `hash` is the hash of the secret held in the login cookie.
#[derive(Clone, PartialEq)]
pub struct NewSession {
    pub hash: String,
    /// Public id, sent as the `jupyterhub-session-id` cookie and attached to tokens issued in this session.
    pub session_id: String,
    pub user_id: i64,
    pub created: Timestamp,
    pub expires_at: Timestamp,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("hash", &"<redacted>")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("created", &self.created)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct Session {
    pub hash: String,
    pub session_id: String,
    pub user_id: i64,
    pub created: Timestamp,
    pub expires_at: Timestamp,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("hash", &"<redacted>")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("created", &self.created)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    /// False for services created through the REST API (JupyterHub's `from_config`).
    pub from_config: bool,
    /// Origin the proxy routes `<base_url>services/<name>/` to.
    pub url: Option<String>,
    pub info: serde_json::Map<String, serde_json::Value>,
    /// Whether to list the service on the hub's pages.
    pub display: bool,
    /// The service's OAuth client, if it has one.
    pub oauth_client_id: Option<String>,
    pub oauth_no_confirm: bool,
    pub oauth_client_allowed_scopes: Vec<String>,
}

/// A service to store; [`Service`] without the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewService {
    pub name: String,
    pub admin: bool,
    pub from_config: bool,
    pub url: Option<String>,
    pub info: serde_json::Map<String, serde_json::Value>,
    pub display: bool,
    pub oauth_client_id: Option<String>,
    pub oauth_no_confirm: bool,
    pub oauth_client_allowed_scopes: Vec<String>,
}

impl NewService {
    /// A service from the configuration with only a name and admin flag; the rest at defaults.
    pub fn from_config(name: &str, admin: bool) -> NewService {
        NewService {
            name: name.to_string(),
            admin,
            from_config: true,
            url: None,
            info: serde_json::Map::new(),
            display: true,
            oauth_client_id: None,
            oauth_no_confirm: false,
            oauth_client_allowed_scopes: Vec::new(),
        }
    }
}

/// A group of users. Members and roles are loaded with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    /// An arbitrary JSON object set through the API.
    pub properties: serde_json::Value,
    /// Member names, sorted.
    pub users: Vec<String>,
    /// Names of roles assigned to the group, sorted.
    pub roles: Vec<String>,
}

/// Which users `GET /users` lists, in which order, and which page.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub state: Option<UserState>,
    /// Substring of the name (case-insensitive).
    pub name_filter: Option<String>,
    pub sort: UserSort,
    pub descending: bool,
    /// Limits the listing to these users and members of these groups (a filtered `list:users`
    /// scope); `None` means everyone.
    pub visible: Option<Visibility>,
    pub offset: i64,
    pub limit: i64,
}

/// Users named here or belonging to one of the groups.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub names: Vec<String>,
    pub groups: Vec<String>,
}

/// JupyterHub's `state=` filter on `GET /users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    /// At least one server is not stopped.
    Active,
    /// At least one server is running.
    Ready,
    /// No server is active.
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    #[default]
    Id,
    Name,
    LastActivity,
}
