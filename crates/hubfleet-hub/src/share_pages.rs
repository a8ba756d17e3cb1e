//! `/hub/accept-share`: a logged-in person exchanges a share code for a share (JupyterHub 5's
//! `AcceptShareHandler`). GET shows what the code grants; the POSTed form (XSRF-checked) records
//! the share and sends the browser on to the shared server.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, OriginalUri, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{ServerStatus, ShareCode};
use minijinja::context;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::HubError;
use crate::cookies::{self, CookieAttrs};
use crate::identity::{self, Identity, check_xsrf};
use crate::state::AppState;

type AppStateRef = Arc<AppState>;
type Params = HashMap<String, String>;

pub(crate) fn router(state: AppStateRef) -> Router {
    let path = format!("{}accept-share", state.hub_prefix);
    Router::new()
        .route(&path, get(accept_form).post(accept_submit))
        .with_state(state)
}

fn error_page(state: &AppState, status: StatusCode, message: &str, user: Option<&str>) -> Response {
    let html = state.templates.render(
        "error.html",
        context! {
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or(""),
            message => message,
            user => user,
        },
    );
    match html {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

fn failure(state: &AppState, error: &HubError, user: Option<&str>) -> Response {
    let (status, message) = error.public();
    if status.is_server_error() {
        tracing::error!(%error, "accept-share failed");
    }
    error_page(state, status, &message, user)
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// The XSRF token for the form; sets the cookie when the browser has none yet.
fn xsrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    match cookies::get(headers, cookies::XSRF_COOKIE).filter(|t| t.len() >= 32) {
        Some(token) => (token, None),
        None => {
            let token = generate_token();
            let cookie = cookies::set(
                cookies::XSRF_COOKIE,
                &token,
                &CookieAttrs {
                    path: &state.hub_prefix,
                    secure: state.secure_cookies,
                    max_age_seconds: None,
                },
            );
            (token, Some(cookie))
        }
    }
}

/// Where to go after accepting: a local `next`, else the shared server.
fn next_url(state: &AppState, params: &Params, code: &ShareCode) -> String {
    params
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .cloned()
        .unwrap_or_else(|| state.server_prefix(&code.server.owner, code.server.name.as_str()))
}

/// The unexpired code named in `params`, refusing codes of one's own server.
async fn lookup(
    state: &AppState,
    me: &Identity,
    params: &Params,
    missing: HubError,
    own: HubError,
) -> Result<ShareCode, HubError> {
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| HubError::BadRequest("Missing argument code".into()))?;
    let found = state
        .store
        .find_share_code(&hash_token(code), hubfleet_types::now())
        .await?
        .ok_or(missing)?;
    if found.server.owner == me.name() {
        return Err(own);
    }
    Ok(found)
}

async fn accept_form(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<Params>,
) -> Response {
    let me = match identity::from_cookie(&state, &headers).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            return redirect(&format!(
                "{}login?next={}",
                state.hub_prefix,
                utf8_percent_encode(&uri.to_string(), NON_ALPHANUMERIC)
            ));
        }
        Err(error) => return failure(&state, &error, None),
    };
    let code = match lookup(
        &state,
        &me,
        &params,
        HubError::NotFound("Share not found or expired".into()),
        HubError::Refused("You can't share with yourself!".into()),
    )
    .await
    {
        Ok(code) => code,
        Err(error) => return failure(&state, &error, Some(me.name())),
    };
    let (xsrf, xsrf_cookie) = xsrf_token(&state, &headers);
    let rendered = state.templates.render(
        "accept_share.html",
        context! {
            user => me.name(),
            owner => &code.server.owner,
            server_name => code.server.name.as_str(),
            server_url => state.server_prefix(&code.server.owner, code.server.name.as_str()),
            ready => code.server.status == ServerStatus::Running,
            scopes => &code.scopes,
            code => params.get("code"),
            xsrf => xsrf,
            next_url => next_url(&state, &params, &code),
        },
    );
    let mut response = match rendered {
        Ok(html) => Html(html).into_response(),
        Err(error) => return failure(&state, &error, Some(me.name())),
    };
    if let Some(cookie) = xsrf_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn accept_submit(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let me = match identity::from_cookie(&state, &headers).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            let error = HubError::Refused("You must be logged in to accept a share.".into());
            return failure(&state, &error, None);
        }
        Err(error) => return failure(&state, &error, None),
    };
    if let Err(error) = check_xsrf(&headers, form.get("_xsrf").map(String::as_str)) {
        return failure(&state, &error, Some(me.name()));
    }
    let result = async {
        let code = lookup(
            &state,
            &me,
            &form,
            HubError::BadRequest("Invalid share code".into()),
            HubError::BadRequest("You can't share with yourself!".into()),
        )
        .await?;
        let user = me.user().ok_or(HubError::Unauthenticated)?;
        state
            .store
            .exchange_share_code(&code, user.id, hubfleet_types::now())
            .await?;
        tracing::info!(user = %user.name, server = %format!("{}/{}", code.server.owner, code.server.name), "accepted share code");
        Ok::<_, HubError>(next_url(&state, &form, &code))
    }
    .await;
    match result {
        Ok(next) => redirect(&next),
        Err(error) => failure(&state, &error, Some(me.name())),
    }
}
