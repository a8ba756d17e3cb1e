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
    /// TLS material (certificate, key or CA bundle) could not be loaded or used.
    #[error("cannot set up TLS for {what}")]
    Tls {
        what: &'static str,
        #[source]
        source: Box<TlsError>,
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

impl ProxyError {
    pub(crate) fn tls(what: &'static str, source: TlsError) -> Self {
        ProxyError::Tls {
            what,
            source: Box::new(source),
        }
    }
}

/// Why TLS material could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM of the expected kind.
    #[error("`{}` is not a usable PEM file", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The private key is encrypted and no passphrase was given for it.
    #[error(
        "private key `{}` is encrypted and no passphrase was given{}",
        path.display(),
        passphrase_env.map(|var| format!(": set it in `{var}`")).unwrap_or_default()
    )]
    KeyPassphraseMissing {
        path: PathBuf,
        /// Where the operator gives the passphrase, if anywhere.
        passphrase_env: Option<&'static str>,
    },
    /// The passphrase does not decrypt the private key (never shown: only where it came from).
    #[error(
        "cannot decrypt private key `{}` with the passphrase {}: wrong passphrase or damaged file",
        path.display(),
        passphrase_env.map(|var| format!("in `{var}`")).unwrap_or_else(|| "given".to_owned())
    )]
    KeyPassphraseWrong {
        path: PathBuf,
        passphrase_env: Option<&'static str>,
        #[source]
        source: pkcs8::Error,
    },
    /// An `ENCRYPTED PRIVATE KEY` that is damaged or uses a scheme we cannot decrypt (we read PBES2
    /// with PBKDF2-HMAC-SHA2 or scrypt, and AES).
    #[error(
        "private key `{}` is encrypted PKCS#8 that hubfleet cannot read (it reads PBES2 with \
         PBKDF2 (HMAC-SHA-2) or scrypt, and AES); re-encrypt it with \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key`",
        path.display()
    )]
    EncryptedKeyUnreadable {
        path: PathBuf,
        #[source]
        source: pkcs8::Error,
    },
    /// OpenSSL's traditional key encryption (`Proc-Type: 4,ENCRYPTED` with `DEK-Info`), which we do
    /// not read.
    #[error(
        "private key `{}` is encrypted in OpenSSL's traditional format (`Proc-Type: 4,ENCRYPTED`), \
         which hubfleet does not read; convert it to encrypted PKCS#8 with \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key`",
        path.display()
    )]
    TraditionalEncryptedKey { path: PathBuf },
    /// The PEM file holds no certificate.
    #[error("no certificate in `{}`", path.display())]
    NoCertificate { path: PathBuf },
    /// rustls rejected the certificate/key pair (e.g. the key does not belong to the certificate).
    #[error("certificate `{}` and key `{}` cannot be used together", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate cannot be a trust anchor.
    #[error("CA certificate in `{}` is not usable", path.display())]
    Anchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot check client certificates")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls rejected the configuration.
    #[error("TLS configuration rejected")]
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
