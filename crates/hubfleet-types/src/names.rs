//! Validated user and server names.
//!
//! Names travel into URLs (`/user/<name>/`), environment variables, file paths and Unix account names,
//! so they are validated once, at the edge, and carried as newtypes afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidName {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A normalised user name: lowercase, 1–255 bytes, no `/`, no whitespace, no control characters,
/// and not `.` or `..`. This is what JupyterHub's default `validate_username` accepts after lowercasing,
/// minus characters that would make a path segment ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Normalises (lowercases, trims) and validates.
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let value = raw.trim().to_lowercase();
        let fail = |reason| {
            Err(InvalidName {
                what: "user name",
                value: raw.to_string(),
                reason,
            })
        };
        if value.is_empty() {
            return fail("it is empty");
        }
        if value.len() > 255 {
            return fail("it is longer than 255 bytes");
        }
        if value == "." || value == ".." {
            return fail("it is a relative path component");
        }
        if value
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
        {
            return fail("it contains '/', '\\', whitespace or a control character");
        }
        Ok(UserName(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        UserName::parse(&value)
    }
}

impl From<UserName> for String {
    fn from(value: UserName) -> Self {
        value.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server name: empty for the default server, otherwise JupyterHub 6's safe slug rules
/// (1–30 chars, `[a-z0-9]` and single hyphens, starts with a letter, ends alphanumeric).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerName(String);

impl ServerName {
    pub fn default_server() -> Self {
        ServerName(String::new())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        if raw.is_empty() {
            return Ok(Self::default_server());
        }
        let fail = |reason| {
            Err(InvalidName {
                what: "server name",
                value: raw.to_string(),
                reason,
            })
        };
        if raw.len() > 30 {
            return fail("it is longer than 30 characters");
        }
        let bytes = raw.as_bytes();
        if !bytes[0].is_ascii_lowercase() {
            return fail("it must start with a lowercase letter");
        }
        if !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
            return fail("it must end with a letter or digit");
        }
        if raw.contains("--") {
            return fail("it contains two hyphens in a row");
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return fail("only lowercase letters, digits and hyphens are allowed");
        }
        Ok(ServerName(raw.to_string()))
    }

    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ServerName::parse(&value)
    }
}

impl From<ServerName> for String {
    fn from(value: ServerName) -> Self {
        value.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_lowercased_and_trimmed() {
        assert_eq!(UserName::parse("  Alice ").unwrap().as_str(), "alice");
    }

    #[test]
    fn user_names_reject_path_tricks() {
        for bad in ["", "..", "a/b", "a b", "a\\b", "a\u{0}b"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn server_names_follow_safe_slug_rules() {
        assert!(ServerName::parse("").unwrap().is_default());
        assert!(ServerName::parse("gpu-1").is_ok());
        for bad in ["1abc", "abc-", "a--b", "ABC", "a_b", &"a".repeat(31)] {
            assert!(
                ServerName::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
