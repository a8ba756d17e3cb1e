//! `native` logins: people sign up with a user name and password (stored as an argon2 hash); the
//! account cannot log in until an admin approves it. Names in `admin_users` are approved at
//! sign-up, so a new hub can get its first admin.

use std::sync::Arc;

use async_trait::async_trait;
use hubfleet_types::auth::{NativeAccounts, SignUp};
use hubfleet_types::{AuthError, AuthenticatedUser, Authenticator, UserName};

use crate::password;

/// The shortest password sign-up accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

pub struct NativeAuthenticator {
    accounts: Arc<dyn NativeAccounts>,
    /// Approved at sign-up (`admin_users`).
    approved_at_sign_up: Vec<UserName>,
    /// A hash to verify against for names without an account, so that the answer takes as long
    /// as for a real account and does not reveal which names exist.
    decoy: tokio::sync::OnceCell<String>,
}

impl NativeAuthenticator {
    pub fn new(accounts: Arc<dyn NativeAccounts>, approved_at_sign_up: Vec<UserName>) -> Self {
        NativeAuthenticator {
            accounts,
            approved_at_sign_up,
            decoy: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl Authenticator for NativeAuthenticator {
    fn kind(&self) -> &'static str {
        "native"
    }

    async fn authenticate(
        &self,
        username: &UserName,
        password: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError> {
        let Some(account) = self.accounts.get(username).await? else {
            let decoy = self
                .decoy
                .get_or_try_init(|| password::hash_password("no such account"))
                .await?;
            password::verify_password(password, decoy).await?;
            return Ok(None);
        };
        if !password::verify_password(password, &account.hash).await? {
            return Ok(None);
        }
        if !account.approved {
            return Err(AuthError::Refused(
                "Your account is waiting for an administrator's approval.".into(),
            ));
        }
        Ok(Some(AuthenticatedUser::named(username.clone())))
    }

    fn accounts(&self) -> Option<&dyn SignUp> {
        Some(self)
    }
}

#[async_trait]
impl SignUp for NativeAuthenticator {
    async fn sign_up(&self, name: &UserName, password: &str) -> Result<(), AuthError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AuthError::Refused(format!(
                "The password must be at least {MIN_PASSWORD_CHARS} characters."
            )));
        }
        let hash = password::hash_password(password).await?;
        if !self.accounts.create(name, &hash).await? {
            return Err(AuthError::Refused(format!(
                "The name {name} is taken; choose another."
            )));
        }
        if self.approved_at_sign_up.contains(name) {
            self.accounts.approve(name).await?;
        }
        Ok(())
    }

    async fn approve(&self, name: &UserName) -> Result<bool, AuthError> {
        self.accounts.approve(name).await
    }

    async fn pending(&self) -> Result<Vec<UserName>, AuthError> {
        self.accounts.pending().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use hubfleet_types::auth::NativeAccount;

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<UserName, NativeAccount>>);

    #[async_trait]
    impl NativeAccounts for Memory {
        async fn get(&self, name: &UserName) -> Result<Option<NativeAccount>, AuthError> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        async fn create(&self, name: &UserName, hash: &str) -> Result<bool, AuthError> {
            let mut map = self.0.lock().unwrap();
            if map.contains_key(name) {
                return Ok(false);
            }
            let account = NativeAccount {
                hash: hash.into(),
                approved: false,
            };
            map.insert(name.clone(), account);
            Ok(true)
        }
        async fn approve(&self, name: &UserName) -> Result<bool, AuthError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get_mut(name)
                .map(|a| a.approved = true)
                .is_some())
        }
        async fn pending(&self) -> Result<Vec<UserName>, AuthError> {
            let map = self.0.lock().unwrap();
            Ok(map
                .iter()
                .filter(|(_, a)| !a.approved)
                .map(|(n, _)| n.clone())
                .collect())
        }
    }

    #[tokio::test]
    async fn accounts_log_in_only_once_approved() {
        let name = |n: &str| UserName::parse(n).unwrap();
        let auth = NativeAuthenticator::new(Arc::new(Memory::default()), vec![name("boss")]);
        auth.sign_up(&name("ann"), "long enough").await.unwrap();
        assert!(matches!(
            auth.sign_up(&name("ann"), "another one").await,
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(
            auth.sign_up(&name("bob"), "short").await,
            Err(AuthError::Refused(_))
        ));
        let waiting = auth.authenticate(&name("ann"), "long enough").await;
        assert!(matches!(&waiting, Err(AuthError::Refused(m)) if m.contains("approval")));
        assert!(
            auth.authenticate(&name("ann"), "wrong one")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(auth.pending().await.unwrap(), [name("ann")]);
        assert!(auth.approve(&name("ann")).await.unwrap());
        assert!(
            auth.authenticate(&name("ann"), "long enough")
                .await
                .unwrap()
                .is_some()
        );
        auth.sign_up(&name("boss"), "the boss pw").await.unwrap();
        assert!(
            auth.authenticate(&name("boss"), "the boss pw")
                .await
                .unwrap()
                .is_some()
        );
    }
}
