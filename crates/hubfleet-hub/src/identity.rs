//! Who is making a request, and with which scopes: a user's come from their roles, their
//! groups' roles, and the servers shared with them or their groups.
//!
//! Credentials are an API token in `Authorization: token …`/`Bearer …`, or the hub login cookie.
//! Cookie-authenticated requests that could change something must carry the XSRF token; token
//! requests never need it (a cross-site page cannot set an Authorization header).

use http::{HeaderMap, Method};
use hubfleet_core::scopes::{ADMIN_ROLE_SCOPES, Owner, ScopeSet};
use hubfleet_core::token::{hash_token, secrets_equal};
use hubfleet_store::{Service, TokenOwner, User};

use crate::HubError;
use crate::cookies;
use crate::state::AppState;

/// Token activity is recorded at most this often per token (JupyterHub's `activity_resolution`).
const TOKEN_ACTIVITY_RESOLUTION_SECONDS: i64 = 30;

#[derive(Debug, Clone)]
pub(crate) enum Principal {
    User(User),
    Service(Service),
}

#[derive(Debug, Clone)]
pub(crate) enum Credential {
    Cookie {
        session_id: String,
    },
    Token {
        token_id: i64,
        session_id: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub principal: Principal,
    pub scopes: ScopeSet,
    pub credential: Credential,
}

impl Identity {
    pub fn user(&self) -> Option<&User> {
        match &self.principal {
            Principal::User(user) => Some(user),
            Principal::Service(_) => None,
        }
    }

    pub fn name(&self) -> &str {
        match &self.principal {
            Principal::User(user) => user.name.as_str(),
            Principal::Service(service) => &service.name,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Cookie { session_id } => Some(session_id),
            Credential::Token { session_id, .. } => session_id.as_deref(),
        }
    }
}

/// JupyterHub's default roles; `user`, `server` and `token` may be redefined in the config,
/// `admin` may not.
const DEFAULT_ROLES: &[(&str, &str, &[&str])] = &[
    ("user", "Standard permissions for users", &["self"]),
    (
        "admin",
        "Elevated permissions for admins",
        ADMIN_ROLE_SCOPES,
    ),
    (
        "server",
        "Post activity only",
        &["users:activity!user", "access:servers!server"],
    ),
    (
        "token",
        "Token with same permissions as its owner",
        &["inherit"],
    ),
];

/// A role's description and scopes: the config's definition, else the default role's.
pub(crate) fn role_definition(state: &AppState, name: &str) -> Option<(String, Vec<String>)> {
    if name != "admin"
        && let Some(role) = state.config.roles.iter().find(|r| r.name == name)
    {
        return Some((role.description.clone(), role.scopes.clone()));
    }
    DEFAULT_ROLES
        .iter()
        .find(|(role, _, _)| *role == name)
        .map(|(_, description, scopes)| {
            (
                description.to_string(),
                scopes.iter().map(|s| s.to_string()).collect(),
            )
        })
}

/// Every role name known to the hub: the defaults, then the configured ones.
pub(crate) fn role_names(state: &AppState) -> Vec<String> {
    let mut names: Vec<String> = DEFAULT_ROLES
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect();
    for role in &state.config.roles {
        if !names.contains(&role.name) {
            names.push(role.name.clone());
        }
    }
    names
}

/// The roles a user holds: `user`, `admin` if admin, their own and their groups' roles.
pub(crate) async fn user_roles(state: &AppState, user: &User) -> Result<Vec<String>, HubError> {
    let own = state.store.roles_of_users(&[user.id]).await?;
    let via_groups = state.store.group_roles_of_users(&[user.id]).await?;
    Ok(merge_user_roles(
        user.admin,
        own.get(&user.id).map(Vec::as_slice).unwrap_or_default(),
        via_groups
            .get(&user.id)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    ))
}

/// `user` first, then `admin`, then the rest sorted, without duplicates.
pub(crate) fn merge_user_roles(admin: bool, own: &[String], via_groups: &[String]) -> Vec<String> {
    let mut roles = vec!["user".to_string()];
    if admin {
        roles.push("admin".to_string());
    }
    let mut rest: Vec<String> = own
        .iter()
        .chain(via_groups)
        .filter(|r| !roles.contains(r))
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    roles.extend(rest);
    roles
}

/// The roles of a configured service: `admin` if it is admin, plus config roles naming it.
pub(crate) fn service_roles(state: &AppState, service: &Service) -> Vec<String> {
    let mut roles = Vec::new();
    if service.admin {
        roles.push("admin".to_string());
    }
    for role in &state.config.roles {
        if role.services.contains(&service.name) && !roles.contains(&role.name) {
            roles.push(role.name.clone());
        }
    }
    roles
}

fn scopes_of_roles(state: &AppState, roles: &[String]) -> Vec<String> {
    roles
        .iter()
        .filter_map(|role| role_definition(state, role))
        .flat_map(|(_, scopes)| scopes)
        .collect()
}

/// Everything a principal may do (its roles), before any token narrows it.
pub(crate) async fn principal_scopes(
    state: &AppState,
    principal: &Principal,
) -> Result<ScopeSet, HubError> {
    match principal {
        Principal::User(user) => {
            let owner = Owner::User {
                name: user.name.as_str(),
                server: None,
            };
            let roles = user_roles(state, user).await?;
            let mut scopes = scopes_of_roles(state, &roles);
            // Servers shared with the user or their groups (JupyterHub 5's `shared_with_me`).
            scopes.extend(state.store.share_scopes_of_user(user.id).await?);
            Ok(ScopeSet::expand(&scopes, owner))
        }
        Principal::Service(service) => {
            let owner = Owner::Service {
                name: &service.name,
            };
            let mut scopes: Vec<String> = state
                .config
                .services
                .iter()
                .find(|s| s.name == service.name)
                .map(|s| s.scopes.clone())
                .unwrap_or_default();
            scopes.extend(scopes_of_roles(state, &service_roles(state, service)));
            Ok(ScopeSet::expand(&scopes, owner))
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then_some(token)
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
}

/// Identifies the caller from an API token, if the request carries one.
pub(crate) async fn from_token(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Identity>, HubError> {
    let Some(token) = bearer_token(headers) else {
        return Ok(None);
    };
    let now = hubfleet_types::now();
    let Some(record) = state.store.find_token(&hash_token(token), now).await? else {
        return Ok(None);
    };
    let principal = match record.owner {
        TokenOwner::User(id) => match state.store.get_user_by_id(id).await? {
            Some(user) => Principal::User(user),
            None => return Ok(None),
        },
        TokenOwner::Service(id) => match state.store.get_service_by_id(id).await? {
            Some(service) => Principal::Service(service),
            None => return Ok(None),
        },
    };
    let stale = record
        .last_activity
        .is_none_or(|last| (now - last).num_seconds() >= TOKEN_ACTIVITY_RESOLUTION_SECONDS);
    if stale {
        state.store.touch_token(record.id, now).await?;
    }
    let owner_scopes = principal_scopes(state, &principal).await?;
    let owner = match &principal {
        Principal::User(user) => Owner::User {
            name: user.name.as_str(),
            server: None,
        },
        Principal::Service(service) => Owner::Service {
            name: &service.name,
        },
    };
    let scopes = ScopeSet::for_token(&record.scopes, &owner_scopes, owner);
    Ok(Some(Identity {
        principal,
        scopes,
        credential: Credential::Token {
            token_id: record.id,
            session_id: record.session_id,
        },
    }))
}

/// Identifies the caller from the hub login cookie.
pub(crate) async fn from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Identity>, HubError> {
    let Some(secret) = cookies::get(headers, cookies::LOGIN_COOKIE) else {
        return Ok(None);
    };
    let now = hubfleet_types::now();
    let Some((session, user)) = state.store.find_session(&hash_token(&secret), now).await? else {
        return Ok(None);
    };
    let principal = Principal::User(user);
    Ok(Some(Identity {
        scopes: principal_scopes(state, &principal).await?,
        principal,
        credential: Credential::Cookie {
            session_id: session.session_id,
        },
    }))
}

/// Token first, then cookie; for cookie credentials the XSRF rules apply (see module docs).
pub(crate) async fn identify_api(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    query_xsrf: Option<&str>,
) -> Result<Option<Identity>, HubError> {
    if let Some(identity) = from_token(state, headers).await? {
        return Ok(Some(identity));
    }
    let Some(identity) = from_cookie(state, headers).await? else {
        return Ok(None);
    };
    if !xsrf_exempt(method, headers) {
        let supplied = headers
            .get("x-xsrftoken")
            .or_else(|| headers.get("x-csrftoken"))
            .and_then(|v| v.to_str().ok())
            .or(query_xsrf);
        check_xsrf(headers, supplied)?;
    }
    Ok(Some(identity))
}

/// JupyterHub's exemptions: websocket handshakes, and read-only top-level navigations.
fn xsrf_exempt(method: &Method, headers: &HeaderMap) -> bool {
    let fetch_mode = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match fetch_mode {
        Some("websocket") => true,
        Some("navigate") | None => read_only,
        Some(_) => false,
    }
}

/// Double-submit check: the value in the form, header or query must equal the `_xsrf` cookie.
pub(crate) fn check_xsrf(headers: &HeaderMap, supplied: Option<&str>) -> Result<(), HubError> {
    match (cookies::get(headers, cookies::XSRF_COOKIE), supplied) {
        (Some(expected), Some(supplied))
            if !expected.is_empty() && secrets_equal(&expected, supplied) =>
        {
            Ok(())
        }
        _ => Err(HubError::Xsrf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_token_schemes_are_accepted_case_insensitively() {
        for value in ["token abc", "Bearer abc", "TOKEN   abc"] {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&headers), Some("abc"), "{value}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn xsrf_needs_matching_cookie_and_value() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, "_xsrf=secret-value".parse().unwrap());
        assert!(check_xsrf(&headers, Some("secret-value")).is_ok());
        assert!(check_xsrf(&headers, Some("other")).is_err());
        assert!(check_xsrf(&headers, None).is_err());
        assert!(check_xsrf(&HeaderMap::new(), Some("secret-value")).is_err());
    }

    #[test]
    fn only_read_only_navigations_and_websockets_skip_xsrf() {
        let mut headers = HeaderMap::new();
        assert!(xsrf_exempt(&Method::GET, &headers));
        assert!(!xsrf_exempt(&Method::POST, &headers));
        headers.insert("sec-fetch-mode", "cors".parse().unwrap());
        assert!(!xsrf_exempt(&Method::GET, &headers));
        headers.insert("sec-fetch-mode", "websocket".parse().unwrap());
        assert!(xsrf_exempt(&Method::GET, &headers));
    }
}
