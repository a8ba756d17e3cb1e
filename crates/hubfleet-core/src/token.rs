//! API tokens and session secrets: generation and the hash that is stored instead of the token.
//!
//! Tokens are 256 random bits, so an unsalted SHA-256 is enough to make a stolen database useless
//! (nobody can brute-force 2^256), and it lets the store look a token up by its hash with an index
//! instead of JupyterHub's prefix-scan-then-compare. Tokens supplied by operators in the config
//! must be at least 32 characters for the same reason (enforced by the config crate).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token: 32 bytes from the OS CSPRNG, hex-encoded (64 characters).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps for a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison for secrets compared in memory (passwords, XSRF tokens).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Comparing digests keeps the comparison constant-time in the length of the inputs too.
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    da.ct_eq(&db).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_hex_and_distinct() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_stable_and_not_the_token() {
        let token = generate_token();
        assert_eq!(hash_token(&token), hash_token(&token));
        assert_ne!(hash_token(&token), token);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_equal_compares_exactly() {
        assert!(secrets_equal("hunter22", "hunter22"));
        assert!(!secrets_equal("hunter22", "hunter23"));
        assert!(!secrets_equal("hunter22", "hunter2"));
    }
}
