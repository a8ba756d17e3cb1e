//! Rotating the shared password at runtime (workshops hand one out, then change it): an admin sets
//! a new password and optionally its expiry, from the admin page or `POST /hub/api/shared-password`.
//! The database keeps its argon2 hash, which replaces the configured password from then on, also
//! after a restart; the old password stops working at once. A rotation can also end everyone's
//! sessions (non-admins only, or all).

use hubfleet_store::StoredSharedPassword;
use hubfleet_types::Timestamp;
use hubfleet_types::auth::PasswordOverride;

use crate::HubError;
use crate::state::AppState;

/// The shortest password a rotation accepts (as for the configured one).
pub(crate) const MIN_CHARS: usize = 8;

/// Whose sessions a rotation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndSessions {
    None,
    NonAdmins,
    All,
}

impl EndSessions {
    /// `none` (or empty), `non-admin`, `all`.
    pub(crate) fn parse(text: &str) -> Result<EndSessions, HubError> {
        match text.trim() {
            "" | "none" => Ok(EndSessions::None),
            "non-admin" | "non-admins" => Ok(EndSessions::NonAdmins),
            "all" => Ok(EndSessions::All),
            other => Err(HubError::BadRequest(format!(
                "end_sessions must be none, non-admin or all, not {other:?}"
            ))),
        }
    }
}

/// A requested rotation.
pub(crate) struct Rotation<'a> {
    pub password: &'a str,
    pub expires_at: Option<Timestamp>,
    pub end_sessions: EndSessions,
    pub by: &'a str,
}

/// Parses an expiry as given in a form or JSON: RFC 3339, or an HTML `datetime-local` value
/// (`2026-03-01T17:00`, taken as UTC). Empty means none.
pub(crate) fn parse_expiry(text: &str) -> Result<Option<Timestamp>, HubError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&chrono::Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(at.and_utc()));
        }
    }
    Err(HubError::BadRequest(format!(
        "Invalid expiry time {text:?}: use a time such as 2026-03-01T17:00:00Z."
    )))
}

/// At start: a password an admin set earlier replaces the configured one.
pub(crate) async fn load(state: &AppState) -> Result<(), HubError> {
    let Some(rotatable) = state.authenticator.shared_password() else {
        return Ok(());
    };
    if let Some(stored) = state.store.get_shared_password().await? {
        rotatable.install(PasswordOverride {
            hash: stored.hash,
            expires_at: stored.expires_at,
        });
        tracing::info!(set_by = %stored.set_by, "using the shared password set by an admin");
    }
    Ok(())
}

/// Rotates the password; returns how many sessions ended.
pub(crate) async fn rotate(state: &AppState, rotation: Rotation<'_>) -> Result<u64, HubError> {
    let Some(rotatable) = state.authenticator.shared_password() else {
        return Err(HubError::Conflict(
            "This hub does not use a shared password (auth.kind is not shared-password).".into(),
        ));
    };
    if rotation.password.chars().count() < MIN_CHARS {
        return Err(HubError::BadRequest(format!(
            "The new password must be at least {MIN_CHARS} characters."
        )));
    }
    let hash = rotatable
        .hash(rotation.password)
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?;
    state
        .store
        .set_shared_password(&StoredSharedPassword {
            hash: hash.clone(),
            expires_at: rotation.expires_at,
            set_at: hubfleet_types::now(),
            set_by: rotation.by.to_string(),
        })
        .await?;
    rotatable.install(PasswordOverride {
        hash,
        expires_at: rotation.expires_at,
    });
    let ended = match rotation.end_sessions {
        EndSessions::None => 0,
        EndSessions::NonAdmins => state.store.delete_all_sessions(false).await?,
        EndSessions::All => state.store.delete_all_sessions(true).await?,
    };
    tracing::info!(
        by = %rotation.by,
        expires_at = ?rotation.expires_at,
        sessions_ended = ended,
        "shared password rotated"
    );
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_from_rfc3339_and_datetime_local() {
        assert_eq!(parse_expiry("  ").unwrap(), None);
        let at = parse_expiry("2026-03-01T18:00:00+01:00").unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2026-03-01T17:00:00+00:00");
        let local = parse_expiry("2026-03-01T17:00").unwrap().unwrap();
        assert_eq!(local, at);
        assert!(parse_expiry("tomorrow").is_err());
        assert_eq!(EndSessions::parse("all").unwrap(), EndSessions::All);
        assert!(EndSessions::parse("some").is_err());
    }
}
