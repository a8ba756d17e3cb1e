//! Hub logic without I/O: scopes and roles, token and OAuth primitives.
