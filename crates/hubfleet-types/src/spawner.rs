//! The spawner boundary: how the hub asks a backend (local processes, containers, Slurm, Kubernetes)
//! to run one user's single-user server.
//!
//! The contract mirrors JupyterHub's `Spawner` (start/poll/stop plus persisted state), reshaped so
//! that a hub restart can re-adopt servers: everything a spawner needs to find a server again is in
//! the [`SpawnerState`] it returns from [`Spawner::start`], which the hub stores in its database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{ServerName, UserName};

/// Everything a spawner needs to start one server. The hub computes the JupyterHub environment
/// (`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_CLIENT_ID`, …); the spawner adds what only it knows,
/// `JUPYTERHUB_SERVICE_URL` (the address it made the server bind), plus `USER`, `HOME` and `SHELL`.
#[derive(Clone)]
pub struct SpawnRequest {
    pub user: UserName,
    pub server_name: ServerName,
    /// `/user/<name>/` or `/user/<name>/<server>/` (already includes the hub's `base_url`).
    pub service_prefix: String,
    /// Program and arguments; never empty.
    pub cmd: Vec<String>,
    /// Environment computed by the hub. Secrets live here: spawners must never log these values.
    pub env: BTreeMap<String, String>,
    /// Where the spawner may keep per-server files (logs, home directories) for this hub.
    pub data_dir: PathBuf,
}

/// The environment holds the server's API token and the user's identity-provider tokens, so
/// `Debug` shows the variable names only.
impl std::fmt::Debug for SpawnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnRequest")
            .field("user", &self.user)
            .field("server_name", &self.server_name)
            .field("service_prefix", &self.service_prefix)
            .field("cmd", &self.cmd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// What [`Spawner::start`] reports once the process (or container, or job) is launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnedServer {
    /// Origin the proxy should route to, e.g. `http://127.0.0.1:41234` (no path).
    pub url: String,
    /// Opaque state persisted by the hub and handed back to `poll`/`stop` after a restart.
    pub state: SpawnerState,
}

/// Spawner-owned state, stored as JSON in the hub database (like JupyterHub's `get_state`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpawnerState(pub serde_json::Value);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    Running,
    /// Gone. `code` is the exit status when the spawner knows it (it may not, after a hub restart).
    Exited {
        code: Option<i32>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The server could not be started; `log_tail` carries its last output lines, if any.
    #[error("{message}")]
    Failed {
        message: String,
        log_tail: Option<String>,
    },
    #[error("spawner I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl SpawnError {
    pub fn failed(message: impl Into<String>) -> Self {
        SpawnError::Failed {
            message: message.into(),
            log_tail: None,
        }
    }

    pub fn log_tail(&self) -> Option<&str> {
        match self {
            SpawnError::Failed { log_tail, .. } => log_tail.as_deref(),
            SpawnError::Io(_) => None,
        }
    }
}

/// One entry in a spawn's progress stream, in JupyterHub's event shape (`progress` 0–100 and a message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    pub message: String,
}

/// Where a spawner reports progress while it starts a server. Sending never blocks and never fails:
/// if nobody listens any more the event is dropped.
#[derive(Debug, Clone)]
pub struct ProgressSink(mpsc::UnboundedSender<ProgressEvent>);

impl ProgressSink {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ProgressEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressSink(tx), rx)
    }

    /// A sink whose events go nowhere, for callers that do not show progress.
    pub fn discard() -> Self {
        ProgressSink::new().0
    }

    pub fn send(&self, progress: u8, message: impl Into<String>) {
        let _ = self.0.send(ProgressEvent {
            progress: Some(progress.min(100)),
            message: message.into(),
        });
    }
}

#[async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// Short name for logs and metrics, e.g. `"local"`.
    fn kind(&self) -> &'static str;

    /// Launch the server and return as soon as it is launched. The hub then waits for the server to
    /// answer HTTP (JupyterHub's `wait_up`), so `start` need not wait for readiness.
    async fn start(
        &self,
        request: SpawnRequest,
        progress: ProgressSink,
    ) -> Result<SpawnedServer, SpawnError>;

    /// Is the server still there? Must work on state from a previous hub process.
    async fn poll(&self, state: &SpawnerState) -> PollStatus;

    /// Asked once the server's URL answers HTTP: did the server answer, and not another process
    /// that took its port before the server could listen on it? Spawners that give each server an
    /// address of its own (a container, a pod) cannot be fooled this way and keep the default.
    async fn answered_by_server(&self, _state: &SpawnerState) -> bool {
        true
    }

    /// Stop the server and return once it is gone. Stopping a server that is already gone is not an error.
    async fn stop(&self, state: &SpawnerState) -> Result<(), SpawnError>;

    /// The last `max_lines` lines of the server's output, for failure pages.
    async fn log_tail(&self, state: &SpawnerState, max_lines: usize) -> Option<String>;

    /// Remove everything this spawner keeps for a user the hub deletes for good (an ephemeral
    /// `tmp` user): their files and any account made for them. Their servers are already stopped.
    /// Removing what is already gone is not an error.
    async fn forget_user(&self, data_dir: &Path, user: &UserName) -> Result<(), SpawnError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_spawn_request_hides_environment_values() {
        let request = SpawnRequest {
            user: UserName::parse("alice").unwrap(),
            server_name: ServerName::default_server(),
            service_prefix: "/user/alice/".into(),
            cmd: vec!["jupyterhub-singleuser".into()],
            env: BTreeMap::from([("JUPYTERHUB_API_TOKEN".into(), "s3cret-token".into())]),
            data_dir: PathBuf::from("/tmp"),
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("JUPYTERHUB_API_TOKEN"));
        assert!(!shown.contains("s3cret-token"));
    }
}
