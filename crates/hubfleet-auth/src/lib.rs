//! Authenticators: implementations of [`hubfleet_types::Authenticator`].
//!
//! Form logins: a shared password (workshops hand one out; admins can rotate it at runtime, and it
//! can expire), `native` sign-up accounts that admins approve ([`NativeAuthenticator`]), and a dummy
//! authenticator for trying hubfleet on a laptop (the config crate refuses it unless the hub only
//! listens on loopback). Anonymous logins: `tmp` ([`TmpAuthenticator`]), ephemeral users.
//! Passwords the hub stores are argon2 hashes ([`password`]).
//!
//! Redirect logins ([`hubfleet_types::auth::RedirectLogin`]): generic OpenID Connect and CILogon
//! ([`OidcAuthenticator`]) and GitHub ([`GithubAuthenticator`]), with `auth_state` sealed by
//! [`Sealer`].

mod github;
mod http;
mod native;
mod oidc;
pub mod password;
mod rules;
mod sealed;

pub use github::GithubAuthenticator;
pub use native::NativeAuthenticator;
pub use oidc::{OidcAuthenticator, OidcFlavour};
pub use sealed::Sealer;

use async_trait::async_trait;
use hubfleet_core::token::secrets_equal;
use hubfleet_types::auth::{PasswordOverride, RotatablePassword};
use hubfleet_types::{AuthError, AuthenticatedUser, Authenticator, Timestamp, UserName};
use std::sync::RwLock;

/// Everyone who knows the one password gets in, under the name they typed. An admin can replace
/// the configured password at runtime ([`RotatablePassword`]); after its expiry time the password
/// is refused with a message saying so.
pub struct SharedPasswordAuthenticator {
    password: String,
    expires_at: Option<Timestamp>,
    /// The rotated password, once an admin set one; it replaces `password` and `expires_at`.
    current: RwLock<Option<PasswordOverride>>,
}

impl SharedPasswordAuthenticator {
    pub fn new(password: impl Into<String>) -> Self {
        SharedPasswordAuthenticator {
            password: password.into(),
            expires_at: None,
            current: RwLock::new(None),
        }
    }

    /// The configured password expires at `expires_at`.
    pub fn with_expiry(mut self, expires_at: Option<Timestamp>) -> Self {
        self.expires_at = expires_at;
        self
    }

    fn current(&self) -> Option<PasswordOverride> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[async_trait]
impl Authenticator for SharedPasswordAuthenticator {
    fn kind(&self) -> &'static str {
        "shared-password"
    }

    async fn authenticate(
        &self,
        username: &UserName,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError> {
        let (matches, expires_at) = match self.current() {
            Some(current) => (
                password::verify_password(password, &current.hash).await?,
                current.expires_at,
            ),
            None => (secrets_equal(password, &self.password), self.expires_at),
        };
        if !matches {
            return Ok(None);
        }
        if let Some(at) = expires_at.filter(|at| *at <= hubfleet_types::now()) {
            return Err(AuthError::Refused(format!(
                "This password expired on {}. Ask the organisers for the current one.",
                at.format("%Y-%m-%d at %H:%M UTC")
            )));
        }
        Ok(Some(AuthenticatedUser::named(username.clone())))
    }

    fn shared_password(&self) -> Option<&dyn RotatablePassword> {
        Some(self)
    }
}

#[async_trait]
impl RotatablePassword for SharedPasswordAuthenticator {
    async fn hash(&self, password: &str) -> Result<String, AuthError> {
        password::hash_password(password).await
    }

    fn install(&self, current: PasswordOverride) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(current);
    }

    fn expires_at(&self) -> Option<Timestamp> {
        match self.current() {
            Some(current) => current.expires_at,
            None => self.expires_at,
        }
    }
}

/// Anonymous users: "Start a session" logs in a new user named `tmp-<12 hex digits>`; the hub
/// deletes each such user, and their home directory, when their server stops.
pub struct TmpAuthenticator;

/// The prefix of every name [`TmpAuthenticator`] gives out.
pub const TMP_PREFIX: &str = "tmp-";

#[async_trait]
impl Authenticator for TmpAuthenticator {
    fn kind(&self) -> &'static str {
        "tmp"
    }

    async fn authenticate(
        &self,
        _: &UserName,
        _: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError> {
        Ok(None)
    }

    fn anonymous(&self) -> bool {
        true
    }

    fn new_anonymous_user(&self) -> Option<AuthenticatedUser> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 6];
        ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let name = UserName::parse(&format!("{TMP_PREFIX}{hex}")).ok()?;
        Some(AuthenticatedUser::named(name))
    }

    fn is_ephemeral(&self, user: &UserName) -> bool {
        user.as_str().starts_with(TMP_PREFIX)
    }
}

/// Accepts any non-empty password. For local trials only.
pub struct DummyAuthenticator;

#[async_trait]
impl Authenticator for DummyAuthenticator {
    fn kind(&self) -> &'static str {
        "dummy"
    }

    async fn authenticate(
        &self,
        username: &UserName,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError> {
        Ok((!password.is_empty()).then(|| AuthenticatedUser::named(username.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    #[tokio::test]
    async fn shared_password_accepts_only_the_password() {
        let auth = SharedPasswordAuthenticator::new("correct horse");
        let ok = auth.authenticate(&alice(), "correct horse").await.unwrap();
        assert_eq!(ok.unwrap().name, alice());
        assert!(
            auth.authenticate(&alice(), "correct hors")
                .await
                .unwrap()
                .is_none()
        );
        assert!(auth.authenticate(&alice(), "").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_rotated_password_replaces_the_configured_one_and_expires() {
        let auth = SharedPasswordAuthenticator::new("correct horse");
        let hash = auth.hash("battery staple").await.unwrap();
        auth.install(PasswordOverride {
            hash: hash.clone(),
            expires_at: None,
        });
        assert!(
            auth.authenticate(&alice(), "correct horse")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            auth.authenticate(&alice(), "battery staple")
                .await
                .unwrap()
                .is_some()
        );
        auth.install(PasswordOverride {
            hash,
            expires_at: Some(hubfleet_types::now() - chrono::Duration::seconds(1)),
        });
        let expired = auth.authenticate(&alice(), "battery staple").await;
        assert!(
            matches!(&expired, Err(AuthError::Refused(m)) if m.contains("expired")),
            "{expired:?}"
        );
    }

    #[tokio::test]
    async fn tmp_users_get_fresh_ephemeral_names() {
        let a = TmpAuthenticator.new_anonymous_user().unwrap().name;
        let b = TmpAuthenticator.new_anonymous_user().unwrap().name;
        assert_ne!(a, b);
        assert!(
            a.as_str().starts_with("tmp-") && a.as_str().len() == 16,
            "{a}"
        );
        assert!(TmpAuthenticator.is_ephemeral(&a));
        assert!(!TmpAuthenticator.is_ephemeral(&alice()));
        assert!(
            TmpAuthenticator
                .authenticate(&a, "x")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn dummy_refuses_an_empty_password() {
        assert!(
            DummyAuthenticator
                .authenticate(&alice(), "")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            DummyAuthenticator
                .authenticate(&alice(), "x")
                .await
                .unwrap()
                .is_some()
        );
    }
}
