//! The configurable-http-proxy REST API (`/api/routes`), as stock JupyterHub's `ConfigurableHTTPProxy` uses it.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::body::ProxyBody;
use crate::forward::fixed_response;
use crate::metrics::ProxyMetrics;
use crate::routes::RouteTable;

/// The route data JupyterHub posts is a few hundred bytes; anything near this is not a route.
const MAX_ROUTE_BODY: usize = 1 << 20;

const ROUTES_PREFIX: &str = "/api/routes";
/// Not part of CHP's API: the proxy's metrics for the hub to append to `/hub/metrics`, behind the
/// same token, so they need no port of their own.
const METRICS_PATH: &str = "/api/metrics";

/// The shared secret clients must present as `Authorization: token <secret>`.
#[derive(Clone)]
pub(crate) struct AuthToken(pub(crate) String);

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// State of the API listener.
#[derive(Debug)]
pub(crate) struct ApiState {
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) auth_token: Option<AuthToken>,
}

/// The API listener's request handler.
pub(crate) async fn handle(
    state: Arc<ApiState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    state.metrics.requests_api.fetch_add(1, Ordering::Relaxed);
    let response = route_api(&state, req).await;
    tracing::debug!(status = response.status().as_u16(), "API request");
    Ok(response)
}

async fn route_api(state: &ApiState, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() == METRICS_PATH {
        return metrics(state, &req);
    }
    let Some(rest) = req
        .uri()
        .path()
        .strip_prefix(ROUTES_PREFIX)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    else {
        return status_only(StatusCode::NOT_FOUND);
    };
    // CHP answers 405 before it checks the token.
    if ![Method::GET, Method::POST, Method::DELETE].contains(req.method()) {
        return fixed_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "Method not supported",
        );
    }
    if !authorized(state.auth_token.as_ref(), req.headers()) {
        tracing::debug!("rejecting API request with a missing or wrong token");
        return status_only(StatusCode::FORBIDDEN);
    }
    let route_path = match percent_decode_str(rest).decode_utf8() {
        Ok(path) => path.into_owned(),
        Err(_) => return bad_request("Route path is not valid UTF-8"),
    };
    match *req.method() {
        Method::GET if route_path.is_empty() || route_path == "/" => {
            list_routes(state, req.uri().query())
        }
        Method::GET => match state.routes.get(&route_path) {
            Some(route) => json_response(StatusCode::OK, &route.to_json()),
            None => status_only(StatusCode::NOT_FOUND),
        },
        Method::POST => add_route(state, &route_path, req.into_body()).await,
        _ => {
            if state.routes.remove(&route_path) {
                tracing::info!(route = %route_path, "route removed");
                status_only(StatusCode::NO_CONTENT)
            } else {
                status_only(StatusCode::NOT_FOUND)
            }
        }
    }
}

fn metrics(state: &ApiState, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    if !authorized(state.auth_token.as_ref(), req.headers()) {
        return status_only(StatusCode::FORBIDDEN);
    }
    fixed_response(
        StatusCode::OK,
        crate::metrics::OPENMETRICS_CONTENT_TYPE,
        state.metrics.metrics_text(),
    )
}

/// CHP's check: the first `token\s+(\S+)` anywhere in `Authorization` must equal the secret.
fn authorized(expected: Option<&AuthToken>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(header) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    presented_token(header)
        .is_some_and(|token| constant_time_eq(token.as_bytes(), expected.0.as_bytes()))
}

fn presented_token(header: &str) -> Option<&str> {
    let mut search_from = 0;
    while let Some(found) = header[search_from..].find("token") {
        let after = &header[search_from + found + "token".len()..];
        let value = after.trim_start();
        if value.len() < after.len() && !value.is_empty() {
            return value.split_whitespace().next();
        }
        search_from += found + 1;
    }
    None
}

/// Compares secrets without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn list_routes(state: &ApiState, query: Option<&str>) -> Response<ProxyBody> {
    let mut since_param = None;
    for (key, value) in query.map(form_pairs).into_iter().flatten() {
        // `inactiveSince` wins over the older `inactive_since`, as in CHP.
        if key == "inactiveSince" || (key == "inactive_since" && since_param.is_none()) {
            since_param = Some(value);
        }
    }
    let inactive_since = match since_param.filter(|value| !value.is_empty()) {
        None => None,
        Some(value) => match parse_timestamp(&value) {
            Some(since) => Some(since),
            None => return bad_request(&format!("Invalid datestamp '{value}' must be ISO8601.")),
        },
    };
    let mut table = Map::new();
    for route in state.routes.routes() {
        if inactive_since.is_none_or(|since| route.activity().last() < since) {
            table.insert(route.path().to_owned(), route.to_json());
        }
    }
    json_response(StatusCode::OK, &Value::Object(table))
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(key), decode(value))
        })
}

/// Accepts the ISO 8601 forms clients send: RFC 3339, a date-time without offset (taken as UTC), or a date.
pub(crate) fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(stamp) = DateTime::parse_from_rfc3339(value) {
        return Some(stamp.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

async fn add_route(state: &ApiState, route_path: &str, body: Incoming) -> Response<ProxyBody> {
    let bytes = match Limited::new(body, MAX_ROUTE_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return bad_request("Body too large or unreadable"),
    };
    let data = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(data)) => data,
        // CHP treats `null` as `{}` and then complains about the missing target; so does every non-object.
        Ok(_) => Map::new(),
        Err(error) => return bad_request(&format!("Body not valid JSON: {error}")),
    };
    let path = if route_path.is_empty() {
        "/"
    } else {
        route_path
    };
    match state.routes.insert(path, data) {
        Ok(route) => {
            tracing::info!(
                route = route.path(),
                target = route.target_url(),
                "route added"
            );
            status_only(StatusCode::CREATED)
        }
        Err(error) => bad_request(&error.to_string()),
    }
}

fn status_only(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = status;
    response
}

fn bad_request(message: &str) -> Response<ProxyBody> {
    fixed_response(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        message.to_owned(),
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    fixed_response(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_extraction_follows_chp_regex() {
        assert_eq!(presented_token("token abc"), Some("abc"));
        assert_eq!(presented_token("token   abc def"), Some("abc"));
        assert_eq!(presented_token("Bearer token abc"), Some("abc"));
        assert_eq!(presented_token("tokenabc"), None);
        assert_eq!(presented_token("token "), None);
        assert_eq!(presented_token("Bearer abc"), None);
        assert_eq!(presented_token("mytokens token xyz"), Some("xyz"));
    }

    #[test]
    fn timestamps() {
        let expected = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_timestamp("2024-05-01T10:00:00Z"), Some(expected));
        assert_eq!(parse_timestamp("2024-05-01T12:00:00+02:00"), Some(expected));
        assert_eq!(parse_timestamp("2024-05-01T10:00:00.000"), Some(expected));
        assert!(parse_timestamp("2024-05-01").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
    }
}
