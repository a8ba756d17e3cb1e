//! The admin pages at `<base>hub/admin` (JupyterHub serves its admin UI there): list, search and
//! page through users; add and delete users; create groups and change their members; start and
//! stop users' servers; mint API tokens for users.
//!
//! Server-rendered HTML with plain forms, so it works without JavaScript and with a keyboard.
//! Every route needs the `admin-ui` scope (the `admin` role has it); anyone else gets a 403 page.
//! Each action additionally needs the scope the REST API would ask for (`admin:users`,
//! `admin:groups`, `servers`, `tokens`). State changes are POST forms carrying the `_xsrf` token;
//! they redirect back (Post/Redirect/Get) with a one-shot flash message kept in a short-lived
//! cookie, so a message can never be injected through a link.
//!
//! The user list is filtered, sorted and paged in SQL ([`hubfleet_store::Store::query_users`]) and
//! the groups and servers of a page come in one query each, so a page costs the same at 50 users
//! and at 50,000.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hubfleet_core::scopes::Resource;
use hubfleet_core::token::{generate_token, hash_token};
use hubfleet_store::{NewToken, ServerStatus, TokenOwner, User, UserQuery, UserSort};
use hubfleet_types::{ServerName, UserName};
use minijinja::context;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Serialize;

use crate::HubError;
use crate::cookies::{self, CookieAttrs};
use crate::identity::{self, Identity, check_xsrf};
use crate::lifecycle;
use crate::pages::url_escape;
use crate::pages::xsrf_token;
use crate::shared_password;
use crate::state::AppState;

type AppStateRef = Arc<AppState>;
type Params = HashMap<String, String>;

/// Users per page of the list.
pub(crate) const USERS_PER_PAGE: i64 = 50;
/// Groups shown on the list page (with their member counts).
const GROUPS_SHOWN: i64 = 200;
/// The cookie carrying the message for the next admin page view.
const FLASH_COOKIE: &str = "hubfleet-admin-flash";
/// A flash message outlives its redirect by at most this long.
const FLASH_MAX_AGE_SECONDS: u64 = 60;
/// Most names accepted in one "add users" or "change members" form.
const MAX_NAMES_PER_FORM: usize = 1000;
/// The expiries offered for new tokens, in seconds (0: never).
const TOKEN_EXPIRIES: &[(u64, &str)] = &[
    (0, "Never"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days"),
    (365 * 86_400, "1 year"),
];

pub(crate) fn router(state: AppStateRef) -> Router {
    let admin = format!("{}admin", state.hub_prefix);
    Router::new()
        .route(&admin, get(list_page))
        .route(&format!("{admin}/"), get(list_page))
        .route(&format!("{admin}/users"), post(add_users))
        .route(&format!("{admin}/users/{{user}}"), get(user_page))
        .route(&format!("{admin}/users/{{user}}/delete"), post(delete_user))
        .route(&format!("{admin}/users/{{user}}/start"), post(start_server))
        .route(&format!("{admin}/users/{{user}}/stop"), post(stop_server))
        .route(
            &format!("{admin}/users/{{user}}/remove-server"),
            post(remove_server),
        )
        .route(&format!("{admin}/users/{{user}}/token"), post(mint_token))
        .route(
            &format!("{admin}/shared-password"),
            post(rotate_shared_password),
        )
        .route(&format!("{admin}/accounts/approve"), post(approve_account))
        .route(&format!("{admin}/groups"), post(create_group))
        .route(&format!("{admin}/groups/members"), post(change_members))
        .with_state(state)
}

/// Why an admin request did not go through: a page with a status, or a redirect to log in.
enum Refusal {
    Page {
        status: StatusCode,
        message: String,
        user: Option<String>,
    },
    Login(String),
}

impl From<HubError> for Refusal {
    fn from(error: HubError) -> Self {
        let (status, message) = error.public();
        if status.is_server_error() {
            tracing::error!(error = %error, "admin page failed");
        }
        Refusal::Page {
            status,
            message,
            user: None,
        }
    }
}

impl From<hubfleet_store::StoreError> for Refusal {
    fn from(error: hubfleet_store::StoreError) -> Self {
        Refusal::from(HubError::from(error))
    }
}

fn refusal_response(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Login(next) => (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                format!(
                    "{}login?next={}",
                    state.hub_prefix,
                    utf8_percent_encode(&next, NON_ALPHANUMERIC)
                ),
            )],
        )
            .into_response(),
        Refusal::Page {
            status,
            message,
            user,
        } => {
            let page = state.templates.render(
                "error.html",
                context! {
                    status => status.as_u16(),
                    reason => status.canonical_reason().unwrap_or(""),
                    message => &message,
                    user,
                },
            );
            match page {
                Ok(html) => (status, Html(html)).into_response(),
                Err(_) => (status, message).into_response(),
            }
        }
    }
}

/// Runs an admin handler body and renders its refusal, if any, as a page.
async fn respond(
    state: AppStateRef,
    body: impl Future<Output = Result<Response, Refusal>>,
) -> Response {
    match body.await {
        Ok(response) => response,
        Err(refusal) => refusal_response(&state, refusal),
    }
}

fn redirect(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The visitor, if they may use the admin pages. Anonymous visitors are sent to log in on GET and
/// refused otherwise; people without `admin-ui` get a 403 page.
async fn admin_visitor(
    state: &AppState,
    headers: &HeaderMap,
    uri: &http::Uri,
    is_get: bool,
) -> Result<Identity, Refusal> {
    let Some(me) = identity::from_cookie(state, headers).await? else {
        if is_get {
            return Err(Refusal::Login(uri.to_string()));
        }
        return Err(forbidden(
            None,
            "You must be logged in to use the admin page.",
        ));
    };
    if !me.scopes.has("admin-ui") {
        tracing::info!(user = %me.name(), path = %uri.path(), "admin page refused");
        return Err(forbidden(
            Some(&me),
            "You are not allowed to use the admin page (it requires the admin-ui scope).",
        ));
    }
    Ok(me)
}

/// An admin visitor posting a form: also checks the XSRF token.
async fn admin_poster(
    state: &AppState,
    headers: &HeaderMap,
    uri: &http::Uri,
    form: &Params,
) -> Result<Identity, Refusal> {
    let me = admin_visitor(state, headers, uri, false).await?;
    check_xsrf(headers, form.get("_xsrf").map(String::as_str)).map_err(|e| {
        let (status, message) = e.public();
        Refusal::Page {
            status,
            message,
            user: Some(me.name().to_string()),
        }
    })?;
    Ok(me)
}

fn forbidden(me: Option<&Identity>, message: &str) -> Refusal {
    Refusal::Page {
        status: StatusCode::FORBIDDEN,
        message: message.to_string(),
        user: me.map(|m| m.name().to_string()),
    }
}

/// Checks that `me` holds `scope` on `resource`, for an action beyond viewing the admin page.
fn require(me: &Identity, scope: &str, resource: Resource<'_>) -> Result<(), Refusal> {
    if me.scopes.allows(scope, resource) {
        Ok(())
    } else {
        Err(forbidden(
            Some(me),
            &format!("This action requires the {scope} scope."),
        ))
    }
}

/// A message for the next admin page the browser shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Flash {
    /// `ok` or `error`.
    kind: &'static str,
    message: String,
}

impl Flash {
    fn ok(message: impl Into<String>) -> Flash {
        Flash {
            kind: "ok",
            message: message.into(),
        }
    }

    fn error(message: impl Into<String>) -> Flash {
        Flash {
            kind: "error",
            message: message.into(),
        }
    }

    fn encode(&self) -> String {
        let tagged = format!("{}:{}", self.kind, self.message);
        utf8_percent_encode(&tagged, NON_ALPHANUMERIC).to_string()
    }

    fn decode(value: &str) -> Option<Flash> {
        let text = percent_decode_str(value).decode_utf8().ok()?;
        let (kind, message) = text.split_once(':')?;
        let kind = match kind {
            "ok" => "ok",
            "error" => "error",
            _ => return None,
        };
        Some(Flash {
            kind,
            message: message.chars().take(2000).collect(),
        })
    }
}

fn flash_path(state: &AppState) -> String {
    format!("{}admin", state.hub_prefix)
}

/// The flash message to show on this view, and the cookie that consumes it.
fn take_flash(state: &AppState, headers: &HeaderMap) -> (Option<Flash>, Option<String>) {
    match cookies::get(headers, FLASH_COOKIE) {
        Some(value) => (
            Flash::decode(&value),
            Some(cookies::clear(FLASH_COOKIE, &flash_path(state))),
        ),
        None => (None, None),
    }
}

/// Redirects back to the page the form came from, with `flash` for it.
fn back_with(state: &AppState, form: &Params, flash: Flash) -> Response {
    let cookie = cookies::set(
        FLASH_COOKIE,
        &flash.encode(),
        &CookieAttrs {
            path: &flash_path(state),
            secure: state.secure_cookies,
            max_age_seconds: Some(FLASH_MAX_AGE_SECONDS),
        },
    );
    let mut response = redirect(&back_target(state, form.get("back")));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Forms say where to return with a `back` field; only admin pages are accepted (no open
/// redirects), anything else returns to the list.
fn back_target(state: &AppState, back: Option<&String>) -> String {
    let admin = flash_path(state);
    match back {
        Some(back)
            if back.starts_with(&admin)
                && !back.contains("//")
                && !back.contains('\\')
                && !back.chars().any(char::is_control) =>
        {
            back.clone()
        }
        _ => admin,
    }
}

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A template value from anything serde can serialize.
fn serde_value<T: Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

fn render(state: &AppState, template: &str, ctx: minijinja::Value) -> Result<Response, Refusal> {
    let body = state.templates.render(template, ctx)?;
    let mut response = (StatusCode::OK, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Splits a form field into names: separated by whitespace or commas, blanks dropped.
fn split_names(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|n| !n.is_empty())
        .collect()
}

/// Parses every name; the error lists the invalid ones.
fn parse_user_names(text: &str) -> Result<Vec<UserName>, String> {
    let raw = split_names(text);
    if raw.is_empty() {
        return Err("Enter at least one user name.".into());
    }
    if raw.len() > MAX_NAMES_PER_FORM {
        return Err(format!(
            "At most {MAX_NAMES_PER_FORM} names at a time, please."
        ));
    }
    let mut names = Vec::with_capacity(raw.len());
    let mut invalid = Vec::new();
    for name in raw {
        match UserName::parse(name) {
            Ok(parsed) if !names.contains(&parsed) => names.push(parsed),
            Ok(_) => {}
            Err(_) => invalid.push(format!("{name:?}")),
        }
    }
    if invalid.is_empty() {
        Ok(names)
    } else {
        Err(format!("Invalid user name(s): {}.", invalid.join(", ")))
    }
}

/// Group names, as the REST API accepts them: non-empty, at most 255 bytes, no `/`, no
/// surrounding whitespace.
fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(format!("Invalid group name {name:?}."));
    }
    Ok(())
}

fn status_word(status: ServerStatus) -> &'static str {
    match status {
        ServerStatus::Running => "running",
        ServerStatus::Spawning => "starting",
        ServerStatus::Stopping => "stopping",
        ServerStatus::Stopped => "stopped",
    }
}

fn when(ts: Option<&hubfleet_types::Timestamp>) -> String {
    ts.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".to_string())
}

#[derive(Serialize)]
struct ServerRow {
    /// Empty for the default server.
    name: String,
    status: &'static str,
    url: String,
    /// Whether the row offers Start (else Stop).
    startable: bool,
}

#[derive(Serialize)]
struct UserRow {
    name: String,
    admin: bool,
    groups: Vec<String>,
    /// The default server's status (`stopped` when it never ran).
    status: &'static str,
    startable: bool,
    named_servers: Vec<ServerRow>,
    last_activity: String,
}

/// The rows of a page of users: groups and servers in one query each.
async fn user_rows(state: &AppState, users: &[User]) -> Result<Vec<UserRow>, Refusal> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut groups = state.store.groups_of_users(&ids).await?;
    let servers = state.store.list_servers_for_users(&ids, false).await?;
    Ok(users
        .iter()
        .map(|user| {
            let mine = servers.iter().filter(|s| s.user_id == user.id);
            let default = mine.clone().find(|s| s.name.is_default());
            let status = default.map_or(ServerStatus::Stopped, |s| s.status);
            let named_servers = mine
                .filter(|s| !s.name.is_default())
                .map(|s| ServerRow {
                    name: s.name.as_str().to_string(),
                    status: status_word(s.status),
                    url: state.server_prefix(user.name.as_str(), s.name.as_str()),
                    startable: s.status == ServerStatus::Stopped,
                })
                .collect();
            UserRow {
                name: user.name.as_str().to_string(),
                admin: user.admin,
                groups: groups.remove(&user.id).unwrap_or_default(),
                status: status_word(status),
                startable: status == ServerStatus::Stopped,
                named_servers,
                last_activity: when(user.last_activity.as_ref()),
            }
        })
        .collect())
}

/// `GET /hub/admin?q=<name substring>&page=<n>`: the user list.
async fn list_page(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_visitor(&state, &headers, &uri, true).await?;
        let search = query
            .get("q")
            .map(|q| q.trim().to_lowercase())
            .unwrap_or_default();
        let page: i64 = query
            .get("page")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1);
        let (users, total) = state
            .store
            .query_users(&UserQuery {
                name_filter: (!search.is_empty()).then(|| search.clone()),
                sort: UserSort::Name,
                offset: (page - 1).saturating_mul(USERS_PER_PAGE),
                limit: USERS_PER_PAGE,
                ..UserQuery::default()
            })
            .await?;
        let rows = user_rows(&state, &users).await?;
        let (groups, group_total) = state.store.list_groups(0, GROUPS_SHOWN, None).await?;
        let groups: Vec<_> = groups
            .iter()
            .map(|g| context! { name => &g.name, members => g.users.len() })
            .collect();
        let pages = ((total + USERS_PER_PAGE - 1) / USERS_PER_PAGE).max(1);
        let page_url = |n: i64| {
            let mut url = format!("{}?page={n}", flash_path(&state));
            if !search.is_empty() {
                url.push_str(&format!(
                    "&q={}",
                    utf8_percent_encode(&search, NON_ALPHANUMERIC)
                ));
            }
            url
        };
        let first = if total == 0 {
            0
        } else {
            (page - 1) * USERS_PER_PAGE + 1
        };
        let (prev_url, next_url) = (
            (page > 1).then(|| page_url(page - 1)),
            (page < pages).then(|| page_url(page + 1)),
        );
        let pending_accounts: Option<Vec<String>> = match state.authenticator.accounts() {
            Some(accounts) => Some(
                accounts
                    .pending()
                    .await
                    .map_err(|e| HubError::Internal(e.to_string()))?
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
            ),
            None => None,
        };
        let (xsrf, xsrf_cookie) = xsrf_token(&state, &headers);
        let (flash, flash_cookie) = take_flash(&state, &headers);
        let page_html = render(
            &state,
            "admin.html",
            context! {
                user => me.name(),
                can_admin => true,
                xsrf,
                flash => serde_value(&flash),
                back => uri.to_string(),
                search,
                users => serde_value(&rows),
                total,
                first,
                last => (first + users.len() as i64 - 1).max(0),
                page,
                pages,
                prev_url,
                next_url,
                groups,
                group_total,
                groups_shown => GROUPS_SHOWN,
                pending_accounts,
                shared_password => state.authenticator.shared_password().is_some(),
                shared_password_expires => state
                    .authenticator
                    .shared_password()
                    .and_then(|p| p.expires_at())
                    .map(|t| when(Some(&t))),
            },
        )?;
        Ok(with_cookies(
            page_html,
            xsrf_cookie.into_iter().chain(flash_cookie),
        ))
    })
    .await
}

async fn find_user(state: &AppState, me: &Identity, name: &str) -> Result<User, Refusal> {
    let not_found = || Refusal::Page {
        status: StatusCode::NOT_FOUND,
        message: format!("No such user: {name}"),
        user: Some(me.name().to_string()),
    };
    let parsed = UserName::parse(name).map_err(|_| not_found())?;
    state.store.get_user(&parsed).await?.ok_or_else(not_found)
}

/// `GET /hub/admin/users/<name>`: one user's groups, servers, token form and delete button.
async fn user_page(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_visitor(&state, &headers, &uri, true).await?;
        let user = find_user(&state, &me, &name).await?;
        let mut groups = state.store.groups_of_users(&[user.id]).await?;
        let servers = state.store.list_user_servers(user.id).await?;
        let mut rows: Vec<ServerRow> = servers
            .iter()
            .map(|s| ServerRow {
                name: s.name.as_str().to_string(),
                status: status_word(s.status),
                url: state.server_prefix(user.name.as_str(), s.name.as_str()),
                startable: s.status == ServerStatus::Stopped,
            })
            .collect();
        if !rows.iter().any(|r| r.name.is_empty()) {
            rows.insert(
                0,
                ServerRow {
                    name: String::new(),
                    status: "stopped",
                    url: state.server_prefix(user.name.as_str(), ""),
                    startable: true,
                },
            );
        }
        let tokens = state.store.list_user_tokens(user.id).await?;
        let tokens: Vec<_> = tokens
            .iter()
            .map(|t| {
                context! {
                    note => &t.note,
                    created => when(Some(&t.created)),
                    expires => t.expires_at.as_ref().map(|e| when(Some(e))).unwrap_or_else(|| "never".into()),
                    last_activity => when(t.last_activity.as_ref()),
                }
            })
            .collect();
        let expiries: Vec<_> = TOKEN_EXPIRIES
            .iter()
            .map(|(seconds, label)| context! { seconds, label => *label })
            .collect();
        let (xsrf, xsrf_cookie) = xsrf_token(&state, &headers);
        let (flash, flash_cookie) = take_flash(&state, &headers);
        let page = render(
            &state,
            "admin_user.html",
            context! {
                user => me.name(),
                can_admin => true,
                xsrf,
                flash => serde_value(&flash),
                back => uri.to_string(),
                target => user.name.as_str(),
                target_path => url_escape(user.name.as_str()),
                admin => user.admin,
                created => when(Some(&user.created)),
                last_activity => when(user.last_activity.as_ref()),
                groups => groups.remove(&user.id).unwrap_or_default(),
                servers => serde_value(&rows),
                named_servers_allowed => state.config.allow_named_servers,
                tokens,
                expiries,
                is_self => me.user().is_some_and(|u| u.id == user.id),
            },
        )?;
        Ok(with_cookies(page, xsrf_cookie.into_iter().chain(flash_cookie)))
    })
    .await
}

/// `POST /hub/admin/accounts/approve`: `name`, a `native` account awaiting approval.
async fn approve_account(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        require(&me, "admin:users", Resource::Hub)?;
        let Some(accounts) = state.authenticator.accounts() else {
            return Ok(back_with(
                &state,
                &form,
                Flash::error("This hub has no sign-up accounts."),
            ));
        };
        let raw = form.get("name").map(String::as_str).unwrap_or("");
        let Ok(name) = UserName::parse(raw) else {
            return Ok(back_with(
                &state,
                &form,
                Flash::error(format!("Invalid user name {raw:?}.")),
            ));
        };
        let approved = accounts
            .approve(&name)
            .await
            .map_err(|e| HubError::Internal(e.to_string()))?;
        let flash = if approved {
            tracing::info!(by = %me.name(), user = %name, "admin approved an account");
            Flash::ok(format!("Approved {name}; they can sign in now."))
        } else {
            Flash::error(format!("No account named {name}."))
        };
        Ok(back_with(&state, &form, flash))
    })
    .await
}

/// `POST /hub/admin/shared-password`: `password`, `expires_at` (optional; RFC 3339 or the
/// form's `datetime-local`, taken as UTC) and `end_sessions` (`none`, `non-admin`, `all`).
async fn rotate_shared_password(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        require(&me, "admin:users", Resource::Hub)?;
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let result = async {
            let rotation = shared_password::Rotation {
                password: field("password"),
                expires_at: shared_password::parse_expiry(field("expires_at"))?,
                end_sessions: shared_password::EndSessions::parse(field("end_sessions"))?,
                by: me.name(),
            };
            let expires_at = rotation.expires_at;
            let ended = shared_password::rotate(&state, rotation).await?;
            Ok::<_, HubError>((expires_at, ended))
        }
        .await;
        let flash = match result {
            Ok((expires_at, ended)) => {
                let expiry = match expires_at {
                    Some(at) => format!(" It expires {}.", when(Some(&at))),
                    None => " It does not expire.".to_string(),
                };
                Flash::ok(format!(
                    "Shared password changed; the old one no longer works.{expiry} Sessions ended: {ended}."
                ))
            }
            Err(HubError::BadRequest(message) | HubError::Conflict(message)) => {
                Flash::error(message)
            }
            Err(other) => return Err(other.into()),
        };
        Ok(back_with(&state, &form, flash))
    })
    .await
}

/// `POST /hub/admin/users`: `names` (several, separated by spaces, commas or lines), `admin`.
async fn add_users(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        require(&me, "admin:users", Resource::Hub)?;
        let names = match parse_user_names(form.get("names").map(String::as_str).unwrap_or("")) {
            Ok(names) => names,
            Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
        };
        let admin = form.get("admin").is_some_and(|v| v == "on" || v == "true");
        let created = state.store.create_users(&names, admin).await?;
        let created_names: Vec<&str> = created.iter().map(|u| u.name.as_str()).collect();
        let existing: Vec<&str> = names
            .iter()
            .map(UserName::as_str)
            .filter(|n| !created_names.contains(n))
            .collect();
        tracing::info!(by = %me.name(), users = ?created_names, admin, "admin added users");
        let flash = match (created_names.is_empty(), existing.is_empty()) {
            (true, _) => Flash::error(format!("Already exist: {}.", existing.join(", "))),
            (false, true) => Flash::ok(format!("Added {}.", created_names.join(", "))),
            (false, false) => Flash::ok(format!(
                "Added {}. Already existed: {}.",
                created_names.join(", "),
                existing.join(", ")
            )),
        };
        Ok(back_with(&state, &form, flash))
    })
    .await
}

/// `POST /hub/admin/users/<name>/delete`: stops the user's servers, then deletes the user.
async fn delete_user(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(mut form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let user = find_user(&state, &me, &name).await?;
        require(
            &me,
            "delete:users",
            Resource::User {
                name: user.name.as_str(),
                groups: &[],
            },
        )?;
        if me.user().is_some_and(|u| u.id == user.id) {
            return Ok(back_with(
                &state,
                &form,
                Flash::error("You cannot delete yourself."),
            ));
        }
        let servers = state.store.list_user_servers(user.id).await?;
        for server in servers.iter().filter(|s| s.status != ServerStatus::Stopped) {
            lifecycle::stop_server(&state, &user, &server.name).await?;
        }
        state.store.delete_user(user.id).await?;
        tracing::info!(by = %me.name(), user = %user.name, "admin deleted user");
        // The user's own page no longer exists: return to the list.
        form.remove("back");
        Ok(back_with(
            &state,
            &form,
            Flash::ok(format!("Deleted {}.", user.name)),
        ))
    })
    .await
}

fn server_label(user: &User, server: &ServerName) -> String {
    if server.is_default() {
        format!("{}'s server", user.name)
    } else {
        format!("{}'s server {:?}", user.name, server.as_str())
    }
}

/// The `server` field of a start/stop form: empty for the default server.
fn form_server(form: &Params) -> Result<ServerName, String> {
    let raw = form.get("server").map(|s| s.trim()).unwrap_or("");
    ServerName::parse(raw).map_err(|e| format!("Invalid server name {:?}: {}.", raw, e.reason))
}

/// The caller's `scope` must cover this one server of `user` (start, stop, remove).
fn require_on_server(
    me: &Identity,
    scope: &str,
    user: &User,
    server: &ServerName,
) -> Result<(), Refusal> {
    require(
        me,
        scope,
        Resource::Server {
            user: user.name.as_str(),
            server: server.as_str(),
            groups: &[],
        },
    )?;
    Ok(())
}

/// `POST /hub/admin/users/<name>/start` with `server` (empty: the default server).
async fn start_server(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let user = find_user(&state, &me, &name).await?;
        let server = match form_server(&form) {
            Ok(server) => server,
            Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
        };
        require_on_server(&me, "start:servers", &user, &server)?;
        let label = server_label(&user, &server);
        let existing = state.store.get_server(user.id, &server).await?;
        if !server.is_default() && existing.is_none() {
            if !state.config.allow_named_servers {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error("Named servers are not enabled on this hub."),
                ));
            }
            let limit = state.config.named_server_limit_per_user as usize;
            let named = state
                .store
                .list_user_servers(user.id)
                .await?
                .iter()
                .filter(|s| !s.name.is_default())
                .count();
            if limit > 0 && named >= limit {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error(format!(
                        "{} already has {named} named servers (the limit is {limit}).",
                        user.name
                    )),
                ));
            }
        }
        match existing.map(|s| s.status) {
            Some(ServerStatus::Running) => {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error(format!("{label} is already running.")),
                ));
            }
            Some(ServerStatus::Stopping) => {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error(format!(
                        "{label} is stopping; try again when it has stopped."
                    )),
                ));
            }
            _ => {}
        }
        match lifecycle::start_server(&state, &user, &server, serde_json::json!({})).await {
            Ok(_) => {
                tracing::info!(by = %me.name(), user = %user.name, server = server.as_str(), "admin started server");
                Ok(back_with(
                    &state,
                    &form,
                    Flash::ok(format!("Starting {label}.")),
                ))
            }
            Err(error) if !error.public().0.is_server_error() => {
                Ok(back_with(&state, &form, Flash::error(error.public().1)))
            }
            Err(error) => Err(error.into()),
        }
    })
    .await
}

/// `POST /hub/admin/users/<name>/stop` with `server`: stops it (cancelling a spawn in flight).
async fn stop_server(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let user = find_user(&state, &me, &name).await?;
        let server = match form_server(&form) {
            Ok(server) => server,
            Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
        };
        require_on_server(&me, "delete:servers", &user, &server)?;
        let label = server_label(&user, &server);
        let active = state
            .store
            .get_server(user.id, &server)
            .await?
            .is_some_and(|s| s.status != ServerStatus::Stopped);
        if !active && state.spawns.subscribe(user.id, server.as_str()).is_none() {
            return Ok(back_with(
                &state,
                &form,
                Flash::error(format!("{label} is not running.")),
            ));
        }
        lifecycle::stop_server(&state, &user, &server).await?;
        tracing::info!(by = %me.name(), user = %user.name, server = server.as_str(), "admin stopped server");
        Ok(back_with(
            &state,
            &form,
            Flash::ok(format!("Stopped {label}.")),
        ))
    })
    .await
}

/// `POST /hub/admin/users/<name>/remove-server`: stops a named server if it runs, then deletes it
/// (JupyterHub's `DELETE …/servers/<name>` with `remove: true`). The default server cannot go.
async fn remove_server(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let user = find_user(&state, &me, &name).await?;
        let server = match form_server(&form) {
            Ok(server) if !server.is_default() => server,
            Ok(_) => {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error("The default server cannot be removed, only stopped."),
                ));
            }
            Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
        };
        require_on_server(&me, "delete:servers", &user, &server)?;
        let label = server_label(&user, &server);
        let Some(record) = state.store.get_server(user.id, &server).await? else {
            return Ok(back_with(
                &state,
                &form,
                Flash::error(format!("{label} does not exist.")),
            ));
        };
        lifecycle::stop_server(&state, &user, &server).await?;
        state.store.delete_server(record.id).await?;
        tracing::info!(by = %me.name(), user = %user.name, server = server.as_str(), "admin removed server");
        Ok(back_with(
            &state,
            &form,
            Flash::ok(format!("Removed {label}.")),
        ))
    })
    .await
}

/// `POST /hub/admin/groups`: `name`, optional `members`. A duplicate name is an error.
async fn create_group(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        require(&me, "admin:groups", Resource::Hub)?;
        let name = form.get("name").map(String::as_str).unwrap_or("");
        if let Err(message) = check_group_name(name) {
            return Ok(back_with(&state, &form, Flash::error(message)));
        }
        let members_text = form.get("members").map(String::as_str).unwrap_or("");
        let members = if split_names(members_text).is_empty() {
            Vec::new()
        } else {
            match parse_user_names(members_text) {
                Ok(names) => names,
                Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
            }
        };
        let member_names: Vec<String> = members.iter().map(|n| n.as_str().to_string()).collect();
        match state
            .store
            .create_groups(&[name.to_string()], &member_names)
            .await
        {
            Ok(_) => {
                tracing::info!(by = %me.name(), group = name, "admin created group");
                Ok(back_with(
                    &state,
                    &form,
                    Flash::ok(format!("Created group {name}.")),
                ))
            }
            Err(hubfleet_store::StoreError::Conflict(_)) => Ok(back_with(
                &state,
                &form,
                Flash::error(format!("Group {name} already exists.")),
            )),
            Err(hubfleet_store::StoreError::NotFound) => Ok(back_with(
                &state,
                &form,
                Flash::error(format!(
                    "Group {name} was not created: some members are not users ({}).",
                    unknown_users(&state, &members).await?.join(", ")
                )),
            )),
            Err(error) => Err(error.into()),
        }
    })
    .await
}

/// The names among `names` that are not users.
async fn unknown_users(state: &AppState, names: &[UserName]) -> Result<Vec<String>, Refusal> {
    let mut unknown = Vec::new();
    for name in names {
        if state.store.get_user(name).await?.is_none() {
            unknown.push(name.as_str().to_string());
        }
    }
    Ok(unknown)
}

/// `POST /hub/admin/groups/members`: `group`, `users` (several names), `action` = `add` | `remove`.
async fn change_members(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let group_name = form.get("group").map(|g| g.trim()).unwrap_or("");
        require(&me, "groups", Resource::Group { name: group_name })?;
        let add = match form.get("action").map(String::as_str) {
            Some("add") => true,
            Some("remove") => false,
            _ => {
                return Ok(back_with(
                    &state,
                    &form,
                    Flash::error("Choose whether to add or remove the users."),
                ));
            }
        };
        if group_name.is_empty() {
            return Ok(back_with(&state, &form, Flash::error("Enter a group name.")));
        }
        let Some(group) = state.store.get_group(group_name).await? else {
            return Ok(back_with(
                &state,
                &form,
                Flash::error(format!("No such group: {group_name}.")),
            ));
        };
        let names = match parse_user_names(form.get("users").map(String::as_str).unwrap_or("")) {
            Ok(names) => names,
            Err(message) => return Ok(back_with(&state, &form, Flash::error(message))),
        };
        let unknown = unknown_users(&state, &names).await?;
        if !unknown.is_empty() {
            return Ok(back_with(
                &state,
                &form,
                Flash::error(format!("No such user(s): {}.", unknown.join(", "))),
            ));
        }
        let list: Vec<String> = names.iter().map(|n| n.as_str().to_string()).collect();
        state
            .store
            .change_group_members(group.id, &list, add)
            .await?;
        tracing::info!(by = %me.name(), group = %group.name, users = ?list, add, "admin changed group members");
        let message = if add {
            format!("Added {} to group {}.", list.join(", "), group.name)
        } else {
            format!("Removed {} from group {}.", list.join(", "), group.name)
        };
        Ok(back_with(&state, &form, Flash::ok(message)))
    })
    .await
}

/// `POST /hub/admin/users/<name>/token`: `note`, `expires_in` (seconds, 0 = never). The token is
/// shown once on the response page (never in a URL, a cookie or the log) and stored hashed.
async fn mint_token(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(name): Path<String>,
    Form(form): Form<Params>,
) -> Response {
    respond(state.clone(), async move {
        let me = admin_poster(&state, &headers, &uri, &form).await?;
        let user = find_user(&state, &me, &name).await?;
        require(
            &me,
            "tokens",
            Resource::User {
                name: user.name.as_str(),
                groups: &[],
            },
        )?;
        let expires_in: u64 = match form.get("expires_in").map(|e| e.trim()) {
            None | Some("") => 0,
            Some(text) => match text.parse() {
                Ok(seconds) if TOKEN_EXPIRIES.iter().any(|(s, _)| *s == seconds) => seconds,
                _ => {
                    return Ok(back_with(
                        &state,
                        &form,
                        Flash::error(format!("Invalid expiry {text:?}.")),
                    ));
                }
            },
        };
        let note = form.get("note").map(|n| n.trim()).unwrap_or("");
        if note.chars().count() > 1000 || note.chars().any(char::is_control) {
            return Ok(back_with(
                &state,
                &form,
                Flash::error("The note must be one line of at most 1000 characters."),
            ));
        }
        let note = if note.is_empty() {
            format!("Requested via admin page by {}", me.name())
        } else {
            note.to_string()
        };
        let now = hubfleet_types::now();
        let expires_at = (expires_in > 0)
            .then(|| now + chrono::Duration::seconds(i64::try_from(expires_in).unwrap_or(0)));
        let secret = generate_token();
        state
            .store
            .insert_token(&NewToken {
                hash: hash_token(&secret),
                owner: TokenOwner::User(user.id),
                scopes: vec!["inherit".to_string()],
                note: note.clone(),
                created: now,
                expires_at,
                session_id: None,
                oauth_client_id: None,
            })
            .await?;
        tracing::info!(by = %me.name(), user = %user.name, "admin minted a token");
        render(
            &state,
            "admin_token.html",
            context! {
                user => me.name(),
                can_admin => true,
                target => user.name.as_str(),
                target_path => url_escape(user.name.as_str()),
                token => secret,
                note,
                expires => expires_at.as_ref().map(|e| when(Some(e))).unwrap_or_else(|| "never".into()),
            },
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_on_spaces_commas_and_lines_and_validated() {
        let names = parse_user_names("Alice, bob\ncarol  alice").unwrap();
        let names: Vec<&str> = names.iter().map(UserName::as_str).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        let error = parse_user_names("ok bad/name").unwrap_err();
        assert!(error.contains("\"bad/name\""), "{error}");
        assert!(parse_user_names(" , \n").is_err());
    }

    #[test]
    fn group_names_follow_the_api_rules() {
        assert!(check_group_name("staff").is_ok());
        for bad in ["", "a/b", " staff", "x\ny"] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flash_messages_survive_the_cookie_and_reject_forged_kinds() {
        let flash = Flash::error("No such user: \"x; y\" <b>");
        let encoded = flash.encode();
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '%'),
            "{encoded}"
        );
        assert_eq!(Flash::decode(&encoded), Some(flash));
        assert_eq!(Flash::decode("evil%3Ahello"), None);
    }
}
