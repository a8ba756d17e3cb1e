//! HTML pages and the browser-facing redirects: login, logout, home, spawn, spawn-pending, the
//! "server not running" page (424), the proxy's error target, and the prefix redirects that send
//! stray requests to the hub.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{NewSession, ServerStatus, User};
use hubfleet_types::{ServerName, UserName};
use minijinja::context;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::HubError;
use crate::cookies::{self, CookieAttrs};
use crate::identity::{self, Identity, check_xsrf};
use crate::lifecycle;
use crate::metrics::Timed;
use crate::state::AppState;

type AppStateRef = Arc<AppState>;
type Params = HashMap<String, String>;

/// Characters left alone when a name goes into a URL path segment (JupyterHub quotes with
/// `safe='@~'`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

pub(crate) fn url_escape(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn router(state: AppStateRef) -> Router {
    let hub = state.hub_prefix.clone();
    let base = state.config.base_url.clone();
    let mut router = Router::new()
        .route(&format!("{hub}login"), get(login_form).post(login_submit))
        .route(
            &format!("{hub}signup"),
            get(signup_form).post(signup_submit),
        )
        .route(&format!("{hub}logout"), get(logout))
        .route(&format!("{hub}home"), get(home))
        .route(&hub, get(hub_root))
        .route(&format!("{hub}spawn"), get(spawn_get).post(spawn_post))
        .route(
            &format!("{hub}spawn/{{user}}"),
            get(spawn_get).post(spawn_post),
        )
        .route(&format!("{hub}spawn-pending/{{user}}"), get(spawn_pending))
        .route(&format!("{hub}stop/{{user}}"), post(stop_user))
        .route(&format!("{hub}user/{{user}}"), get(user_url))
        .route(&format!("{hub}user/{{user}}/"), get(user_url))
        .route(
            &format!("{hub}user/{{user}}/{{*rest}}"),
            get(user_url).post(user_url),
        )
        .route(&format!("{hub}user-redirect/{{*rest}}"), get(user_redirect))
        .route(&format!("{hub}error/{{code}}"), get(proxy_error))
        .route(&format!("{hub}static/hub.css"), get(stylesheet))
        .fallback(prefix_redirect);
    // `/hub` without the slash, and the base URL itself, land on the hub root.
    router = router.route(hub.trim_end_matches('/'), get(to_hub_root));
    if base != hub {
        router = router.route(&base, get(to_hub_root));
    }
    router.with_state(state)
}

/// An HTML error page with the status the error maps to.
pub(crate) struct PageError {
    pub(crate) error: HubError,
    pub(crate) state: AppStateRef,
    pub(crate) user: Option<String>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = self.error.public();
        if status.is_server_error() {
            tracing::error!(error = %self.error, "page failed");
        }
        let mut response = error_page(&self.state, status, &message, self.user.as_deref());
        if let Some(seconds) = self.error.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub(crate) fn error_page(
    state: &AppState,
    status: StatusCode,
    message: &str,
    user: Option<&str>,
) -> Response {
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

pub(crate) type PageResult = Result<Response, PageError>;

pub(crate) trait PageContext<T> {
    fn page(self, state: &AppStateRef, user: Option<&User>) -> Result<T, PageError>;
}

impl<T, E: Into<HubError>> PageContext<T> for Result<T, E> {
    fn page(self, state: &AppStateRef, user: Option<&User>) -> Result<T, PageError> {
        self.map_err(|e| PageError {
            error: e.into(),
            state: Arc::clone(state),
            user: user.map(|u| u.name.to_string()),
        })
    }
}

/// A `next` parameter is only followed if it is a local path (no open redirects).
pub(crate) fn safe_next(next: Option<&String>) -> Option<String> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .cloned()
}

pub(crate) fn redirect_to(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn login_redirect(state: &AppState, next: &str) -> Response {
    redirect_to(&format!(
        "{}login?next={}",
        state.hub_prefix,
        utf8_percent_encode(next, NON_ALPHANUMERIC)
    ))
}

/// The XSRF token for forms on this page; sets the cookie if the browser has none yet.
pub(crate) fn xsrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
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

pub(crate) fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = String>,
) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(crate) fn html(
    state: &AppStateRef,
    template: &str,
    ctx: minijinja::Value,
    status: StatusCode,
) -> PageResult {
    let body = state.templates.render(template, ctx).page(state, None)?;
    Ok((status, Html(body)).into_response())
}

async fn current_user(state: &AppState, headers: &HeaderMap) -> Result<Option<Identity>, HubError> {
    identity::from_cookie(state, headers).await
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        crate::templates::HUB_CSS,
    )
        .into_response()
}

async fn to_hub_root(State(state): State<AppStateRef>) -> Response {
    redirect_to(&state.hub_prefix)
}

async fn hub_root(State(state): State<AppStateRef>, headers: HeaderMap) -> PageResult {
    let me = current_user(&state, &headers).await.page(&state, None)?;
    Ok(match me {
        Some(_) => redirect_to(&format!("{}home", state.hub_prefix)),
        None => login_redirect(&state, &state.hub_prefix),
    })
}

async fn login_form(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> PageResult {
    let next = safe_next(query.get("next"));
    if current_user(&state, &headers)
        .await
        .page(&state, None)?
        .is_some()
    {
        return Ok(redirect_to(
            &next.unwrap_or_else(|| format!("{}home", state.hub_prefix)),
        ));
    }
    let (xsrf, cookie) = xsrf_token(&state, &headers);
    // Redirect logins show a "Sign in with …" button instead of the password form.
    let login_service = state.authenticator.redirect().map(|r| r.login_service());
    // Anonymous logins (`tmp`) show a "Start a session" button.
    let anonymous = state.authenticator.anonymous();
    let signup = state.authenticator.accounts().is_some();
    let page = html(
        &state,
        "login.html",
        context! { xsrf, next => next.unwrap_or_default(), username => "", message => "", login_service, anonymous, signup },
        StatusCode::OK,
    )?;
    Ok(with_cookies(page, cookie))
}

async fn login_submit(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<Params>,
    Form(form): Form<Params>,
) -> PageResult {
    let started = std::time::Instant::now();
    let response = crate::login_limit::guard(
        &headers,
        &form,
        login_attempt(&state, &headers, &query, &form),
        |locked| {
            let mut page = error_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &locked.message(),
                None,
            );
            page.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(locked.retry_after_seconds),
            );
            page
        },
    )
    .await;
    let succeeded = response
        .as_ref()
        .is_ok_and(|r| r.status() == StatusCode::FOUND);
    state
        .metrics
        .timed(Timed::Login, started.elapsed(), succeeded);
    response
}

async fn login_attempt(
    state: &AppStateRef,
    headers: &HeaderMap,
    query: &Params,
    form: &Params,
) -> PageResult {
    let (state, headers) = (state.clone(), headers.clone());
    let next = safe_next(query.get("next"));
    check_xsrf(&headers, form.get("_xsrf").map(String::as_str)).page(&state, None)?;
    let typed = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let refuse = |message: &str| {
        let (xsrf, cookie) = xsrf_token(&state, &headers);
        let page = html(
            &state,
            "login.html",
            context! {
                xsrf,
                next => next.clone().unwrap_or_default(),
                username => typed,
                message,
                signup => state.authenticator.accounts().is_some(),
            },
            StatusCode::FORBIDDEN,
        )?;
        Ok(with_cookies(page, cookie))
    };
    if state.authenticator.anonymous() {
        let authenticated = state
            .authenticator
            .new_anonymous_user()
            .ok_or_else(|| HubError::Internal("no name for an anonymous user".into()))
            .page(&state, None)?;
        return match finish_login(&state, authenticated, next.clone()).await? {
            Ok(response) => Ok(response),
            Err(refusal) => refuse(&refusal),
        };
    }
    let Ok(name) = UserName::parse(typed) else {
        return refuse("Invalid username or password.");
    };
    let authenticated = match state.authenticator.authenticate(&name, password).await {
        Ok(authenticated) => authenticated,
        Err(hubfleet_types::AuthError::Refused(message)) => {
            tracing::info!(user = %name, reason = %message, "login refused");
            return refuse(&message);
        }
        Err(e) => return Err(HubError::Internal(e.to_string())).page(&state, None),
    };
    let Some(authenticated) = authenticated else {
        tracing::info!(user = %name, "failed login");
        return refuse("Invalid username or password.");
    };
    match finish_login(&state, authenticated, next.clone()).await? {
        Ok(response) => Ok(response),
        Err(refusal) => refuse(&refusal),
    }
}

/// `GET /hub/signup` (`native` logins only): the sign-up form.
async fn signup_form(State(state): State<AppStateRef>, headers: HeaderMap) -> PageResult {
    if state.authenticator.accounts().is_none() {
        return Ok(error_page(
            &state,
            StatusCode::NOT_FOUND,
            "This hub has no sign-up.",
            None,
        ));
    }
    let (xsrf, cookie) = xsrf_token(&state, &headers);
    let page = html(
        &state,
        "signup.html",
        context! { xsrf, username => "", message => "", created => false },
        StatusCode::OK,
    )?;
    Ok(with_cookies(page, cookie))
}

/// `POST /hub/signup`: `username`, `password`; creates an account awaiting approval. One client
/// address may create only so many accounts at a time ([`crate::login_limit::SIGNUP_LIMIT`]).
async fn signup_submit(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> PageResult {
    crate::login_limit::guard_signup(&headers, sign_up(&state, &headers, &form), |locked| {
        let message = format!(
            "Too many accounts were created from your address; try again in {} s.",
            locked.retry_after_seconds
        );
        let mut page = error_page(&state, StatusCode::TOO_MANY_REQUESTS, &message, None);
        page.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(locked.retry_after_seconds),
        );
        page
    })
    .await
}

async fn sign_up(state: &AppStateRef, headers: &HeaderMap, form: &Params) -> PageResult {
    let Some(accounts) = state.authenticator.accounts() else {
        return Ok(error_page(
            state,
            StatusCode::NOT_FOUND,
            "This hub has no sign-up.",
            None,
        ));
    };
    check_xsrf(headers, form.get("_xsrf").map(String::as_str)).page(state, None)?;
    let typed = form.get("username").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let render = |status: StatusCode, message: &str, created: bool| {
        let (xsrf, cookie) = xsrf_token(state, headers);
        let page = html(
            state,
            "signup.html",
            context! { xsrf, username => typed, message, created },
            status,
        )?;
        Ok(with_cookies(page, cookie))
    };
    let Ok(name) = UserName::parse(typed) else {
        return render(
            StatusCode::BAD_REQUEST,
            "Invalid user name: use letters, digits, '-', '_', '.' or '@'.",
            false,
        );
    };
    match accounts.sign_up(&name, password).await {
        Ok(()) => {
            tracing::info!(user = %name, "account created, awaiting approval");
            render(
                StatusCode::OK,
                "Your account was created. An administrator must approve it before you can sign in.",
                true,
            )
        }
        Err(hubfleet_types::AuthError::Refused(message)) => {
            render(StatusCode::BAD_REQUEST, &message, false)
        }
        Err(e) => Err(HubError::Internal(e.to_string())).page(state, None),
    }
}

/// The end of every successful authentication, form or OAuth: JupyterHub 5's allow rules
/// (`blocked_users`, `allow_all`, `allowed_users`, admins, the authenticator's own rules), then
/// the user is created or updated (admin flag, managed groups, sealed auth state), a session
/// starts and the browser goes to `next`, its server, or the spawn page.
///
/// `Ok(Err(message))` is a refusal to show the person.
pub(crate) async fn finish_login(
    state: &AppStateRef,
    authenticated: hubfleet_types::AuthenticatedUser,
    next: Option<String>,
) -> Result<Result<Response, String>, PageError> {
    let state = state.clone();
    let auth = &state.config.auth;
    let name = &authenticated.name;
    const NOT_ALLOWED: &str = "You are not allowed to use this hub.";
    if auth.blocked_users.contains(name) {
        tracing::info!(user = %name, "login refused: blocked");
        return Ok(Err(NOT_ALLOWED.into()));
    }
    let configured_admin = auth.admin_users.contains(name);
    let is_admin = configured_admin || authenticated.admin == Some(true);
    let existing = state.store.get_user(name).await.page(&state, None)?;
    let admitted = auth.allow_all
        || auth.allowed_users.contains(name)
        || is_admin
        || authenticated.allowed
        || (auth.allow_existing_users && existing.is_some());
    if !admitted {
        tracing::info!(user = %name, "login refused: not allowed");
        return Ok(Err(NOT_ALLOWED.into()));
    }
    let user = match existing {
        Some(user) => {
            // admin_users are always admins; otherwise an authenticator that decides admin
            // (admin_groups) grants and revokes it, and form logins only ever grant.
            let admin = configured_admin || authenticated.admin.unwrap_or(user.admin);
            if admin != user.admin {
                state
                    .store
                    .set_user_admin(user.id, admin)
                    .await
                    .page(&state, None)?;
            }
            User { admin, ..user }
        }
        None => state
            .store
            .create_user(name, is_admin)
            .await
            .page(&state, None)?,
    };
    if let Some(roles) = &authenticated.roles {
        // Only roles the configuration defines: a provider must not invent (or name its way
        // into) anything the operators did not set up.
        let (known, unknown): (Vec<String>, Vec<String>) = roles
            .iter()
            .cloned()
            .partition(|role| state.config.roles.iter().any(|r| &r.name == role));
        if !unknown.is_empty() {
            tracing::warn!(user = %user.name, ?unknown, "ignoring roles the configuration does not define");
        }
        state
            .store
            .set_roles(hubfleet_store::RoleHolder::User(user.id), &known)
            .await
            .page(&state, Some(&user))?;
    }
    if let Some(groups) = &authenticated.groups {
        state
            .store
            .set_user_groups(user.id, groups)
            .await
            .page(&state, Some(&user))?;
    }
    if let (Some(auth_state), Some(redirect)) =
        (&authenticated.auth_state, state.authenticator.redirect())
        && redirect.auth_state_enabled()
    {
        let sealed = redirect
            .seal_auth_state(auth_state)
            .map_err(|e| HubError::Internal(e.to_string()))
            .page(&state, Some(&user))?;
        state
            .store
            .set_auth_state(user.id, Some(sealed))
            .await
            .page(&state, Some(&user))?;
    }
    let secret = generate_token();
    let session_id = generate_token()[..32].to_string();
    let now = hubfleet_types::now();
    let max_age = state.config.hub.cookie_max_age;
    state
        .store
        .insert_session(&NewSession {
            hash: hash_token(&secret),
            session_id: session_id.clone(),
            user_id: user.id,
            created: now,
            expires_at: now
                + chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::days(14)),
        })
        .await
        .page(&state, Some(&user))?;
    state
        .store
        .touch_user_activity(user.id, now)
        .await
        .page(&state, Some(&user))?;
    tracing::info!(user = %user.name, "logged in");
    let running = state
        .store
        .get_server(user.id, &ServerName::default_server())
        .await
        .page(&state, Some(&user))?
        .is_some_and(|s| s.status == ServerStatus::Running);
    let destination = next.unwrap_or_else(|| {
        if running {
            state.server_prefix(user.name.as_str(), "")
        } else {
            format!("{}spawn", state.hub_prefix)
        }
    });
    let secure = state.secure_cookies;
    let login_cookie = cookies::set(
        cookies::LOGIN_COOKIE,
        &secret,
        &CookieAttrs {
            path: &state.hub_prefix,
            secure,
            max_age_seconds: Some(max_age.as_secs()),
        },
    );
    let session_cookie = cookies::set(
        cookies::SESSION_ID_COOKIE,
        &session_id,
        &CookieAttrs {
            path: &state.config.base_url,
            secure,
            max_age_seconds: Some(max_age.as_secs()),
        },
    );
    Ok(Ok(with_cookies(
        redirect_to(&destination),
        [login_cookie, session_cookie],
    )))
}

async fn logout(State(state): State<AppStateRef>, headers: HeaderMap) -> PageResult {
    let started = std::time::Instant::now();
    let response = logout_session(&state, &headers).await;
    state
        .metrics
        .timed(Timed::Logout, started.elapsed(), response.is_ok());
    response
}

async fn logout_session(state: &AppStateRef, headers: &HeaderMap) -> PageResult {
    let state = state.clone();
    if let Some(secret) = cookies::get(headers, cookies::LOGIN_COOKIE)
        && let Some(session) = state
            .store
            .delete_session(&hash_token(&secret))
            .await
            .page(&state, None)?
    {
        // Tokens that single-user servers obtained through this session die with it.
        state
            .store
            .delete_tokens_for_session(&session.session_id)
            .await
            .page(&state, None)?;
    }
    let clear = [
        cookies::clear(cookies::LOGIN_COOKIE, &state.hub_prefix),
        cookies::clear(cookies::SESSION_ID_COOKIE, &state.config.base_url),
        cookies::clear(cookies::XSRF_COOKIE, &state.hub_prefix),
    ];
    Ok(with_cookies(
        redirect_to(&format!("{}login", state.hub_prefix)),
        clear,
    ))
}

async fn home(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &uri.to_string()));
    };
    let user = me.user().expect("cookie identities are users");
    let server = state
        .store
        .get_server(user.id, &ServerName::default_server())
        .await
        .page(&state, Some(user))?;
    let status = match server.map(|s| s.status) {
        Some(ServerStatus::Running) => "running",
        Some(ServerStatus::Spawning) => "spawning",
        Some(ServerStatus::Stopping) => "stopping",
        Some(ServerStatus::Stopped) | None => "stopped",
    };
    let (xsrf, cookie) = xsrf_token(&state, &headers);
    let page = html(
        &state,
        "home.html",
        context! {
            user => user.name.as_str(),
            can_admin => me.scopes.has("admin-ui"),
            status,
            xsrf,
            server_url => state.server_prefix(user.name.as_str(), ""),
        },
        StatusCode::OK,
    )?;
    Ok(with_cookies(page, cookie))
}

/// Resolves the owner of the server a page acts on and checks the visitor may act on it.
async fn target_user(
    state: &AppStateRef,
    me: &Identity,
    owner: &str,
    scope: &str,
) -> Result<User, PageError> {
    let my_user = me.user();
    let not_found = || HubError::NotFound(format!("No such user: {owner}"));
    let name = UserName::parse(owner)
        .map_err(|_| not_found())
        .page(state, my_user)?;
    let user = state
        .store
        .get_user(&name)
        .await
        .page(state, my_user)?
        .ok_or_else(not_found)
        .page(state, my_user)?;
    let resource = hubfleet_core::scopes::Resource::Server {
        user: user.name.as_str(),
        server: "",
        groups: &[],
    };
    if !me.scopes.allows(scope, resource) {
        return Err(not_found()).page(state, my_user);
    }
    Ok(user)
}

/// `GET /hub/spawn[/<user>]` (JupyterHub starts servers on GET too: it is where login sends people).
async fn spawn_get(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<Params>,
    OriginalUri(uri): OriginalUri,
    owner: Option<Path<String>>,
) -> PageResult {
    let owner = owner.map(|Path(owner)| owner);
    spawn_page(state, headers, query, uri, owner, false, None).await
}

/// `POST /hub/spawn[/<user>]` from the hub's own forms, with their XSRF token.
async fn spawn_post(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<Params>,
    OriginalUri(uri): OriginalUri,
    owner: Option<Path<String>>,
    Form(form): Form<Params>,
) -> PageResult {
    let owner = owner.map(|Path(owner)| owner);
    let xsrf = form.get("_xsrf").cloned();
    spawn_page(state, headers, query, uri, owner, true, xsrf).await
}

/// `/hub/spawn[/<user>]`: starts the default server and sends the browser to the pending page.
async fn spawn_page(
    state: AppStateRef,
    headers: HeaderMap,
    query: Params,
    uri: http::Uri,
    owner: Option<String>,
    is_post: bool,
    form_xsrf: Option<String>,
) -> PageResult {
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &uri.to_string()));
    };
    if is_post {
        check_xsrf(&headers, form_xsrf.as_deref()).page(&state, me.user())?;
    }
    let owner = owner.unwrap_or_else(|| me.name().to_string());
    let user = target_user(&state, &me, &owner, "start:servers").await?;
    let next = safe_next(query.get("next"));
    let server = state
        .store
        .get_server(user.id, &ServerName::default_server())
        .await
        .page(&state, me.user())?;
    if server
        .as_ref()
        .is_some_and(|s| s.status == ServerStatus::Running)
    {
        return Ok(redirect_to(
            &next.unwrap_or_else(|| state.server_prefix(user.name.as_str(), "")),
        ));
    }
    if server
        .as_ref()
        .is_some_and(|s| s.status == ServerStatus::Stopping)
    {
        return Err(HubError::Conflict(
            "This server is stopping. Try again in a moment.".into(),
        ))
        .page(&state, me.user());
    }
    lifecycle::start_server(
        &state,
        &user,
        &ServerName::default_server(),
        serde_json::json!({}),
    )
    .await
    .page(&state, me.user())?;
    let mut pending = format!(
        "{}spawn-pending/{}",
        state.hub_prefix,
        url_escape(user.name.as_str())
    );
    if let Some(next) = next {
        pending.push_str(&format!(
            "?next={}",
            utf8_percent_encode(&next, NON_ALPHANUMERIC)
        ));
    }
    Ok(redirect_to(&pending))
}

async fn spawn_pending(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<Params>,
    OriginalUri(uri): OriginalUri,
    Path(owner): Path<String>,
) -> PageResult {
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &uri.to_string()));
    };
    let user = target_user(&state, &me, &owner, "read:servers").await?;
    let prefix = state.server_prefix(user.name.as_str(), "");
    let next = safe_next(query.get("next")).unwrap_or_else(|| prefix.clone());
    let server = state
        .store
        .get_server(user.id, &ServerName::default_server())
        .await
        .page(&state, me.user())?;
    let in_flight = state.spawns.subscribe(user.id, "").is_some();
    match server.map(|s| s.status) {
        Some(ServerStatus::Running) => return Ok(redirect_to(&next)),
        Some(ServerStatus::Spawning) => {}
        _ if in_flight => {} // a failed spawn: the page shows why
        _ => return Ok(redirect_to(&format!("{}home", state.hub_prefix))),
    }
    let (xsrf, cookie) = xsrf_token(&state, &headers);
    let progress_url = format!(
        "{}api/users/{}/server/progress?_xsrf={}",
        state.hub_prefix,
        url_escape(user.name.as_str()),
        xsrf
    );
    let page = html(
        &state,
        "spawn_pending.html",
        context! {
            user => me.name(),
            owner => user.name.as_str(),
            progress_url,
            next_url => next,
        },
        StatusCode::OK,
    )?;
    Ok(with_cookies(page, cookie))
}

async fn stop_user(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(owner): Path<String>,
    Form(form): Form<Params>,
) -> PageResult {
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &format!("{}home", state.hub_prefix)));
    };
    check_xsrf(&headers, form.get("_xsrf").map(String::as_str)).page(&state, me.user())?;
    let user = target_user(&state, &me, &owner, "delete:servers").await?;
    lifecycle::stop_server(&state, &user, &ServerName::default_server())
        .await
        .page(&state, me.user())?;
    Ok(redirect_to(&format!("{}home", state.hub_prefix)))
}

/// `/hub/user/<name>/…`: where the proxy's default route sends requests for servers it has no
/// route for. Running → back to the server (with a loop guard); starting → pending page;
/// stopped → 424 with a launch button.
async fn user_url(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    method: http::Method,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
    path: Path<HashMap<String, String>>,
) -> PageResult {
    let owner = path.get("user").cloned().unwrap_or_default();
    let rest = path.get("rest").cloned().unwrap_or_default();
    let server_path = format!(
        "{}user/{}/{}",
        state.config.base_url,
        url_escape(&owner),
        rest
    );
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &server_path));
    };
    let user = target_user(&state, &me, &owner, "access:servers").await?;
    let server = state
        .store
        .get_server(user.id, &ServerName::default_server())
        .await
        .page(&state, me.user())?;
    match server.map(|s| s.status) {
        Some(ServerStatus::Running) => {
            let redirects: u32 = query
                .get("redirects")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if redirects >= 4 {
                return Err(HubError::Internal(format!(
                    "redirect loop detected for {server_path}"
                )))
                .page(&state, me.user());
            }
            // The route may have been lost (proxy restart); restore before sending them back.
            lifecycle::sync_routes(&state)
                .await
                .page(&state, me.user())?;
            let mut query: Vec<(String, String)> = query
                .into_iter()
                .filter(|(k, _)| k != "redirects")
                .collect();
            query.push(("redirects".into(), (redirects + 1).to_string()));
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            Ok(redirect_to(&format!("{server_path}?{query}")))
        }
        Some(ServerStatus::Spawning) => Ok((
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!(
                    "{}spawn-pending/{}?next={}",
                    state.hub_prefix,
                    url_escape(user.name.as_str()),
                    utf8_percent_encode(&server_path, NON_ALPHANUMERIC)
                ),
            )],
        )
            .into_response()),
        _ => {
            let message = format!(
                "JupyterHub server no longer running at {server_path}. Restart the server at {}spawn/{}",
                state.hub_prefix,
                url_escape(user.name.as_str())
            );
            let wants_json = method != http::Method::GET
                || rest.split('/').any(|segment| segment == "api")
                || headers
                    .get(header::ACCEPT)
                    .and_then(|a| a.to_str().ok())
                    .is_some_and(|a| a.contains("application/json"));
            if wants_json {
                return Ok((
                    StatusCode::FAILED_DEPENDENCY,
                    axum::Json(serde_json::json!({ "status": 424, "message": message })),
                )
                    .into_response());
            }
            let _ = uri;
            let (xsrf, cookie) = xsrf_token(&state, &headers);
            let page = html(
                &state,
                "not_running.html",
                context! { user => me.name(), owner => user.name.as_str(), path => server_path, xsrf },
                StatusCode::FAILED_DEPENDENCY,
            )?;
            Ok(with_cookies(page, cookie))
        }
    }
}

async fn user_redirect(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(rest): Path<String>,
) -> PageResult {
    let Some(me) = current_user(&state, &headers).await.page(&state, None)? else {
        return Ok(login_redirect(&state, &uri.to_string()));
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(redirect_to(&format!(
        "{}{rest}{query}",
        state.server_prefix(me.name(), "")
    )))
}

/// The proxy's `--error-target`: it asks for `/hub/error/<code>?url=…` when a server's route is
/// broken, and shows our page with the original status.
async fn proxy_error(State(state): State<AppStateRef>, Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let message = match code {
        503 => "Your server appears to be down. Try restarting it from the hub.",
        404 => "Nothing is served at this address.",
        _ => "The proxy could not reach this server.",
    };
    error_page(&state, status, message, None)
}

/// Requests outside `/hub/` reach the hub when the proxy has no better route: send them to the
/// hub's equivalent URL (JupyterHub's `PrefixRedirectHandler`).
async fn prefix_redirect(
    State(state): State<AppStateRef>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let path = uri.path();
    let base = &state.config.base_url;
    if path.starts_with(&state.hub_prefix) {
        return error_page(&state, StatusCode::NOT_FOUND, "Page not found.", None);
    }
    let Some(rest) = path.strip_prefix(base.as_str()) else {
        return redirect_to(base);
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::to(&format!("{}{rest}{query}", state.hub_prefix)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(
            safe_next(Some(&"/user/a/lab".to_string())).as_deref(),
            Some("/user/a/lab")
        );
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil",
            "relative",
        ] {
            assert_eq!(safe_next(Some(&bad.to_string())), None, "{bad}");
        }
    }

    #[test]
    fn names_are_escaped_for_paths() {
        assert_eq!(url_escape("a b/c"), "a%20b%2Fc");
        assert_eq!(url_escape("me@x.org"), "me@x.org");
    }
}
