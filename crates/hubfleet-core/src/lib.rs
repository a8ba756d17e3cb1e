//! Hub logic without I/O: the RBAC scope model, token and OAuth primitives.
//!
//! Architecture invariant: nothing here touches the network, the clock of the process (callers pass
//! timestamps in), the database or the file system, so every rule in this crate is tested in
//! microseconds and the same rules apply whichever store or transport surrounds them.

pub mod oauth;
pub mod scopes;
pub mod token;
