//! Hashing passwords the hub stores (a rotated shared password, native accounts): argon2id with
//! the crate's default parameters, as PHC strings. Hashing is deliberately slow and memory-hungry,
//! so it runs on the blocking pool behind a small semaphore: a burst of logins queues here instead
//! of stalling the async runtime or exhausting memory.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hubfleet_types::AuthError;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Semaphore;

/// How many hashes run at once (each takes about 19 MiB with the default parameters).
const CONCURRENT_HASHES: usize = 4;

static PERMITS: Semaphore = Semaphore::const_new(CONCURRENT_HASHES);

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    let _permit = PERMITS
        .acquire()
        .await
        .map_err(|_| AuthError::Backend("password hashing is shut down".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuthError::Backend(format!("password hashing task failed: {e}")))?
}

/// The argon2id PHC string for `password`, with a fresh random salt.
pub async fn hash_password(password: &str) -> Result<String, AuthError> {
    let password = password.to_owned();
    blocking(move || {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| AuthError::Backend("no randomness for a salt".into()))?;
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| AuthError::Backend(format!("encoding a salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| AuthError::Backend(format!("hashing a password: {e}")))
    })
    .await
}

/// Whether `password` matches the PHC string `hash`. A malformed hash is a backend error.
pub async fn verify_password(password: &str, hash: &str) -> Result<bool, AuthError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AuthError::Backend(format!("stored password hash is invalid: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash_password("correct horse").await.unwrap();
        let b = hash_password("correct horse").await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse", &a).await.unwrap());
        assert!(!verify_password("correct hors", &a).await.unwrap());
        assert!(verify_password("x", "not a hash").await.is_err());
    }
}
