//! Spawner backends; today the local-process spawner and the default user-environment provisioner.
//!
//! - [`LocalProcessSpawner`] runs servers as local processes that survive hub restarts.
//! - [`provision`] builds the default Python environment with `jupyterhub-singleuser` in it.

mod local;
mod procfs;
pub mod provision;
mod unix_account;

pub use local::{ENV_KEEP, LocalProcessSpawner, LocalSpawnerConfig, RunAs};
pub use unix_account::account_name_for;
