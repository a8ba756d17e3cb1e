//! Services. Those in the configuration are registered in the database at every start (with
//! their token and OAuth client); those created at runtime through the REST API
//! (`POST /services/{name}`, JupyterHub 5) live only in the database, so they survive restarts;
//! the proxy routes both to their `url`.
//!
//! Hub-managed services (configured with a `command`) are processes the hub starts with the
//! `JUPYTERHUB_SERVICE_*` environment and the service's token, keeps running, and — like user
//! servers — leaves running across a hub restart. A restarted hub re-adopts a service process it
//! finds through the pid file, if that pid still runs the same command line. Runtime services are
//! never managed, as in JupyterHub.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use hubfleet_config::ServiceConfig;
use hubfleet_core::token::hash_token;
use hubfleet_store::{NewService, NewToken, OAuthClient, Service, ServiceCredentials, TokenOwner};

use crate::HubError;
use crate::state::AppState;

/// Environment variables a service inherits from the hub; everything else is set explicitly.
const ENV_KEEP: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "PYTHONPATH",
    "VIRTUAL_ENV",
];

#[derive(Default)]
pub(crate) struct ManagedServices {
    /// Processes this hub process started (so it can reap them); adopted ones are tracked by pid.
    children: Mutex<HashMap<String, Child>>,
}

pub(crate) fn oauth_client_id(service: &str) -> String {
    format!("service-{service}")
}

pub(crate) fn service_prefix(state: &AppState, service: &str) -> String {
    format!("{}services/{service}/", state.config.base_url)
}

/// The access scope every service's OAuth client may grant: entry to the service itself.
fn access_scope(service: &str) -> String {
    format!("access:services!service={service}")
}

/// The configuration's entry for a service, if it is a configured one.
pub(crate) fn configured<'a>(state: &'a AppState, name: &str) -> Option<&'a ServiceConfig> {
    state.config.services.iter().find(|s| s.name == name)
}

/// Registers the configured services in the database: record, token (replacing earlier ones)
/// and OAuth client. Like JupyterHub's `init_services`, a configured service whose name a runtime
/// service already holds is skipped with an error, and services that came from an earlier
/// configuration but are no longer in it are deleted with their credentials.
pub(crate) async fn register(state: &AppState) -> Result<(), HubError> {
    for service in &state.config.services {
        let client_id = service
            .api_token
            .as_ref()
            .map(|_| oauth_client_id(&service.name));
        let record = NewService {
            url: service.url.clone(),
            oauth_client_id: client_id.clone(),
            oauth_no_confirm: service.oauth_no_confirm,
            ..NewService::from_config(&service.name, service.admin)
        };
        let Some(record) = state.store.upsert_config_service(&record).await? else {
            tracing::error!(
                service = %service.name,
                "a service created through the REST API has this name; ignoring the configured one"
            );
            continue;
        };
        state.store.delete_service_tokens(record.id).await?;
        if let (Some(token), Some(client_id)) = (&service.api_token, client_id) {
            // The token is also the service's OAuth client secret, as in JupyterHub.
            let prefix = service_prefix(state, &service.name);
            state
                .store
                .upsert_oauth_client(&OAuthClient {
                    identifier: client_id,
                    secret_hash: hash_token(token.expose()),
                    redirect_uri: format!("{prefix}oauth_callback"),
                    description: format!("service {}", service.name),
                    allowed_scopes: vec![access_scope(&service.name)],
                })
                .await?;
            state
                .store
                .insert_token(&NewToken {
                    hash: hash_token(token.expose()),
                    owner: TokenOwner::Service(record.id),
                    scopes: vec!["inherit".to_string()],
                    note: "from the configuration".to_string(),
                    created: hubfleet_types::now(),
                    expires_at: None,
                    session_id: None,
                    oauth_client_id: None,
                })
                .await?;
        }
    }
    for stale in state.store.list_services().await? {
        if stale.from_config && configured(state, &stale.name).is_none() {
            tracing::info!(service = %stale.name, "deleting a service no longer in the configuration");
            state.store.delete_service(&stale.name).await?;
            // Rows from before version 7 of the schema do not name their client.
            state
                .store
                .delete_oauth_client(&oauth_client_id(&stale.name))
                .await?;
        }
    }
    Ok(())
}

/// Every service the proxy should route: `(prefix, url, name)`.
pub(crate) async fn routed(state: &AppState) -> Result<Vec<(String, String, String)>, HubError> {
    Ok(state
        .store
        .list_services()
        .await?
        .into_iter()
        .filter_map(|service| {
            let url = service.url?;
            Some((service_prefix(state, &service.name), url, service.name))
        })
        .collect())
}

/// A service to create at runtime, validated by the REST API handler.
pub(crate) struct RuntimeService {
    pub record: NewService,
    /// The service's API token (also its OAuth client secret), if it was given one.
    pub api_token: Option<String>,
    /// Where the OAuth client redirects; `Some` exactly when the service uses OAuth.
    pub oauth_redirect_uri: Option<String>,
}

/// Creates a runtime service: the record, its token and OAuth client in one transaction, then
/// its route. A route that cannot be added now is added by the next route sync.
pub(crate) async fn create_runtime(
    state: &AppState,
    service: RuntimeService,
) -> Result<Service, HubError> {
    let RuntimeService {
        record,
        api_token,
        oauth_redirect_uri,
    } = service;
    let token_hash = api_token.as_deref().map(hash_token);
    let oauth_client = match (&record.oauth_client_id, oauth_redirect_uri) {
        (Some(identifier), Some(redirect_uri)) => {
            let mut allowed_scopes = record.oauth_client_allowed_scopes.clone();
            allowed_scopes.push(access_scope(&record.name));
            allowed_scopes.sort();
            allowed_scopes.dedup();
            Some(OAuthClient {
                identifier: identifier.clone(),
                // Without a token nobody holds the secret, so the client cannot redeem codes;
                // a random one keeps the column meaningful (JupyterHub stores none).
                secret_hash: token_hash
                    .clone()
                    .unwrap_or_else(|| hash_token(&hubfleet_core::token::generate_token())),
                redirect_uri,
                description: format!("service {}", record.name),
                allowed_scopes,
            })
        }
        _ => None,
    };
    let created = state
        .store
        .create_runtime_service(
            &record,
            ServiceCredentials {
                token_hash: token_hash.as_deref(),
                oauth_client: oauth_client.as_ref(),
            },
            hubfleet_types::now(),
        )
        .await?;
    tracing::info!(service = %created.name, url = ?created.url, "created a service through the REST API");
    if let Some(url) = &created.url {
        let prefix = service_prefix(state, &created.name);
        if let Err(error) = state
            .proxy
            .add_service_route(&prefix, url, &created.name)
            .await
        {
            tracing::warn!(service = %created.name, %error, "adding the route of a new service; the next route sync retries");
        }
    }
    Ok(created)
}

/// Deletes a runtime service with its token, OAuth client (and the tokens it issued) and route.
/// [`HubError::NotFound`] for an unknown service, [`HubError::NotModifiable`] for a configured one.
pub(crate) async fn delete_runtime(state: &AppState, name: &str) -> Result<(), HubError> {
    let missing = || HubError::NotFound(format!("Service {name} does not exist"));
    let service = state.store.get_service(name).await?.ok_or_else(missing)?;
    if service.from_config {
        return Err(HubError::NotModifiable(format!(
            "Service {name} is not modifiable at runtime"
        )));
    }
    let deleted = state
        .store
        .delete_service(name)
        .await?
        .ok_or_else(missing)?;
    tracing::info!(service = %name, "deleted a service through the REST API");
    if deleted.url.is_some() {
        let prefix = service_prefix(state, name);
        if let Err(error) = state.proxy.delete_route(&prefix).await {
            tracing::warn!(service = %name, %error, "deleting the route of a deleted service; the next route sync retries");
        }
    }
    Ok(())
}

fn pid_file(state: &AppState, service: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("services")
        .join(format!("{service}.pid"))
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie has exited; it only waits to be reaped.
    if status
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
    )
}

/// True when `pid` runs `command` (the pid file may point at a recycled pid). A script started
/// through its shebang shows up as `interpreter script args…`, so the program is looked for among
/// the leading arguments by file name, and the arguments must match exactly.
fn runs(pid: u32, command: &[String]) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    let name = Path::new(program).file_name();
    cmdline(pid).is_some_and(|running| {
        running.ends_with(args)
            && running[..running.len() - args.len()]
                .iter()
                .any(|arg| Path::new(arg).file_name() == name)
    })
}

impl ManagedServices {
    /// Starts every managed service that is not running; returns the names it (re)started.
    pub async fn ensure_running(&self, state: &AppState) -> Vec<String> {
        let mut started = Vec::new();
        for service in state.config.services.iter().filter(|s| s.command.is_some()) {
            match self.ensure_one(state, service) {
                Ok(true) => started.push(service.name.clone()),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(service = %service.name, %error, "starting managed service")
                }
            }
        }
        started
    }

    fn ensure_one(&self, state: &AppState, service: &ServiceConfig) -> Result<bool, HubError> {
        let command = service.command.as_deref().unwrap_or_default();
        let mut children = self.children.lock().expect("managed services poisoned");
        if let Some(child) = children.get_mut(&service.name) {
            match child.try_wait() {
                Ok(None) => return Ok(false),
                Ok(Some(status)) => {
                    tracing::warn!(service = %service.name, %status, "managed service exited; restarting");
                    children.remove(&service.name);
                }
                Err(error) => {
                    return Err(HubError::Internal(format!(
                        "polling {}: {error}",
                        service.name
                    )));
                }
            }
        } else if let Some(pid) = std::fs::read_to_string(pid_file(state, &service.name))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            && runs(pid, command)
        {
            // Started by an earlier hub process and still running: adopt it.
            return Ok(false);
        }
        let child = launch(state, service)?;
        let pid_path = pid_file(state, &service.name);
        std::fs::write(&pid_path, child.id().to_string())
            .map_err(|e| HubError::Internal(format!("writing {}: {e}", pid_path.display())))?;
        tracing::info!(service = %service.name, pid = child.id(), "started managed service");
        children.insert(service.name.clone(), child);
        Ok(true)
    }
}

fn launch(state: &AppState, service: &ServiceConfig) -> Result<Child, HubError> {
    let command = service.command.as_deref().unwrap_or_default();
    let work_dir = state.config.data_dir.join("services").join(&service.name);
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| HubError::Internal(format!("creating {}: {e}", work_dir.display())))?;
    let log_path = state
        .config
        .data_dir
        .join("logs")
        .join(format!("service-{}.log", service.name));
    let log = open_log(&log_path)?;
    let log_err = log
        .try_clone()
        .map_err(|e| HubError::Internal(format!("duplicating {}: {e}", log_path.display())))?;
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .current_dir(&work_dir)
        .env_clear()
        .envs(
            ENV_KEEP
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .envs(service_env(state, service))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group, so that signals for the hub do not reach it: services survive hub
    // restarts like user servers do.
    std::os::unix::process::CommandExt::process_group(&mut process, 0);
    process.spawn().map_err(|e| {
        HubError::Internal(format!(
            "starting service {} ({}): {e}",
            service.name, command[0]
        ))
    })
}

fn open_log(path: &Path) -> Result<std::fs::File, HubError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HubError::Internal(format!("opening {}: {e}", path.display())))
}

/// The environment JupyterHub gives a hub-managed service (`services/service.py`).
fn service_env(state: &AppState, service: &ServiceConfig) -> BTreeMap<String, String> {
    let mut env = service.environment.clone();
    let access =
        serde_json::json!([format!("access:services!service={}", service.name)]).to_string();
    let prefix = service_prefix(state, &service.name);
    for (key, value) in [
        ("JUPYTERHUB_SERVICE_NAME", service.name.clone()),
        (
            "JUPYTERHUB_API_TOKEN",
            service
                .api_token
                .as_ref()
                .map(|t| t.expose().to_string())
                .unwrap_or_default(),
        ),
        ("JUPYTERHUB_CLIENT_ID", oauth_client_id(&service.name)),
        ("JUPYTERHUB_HOST", String::new()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("{prefix}oauth_callback"),
        ),
        ("JUPYTERHUB_OAUTH_SCOPES", access.clone()),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_string()),
        ("JUPYTERHUB_API_URL", state.hub_api_url.clone()),
        ("JUPYTERHUB_BASE_URL", state.config.base_url.clone()),
        // Public URLs only with `public_url` configured, and the service's only with a route.
        (
            "JUPYTERHUB_PUBLIC_URL",
            service
                .url
                .as_ref()
                .and_then(|_| state.public_url(&prefix))
                .unwrap_or_default(),
        ),
        (
            "JUPYTERHUB_PUBLIC_HUB_URL",
            state.public_url(&state.hub_prefix).unwrap_or_default(),
        ),
    ] {
        env.insert(key.to_string(), value);
    }
    if let Some(url) = &service.url {
        env.insert("JUPYTERHUB_SERVICE_URL".into(), url.clone());
        env.insert("JUPYTERHUB_SERVICE_PREFIX".into(), prefix);
    }
    env
}
