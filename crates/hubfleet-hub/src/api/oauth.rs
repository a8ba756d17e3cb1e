//! The OAuth2 provider single-user servers (and OAuth services) log people in through:
//! authorization-code grant with optional PKCE (S256), exact redirect-URI matching, single-use
//! codes that expire after five minutes, and tokens tied to the browser session so that logging
//! out of the hub logs out of every server.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, OriginalUri, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use hubfleet_core::oauth::{CODE_TTL_SECONDS, redirect_uri_matches, verify_pkce};
use hubfleet_core::scopes::{Owner, ScopeSet};
use hubfleet_core::token::{generate_token, hash_token, secrets_equal};
use hubfleet_store::{NewToken, OAuthCode, TokenOwner};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use crate::HubError;
use crate::identity;
use crate::state::AppState;

type Params = HashMap<String, String>;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn page_error(state: &AppState, status: StatusCode, message: &str) -> Response {
    let html = state.templates.render(
        "error.html",
        minijinja::context! {
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or(""),
            message => message,
        },
    );
    match html {
        Ok(body) => (status, axum::response::Html(body)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// `GET /hub/api/oauth2/authorize`: a browser arrives here from a single-user server or a
/// service. A client that is not the person's own server first gets a confirmation page.
pub(crate) async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> Response {
    authorize_answer(&state, &headers, &uri, &query, false).await
}

/// `POST /hub/api/oauth2/authorize`: the confirmation page's "Authorize" button (same query).
pub(crate) async fn authorize_confirmed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    Form(form): Form<Params>,
) -> Response {
    if let Err(error) = identity::check_xsrf(&headers, form.get("_xsrf").map(String::as_str)) {
        let (status, message) = error.public();
        return page_error(&state, status, &message);
    }
    authorize_answer(&state, &headers, &uri, &query, true).await
}

async fn authorize_answer(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    uri: &http::Uri,
    query: &Params,
    confirmed: bool,
) -> Response {
    match authorize_inner(state, headers, uri, query, confirmed).await {
        Ok(response) => response,
        Err(error) => {
            let (status, message) = error.public();
            if status.is_server_error() {
                tracing::error!(%error, "oauth authorize failed");
            }
            page_error(state, status, &message)
        }
    }
}

async fn authorize_inner(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    uri: &http::Uri,
    query: &Params,
    confirmed: bool,
) -> Result<Response, HubError> {
    let Some(me) = identity::from_cookie(state, headers).await? else {
        let next = utf8_percent_encode(&uri.to_string(), NON_ALPHANUMERIC).to_string();
        return Ok((
            StatusCode::FOUND,
            [(
                header::LOCATION,
                format!("{}login?next={next}", state.hub_prefix),
            )],
        )
            .into_response());
    };
    let param = |name: &str| query.get(name).map(String::as_str);
    let client_id =
        param("client_id").ok_or_else(|| HubError::BadRequest("missing client_id".into()))?;
    let client = state
        .store
        .get_oauth_client(client_id)
        .await?
        .ok_or_else(|| HubError::BadRequest(format!("unknown OAuth client {client_id:?}")))?;
    let redirect_uri = param("redirect_uri").unwrap_or(&client.redirect_uri);
    // Never redirect to an unregistered URI, even with an error: that is how codes get stolen.
    if !redirect_uri_matches(&client.redirect_uri, redirect_uri) {
        return Err(HubError::BadRequest(
            "redirect_uri does not match the client's".into(),
        ));
    }
    if param("response_type") != Some("code") {
        return Err(HubError::BadRequest(
            "only response_type=code is supported".into(),
        ));
    }
    let challenge_method = param("code_challenge_method");
    if param("code_challenge").is_some() && challenge_method.is_some_and(|m| m != "S256") {
        return Err(HubError::BadRequest(
            "code_challenge_method must be S256".into(),
        ));
    }
    let user = me.user().expect("cookie identities are users").clone();
    // The person must be allowed to use what the client guards (their server, or a service).
    let owner = Owner::User {
        name: user.name.as_str(),
        server: None,
    };
    let client_scopes = ScopeSet::expand(&client.allowed_scopes, owner);
    let access_ok = client.allowed_scopes.iter().all(|raw| {
        let wanted = ScopeSet::expand(std::slice::from_ref(raw), owner);
        wanted.intersect(&me.scopes) == wanted
    });
    if !access_ok {
        tracing::info!(user = %user.name, client = %client_id, "oauth access refused");
        return Err(HubError::Refused(format!(
            "{} is not allowed to access {}.",
            user.name, client.description
        )));
    }
    let mut scopes = client_scopes.to_strings();
    scopes.push(format!("read:users:name!user={}", user.name));
    scopes.push(format!("read:users:groups!user={}", user.name));
    if !confirmed && needs_confirmation(state, &user, &client.identifier, &scopes).await? {
        let (xsrf, cookie) = crate::pages::xsrf_token(state, headers);
        let body = state.templates.render(
            "oauth_confirm.html",
            minijinja::context! {
                client => client.description,
                scopes => scopes,
                action => uri.to_string(),
                xsrf => xsrf,
            },
        )?;
        let page = (StatusCode::OK, axum::response::Html(body)).into_response();
        return Ok(crate::pages::with_cookies(page, cookie));
    }
    let code = generate_token();
    state
        .store
        .insert_oauth_code(&OAuthCode {
            code_hash: hash_token(&code),
            client_id: client.identifier.clone(),
            user_id: user.id,
            redirect_uri: redirect_uri.to_string(),
            scopes,
            code_challenge: param("code_challenge").map(String::from),
            code_challenge_method: challenge_method.map(String::from),
            session_id: me.session_id().map(String::from),
            expires_at: hubfleet_types::now() + chrono::Duration::seconds(CODE_TTL_SECONDS),
        })
        .await?;
    let mut location = url::form_urlencoded::Serializer::new(String::new());
    location.append_pair("code", &code);
    if let Some(state_param) = param("state") {
        location.append_pair("state", state_param);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", location.finish());
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// JupyterHub's `_needs_oauth_confirm`: a person confirms before a client gets a token for them,
/// unless the client is one of their own servers, a service with `oauth_no_confirm`, or one
/// they already granted at least these scopes.
async fn needs_confirmation(
    state: &AppState,
    user: &hubfleet_store::User,
    client_id: &str,
    scopes: &[String],
) -> Result<bool, HubError> {
    let own_server = state
        .store
        .list_user_servers(user.id)
        .await?
        .iter()
        .any(|server| {
            crate::lifecycle::client_id(user.name.as_str(), server.name.as_str()) == client_id
        });
    if own_server {
        return Ok(false);
    }
    let trusted_service = state.store.list_services().await?.iter().any(|service| {
        service.oauth_no_confirm && service.oauth_client_id.as_deref() == Some(client_id)
    });
    if trusted_service {
        return Ok(false);
    }
    let granted: std::collections::HashSet<String> = state
        .store
        .list_user_tokens(user.id)
        .await?
        .into_iter()
        .filter(|token| token.oauth_client_id.as_deref() == Some(client_id))
        .flat_map(|token| token.scopes)
        .collect();
    Ok(granted.is_empty() || !scopes.iter().all(|scope| granted.contains(scope)))
}

/// `POST /hub/api/oauth2/token`: a single-user server exchanges a code for a token.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    Form(form): Form<Params>,
) -> Response {
    match token_inner(&state, &form).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "oauth token exchange failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        }
    }
}

async fn token_inner(state: &AppState, form: &Params) -> Result<Response, HubError> {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("authorization_code") {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code is supported",
        ));
    }
    let (Some(client_id), Some(secret)) = (field("client_id"), field("client_secret")) else {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials required",
        ));
    };
    let client = state.store.get_oauth_client(client_id).await?;
    let Some(client) = client.filter(|c| secrets_equal(&c.secret_hash, &hash_token(secret))) else {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client credentials",
        ));
    };
    let Some(code) = field("code") else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing code",
        ));
    };
    let now = hubfleet_types::now();
    let Some(grant) = state.store.take_oauth_code(&hash_token(code), now).await? else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown, used or expired code",
        ));
    };
    if grant.client_id != client.identifier {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code was issued to another client",
        ));
    }
    if let Some(redirect_uri) = field("redirect_uri")
        && !redirect_uri_matches(&grant.redirect_uri, redirect_uri)
    {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri mismatch",
        ));
    }
    if let Err(error) = verify_pkce(
        grant.code_challenge.as_deref(),
        grant.code_challenge_method.as_deref(),
        field("code_verifier"),
    ) {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &error.to_string(),
        ));
    }
    let access_token = generate_token();
    let expires_in = state.config.hub.cookie_max_age.as_secs();
    state
        .store
        .insert_token(&NewToken {
            hash: hash_token(&access_token),
            owner: TokenOwner::User(grant.user_id),
            scopes: grant.scopes.clone(),
            note: format!("OAuth token for {}", client.description),
            created: now,
            expires_at: Some(now + chrono::Duration::seconds(expires_in as i64)),
            session_id: grant.session_id.clone(),
            oauth_client_id: Some(client.identifier.clone()),
        })
        .await?;
    Ok(axum::Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": grant.scopes.join(" "),
    }))
    .into_response())
}
