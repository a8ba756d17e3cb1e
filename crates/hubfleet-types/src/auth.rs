//! The authenticator boundary: turns what a person typed, or what an identity provider vouched
//! for, into a user name (with groups, admin flag and auth state), or refuses.
//!
//! Two kinds of login go through it:
//! - **form logins** ([`Authenticator::authenticate`]): the hub's own login form posts a user name
//!   and a password;
//! - **redirect logins** ([`RedirectLogin`], reached through [`Authenticator::redirect`]): OAuth2 /
//!   OpenID Connect. The hub sends the browser to [`RedirectLogin::login_url`] and hands what comes
//!   back on `<base_url>hub/oauth_callback` to [`RedirectLogin::complete`]. The hub owns the
//!   per-login secrets (state, nonce, PKCE verifier) and binds them to the browser.

use std::fmt;

use async_trait::async_trait;

use crate::UserName;

/// Provider tokens and claims kept for a user (JupyterHub's `auth_state`). Secret: `Debug` is
/// redacted, and the hub stores it only encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthState(pub serde_json::Value);

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthState(***)")
    }
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub name: UserName,
    /// `Some` when the authenticator manages group membership (`manage_groups`): the user's groups
    /// become exactly these.
    pub groups: Option<Vec<String>>,
    /// `Some` when the authenticator manages roles (`manage_roles`): the user's roles become
    /// exactly these (those the configuration defines).
    pub roles: Option<Vec<String>>,
    /// `Some` when the authenticator decides admin rights (e.g. `admin_groups`); `admin_users`
    /// from the configuration are admins regardless.
    pub admin: Option<bool>,
    /// The authenticator's own allow rules (`allowed_groups`, `allowed_organizations`) admit this
    /// user. The hub also admits `allow_all`, `allowed_users` and admins.
    pub allowed: bool,
    /// Tokens and claims to keep (encrypted) when `enable_auth_state` is on.
    pub auth_state: Option<AuthState>,
}

impl AuthenticatedUser {
    /// A user with nothing but a name (form logins).
    pub fn named(name: UserName) -> Self {
        AuthenticatedUser {
            name,
            groups: None,
            roles: None,
            admin: None,
            allowed: false,
            auth_state: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The authenticator could not decide (its identity provider is down, say). Shown as a 500-class
    /// page; the detail goes to the log only.
    #[error("authentication backend failed: {0}")]
    Backend(String),
    /// The identity provider vouched for someone this hub refuses (an identity provider not on the
    /// allow-list, missing scopes, no usable user name). The message is shown to the person.
    #[error("{0}")]
    Refused(String),
    /// The callback does not belong to a login this browser started, or the provider rejected the
    /// code (replayed, expired) or returned an invalid ID token. Shown as a 400-class page.
    #[error("invalid login callback: {0}")]
    InvalidCallback(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Short name for logs and metrics, e.g. `"shared-password"`.
    fn kind(&self) -> &'static str;

    /// Checks a login form submission. `Ok(None)` means "wrong credentials"; the caller answers 403
    /// without saying which part was wrong. The user name is already normalised and validated.
    async fn authenticate(
        &self,
        username: &UserName,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError>;

    /// `Some` for authenticators that log people in by sending them to an identity provider; the
    /// hub then has no password form.
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        None
    }

    /// Whether people log in without credentials, with a "Start a session" button instead of the
    /// form; [`Authenticator::new_anonymous_user`] then names them.
    fn anonymous(&self) -> bool {
        false
    }

    /// A fresh, unused-looking user for an anonymous login (`tmp-<random>`); `None` unless
    /// [`Authenticator::anonymous`].
    fn new_anonymous_user(&self) -> Option<AuthenticatedUser> {
        None
    }

    /// Whether the hub deletes this user, with what the spawner keeps for them, when their server stops.
    fn is_ephemeral(&self, _user: &UserName) -> bool {
        false
    }

    /// `Some` for authenticators with self-service accounts (`native`): sign-up and approval.
    fn accounts(&self) -> Option<&dyn SignUp> {
        None
    }

    /// `Some` for authenticators with one shared password that admins can replace at runtime.
    fn shared_password(&self) -> Option<&dyn RotatablePassword> {
        None
    }
}

/// A shared password set at runtime: its argon2 hash (PHC string) and expiry. `Debug` redacts the
/// hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordOverride {
    pub hash: String,
    pub expires_at: Option<crate::Timestamp>,
}

impl fmt::Debug for PasswordOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordOverride")
            .field("hash", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A shared password that can be rotated. The hub keeps the override in its database and hands
/// it to the authenticator at start and on every rotation; from then on only the override works.
#[async_trait]
pub trait RotatablePassword: Send + Sync {
    /// Hashes a new password for storage (argon2, off the async runtime).
    async fn hash(&self, password: &str) -> Result<String, AuthError>;

    /// Makes `current` the only accepted password, at once.
    fn install(&self, current: PasswordOverride);

    /// When the password in force expires (the override's, or else the configured one's).
    fn expires_at(&self) -> Option<crate::Timestamp>;
}

/// What the hub generated for one login attempt; kept server-side, bound to the browser.
pub struct LoginRequest<'a> {
    /// The `state` parameter (checked by the hub on the callback).
    pub state: &'a str,
    /// The OpenID Connect `nonce` (checked against the ID token by the authenticator).
    pub nonce: &'a str,
    /// The PKCE `code_verifier`; the authenticator sends its S256 challenge.
    pub pkce_verifier: &'a str,
    /// The absolute callback URL, `…/hub/oauth_callback`.
    pub redirect_uri: &'a str,
}

/// Tokens after a refresh.
pub enum Refreshed {
    /// The tokens are still fresh; nothing changed.
    Unchanged,
    /// New auth state to store.
    Updated(AuthState),
}

/// OAuth2 / OpenID Connect logins.
#[async_trait]
pub trait RedirectLogin: Send + Sync {
    /// What the login button says, e.g. `"GitHub"` in "Sign in with GitHub".
    fn login_service(&self) -> &str;

    /// The provider's authorization URL for this attempt.
    async fn login_url(&self, request: &LoginRequest<'_>) -> Result<String, AuthError>;

    /// Exchanges the callback's `code` for tokens, validates them and maps the identity to a user.
    /// `request` is the attempt the hub matched the callback's `state` to.
    async fn complete(
        &self,
        code: &str,
        request: &LoginRequest<'_>,
    ) -> Result<AuthenticatedUser, AuthError>;

    /// Refreshes `auth_state`'s tokens if they expire within `margin` (JupyterHub's
    /// `refresh_pre_spawn`).
    async fn refresh(
        &self,
        auth_state: &AuthState,
        margin: std::time::Duration,
    ) -> Result<Refreshed, AuthError>;

    /// Whether auth state is kept (`enable_auth_state` with a key).
    fn auth_state_enabled(&self) -> bool {
        false
    }

    /// Encrypts auth state for storage.
    fn seal_auth_state(&self, _state: &AuthState) -> Result<Vec<u8>, AuthError> {
        Err(AuthError::Backend("auth state is not enabled".into()))
    }

    /// Decrypts stored auth state.
    fn open_auth_state(&self, _sealed: &[u8]) -> Result<AuthState, AuthError> {
        Err(AuthError::Backend("auth state is not enabled".into()))
    }
}

/// A `native` account as stored. `Debug` redacts the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeAccount {
    /// argon2 PHC string.
    pub hash: String,
    pub approved: bool,
}

impl fmt::Debug for NativeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeAccount")
            .field("hash", &"***")
            .field("approved", &self.approved)
            .finish()
    }
}

/// Where `native` accounts live (the hub database; the binary wires it in).
#[async_trait]
pub trait NativeAccounts: Send + Sync + 'static {
    async fn get(&self, name: &UserName) -> Result<Option<NativeAccount>, AuthError>;
    /// Creates an unapproved account; `false` if the name is taken.
    async fn create(&self, name: &UserName, hash: &str) -> Result<bool, AuthError>;
    /// `false` if there is no such account.
    async fn approve(&self, name: &UserName) -> Result<bool, AuthError>;
    /// Accounts awaiting approval, oldest first.
    async fn pending(&self) -> Result<Vec<UserName>, AuthError>;
}

/// Self-service accounts: sign-up creates an unapproved account, an admin approves it.
#[async_trait]
pub trait SignUp: Send + Sync {
    /// Creates an unapproved account. [`AuthError::Refused`] (shown to the person) if the name is
    /// taken or the password too short.
    async fn sign_up(&self, name: &UserName, password: &str) -> Result<(), AuthError>;
    /// `false` if there is no such account.
    async fn approve(&self, name: &UserName) -> Result<bool, AuthError>;
    async fn pending(&self) -> Result<Vec<UserName>, AuthError>;
}
