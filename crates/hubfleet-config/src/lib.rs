//! The YAML configuration: typed schema, strict loading with file:line:column errors, generated
//! reference docs and JSON schema.
//!
//! Loading happens in two stages. The file is deserialised strictly into the raw schema in
//! `file` (unknown keys and wrong types fail here, located by serde-saphyr), then `validate`
//! checks the rules serde cannot express and produces the resolved [`Config`]. The raw schema's
//! doc comments are also the source of [`reference_markdown`] and [`json_schema`].
//!
//! YAML is read as YAML 1.2: only `true`/`false` are booleans, so `yes`, `no`, `on` and `off` are
//! strings (a user called `no` stays `no`) and are refused where a boolean is expected.

mod config;
mod duration;
mod error;
mod file;
mod locate;
mod reference;
mod secret;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde_saphyr::MessageFormatter;

pub use crate::config::{
    AuthConfig, AuthMethod, Config, ConfigSource, CullConfig, HubConfig, ProxyConfig, RoleConfig,
    RunAsSetting, ServiceConfig, SpawnerConfig, SpawnerKind, TlsConfig,
};
pub use crate::config::{AuthStateKey, IdpRule, OAuthSettings};
pub use crate::error::{ConfigError, Diagnostic};
pub use crate::reference::{json_schema, reference_markdown};
pub use crate::secret::Secret;

use crate::file::FileConfig;
use crate::locate::LineColumn;

/// Reads and validates a config file. Relative paths in it resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = absolute.parent().unwrap_or(Path::new("/"));
    from_yaml_str(&text, ConfigSource::File(path.to_path_buf()), base_dir)
}

/// Parses and validates config text; relative paths resolve against `base_dir`.
/// An empty document (or one holding only comments or `null`) means all defaults.
pub fn from_yaml_str(
    text: &str,
    source: ConfigSource,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        // The snippet would quote source lines, which may hold a password.
        with_snippet: false,
    };
    let file: Option<FileConfig> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|error| ConfigError::Syntax(syntax_diagnostic(&source, &error)))?;
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    validate::resolve(file.unwrap_or_default(), text, source, &base_dir)
        .map_err(ConfigError::Invalid)
}

/// The configuration used when no file is given: a hub on this machine's loopback interface with
/// `dummy` login, so a newcomer can log in at once. Relative paths resolve against `cwd`.
pub fn embedded_defaults(cwd: &Path) -> Config {
    from_yaml_str("", ConfigSource::Embedded, cwd)
        .expect("the embedded defaults are valid (tested by `embedded_defaults_are_valid`)")
}

fn syntax_diagnostic(source: &ConfigSource, error: &serde_saphyr::Error) -> Diagnostic {
    let location = error
        .location()
        .filter(|it| it.line() > 0)
        .map(|it| LineColumn {
            line: it.line(),
            column: it.column(),
        });
    let message = serde_saphyr::DefaultMessageFormatter.format_message(error.without_snippet());
    // Messages quote file content; escape control characters so they cannot rewrite a terminal.
    let message: String = message
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    Diagnostic::new(&source.to_string(), location, message)
}
