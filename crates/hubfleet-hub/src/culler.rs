//! The built-in idle culler, with jupyterhub-idle-culler's rules: a running server whose last
//! activity (or, without any, its start) is older than `cull.timeout` is stopped; so is one older
//! than `cull.max_age` when that is set; with `cull.users`, users without servers who have been
//! inactive for `cull.timeout` are deleted.
//!
//! Activity comes from two places, as in JupyterHub: the proxy's per-route traffic and the
//! single-user servers' own activity reports. The culler refreshes the former just before it
//! judges, so a server in use is never culled on stale data.

use std::sync::Arc;

use hubfleet_store::ServerStatus;

use crate::HubError;
use crate::lifecycle;
use crate::state::AppState;

/// Users are examined in pages of this size, so culling never loads 50k users at once.
const USER_PAGE: i64 = 500;

pub(crate) async fn run(state: Arc<AppState>) {
    let cull = state.config.cull.clone();
    if !cull.enabled {
        return;
    }
    tracing::info!(timeout = ?cull.timeout, every = ?cull.every, "idle culler enabled");
    let mut tick = tokio::time::interval(cull.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = cull_once(&state).await {
            tracing::error!(%error, "culling idle servers");
        }
    }
}

/// One culling pass; returns how many servers it stopped.
pub(crate) async fn cull_once(state: &AppState) -> Result<usize, HubError> {
    let cull = &state.config.cull;
    lifecycle::sync_routes(state).await?;
    let now = hubfleet_types::now();
    let timeout = chrono::Duration::from_std(cull.timeout).unwrap_or(chrono::Duration::MAX);
    let max_age = chrono::Duration::from_std(cull.max_age).unwrap_or(chrono::Duration::MAX);
    let mut stopped = 0;
    for (user, server) in state.store.list_active_servers().await? {
        if server.status != ServerStatus::Running {
            continue;
        }
        let Some(last) = server.last_activity.or(server.started) else {
            continue;
        };
        let idle = now - last >= timeout;
        let too_old = !cull.max_age.is_zero() && server.started.is_some_and(|s| now - s >= max_age);
        if idle || too_old {
            let why = if idle { "idle" } else { "max_age" };
            tracing::info!(user = %user.name, server = %server.name, inactive_seconds = (now - last).num_seconds(), why, "culling server");
            lifecycle::stop_server(state, &user, &server.name).await?;
            stopped += 1;
        }
    }
    if cull.users {
        cull_users(state, now, timeout).await?;
    }
    Ok(stopped)
}

async fn cull_users(
    state: &AppState,
    now: hubfleet_types::Timestamp,
    timeout: chrono::Duration,
) -> Result<(), HubError> {
    let mut doomed = Vec::new();
    let mut offset = 0;
    loop {
        let page = state.store.list_users(offset, USER_PAGE).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as i64;
        for user in page {
            let last = user.last_activity.unwrap_or(user.created);
            if now - last < timeout {
                continue;
            }
            let servers = state.store.list_user_servers(user.id).await?;
            if servers.iter().all(|s| s.status == ServerStatus::Stopped) {
                doomed.push(user);
            }
        }
    }
    // Deleted after the walk so the pages above do not shift under it.
    for user in doomed {
        tracing::info!(user = %user.name, "culling inactive user");
        state.store.delete_user(user.id).await?;
    }
    Ok(())
}
