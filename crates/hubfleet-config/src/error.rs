//! Configuration errors, each pointing at `file:line:column`.

use std::fmt;
use std::path::PathBuf;

use crate::locate::LineColumn;

/// One problem in a configuration, displayed as `origin:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file path as given, or `<embedded defaults>`.
    pub origin: String,
    /// 1-based line and column, when known.
    pub line_column: Option<(u64, u64)>,
    /// What is wrong; never contains a secret's value.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(origin: &str, location: Option<LineColumn>, message: String) -> Self {
        Diagnostic {
            origin: origin.to_string(),
            line_column: location.map(|it| (it.line, it.column)),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_column {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML did not parse or did not match the schema (unknown key, wrong type).
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file parsed but broke one or more rules; all of them are listed, one per line.
    #[error("{}", display_lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// Every problem found, in file order where possible.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ConfigError::Read { path, source } => vec![Diagnostic {
                origin: path.display().to_string(),
                line_column: None,
                message: format!("cannot read config file: {source}"),
            }],
            ConfigError::Syntax(diagnostic) => vec![diagnostic.clone()],
            ConfigError::Invalid(diagnostics) => diagnostics.clone(),
        }
    }
}

fn display_lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
