//! The library's error types: loading scenarios, and the one way a whole run can fail (the HTTP
//! client cannot be built). A simulated user's own failures are data in the report, not errors.

use std::path::PathBuf;

/// A scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid scenario in {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("unknown scenario {0:?}; built-in scenarios: workshop-60, class-600, research-group-5")]
    UnknownPreset(String),
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid hub URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}
