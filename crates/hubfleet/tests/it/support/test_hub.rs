//! [`TestHub`]: a `hubfleet serve` process with its own data directory, ports and config, for
//! end-to-end tests. Dropping it kills the hub and everything it started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{Browser, ProcessGuard, free_port, hubfleet_bin, singleuser_venv, wait_for};

pub const PASSWORD: &str = "correct horse battery";
/// A service token with admin rights, for checking state through the REST API.
pub const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(90);

/// A `hubfleet serve` process with its own data directory and ports. Dropping it kills the hub
/// and everything it started (proxy, user servers, kernels) and removes the Unix accounts the
/// spawner created for the test's users.
/// Everything a test may vary about the generated config.
pub struct HubOptions<'a> {
    /// Hub users the test logs in; their Unix accounts are removed on drop.
    pub users: &'a [&'a str],
    /// Which stock single-user venv to use when `cmd` is `None`.
    pub jupyterhub: &'a str,
    pub cmd: Option<Vec<String>>,
    /// Extra lines for the `spawner:` section, each indented by two spaces and ending in `\n`.
    pub spawner_yaml: &'a str,
    /// Extra entries for the `services:` list (each starting `  - name: …`).
    pub services_yaml: &'a str,
    /// Extra top-level YAML.
    pub extra_yaml: &'a str,
    /// Extra lines for the `hub:` section, each indented by two spaces and ending in `\n`.
    pub hub_yaml: &'a str,
    /// `auth.admin_users`: these users get the admin role when they log in.
    pub admin_users: &'a [&'a str],
    /// Replaces the whole generated `auth:` section (shared password, `admin_users`) when set;
    /// starts with `auth:\n`.
    pub auth_yaml: Option<&'a str>,
}

impl Default for HubOptions<'_> {
    fn default() -> Self {
        HubOptions {
            users: &[],
            jupyterhub: "6.1.1",
            cmd: None,
            spawner_yaml: "",
            services_yaml: "",
            extra_yaml: "",
            hub_yaml: "",
            admin_users: &[],
            auth_yaml: None,
        }
    }
}

pub struct TestHub {
    hub: Option<ProcessGuard>,
    config_path: PathBuf,
    pub data_dir: PathBuf,
    pub public_url: String,
    /// The hub's database, for tests that check what is (no longer) stored.
    pub db_url: String,
    proxy_api_port: u16,
    users: Vec<String>,
    _dir: tempfile::TempDir,
}

impl TestHub {
    pub async fn start(users: &[&str]) -> TestHub {
        Self::start_with(users, "6.1.1", None).await
    }

    pub async fn start_with(users: &[&str], jupyterhub: &str, cmd: Option<Vec<String>>) -> TestHub {
        Self::start_with_extra(users, jupyterhub, cmd, "").await
    }

    /// Like [`TestHub::start_with`], with `extra_yaml` appended to the generated config.
    pub async fn start_with_extra(
        users: &[&str],
        jupyterhub: &str,
        cmd: Option<Vec<String>>,
        extra_yaml: &str,
    ) -> TestHub {
        Self::start_with_options(HubOptions {
            users,
            jupyterhub,
            cmd,
            extra_yaml,
            ..HubOptions::default()
        })
        .await
    }

    pub async fn start_with_options(options: HubOptions<'_>) -> TestHub {
        let HubOptions {
            users,
            jupyterhub,
            cmd,
            spawner_yaml,
            services_yaml,
            extra_yaml,
            hub_yaml,
            admin_users,
            auth_yaml,
        } = options;
        let default_auth = format!(
            "auth:\n  kind: shared-password\n  shared_password: \"{PASSWORD}\"\n  admin_users: {}\n",
            serde_json::to_string(admin_users).expect("json")
        );
        let auth_yaml = auth_yaml.unwrap_or(&default_auth);
        super::install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("hubfleet-hub-it-")
            .tempdir()
            .expect("tempdir");
        // Single-user servers run as other Unix accounts; they must be able to reach their homes.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod tempdir");
        let data_dir = dir.path().join("data");
        let (public, hub, api) = (free_port(), free_port(), free_port());
        let cmd = cmd.unwrap_or_else(|| {
            vec![
                singleuser_venv(jupyterhub)
                    .join("bin/jupyterhub-singleuser")
                    .to_string_lossy()
                    .into_owned(),
            ]
        });
        let config = format!(
            r#"listen: 127.0.0.1:{public}
data_dir: {data}
hub:
  listen: 127.0.0.1:{hub}
{hub_yaml}proxy:
  api_listen: 127.0.0.1:{api}
{auth_yaml}spawner:
  cmd: {cmd}
  start_timeout: 60s
  http_timeout: 60s
{spawner_yaml}services:
  - name: test-admin
    api_token: "{ADMIN_TOKEN}"
    admin: true
{services_yaml}{extra_yaml}"#,
            data = data_dir.display(),
            cmd = serde_json::to_string(&cmd).expect("json"),
        );
        let (db_yaml, db_url) = match database() {
            Some(url) => (format!("db:\n  url: \"{url}\"\n"), url),
            None => (
                String::new(),
                format!("sqlite://{}", data_dir.join("hubfleet.sqlite").display()),
            ),
        };
        let config = config + &db_yaml;
        let config_path = dir.path().join("hubfleet.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut test_hub = TestHub {
            hub: None,
            config_path,
            data_dir,
            public_url: format!("http://127.0.0.1:{public}"),
            db_url,
            proxy_api_port: api,
            users: users.iter().map(|u| u.to_string()).collect(),
            _dir: dir,
        };
        test_hub.launch().await;
        test_hub
    }

    /// Starts `hubfleet serve` and waits until the hub answers through the proxy.
    pub async fn launch(&mut self) {
        let mut command = Command::new(hubfleet_bin());
        command.arg("serve").arg("--config").arg(&self.config_path);
        let hub = std::sync::Mutex::new(ProcessGuard::spawn("hubfleet-serve", command));
        let url = format!("{}/hub/api", self.public_url);
        wait_for(
            "the hub to answer through the proxy",
            Duration::from_secs(30),
            || async {
                let exited = hub.lock().expect("not poisoned").try_exit_status();
                if let Some(status) = exited {
                    let log = hub.lock().expect("not poisoned").log_tail();
                    panic!("hubfleet serve exited with {status}:\n{log}");
                }
                let response = reqwest::get(&url).await.ok()?;
                (response.status() == StatusCode::OK).then_some(())
            },
        )
        .await;
        self.hub = Some(hub.into_inner().expect("not poisoned"));
    }

    pub fn kill_hub(&mut self) {
        if let Some(mut hub) = self.hub.take() {
            hub.kill();
            // The guard would kill the orphans (our user servers) when dropped; keep them alive.
            std::mem::forget(hub);
        }
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.public_url)
    }

    pub async fn api(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(method, format!("{}/hub/api{path}", self.public_url))
            .header("Authorization", format!("token {ADMIN_TOKEN}"))
            .send()
            .await
            .expect("hub API request")
    }

    /// The proxy's routing table, read through its CHP API with the token the hub keeps.
    pub async fn proxy_routes(&self) -> Value {
        let token =
            std::fs::read_to_string(self.data_dir.join("proxy-token")).expect("proxy token");
        reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/routes",
                self.proxy_api_port
            ))
            .header("Authorization", format!("token {}", token.trim()))
            .send()
            .await
            .expect("proxy API")
            .json()
            .await
            .expect("routes JSON")
    }

    /// The upstream address of `user`'s server, from the proxy's table.
    pub async fn server_target(&self, user: &str) -> Option<String> {
        let routes = self.proxy_routes().await;
        routes[format!("/user/{user}")]["target"]
            .as_str()
            .map(String::from)
    }
}

/// `HUBFLEET_TEST_DB=postgres` runs the end-to-end tests on PostgreSQL: each hub gets a fresh
/// database in the cluster at `HUBFLEET_TEST_POSTGRES_URL` (the project's test script starts one).
/// Returns its URL; `None` means the default SQLite database in the data directory.
fn database() -> Option<String> {
    if std::env::var("HUBFLEET_TEST_DB").as_deref() != Ok("postgres") {
        return None;
    }
    let server = std::env::var("HUBFLEET_TEST_POSTGRES_URL")
        .expect("HUBFLEET_TEST_DB=postgres needs HUBFLEET_TEST_POSTGRES_URL");
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "hubfleet_it_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let status = Command::new("psql")
        .args([&server, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("run psql");
    assert!(status.success(), "creating database {name}");
    let (base, _) = server.rsplit_once('/').expect("URL has a database path");
    Some(format!("{base}/{name}"))
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.hub.take();
        kill_processes_under(&self.data_dir);
        for user in &self.users {
            let _ = Command::new("userdel")
                .arg(format!("hf-{user}"))
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Kills every process whose working directory or command line mentions `dir` (the proxy gets
/// `--pid-file <data_dir>/…`; servers and kernels run in homes under the data directory).
fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let mut killed = Vec::new();
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
            killed.push(pid);
        }
    }
    // `userdel` refuses accounts that still own processes, so wait until they are gone
    // (a zombie's reaper is init, which is prompt; the deadline only bounds a wedged kernel).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while killed.iter().any(|pid| is_alive(*pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
