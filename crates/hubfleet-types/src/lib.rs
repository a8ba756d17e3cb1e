//! Domain types shared by every hubfleet crate.
//!
//! This crate sits at the bottom of the tree: it knows nothing about HTTP, the database or processes.
//! Boundary traits (for example [`Spawner`]) live here so that the crates implementing them and the hub
//! that drives them never depend on each other; the binary wires concrete implementations together.

pub mod auth;
mod names;
mod spawner;
mod time;

pub use auth::{AuthError, AuthenticatedUser, Authenticator};
pub use names::{InvalidName, ServerName, UserName};
pub use spawner::{
    PollStatus, ProgressEvent, ProgressSink, SpawnError, SpawnRequest, SpawnedServer, Spawner,
    SpawnerState,
};
pub use time::{Timestamp, isoformat, now};
