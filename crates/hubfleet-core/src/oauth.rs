//! OAuth2 provider primitives: PKCE verification and redirect-URI matching, as the hub's
//! authorization-code flow with single-user servers needs them.

use base64::Engine;
use sha2::{Digest, Sha256};

/// How long an authorization code stays valid (JupyterHub: 300 s).
pub const CODE_TTL_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_verifier is required because the authorization request had a code_challenge")]
    MissingVerifier,
    #[error("unsupported code_challenge_method {0:?}; only S256 is accepted")]
    UnsupportedMethod(String),
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// Checks a PKCE verifier against the challenge recorded at authorization time (RFC 7636).
/// Only `S256` is accepted: `plain` offers no protection against a leaked code.
pub fn verify_pkce(
    challenge: Option<&str>,
    method: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), PkceError> {
    let Some(challenge) = challenge else {
        return Ok(());
    };
    match method.unwrap_or("plain") {
        "S256" => {}
        other => return Err(PkceError::UnsupportedMethod(other.to_string())),
    }
    let verifier = verifier.ok_or(PkceError::MissingVerifier)?;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if crate::token::secrets_equal(&computed, challenge) {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

/// Redirect URIs must match the registered one exactly (no prefix or pattern matching): anything
/// looser lets an attacker send the code to a URL they control.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    registered == requested
}

#[cfg(test)]
mod tests {
    use super::*;

    // Appendix B of RFC 7636.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_s256_accepts_the_rfc_example() {
        assert_eq!(
            verify_pkce(Some(CHALLENGE), Some("S256"), Some(VERIFIER)),
            Ok(())
        );
    }

    #[test]
    fn pkce_rejects_wrong_or_missing_verifier_and_plain() {
        assert_eq!(
            verify_pkce(Some(CHALLENGE), Some("S256"), Some("wrong")),
            Err(PkceError::Mismatch)
        );
        assert_eq!(
            verify_pkce(Some(CHALLENGE), Some("S256"), None),
            Err(PkceError::MissingVerifier)
        );
        assert!(matches!(
            verify_pkce(Some(VERIFIER), Some("plain"), Some(VERIFIER)),
            Err(PkceError::UnsupportedMethod(_))
        ));
    }

    #[test]
    fn no_challenge_means_no_pkce() {
        assert_eq!(verify_pkce(None, None, None), Ok(()));
    }
}
