//! JupyterHub's pagination: `offset`/`limit` query parameters, and the
//! `Accept: application/jupyterhub-pagination+json` opt-in that wraps a page as
//! `{items, _pagination: {offset, limit, total, next}}`. Without the opt-in a bare list is
//! returned and the default limit is the maximum, as upstream does for old clients.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

use super::Params;
use crate::HubError;
use crate::error::ApiError;

/// JupyterHub's `api_page_default_limit`.
pub(crate) const DEFAULT_LIMIT: i64 = 50;
/// JupyterHub's `api_page_max_limit`.
pub(crate) const MAX_LIMIT: i64 = 200;
const PAGINATION_MEDIA_TYPE: &str = "application/jupyterhub-pagination+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub offset: i64,
    pub limit: i64,
    /// The client asked for the `{items, _pagination}` form.
    pub wrapped: bool,
}

pub(crate) fn page(headers: &HeaderMap, query: &Params) -> Result<Page, ApiError> {
    let wrapped = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| item.split(';').next().unwrap_or("").trim() == PAGINATION_MEDIA_TYPE);
    let number = |key: &str| -> Result<Option<i64>, ApiError> {
        query
            .get(key)
            .map(|raw| {
                raw.trim()
                    .parse::<i64>()
                    .map(|n| n.saturating_abs())
                    .map_err(|_| {
                        ApiError(HubError::BadRequest(format!(
                            "{key} must be an integer, got {raw:?}"
                        )))
                    })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let default = if wrapped { DEFAULT_LIMIT } else { MAX_LIMIT };
    let limit = number("limit")?.unwrap_or(default).clamp(1, MAX_LIMIT);
    Ok(Page {
        offset,
        limit,
        wrapped,
    })
}

/// The page as JupyterHub renders it: bare when not wrapped, else with `_pagination` whose
/// `next.url` is the request URL with `offset` and `limit` replaced. `total` is only read for a
/// wrapped page, so callers may skip counting otherwise.
pub(crate) fn respond<T: Serialize>(
    page: Page,
    items: Vec<T>,
    total: i64,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Response {
    if !page.wrapped {
        return axum::Json(items).into_response();
    }
    axum::Json(Wrapped {
        pagination: meta(page, total, headers, uri),
        items,
    })
    .into_response()
}

/// `{_pagination, items}`, serialized from the items as they are.
#[derive(Serialize)]
struct Wrapped<T> {
    #[serde(rename = "_pagination")]
    pagination: Value,
    items: Vec<T>,
}

/// The `_pagination` object of a wrapped page.
pub(crate) fn meta(page: Page, total: i64, headers: &HeaderMap, uri: &http::Uri) -> Value {
    let next_offset = page.offset + page.limit;
    let next = if next_offset < total {
        json!({
            "offset": next_offset,
            "limit": page.limit,
            "url": next_url(headers, uri, next_offset, page.limit),
        })
    } else {
        Value::Null
    };
    json!({
        "offset": page.offset,
        "limit": page.limit,
        "total": total,
        "next": next,
    })
}

fn next_url(headers: &HeaderMap, uri: &http::Uri, offset: i64, limit: i64) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    let scheme = header("x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .unwrap_or("http");
    let mut query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "offset" && k != "limit")
                .collect()
        })
        .unwrap_or_default();
    query.push(("offset".into(), offset.to_string()));
    query.push(("limit".into(), limit.to_string()));
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    format!("{scheme}://{host}{}?{encoded}", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_depend_on_the_opt_in_and_limits_are_clamped() {
        let mut headers = HeaderMap::new();
        assert_eq!(page(&headers, &params(&[])).unwrap().limit, MAX_LIMIT);
        headers.insert(
            http::header::ACCEPT,
            "application/json, application/jupyterhub-pagination+json"
                .parse()
                .unwrap(),
        );
        let p = page(&headers, &params(&[])).unwrap();
        assert_eq!((p.limit, p.wrapped), (DEFAULT_LIMIT, true));
        let p = page(&headers, &params(&[("limit", "5000"), ("offset", "-3")])).unwrap();
        assert_eq!((p.offset, p.limit), (3, MAX_LIMIT));
        assert_eq!(page(&headers, &params(&[("limit", "0")])).unwrap().limit, 1);
        assert!(page(&headers, &params(&[("offset", "x")])).is_err());
    }

    #[test]
    fn next_url_replaces_offset_and_limit() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "hub.example:8000".parse().unwrap());
        let uri: http::Uri = "/hub/api/users?state=ready&offset=0&limit=2"
            .parse()
            .unwrap();
        assert_eq!(
            next_url(&headers, &uri, 2, 2),
            "http://hub.example:8000/hub/api/users?state=ready&offset=2&limit=2"
        );
    }
}
