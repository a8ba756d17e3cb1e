//! Encryption of `auth_state` at rest: AES-256-GCM (ring) with a random 96-bit nonce per value.
//!
//! Layout of a sealed value: one version byte (`1`), the 12-byte nonce, then ciphertext and tag.

use hubfleet_types::AuthError;
use hubfleet_types::auth::AuthState;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 1;

/// Seals and opens auth state with the configured key. `Debug` shows nothing of the key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key");
        Sealer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, state: &AuthState) -> Result<Vec<u8>, AuthError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| AuthError::Backend("no randomness for a nonce".into()))?;
        let mut data = serde_json::to_vec(&state.0)
            .map_err(|e| AuthError::Backend(format!("serialising auth state: {e}")))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut data,
            )
            .map_err(|_| AuthError::Backend("sealing auth state failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<AuthState, AuthError> {
        let fail =
            || AuthError::Backend("stored auth state cannot be decrypted (wrong key?)".into());
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(fail());
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| fail())?;
        let mut data = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut data,
            )
            .map_err(|_| fail())?;
        serde_json::from_slice(plain)
            .map(AuthState)
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let sealer = Sealer::new(&[7; 32]);
        let state = AuthState(serde_json::json!({"access_token": "tok-SECRET-123"}));
        let sealed = sealer.seal(&state).unwrap();
        assert!(
            !sealed
                .windows(b"tok-SECRET-123".len())
                .any(|w| w == b"tok-SECRET-123")
        );
        assert_eq!(sealer.open(&sealed).unwrap(), state);
        // Fresh nonce every time.
        assert_ne!(sealer.seal(&state).unwrap(), sealed);
    }

    #[test]
    fn refuses_tampering_and_other_keys() {
        let sealer = Sealer::new(&[7; 32]);
        let state = AuthState(serde_json::json!({"a": 1}));
        let mut sealed = sealer.seal(&state).unwrap();
        assert!(Sealer::new(&[8; 32]).open(&sealed).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sealer.open(&sealed).is_err());
        assert!(sealer.open(&[]).is_err());
    }
}
