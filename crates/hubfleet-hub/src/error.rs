//! The hub's errors and the one place that maps them to HTTP.
//!
//! Every error has a status code and a message meant for the person or client that made the
//! request; internal errors keep their detail for the log and show users a generic sentence.
//! API handlers render errors as JupyterHub's JSON (`{"status": …, "message": …}`), page handlers
//! as an HTML error page; both go through [`HubError::public`].

use std::net::SocketAddr;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("action is not authorized with current scopes; requires any of [{0}]")]
    Forbidden(String),
    /// Refused with a message that is safe to show as is.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// The resource exists but this method may not change it (e.g. a service from the config).
    #[error("{0}")]
    NotModifiable(String),
    #[error("{message}")]
    ServerNotRunning { message: String },
    #[error("'_xsrf' argument missing or incorrect")]
    Xsrf,
    #[error("database error: {0}")]
    Store(#[from] hubfleet_store::StoreError),
    #[error("proxy error: {0}")]
    Proxy(String),
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Internal(String),
    /// The spawn queue is full: a capacity limit, not a failure.
    #[error(
        "The hub is at capacity: {waiting} people are already waiting for a server. \
         This is a limit on how many servers start at once, not a failure. \
         Please try again in about {retry_after_seconds} seconds."
    )]
    QueueFull {
        waiting: usize,
        retry_after_seconds: u64,
    },
}

impl HubError {
    /// Status code and the message shown to the client. Internal details never leave the hub.
    pub fn public(&self) -> (StatusCode, String) {
        use HubError::*;
        match self {
            Unauthenticated => (
                StatusCode::FORBIDDEN,
                "Missing or invalid credentials.".into(),
            ),
            Forbidden(_) | Refused(_) | Xsrf => (StatusCode::FORBIDDEN, self.to_string()),
            NotFound(_) => (StatusCode::NOT_FOUND, self.to_string()),
            BadRequest(_) => (StatusCode::BAD_REQUEST, self.to_string()),
            Conflict(_) => (StatusCode::CONFLICT, self.to_string()),
            NotModifiable(_) => (StatusCode::METHOD_NOT_ALLOWED, self.to_string()),
            ServerNotRunning { .. } => (StatusCode::FAILED_DEPENDENCY, self.to_string()),
            QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            Store(hubfleet_store::StoreError::NotFound) => {
                (StatusCode::NOT_FOUND, "Not found.".into())
            }
            Store(hubfleet_store::StoreError::Conflict(what)) => {
                (StatusCode::CONFLICT, what.clone())
            }
            Store(_) | Proxy(_) | Template(_) | Bind { .. } | Serve(_) | Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error; the hub's log has the details.".into(),
            ),
        }
    }

    /// `Retry-After` seconds for errors that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            HubError::QueueFull {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }

    fn log_if_internal(&self) {
        if self.public().0.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
    }
}

/// A [`HubError`] rendered as JupyterHub's API error JSON.
#[derive(Debug)]
pub struct ApiError(pub HubError);

impl<E: Into<HubError>> From<E> for ApiError {
    fn from(value: E) -> Self {
        ApiError(value.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log_if_internal();
        let (status, message) = self.0.public();
        let body = serde_json::json!({ "status": status.as_u16(), "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.0.retry_after() {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
