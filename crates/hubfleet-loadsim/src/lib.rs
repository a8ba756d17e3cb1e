//! hubfleet-loadsim: a load simulator for hubs. A [`Scenario`] says how many users arrive over
//! what window and what each does; [`run`] drives any hub URL (hubfleet or stock JupyterHub) with
//! simulated browsers — log in, start a server, open JupyterLab, run a cell over a kernel
//! WebSocket, idle, stop — and returns a [`Report`] of per-phase latency percentiles, retries and
//! failures.
//!
//! `assets/lightweight-singleuser.py` is a stand-in for `jupyterhub-singleuser` that does the
//! hub-facing protocol (readiness, OAuth) without JupyterLab, so hundreds of servers fit on one
//! machine; scenarios against it set `kernel: false`.

mod error;
pub mod process_usage;
mod report;
mod run;
mod scenario;
mod user;

pub use error::{RunError, ScenarioError};
pub use report::{Failure, FailureCount, Phase, PhaseStats, Report, UserOutcome, percentile};
pub use run::{RunOptions, hub_base_url, run};
pub use scenario::{Arrival, Distribution, PRESET_NAMES, Password, Scenario, parse_duration};

/// The path of the lightweight single-user stand-in script inside this crate's sources.
pub fn standin_script_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("lightweight-singleuser.py")
}

/// reqwest is built without a default TLS crypto provider (the workspace uses ring everywhere);
/// install it once so `https://` hub URLs work.
pub fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Looks up a built-in scenario by name.
pub fn preset(name: &str) -> Result<Scenario, ScenarioError> {
    Scenario::preset(name).ok_or_else(|| ScenarioError::UnknownPreset(name.to_owned()))
}
