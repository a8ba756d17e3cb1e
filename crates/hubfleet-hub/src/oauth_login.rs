//! OAuth2 / OpenID Connect logins: `<base>hub/oauth_login` sends the browser to the identity
//! provider, `<base>hub/oauth_callback` takes it back (the URLs JupyterHub's oauthenticator uses).
//!
//! Each attempt gets a random `state`, `nonce` and PKCE verifier, kept server-side (in memory, ten
//! minutes, single use) under the hash of `state` and bound to the browser by a random value in a
//! short-lived `HttpOnly` cookie. A callback whose `state` is unknown, already used, expired, or
//! arrives from another browser is refused before the code is exchanged. Success goes through the
//! same [`pages::finish_login`] as the password form. A hub restart forgets logins in flight;
//! people who were on the provider's pages then simply sign in again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use hubfleet_core::token::{generate_token, hash_token, secrets_equal};
use hubfleet_types::AuthError;
use hubfleet_types::auth::LoginRequest;

use crate::HubError;
use crate::cookies::{self, CookieAttrs};
use crate::metrics::Timed;
use crate::pages::{self, PageContext, PageResult};
use crate::state::AppState;

/// Cookie binding a pending login to the browser that started it.
const BINDING_COOKIE: &str = "hubfleet-oauth-state";
/// How long a person has to get through the provider's pages.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Bound on logins in flight, so unauthenticated requests cannot grow memory without limit.
const MAX_PENDING: usize = 10_000;

/// One login in flight. `Debug` is deliberately absent: it holds secrets.
struct Pending {
    binding_hash: String,
    nonce: String,
    pkce_verifier: String,
    redirect_uri: String,
    next: Option<String>,
    created: Instant,
}

struct OAuthLogins {
    app: Arc<AppState>,
    /// Keyed by the SHA-256 of `state`.
    pending: Mutex<HashMap<String, Pending>>,
}

pub(crate) fn router(app: Arc<AppState>) -> Router {
    let hub = app.hub_prefix.clone();
    let ctx = Arc::new(OAuthLogins {
        app,
        pending: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(&format!("{hub}oauth_login"), get(oauth_login))
        .route(&format!("{hub}oauth_callback"), get(oauth_callback))
        .with_state(ctx)
}

type Params = HashMap<String, String>;

fn page_error(app: &Arc<AppState>, error: HubError) -> pages::PageError {
    pages::PageError {
        error,
        state: Arc::clone(app),
        user: None,
    }
}

/// The absolute callback URL: configured, or from the request's host as the proxy passed it.
fn callback_url(app: &AppState, headers: &HeaderMap) -> Result<String, HubError> {
    if let Some(url) = app
        .config
        .auth
        .method
        .oauth()
        .and_then(|o| o.callback_url.clone())
    {
        return Ok(url);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '\\', '@', ' ']))
        .ok_or_else(|| HubError::BadRequest("the request has no usable Host header".into()))?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|p| p.to_str().ok())
    {
        Some("https") => "https",
        Some("http") => "http",
        _ if app.secure_cookies => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}{}oauth_callback", app.hub_prefix))
}

async fn oauth_login(
    State(ctx): State<Arc<OAuthLogins>>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> PageResult {
    let app = &ctx.app;
    let Some(redirect) = app.authenticator.redirect() else {
        return Err(page_error(
            app,
            HubError::NotFound("This hub does not use an OAuth login.".into()),
        ));
    };
    let redirect_uri = callback_url(app, &headers).page(app, None)?;
    let (state, nonce, pkce_verifier, binding) = (
        generate_token(),
        generate_token(),
        generate_token(),
        generate_token(),
    );
    let url = redirect
        .login_url(&LoginRequest {
            state: &state,
            nonce: &nonce,
            pkce_verifier: &pkce_verifier,
            redirect_uri: &redirect_uri,
        })
        .await
        .map_err(|e| page_error(app, auth_error(e)))?;
    {
        let mut pending = ctx.pending.lock().expect("not poisoned");
        pending.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(page_error(
                app,
                HubError::Conflict("Too many logins in progress; try again in a minute.".into()),
            ));
        }
        pending.insert(
            hash_token(&state),
            Pending {
                binding_hash: hash_token(&binding),
                nonce,
                pkce_verifier,
                redirect_uri,
                next: pages::safe_next(query.get("next")),
                created: Instant::now(),
            },
        );
    }
    let cookie = cookies::set(
        BINDING_COOKIE,
        &binding,
        &CookieAttrs {
            path: &app.hub_prefix,
            secure: app.secure_cookies,
            max_age_seconds: Some(PENDING_TTL.as_secs()),
        },
    );
    Ok(pages::with_cookies(pages::redirect_to(&url), [cookie]))
}

fn auth_error(error: AuthError) -> HubError {
    match error {
        AuthError::Refused(message) => HubError::Refused(message),
        AuthError::InvalidCallback(detail) => {
            tracing::info!(%detail, "OAuth callback refused");
            HubError::BadRequest("The login could not be completed; please start again.".into())
        }
        AuthError::Backend(detail) => HubError::Internal(format!("identity provider: {detail}")),
    }
}

async fn oauth_callback(
    State(ctx): State<Arc<OAuthLogins>>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> PageResult {
    let started = Instant::now();
    let result = callback(&ctx, &headers, &query).await;
    let succeeded = result
        .as_ref()
        .is_ok_and(|r| r.status() == StatusCode::FOUND);
    ctx.app
        .metrics
        .timed(Timed::Login, started.elapsed(), succeeded);
    // The binding cookie has done its job either way.
    let clear = cookies::clear(BINDING_COOKIE, &ctx.app.hub_prefix);
    match result {
        Ok(response) => Ok(pages::with_cookies(response, [clear])),
        Err(error) => Ok(pages::with_cookies(
            axum::response::IntoResponse::into_response(error),
            [clear],
        )),
    }
}

async fn callback(ctx: &OAuthLogins, headers: &HeaderMap, query: &Params) -> PageResult {
    let app = &ctx.app;
    let Some(redirect) = app.authenticator.redirect() else {
        return Err(page_error(
            app,
            HubError::NotFound("This hub does not use an OAuth login.".into()),
        ));
    };
    let invalid = || {
        page_error(
            app,
            HubError::BadRequest(
                "This login link is invalid, expired or already used; please sign in again.".into(),
            ),
        )
    };
    if let Some(error) = query.get("error") {
        tracing::info!(%error, "identity provider returned an error");
        return Err(page_error(
            app,
            HubError::Refused(format!(
                "The identity provider did not log you in ({error})."
            )),
        ));
    }
    let (Some(state), Some(code)) = (query.get("state"), query.get("code")) else {
        return Err(invalid());
    };
    // Single use: the record goes whatever happens next.
    let pending = ctx
        .pending
        .lock()
        .expect("not poisoned")
        .remove(&hash_token(state));
    let Some(pending) = pending else {
        tracing::info!("OAuth callback with an unknown or used state");
        return Err(invalid());
    };
    let binding = cookies::get(headers, BINDING_COOKIE).unwrap_or_default();
    if !secrets_equal(&hash_token(&binding), &pending.binding_hash)
        || pending.created.elapsed() >= PENDING_TTL
    {
        tracing::info!("OAuth callback from another browser or too late");
        return Err(invalid());
    }
    let authenticated = redirect
        .complete(
            code,
            &LoginRequest {
                state,
                nonce: &pending.nonce,
                pkce_verifier: &pending.pkce_verifier,
                redirect_uri: &pending.redirect_uri,
            },
        )
        .await
        .map_err(|e| page_error(app, auth_error(e)))?;
    let name = authenticated.name.clone();
    match pages::finish_login(app, authenticated, pending.next).await? {
        Ok(response) => Ok(response),
        Err(message) => {
            tracing::info!(user = %name, "OAuth login refused");
            Err(page_error(app, HubError::Refused(message)))
        }
    }
}

/// Tokens expiring within this margin are refreshed before a spawn.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The user's auth state for a spawn, refreshed (and stored again) when its tokens are about to
/// expire (JupyterHub's `refresh_pre_spawn`). `None` when auth state is off or the user has none.
pub(crate) async fn auth_state_for_spawn(
    app: &AppState,
    user_id: i64,
) -> Result<Option<serde_json::Value>, HubError> {
    let Some(redirect) = app
        .authenticator
        .redirect()
        .filter(|r| r.auth_state_enabled())
    else {
        return Ok(None);
    };
    let Some(sealed) = app.store.get_auth_state(user_id).await? else {
        return Ok(None);
    };
    let current = redirect
        .open_auth_state(&sealed)
        .map_err(|e| HubError::Internal(e.to_string()))?;
    match redirect.refresh(&current, REFRESH_MARGIN).await {
        Ok(hubfleet_types::auth::Refreshed::Unchanged) => Ok(Some(current.0)),
        Ok(hubfleet_types::auth::Refreshed::Updated(fresh)) => {
            let sealed = redirect
                .seal_auth_state(&fresh)
                .map_err(|e| HubError::Internal(e.to_string()))?;
            app.store.set_auth_state(user_id, Some(sealed)).await?;
            tracing::info!(user_id, "refreshed auth state before spawn");
            Ok(Some(fresh.0))
        }
        Err(AuthError::Refused(message)) => Err(HubError::Refused(message)),
        Err(e) => Err(HubError::Internal(e.to_string())),
    }
}

/// Expands `{auth_state.<path>}` in the configured `spawner.environment` values (e.g.
/// `EARTHSCOPE_TOKEN: "{auth_state.access_token}"`). Missing values expand to the empty string.
pub(crate) fn expand_auth_state_env(
    env: &mut std::collections::BTreeMap<String, String>,
    configured: &std::collections::BTreeMap<String, String>,
    auth_state: Option<&serde_json::Value>,
) {
    for (key, template) in configured {
        if !template.contains("{auth_state.") {
            continue;
        }
        let mut out = String::with_capacity(template.len());
        let mut rest = template.as_str();
        while let Some(start) = rest.find("{auth_state.") {
            out.push_str(&rest[..start]);
            let after = &rest[start + "{auth_state.".len()..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let mut value = auth_state;
            for part in after[..end].split('.') {
                value = value.and_then(|v| v.get(part));
            }
            match value {
                Some(serde_json::Value::String(s)) => out.push_str(s),
                Some(serde_json::Value::Null) | None => {
                    tracing::warn!(variable = %key, "spawner.environment refers to auth_state the user does not have");
                }
                Some(other) => out.push_str(&other.to_string()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        env.insert(key.clone(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn auth_state_placeholders_expand() {
        let configured: BTreeMap<String, String> = [
            ("TOKEN", "{auth_state.access_token}"),
            (
                "MIXED",
                "Bearer {auth_state.access_token}/{auth_state.oauth_user.sub}",
            ),
            ("MISSING", "x{auth_state.nope}y"),
            ("PLAIN", "{not_auth_state}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut env = configured.clone();
        let state = serde_json::json!({"access_token": "t0k", "oauth_user": {"sub": "s1"}});
        expand_auth_state_env(&mut env, &configured, Some(&state));
        assert_eq!(env["TOKEN"], "t0k");
        assert_eq!(env["MIXED"], "Bearer t0k/s1");
        assert_eq!(env["MISSING"], "xy");
        assert_eq!(env["PLAIN"], "{not_auth_state}");
        let mut env = configured.clone();
        expand_auth_state_env(&mut env, &configured, None);
        assert_eq!(env["TOKEN"], "");
    }
}
