//! Authenticators: implementations of [`hubfleet_types::Authenticator`].
//!
//! Form logins: a shared password (workshops hand one out) and a dummy authenticator for trying
//! hubfleet on a laptop (the config crate refuses it unless the hub only listens on loopback).
//!
//! Redirect logins ([`hubfleet_types::auth::RedirectLogin`]): generic OpenID Connect and CILogon
//! ([`OidcAuthenticator`]) and GitHub ([`GithubAuthenticator`]), with `auth_state` sealed by
//! [`Sealer`].

mod github;
mod http;
mod oidc;
mod rules;
mod sealed;

pub use github::GithubAuthenticator;
pub use oidc::{OidcAuthenticator, OidcFlavour};
pub use sealed::Sealer;

use async_trait::async_trait;
use hubfleet_core::token::secrets_equal;
use hubfleet_types::{AuthError, AuthenticatedUser, Authenticator, UserName};

/// Everyone who knows the one password gets in, under the name they typed.
pub struct SharedPasswordAuthenticator {
    password: String,
}

impl SharedPasswordAuthenticator {
    pub fn new(password: impl Into<String>) -> Self {
        SharedPasswordAuthenticator {
            password: password.into(),
        }
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
        Ok(secrets_equal(password, &self.password)
            .then(|| AuthenticatedUser::named(username.clone())))
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
