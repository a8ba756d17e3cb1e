//! Helpers for the end-to-end tests: locating the hubfleet binary and the JupyterHub venv, free
//! ports, polling with a deadline, and child processes that take their descendants with them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// The `hubfleet` binary to test against.
///
/// `CARGO_BIN_EXE_hubfleet` only exists inside the `hubfleet` crate, so this crate takes the
/// binary from `HUBFLEET_BIN` when set, else `<workspace>/target/debug/hubfleet`. The workspace
/// test run (`scripts/test`, `cargo nextest run --workspace`) builds that binary before running
/// any test, because the `hubfleet` crate's own integration tests need it; when running this
/// crate alone, `cargo build -p hubfleet` first. Building it from inside a test would contend for
/// the cargo lock the running `cargo test` may hold, so the test fails with instructions instead.
pub fn hubfleet_bin() -> PathBuf {
    let path = std::env::var_os("HUBFLEET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/hubfleet"));
    assert!(
        path.is_file(),
        "no hubfleet binary at {}: run `cargo build -p hubfleet` or set HUBFLEET_BIN",
        path.display()
    );
    path
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/hubfleet-loadsim sits two levels below the workspace")
        .to_path_buf()
}

/// The venv holding stock JupyterHub `version` (created by `scripts/test`); `HUBFLEET_TEST_ENVS`
/// overrides `<workspace>/.cache/envs`.
pub fn jupyterhub_venv(version: &str) -> PathBuf {
    let envs = std::env::var_os("HUBFLEET_TEST_ENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/envs"));
    let venv = envs.join(format!("jh-{version}"));
    assert!(
        venv.join("bin/jupyterhub").is_file(),
        "no JupyterHub {version} venv at {}: run scripts/test once, or set HUBFLEET_TEST_ENVS",
        venv.display()
    );
    venv
}

/// configurable-http-proxy from npm under `<workspace>/.cache/node` (installed if absent).
pub fn configurable_http_proxy() -> PathBuf {
    let node_dir = workspace_root().join(".cache/node");
    let chp = node_dir.join("node_modules/.bin/configurable-http-proxy");
    if !chp.is_file() {
        std::fs::create_dir_all(&node_dir).expect("create .cache/node");
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund"])
            .arg("configurable-http-proxy@5.3.0")
            .current_dir(&node_dir)
            .status()
            .expect("run npm");
        assert!(
            status.success(),
            "npm install configurable-http-proxy failed"
        );
    }
    chp
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Polls `probe` until it returns true, panicking with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    while !probe().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Polls `url` until it answers 200.
pub async fn wait_for_200(what: &str, url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    wait_until(what, timeout, || async {
        matches!(client.get(url).send().await, Ok(response) if response.status().is_success())
    })
    .await;
}

/// A child process plus everything else that runs in `dir` (proxies, single-user servers the
/// hub leaves running by design): all are killed on drop.
pub struct HubProcess {
    child: Child,
    dir: PathBuf,
}

impl HubProcess {
    pub fn spawn(mut command: Command, dir: &Path, log_name: &str) -> HubProcess {
        let log = std::fs::File::create(dir.join(log_name)).expect("create log file");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = command.spawn().expect("start the hub");
        HubProcess {
            child,
            dir: dir.to_owned(),
        }
    }

    /// The hub's log so far, for assertion messages.
    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.join(log_name)).unwrap_or_default()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_processes_in(&self.dir);
    }
}

/// Kills every process whose working directory is under `dir` or whose command line mentions it.
fn kill_processes_in(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cwd.starts_with(dir) || String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Returns a random-looking hex string good enough for throwaway test tokens.
pub fn test_token(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{label}-{nanos:032x}{:08x}", std::process::id())
}
