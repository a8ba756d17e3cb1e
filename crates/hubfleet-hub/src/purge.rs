//! Purging expired credentials: API and OAuth tokens, OAuth codes, login sessions and share
//! codes. Lookups already refuse them; deleting them keeps the tables small and drops the hashes
//! of dead secrets. Like JupyterHub (`purge_expired_tokens`: at startup, then hourly), it runs
//! once when the hub starts — in the background, since the hub answers before it cleans up — and
//! then every `hub.purge_expired_every`.

use std::sync::Arc;

use crate::state::AppState;

pub(crate) async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.hub.purge_expired_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once: the purge at startup.
        tick.tick().await;
        match state.store.purge_expired(hubfleet_types::now()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "purged expired tokens, codes and sessions"),
            Err(error) => {
                tracing::error!(error = %error.log_detail(), "purging expired tokens, codes and sessions")
            }
        }
    }
}
