//! The YAML configuration: typed schema, strict loading with file:line:column errors, generated reference docs and JSON schema.
