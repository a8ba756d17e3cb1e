//! The authenticator boundary: turns what a person typed into a user name, or refuses.

use async_trait::async_trait;

use crate::UserName;

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub name: UserName,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The authenticator could not decide (its identity provider is down, say). Shown as a 500-class
    /// page; the detail goes to the log only.
    #[error("authentication backend failed: {0}")]
    Backend(String),
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
}
