//! Shared helpers for the end-to-end tests: locating binaries and venvs, free ports, polling waits,
//! child processes that clean up after themselves, memory readings from /proc, a scripted browser,
//! a Jupyter kernel WebSocket client and a stock JupyterHub to compare against.

// Each test module uses a different subset of these helpers.
#![allow(
    dead_code,
    unused_imports,
    reason = "shared test support; not every helper is used by every module"
)]

mod browser;
pub mod oidc;
mod process;
mod proxy_process;
pub mod standin;
mod stock_hub;
pub mod test_hub;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use browser::{Browser, KernelError, KernelSocket, hidden_input_value};
pub use process::{ProcessGuard, descendant_pids};
pub use proxy_process::HubfleetProxy;
pub use stock_hub::{STOCK_HUB_PASSWORD, StockJupyterHub, chp_path};

/// The `hubfleet` binary Cargo built for this test run.
pub fn hubfleet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hubfleet"))
}

/// The Cargo workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/hubfleet has a workspace two levels up")
        .to_path_buf()
}

/// The directory holding the Python venvs with the stock packages, `jh-<version>` each.
/// `HUBFLEET_TEST_ENVS` overrides the default `<workspace>/.cache/envs`.
pub fn envs_dir() -> PathBuf {
    match std::env::var_os("HUBFLEET_TEST_ENVS") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join(".cache").join("envs"),
    }
}

/// The venv with `jupyterhub==<version>` and JupyterLab installed.
///
/// Panics, naming the script that creates it, when it is absent.
pub fn singleuser_venv(version: &str) -> PathBuf {
    let venv = envs_dir().join(format!("jh-{version}"));
    let singleuser = venv.join("bin").join("jupyterhub-singleuser");
    assert!(
        singleuser.is_file(),
        "the Python venv {} (jupyterhub {version} + jupyterlab) is missing: \
         run the project's test script `.ci/run` (it creates <workspace>/.cache/envs/jh-<version>), \
         or point HUBFLEET_TEST_ENVS at a directory holding jh-{version}",
        venv.display()
    );
    venv
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process could take it; tests bind it
/// promptly, and the chance of a clash among ephemeral ports is small.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
        .port()
}

/// Polls `probe` with a short, growing backoff until it yields `Some`, or panics naming `what`
/// once `timeout` has passed.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(Duration::from_millis(250));
    }
}

/// Installs ring as rustls' process-wide crypto provider (reqwest is built without one).
pub fn install_crypto_provider() {
    // An error only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resident set size of `pid` in KiB (`VmRSS` in /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` in KiB since it started (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in {path}"))
}
