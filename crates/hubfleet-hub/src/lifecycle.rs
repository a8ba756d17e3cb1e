//! The server lifecycle: spawn (token, OAuth client, spawner, readiness, route), stop, and the
//! reconciliation that lets a restarted hub re-adopt what the previous process left running.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{NewToken, OAuthClient, Server, ServerStatus, TokenOwner, User};
use hubfleet_types::{
    PollStatus, ProgressSink, ServerName, SpawnRequest, SpawnedServer, SpawnerState,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::HubError;
use crate::metrics::Timed;
use crate::queue::{QueuePosition, Ticket};
use crate::state::AppState;

/// How often running servers are polled, the proxy is checked, and proxy activity is collected.
const POLL_INTERVAL: Duration = Duration::from_secs(10);
const PROXY_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 40;

/// Progress of one spawn, as the progress event stream replays it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressLog {
    /// JupyterHub-shaped events (`{"progress": n, "message": …}`), including the final one.
    pub events: Vec<serde_json::Value>,
    pub finished: bool,
    pub failed: bool,
}

type ServerKey = (i64, String);

/// Spawns in flight (and the last failed one per server, so the pending page can show why).
#[derive(Default)]
pub(crate) struct SpawnTracker {
    spawns: Mutex<HashMap<ServerKey, TrackedSpawn>>,
}

struct TrackedSpawn {
    progress: watch::Sender<ProgressLog>,
    task: Option<tokio::task::AbortHandle>,
}

impl SpawnTracker {
    pub fn subscribe(&self, user_id: i64, server: &str) -> Option<watch::Receiver<ProgressLog>> {
        let spawns = self.spawns.lock().expect("spawn tracker poisoned");
        spawns
            .get(&(user_id, server.to_string()))
            .map(|spawn| spawn.progress.subscribe())
    }

    fn forget(&self, user_id: i64, server: &str) -> Option<tokio::task::AbortHandle> {
        let mut spawns = self.spawns.lock().expect("spawn tracker poisoned");
        spawns
            .remove(&(user_id, server.to_string()))
            .and_then(|spawn| spawn.task)
    }
}

fn push_event(progress: &watch::Sender<ProgressLog>, event: serde_json::Value) {
    progress.send_modify(|log| log.events.push(event));
}

pub(crate) fn client_id(user: &str, server: &str) -> String {
    let user = crate::pages::url_escape(user);
    if server.is_empty() {
        format!("jupyterhub-user-{user}")
    } else {
        format!(
            "jupyterhub-user-{user}-{}",
            crate::pages::url_escape(server)
        )
    }
}

fn access_scope(user: &str, server: &str) -> String {
    format!("access:servers!server={user}/{server}")
}

/// Starts `user`'s server `name` in the background and returns its progress.
/// A spawn already in flight is returned as is.
pub(crate) async fn start_server(
    state: &Arc<AppState>,
    user: &User,
    name: &ServerName,
    user_options: serde_json::Value,
) -> Result<watch::Receiver<ProgressLog>, HubError> {
    let key = (user.id, name.as_str().to_string());
    {
        let spawns = state.spawns.spawns.lock().expect("spawn tracker poisoned");
        if let Some(spawn) = spawns.get(&key)
            && !spawn.progress.borrow().finished
        {
            return Ok(spawn.progress.subscribe());
        }
    }
    let ticket = state.queue.join().map_err(|full| {
        state.metrics.spawn_refused("queue-full");
        HubError::QueueFull {
            waiting: full.waiting,
            retry_after_seconds: full.retry_after_seconds,
        }
    })?;
    let server = state
        .store
        .begin_spawn(user.id, name, &user_options)
        .await?;
    let (progress, receiver) = watch::channel(ProgressLog::default());
    push_event(
        &progress,
        serde_json::json!({"progress": 0, "message": "Server requested"}),
    );
    let task = tokio::spawn(run_spawn(
        Arc::clone(state),
        user.clone(),
        server,
        progress.clone(),
        ticket,
    ));
    state
        .spawns
        .spawns
        .lock()
        .expect("spawn tracker poisoned")
        .insert(
            key,
            TrackedSpawn {
                progress,
                task: Some(task.abort_handle()),
            },
        );
    Ok(receiver)
}

async fn run_spawn(
    state: Arc<AppState>,
    user: User,
    server: Server,
    progress: watch::Sender<ProgressLog>,
    ticket: Ticket,
) {
    let requested = Instant::now();
    let mut waited = false;
    let slot = ticket
        .admitted(|place| {
            waited = true;
            push_event(&progress, queue_event(place));
        })
        .await;
    if waited {
        push_event(
            &progress,
            serde_json::json!({"progress": 5, "message": "Your turn: starting your server", "queue_position": 0}),
        );
    }
    let queue_wait = requested.elapsed();
    let started = Instant::now();
    let prefix = state.server_prefix(user.name.as_str(), server.name.as_str());
    let outcome = spawn_steps(&state, &user, &server, &prefix, &progress).await;
    let reason = outcome.as_ref().err().map(|failure| failure.reason);
    state
        .metrics
        .spawn_finished(reason, started.elapsed(), queue_wait);
    slot.finish(outcome.is_ok());
    match outcome {
        Ok(()) => {
            // Watchers keep their receiver (and the final event); the hub keeps nothing per
            // running server in memory.
            let _ = state.spawns.forget(user.id, server.name.as_str());
            tracing::info!(
                user = %user.name,
                server = %server.name,
                seconds = started.elapsed().as_secs_f64(),
                "server ready"
            );
            progress.send_modify(|log| {
                log.events.push(serde_json::json!({
                    "progress": 100,
                    "ready": true,
                    "message": format!("Server ready at {prefix}"),
                    "html_message": format!("Server ready at <a href=\"{prefix}\">{prefix}</a>"),
                    "url": prefix,
                }));
                log.finished = true;
            });
        }
        Err(failure) => {
            tracing::warn!(user = %user.name, server = %server.name, error = %failure.message, "spawn failed");
            cleanup_server(&state, &user, &server.name).await;
            let html = match &failure.log_tail {
                Some(tail) => format!(
                    "Spawn failed: {}<pre class=\"log\">{}</pre>",
                    crate::pages::html_escape(&failure.message),
                    crate::pages::html_escape(tail)
                ),
                None => format!(
                    "Spawn failed: {}",
                    crate::pages::html_escape(&failure.message)
                ),
            };
            progress.send_modify(|log| {
                log.events.push(serde_json::json!({
                    "progress": 100,
                    "failed": true,
                    "message": format!("Spawn failed: {}", failure.message),
                    "html_message": html,
                }));
                log.finished = true;
                log.failed = true;
            });
        }
    }
}

/// The progress event for a spawn waiting in the queue (JupyterHub's shape plus queue fields).
fn queue_event(place: QueuePosition) -> serde_json::Value {
    let wait = match place.estimated_wait_seconds {
        Some(seconds) => format!(" (about {} to wait)", human_seconds(seconds)),
        None => String::new(),
    };
    serde_json::json!({
        "progress": 0,
        "message": format!(
            "The hub is starting other servers. You are number {} in the queue{wait}.",
            place.position
        ),
        "queue_position": place.position,
        "queue_eta_seconds": place.estimated_wait_seconds,
    })
}

fn human_seconds(seconds: u64) -> String {
    match seconds {
        0..=90 => format!("{seconds} s"),
        _ => format!("{} min", seconds.div_ceil(60)),
    }
}

struct SpawnFailure {
    message: String,
    log_tail: Option<String>,
    /// The `reason` label of the spawn-duration metric.
    reason: &'static str,
}

impl From<HubError> for SpawnFailure {
    fn from(value: HubError) -> Self {
        SpawnFailure {
            message: value.public().1,
            log_tail: None,
            reason: "error",
        }
    }
}

async fn spawn_steps(
    state: &AppState,
    user: &User,
    server: &Server,
    prefix: &str,
    progress: &watch::Sender<ProgressLog>,
) -> Result<(), SpawnFailure> {
    let name = user.name.as_str();
    let server_name = server.name.as_str();
    let client_id = client_id(name, server_name);
    let api_token = generate_token();
    let access = access_scope(name, server_name);
    state
        .store
        .upsert_oauth_client(&OAuthClient {
            identifier: client_id.clone(),
            secret_hash: hash_token(&api_token),
            redirect_uri: format!("{prefix}oauth_callback"),
            description: format!("Server at {prefix}"),
            allowed_scopes: vec![access.clone()],
        })
        .await
        .map_err(HubError::from)?;
    state
        .store
        .insert_token(&NewToken {
            hash: hash_token(&api_token),
            owner: TokenOwner::User(user.id),
            scopes: vec![access.clone(), format!("users:activity!user={name}")],
            note: format!("Server at {prefix}"),
            created: hubfleet_types::now(),
            expires_at: None,
            session_id: None,
            // Tied to the server's OAuth client so that deleting the client at stop revokes it.
            oauth_client_id: Some(client_id.clone()),
        })
        .await
        .map_err(HubError::from)?;

    let auth_state = crate::oauth_login::auth_state_for_spawn(state, user.id).await?;
    let mut env = single_user_env(
        state,
        name,
        server_name,
        prefix,
        &client_id,
        &api_token,
        &access,
    );
    crate::oauth_login::expand_auth_state_env(
        &mut env,
        &state.config.spawner.environment,
        auth_state.as_ref(),
    );
    let request = SpawnRequest {
        user: user.name.clone(),
        server_name: server.name.clone(),
        service_prefix: prefix.to_string(),
        cmd: state.single_user_cmd.clone(),
        env,
        data_dir: state.config.data_dir.clone(),
    };
    let mut attempt = 1;
    let launched = loop {
        match launch_and_wait(state, server, prefix, request.clone(), progress).await {
            Err(failure) if failure.reason == PORT_TAKEN && attempt < PORT_TAKEN_ATTEMPTS => {
                tracing::warn!(user = %user.name, server = %server.name, error = %failure.message, "starting again on another port");
                attempt += 1;
            }
            outcome => break outcome?,
        }
    };
    push_event(
        progress,
        serde_json::json!({"progress": 90, "message": "Adding the route"}),
    );
    add_route(state, prefix, &launched.url, name, server_name).await?;
    state
        .store
        .set_server_running(server.id)
        .await
        .map_err(HubError::from)?;
    Ok(())
}

/// The `reason` of a spawn whose port another process answered on.
const PORT_TAKEN: &str = "port-taken";
/// A taken port is bad luck, not a broken server: try a fresh port this many times in all.
const PORT_TAKEN_ATTEMPTS: u32 = 3;

/// Starts the server through the spawner and waits until it answers HTTP, stopping it if it does not.
async fn launch_and_wait(
    state: &AppState,
    server: &Server,
    prefix: &str,
    request: SpawnRequest,
    progress: &watch::Sender<ProgressLog>,
) -> Result<SpawnedServer, SpawnFailure> {
    let (sink, mut events) = ProgressSink::new();
    let forward = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                push_event(&progress, serde_json::to_value(event).unwrap_or_default());
            }
        })
    };
    let start_timeout = state.config.spawner.start_timeout;
    let launched = tokio::time::timeout(start_timeout, state.spawner.start(request, sink)).await;
    forward.abort();
    let launched = match launched {
        Err(_) => {
            return Err(SpawnFailure {
                message: format!("the spawner did not start the server within {start_timeout:?}"),
                log_tail: None,
                reason: "timeout",
            });
        }
        Ok(Err(error)) => {
            return Err(SpawnFailure {
                log_tail: error.log_tail().map(String::from),
                message: error.to_string(),
                reason: "failed",
            });
        }
        Ok(Ok(launched)) => launched,
    };
    state
        .store
        .set_server_launched(server.id, &launched.url, &launched.state)
        .await
        .map_err(HubError::from)?;
    push_event(
        progress,
        serde_json::json!({"progress": 60, "message": "Waiting for the server to answer"}),
    );
    if let Err(failure) = wait_up(state, &launched.url, prefix, &launched.state).await {
        let _ = state.spawner.stop(&launched.state).await;
        return Err(failure);
    }
    Ok(launched)
}

/// The environment `jupyterhub-singleuser` expects (JupyterHub's `Spawner.get_env`).
fn single_user_env(
    state: &AppState,
    user: &str,
    server: &str,
    prefix: &str,
    client_id: &str,
    api_token: &str,
    access: &str,
) -> BTreeMap<String, String> {
    let access_scopes =
        serde_json::json!([access, format!("access:servers!user={user}")]).to_string();
    let mut env: BTreeMap<String, String> = state.config.spawner.environment.clone();
    let escaped_user = crate::pages::url_escape(user);
    for (key, value) in [
        ("JUPYTERHUB_API_TOKEN", api_token.to_string()),
        ("JPY_API_TOKEN", api_token.to_string()),
        ("JUPYTERHUB_CLIENT_ID", client_id.to_string()),
        ("JUPYTERHUB_API_URL", state.hub_api_url.clone()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{}/users/{escaped_user}/activity", state.hub_api_url),
        ),
        ("JUPYTERHUB_BASE_URL", state.config.base_url.clone()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.to_string()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("{prefix}oauth_callback"),
        ),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access_scopes.clone()),
        ("JUPYTERHUB_OAUTH_SCOPES", access_scopes),
        (
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
            serde_json::json!([access]).to_string(),
        ),
        ("JUPYTERHUB_USER", user.to_string()),
        ("JUPYTERHUB_SERVER_NAME", server.to_string()),
        ("JUPYTERHUB_HOST", String::new()),
        // Public URLs only with `public_url` configured, as JupyterHub sets them.
        (
            "JUPYTERHUB_PUBLIC_URL",
            state.public_url(prefix).unwrap_or_default(),
        ),
        (
            "JUPYTERHUB_PUBLIC_HUB_URL",
            state.public_url(&state.hub_prefix).unwrap_or_default(),
        ),
        (
            "JUPYTERHUB_DEFAULT_URL",
            state.config.spawner.default_url.clone(),
        ),
        ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".to_string()),
    ] {
        env.insert(key.to_string(), value);
    }
    env
}

/// JupyterHub's `wait_up`: poll `<url><prefix>api` until it answers below 500, failing fast if the
/// process exits meanwhile, or if the answer came from another process holding the server's port.
async fn wait_up(
    state: &AppState,
    url: &str,
    prefix: &str,
    spawner_state: &SpawnerState,
) -> Result<(), SpawnFailure> {
    let probe_url = format!("{url}{prefix}api");
    let timeout = state.config.spawner.http_timeout;
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        match state.http.get(&probe_url).send().await {
            Ok(response) if response.status().as_u16() < 500 => {
                if state.spawner.answered_by_server(spawner_state).await {
                    return Ok(());
                }
                return Err(SpawnFailure {
                    message: format!(
                        "another process answered at {url}: it took the server's port before the server could listen on it"
                    ),
                    log_tail: None,
                    reason: PORT_TAKEN,
                });
            }
            _ => {}
        }
        if let PollStatus::Exited { code } = state.spawner.poll(spawner_state).await {
            let code = code.map_or_else(|| "unknown".to_string(), |c| c.to_string());
            return Err(SpawnFailure {
                message: format!(
                    "the server process exited (status {code}) before it answered HTTP"
                ),
                log_tail: state.spawner.log_tail(spawner_state, LOG_TAIL_LINES).await,
                reason: "exited",
            });
        }
        if Instant::now() > deadline {
            return Err(SpawnFailure {
                message: format!("the server did not answer HTTP within {timeout:?}"),
                log_tail: state.spawner.log_tail(spawner_state, LOG_TAIL_LINES).await,
                reason: "timeout",
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Stops `user`'s server `name` (cancelling a spawn in flight) and waits until it is gone.
pub(crate) async fn stop_server(
    state: &AppState,
    user: &User,
    name: &ServerName,
) -> Result<(), HubError> {
    if let Some(task) = state.spawns.forget(user.id, name.as_str()) {
        task.abort();
    }
    let Some(server) = state.store.get_server(user.id, name).await? else {
        return Ok(());
    };
    if server.status == ServerStatus::Stopped {
        return Ok(());
    }
    state.store.set_server_stopping(server.id).await?;
    let stop_started = Instant::now();
    let prefix = state.server_prefix(user.name.as_str(), name.as_str());
    delete_route(state, &prefix).await?;
    if server.url.is_some() {
        state
            .spawner
            .stop(&server.state)
            .await
            .map_err(|e| HubError::Internal(format!("stopping {}'s server: {e}", user.name)))?;
    }
    cleanup_server(state, user, name).await;
    state
        .metrics
        .timed(Timed::ServerStop, stop_started.elapsed(), true);
    tracing::info!(user = %user.name, server = %name, "server stopped");
    Ok(())
}

/// Revokes the server's credentials and marks it stopped. Best effort: each step logs its own
/// failure so that one broken step does not leave the others undone.
async fn cleanup_server(state: &AppState, user: &User, name: &ServerName) {
    let client = client_id(user.name.as_str(), name.as_str());
    if let Err(error) = state.store.delete_oauth_client(&client).await {
        tracing::error!(%error, user = %user.name, "revoking the server's OAuth client");
    }
    match state.store.get_server(user.id, name).await {
        Ok(Some(server)) => {
            if matches!(
                server.status,
                ServerStatus::Running | ServerStatus::Stopping
            ) {
                state.queue.server_stopped();
            }
            if let Err(error) = state.store.set_server_stopped(server.id).await {
                tracing::error!(%error, user = %user.name, "marking the server stopped");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, user = %user.name, "reading the server"),
    }
    if state.authenticator.is_ephemeral(&user.name) {
        remove_ephemeral_user(state, user).await;
    }
}

/// Deletes an ephemeral user (the `tmp` authenticator's) and what the spawner keeps for them (home
/// directory, Unix account) once none of their servers is active any more.
async fn remove_ephemeral_user(state: &AppState, user: &User) {
    match state.store.list_user_servers(user.id).await {
        Ok(servers) if servers.iter().all(|s| s.status == ServerStatus::Stopped) => {}
        Ok(_) => return,
        Err(error) => {
            tracing::error!(%error, user = %user.name, "listing an ephemeral user's servers");
            return;
        }
    }
    match state.store.delete_user(user.id).await {
        Ok(()) | Err(hubfleet_store::StoreError::NotFound) => {}
        Err(error) => {
            tracing::error!(%error, user = %user.name, "deleting an ephemeral user");
            return;
        }
    }
    match state
        .spawner
        .forget_user(&state.config.data_dir, &user.name)
        .await
    {
        Ok(()) => tracing::info!(user = %user.name, "ephemeral user and their files removed"),
        Err(error) => {
            tracing::error!(%error, user = %user.name, "removing an ephemeral user's files")
        }
    }
}

async fn add_route(
    state: &AppState,
    prefix: &str,
    target: &str,
    user: &str,
    server: &str,
) -> Result<(), HubError> {
    let started = Instant::now();
    let result = state.proxy.add_route(prefix, target, user, server).await;
    state
        .metrics
        .timed(Timed::ProxyAdd, started.elapsed(), result.is_ok());
    result
}

async fn delete_route(state: &AppState, prefix: &str) -> Result<(), HubError> {
    let started = Instant::now();
    let result = state.proxy.delete_route(prefix).await;
    state
        .metrics
        .timed(Timed::ProxyDelete, started.elapsed(), result.is_ok());
    result
}

/// What a restarted hub found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StartupReport {
    pub adopted: usize,
    pub found_stopped: usize,
}

/// Brings the world in line with the database after a (re)start: proxy up, services' tokens
/// current, running servers re-adopted, dead ones cleaned up, routes exactly right.
/// What must hold before the hub answers requests: the proxy is up (or adopted) and services'
/// credentials are current. Fast and independent of the number of users and servers.
pub(crate) async fn prepare(state: &Arc<AppState>) -> Result<(), HubError> {
    state.proxy.ensure_running().await?;
    crate::services::register(state).await?;
    let services_dir = state.config.data_dir.join("services");
    std::fs::create_dir_all(&services_dir)
        .map_err(|e| HubError::Internal(format!("creating {}: {e}", services_dir.display())))?;
    state.services.ensure_running(state).await;
    Ok(())
}

/// Re-adopts servers a previous hub process left running, cleans up those that died, and makes
/// the proxy's routes exactly right. Runs in the background while the hub already serves: the
/// proxy kept every route through the restart, so users notice nothing in the meantime.
pub(crate) async fn reconcile(state: &Arc<AppState>) -> Result<StartupReport, HubError> {
    let init_spawners = Instant::now();
    let mut report = StartupReport::default();
    for (user, server) in state.store.list_active_servers().await? {
        let alive =
            server.url.is_some() && state.spawner.poll(&server.state).await == PollStatus::Running;
        let keep = match (server.status, alive) {
            (ServerStatus::Running, true) => true,
            // A spawn interrupted by the restart: keep the server if it finished starting.
            (ServerStatus::Spawning, true) => {
                let prefix = state.server_prefix(user.name.as_str(), server.name.as_str());
                let url = server.url.clone().unwrap_or_default();
                let answered = state
                    .http
                    .get(format!("{url}{prefix}api"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() < 500);
                if answered {
                    state.store.set_server_running(server.id).await?;
                } else {
                    let _ = state.spawner.stop(&server.state).await;
                }
                answered
            }
            (ServerStatus::Stopping, true) => {
                let _ = state.spawner.stop(&server.state).await;
                false
            }
            _ => false,
        };
        if keep {
            report.adopted += 1;
        } else {
            report.found_stopped += 1;
            cleanup_server(state, &user, &server.name).await;
        }
    }
    state
        .metrics
        .timed(Timed::InitSpawners, init_spawners.elapsed(), true);
    let running = state.store.count_running_servers().await?;
    state
        .queue
        .set_running(usize::try_from(running).unwrap_or(0));
    sync_routes(state).await?;
    Ok(report)
}

/// Makes the proxy's user routes exactly the running servers (JupyterHub's `check_routes`), and
/// carries the proxy's observed activity over to users and servers.
pub(crate) async fn sync_routes(state: &AppState) -> Result<(), HubError> {
    let started = Instant::now();
    let result = sync_routes_inner(state).await;
    state
        .metrics
        .timed(Timed::CheckRoutes, started.elapsed(), result.is_ok());
    result
}

async fn sync_routes_inner(state: &AppState) -> Result<(), HubError> {
    let polled = Instant::now();
    let routes = state.proxy.routes().await?;
    state
        .metrics
        .timed(Timed::ProxyPoll, polled.elapsed(), true);
    let mut wanted = BTreeMap::new();
    for (user, server) in state.store.list_active_servers().await? {
        if server.status != ServerStatus::Running {
            continue;
        }
        let prefix = state.server_prefix(user.name.as_str(), server.name.as_str());
        wanted.insert(
            prefix.trim_end_matches('/').to_string(),
            (user, server, prefix),
        );
    }
    for (path, (user, server, prefix)) in &wanted {
        let url = server.url.as_deref().unwrap_or_default();
        match routes.get(path) {
            Some(route) if route.target == url => {
                if let Some(seen) = route.last_activity {
                    state.store.touch_server_activity(server.id, seen).await?;
                    state.store.touch_user_activity(user.id, seen).await?;
                }
            }
            _ => {
                tracing::info!(route = %prefix, "adding missing route");
                add_route(state, prefix, url, user.name.as_str(), server.name.as_str()).await?;
            }
        }
    }
    let mut services = BTreeMap::new();
    for (prefix, url, name) in crate::services::routed(state).await? {
        let path = prefix.trim_end_matches('/').to_string();
        if routes.get(&path).is_none_or(|route| route.target != url) {
            tracing::info!(route = %prefix, "adding service route");
            state.proxy.add_service_route(&prefix, &url, &name).await?;
        }
        services.insert(path, ());
    }
    for (path, route) in &routes {
        let stale_user = route.user.is_some() && !wanted.contains_key(path);
        let stale_service = route.service.is_some() && !services.contains_key(path);
        if stale_user || stale_service {
            tracing::info!(route = %path, "deleting stale route");
            delete_route(state, path).await?;
        }
    }
    Ok(())
}

/// Polls running servers (cleaning up those that died) and keeps the proxy alive.
async fn poll_servers(state: &AppState) -> Result<(), HubError> {
    for (user, server) in state.store.list_active_servers().await? {
        if server.status != ServerStatus::Running {
            continue;
        }
        let polled = Instant::now();
        let status = state.spawner.poll(&server.state).await;
        state.metrics.timed(
            Timed::ServerPoll,
            polled.elapsed(),
            status == PollStatus::Running,
        );
        if let PollStatus::Exited { code } = status {
            tracing::warn!(user = %user.name, server = %server.name, ?code, "server exited on its own");
            let prefix = state.server_prefix(user.name.as_str(), server.name.as_str());
            delete_route(state, &prefix).await?;
            cleanup_server(state, &user, &server.name).await;
        }
    }
    Ok(())
}

pub(crate) fn spawn_background_tasks(state: Arc<AppState>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let poller = Arc::clone(&state);
    let started = Instant::now();
    tasks.spawn(async move {
        match reconcile(&poller).await {
            Ok(report) => tracing::info!(
                adopted = report.adopted,
                stopped = report.found_stopped,
                seconds = started.elapsed().as_secs_f64(),
                "reconciled servers left by the previous hub process"
            ),
            Err(error) => tracing::error!(%error, "reconciling servers at startup"),
        }
        poller
            .metrics
            .timed(Timed::Startup, started.elapsed(), true);
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = poll_servers(&poller).await {
                tracing::error!(%error, "polling servers");
            }
            poller.services.ensure_running(&poller).await;
            if let Err(error) = sync_routes(&poller).await {
                tracing::error!(%error, "syncing routes");
            }
        }
    });
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(PROXY_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.proxy.ensure_running().await {
                Ok(true) => {
                    tracing::warn!("the proxy had died and was relaunched; restoring routes");
                    if let Err(error) = sync_routes(&state).await {
                        tracing::error!(%error, "restoring routes");
                    }
                }
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "checking the proxy"),
            }
        }
    });
    tasks
}
