//! Error types of the proxy crate: what went wrong for the user, with the details kept for logs.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Failures that stop the proxy from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An `--ip`/`--api-ip` value is not an IP address or resolvable host.
    #[error("invalid listen address `{0}`")]
    InvalidAddress(String),
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load TLS certificate `{}` / key `{}`", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: TlsError,
    },
    /// Only one of `--ssl-cert` and `--ssl-key` was given.
    #[error("`--ssl-cert` and `--ssl-key` must be given together")]
    TlsHalfConfigured,
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The pid file could not be written.
    #[error("cannot write pid file `{}`", path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("cannot install signal handler")]
    Signal(#[source] std::io::Error),
}

/// Why a TLS certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or parsing the PEM files failed.
    #[error("cannot read PEM")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// The PEM file holds no certificate.
    #[error("no certificate in PEM file")]
    NoCertificate,
    /// rustls rejected the key or certificate.
    #[error("certificate or key rejected")]
    Rustls(#[source] rustls::Error),
}

/// Invalid route data.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The route data has no string `target`.
    #[error("Must specify 'target' as string")]
    MissingTarget,
}

/// Failures of [`crate::client::ChpClient`] calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API URL is not a valid URL.
    #[error("invalid proxy API URL `{0}`")]
    InvalidUrl(String),
    /// The request could not be sent or the response not read.
    #[error("proxy API request failed")]
    Http(#[source] reqwest::Error),
    /// The proxy answered with an unexpected status.
    #[error("proxy API answered {status} to {method} {path}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
    },
    /// The proxy's answer is not the JSON we expect.
    #[error("proxy API returned malformed JSON")]
    Decode(#[source] serde_json::Error),
}
