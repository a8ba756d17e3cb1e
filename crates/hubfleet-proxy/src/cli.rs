//! `hubfleet proxy`: configurable-http-proxy's command line, so stock JupyterHub can launch us as CHP.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ProxyError;
use crate::server::{ProxyConfig, ProxyServer};
use crate::tls::{ClientAuth, KeyPassphrase, PrivateKeyFile, TlsPaths, UpstreamTls};

/// The environment variable holding the REST API token (the same one CHP reads).
pub const AUTH_TOKEN_ENV: &str = "CONFIGPROXY_AUTH_TOKEN";
/// The environment variable holding the passphrase of an encrypted `--ssl-key` (as in CHP).
pub const SSL_KEY_PASSPHRASE_ENV: &str = "CONFIGPROXY_SSL_KEY_PASSPHRASE";
/// The environment variable holding the passphrase of an encrypted `--api-ssl-key` (as in CHP).
pub const API_SSL_KEY_PASSPHRASE_ENV: &str = "CONFIGPROXY_API_SSL_KEY_PASSPHRASE";

/// What configurable-http-proxy reads from its environment. Passed to [`ChpArgs::to_config`] rather
/// than read there, so tests need not change the process environment.
#[derive(Clone, Default)]
pub struct ChpEnv {
    /// `CONFIGPROXY_AUTH_TOKEN`.
    pub auth_token: Option<String>,
    /// `CONFIGPROXY_SSL_KEY_PASSPHRASE`.
    pub ssl_key_passphrase: Option<KeyPassphrase>,
    /// `CONFIGPROXY_API_SSL_KEY_PASSPHRASE`.
    pub api_ssl_key_passphrase: Option<KeyPassphrase>,
}

impl ChpEnv {
    /// This process's environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars_os())
    }

    /// The variables CHP reads, picked from `(name, value)` pairs. Empty values count as unset, as
    /// in CHP.
    pub fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let mut env = Self::default();
        for (name, value) in vars {
            if value.is_empty() {
                continue;
            }
            match name.to_str() {
                Some(AUTH_TOKEN_ENV) => env.auth_token = value.into_string().ok(),
                Some(SSL_KEY_PASSPHRASE_ENV) => {
                    env.ssl_key_passphrase = Some(KeyPassphrase::new(value.into_vec()));
                }
                Some(API_SSL_KEY_PASSPHRASE_ENV) => {
                    env.api_ssl_key_passphrase = Some(KeyPassphrase::new(value.into_vec()));
                }
                _ => {}
            }
        }
        env
    }
}

impl fmt::Debug for ChpEnv {
    // Every value here is a secret: only whether each is set is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |given: bool| if given { "<redacted>" } else { "<unset>" };
        f.debug_struct("ChpEnv")
            .field("auth_token", &set(self.auth_token.is_some()))
            .field(
                "ssl_key_passphrase",
                &set(self.ssl_key_passphrase.is_some()),
            )
            .field(
                "api_ssl_key_passphrase",
                &set(self.api_ssl_key_passphrase.is_some()),
            )
            .finish()
    }
}

/// configurable-http-proxy's flags (the ones JupyterHub passes and the common others).
#[derive(Debug, Clone, clap::Args)]
pub struct ChpArgs {
    /// Public-facing IP of the proxy (empty: all interfaces).
    #[arg(long, default_value = "")]
    pub ip: String,
    /// Public-facing port of the proxy.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Inward-facing IP for the REST API.
    #[arg(long, default_value = "localhost")]
    pub api_ip: String,
    /// Inward-facing port for the REST API (default: port + 1).
    #[arg(long)]
    pub api_port: Option<u16>,
    /// Default proxy target (proto://host[:port]), installed as the `/` route.
    #[arg(long)]
    pub default_target: Option<String>,
    /// Alternate server for error pages: `<target>/<code>?url=<path>`.
    #[arg(long)]
    pub error_target: Option<String>,
    /// Directory of static error pages (accepted; plain-text errors are served instead).
    #[arg(long)]
    pub error_path: Option<PathBuf>,
    /// Log level (accepted for compatibility; logging is configured by the binary via `RUST_LOG`).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Route by host name: route keys are `/<host><path>`.
    #[arg(long)]
    pub host_routing: bool,
    /// PEM private key for HTTPS on the public port; if it is encrypted PKCS#8, its passphrase is
    /// read from `CONFIGPROXY_SSL_KEY_PASSPHRASE`.
    #[arg(long)]
    pub ssl_key: Option<PathBuf>,
    /// PEM certificate (chain) for HTTPS on the public port.
    #[arg(long)]
    pub ssl_cert: Option<PathBuf>,
    /// Serve plain HTTP on this port, redirecting to HTTPS.
    #[arg(long)]
    pub redirect_port: Option<u16>,
    /// The HTTPS port redirects point to (default: `--port`).
    #[arg(long)]
    pub redirect_to: Option<u16>,
    /// Write the process id here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Don't add `X-Forwarded-*` headers.
    #[arg(long)]
    pub no_x_forward: bool,
    /// Strip the route prefix before forwarding.
    #[arg(long)]
    pub no_include_prefix: bool,
    /// Don't prepend the target URL's path.
    #[arg(long)]
    pub no_prepend_path: bool,
    /// Client connection timeout in ms (applied while reading request headers).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Timeout in ms for an upstream to send its response headers.
    #[arg(long)]
    pub proxy_timeout: Option<u64>,
    /// Idle keep-alive timeout in ms for client connections.
    #[arg(long, default_value_t = 5000)]
    pub keep_alive_timeout: u64,
    /// Header added to proxied requests, `name:value` (repeatable).
    #[arg(long = "custom-header", value_name = "NAME:VALUE")]
    pub custom_headers: Vec<String>,
    /// IP for the metrics listener.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_ip: String,
    /// Port for the metrics listener (`/metrics`); off unless given.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Don't verify the certificates of `https://` targets.
    #[arg(long)]
    pub insecure: bool,
    /// CA certificates (PEM) that client certificates on the public port must chain to.
    #[arg(long)]
    pub ssl_ca: Option<PathBuf>,
    /// Ask clients of the public port for certificates.
    #[arg(long)]
    pub ssl_request_cert: bool,
    /// With `--ssl-request-cert`: turn away clients without a valid certificate.
    #[arg(long)]
    pub ssl_reject_unauthorized: bool,
    /// PEM private key for serving the REST API over HTTPS; if it is encrypted PKCS#8, its
    /// passphrase is read from `CONFIGPROXY_API_SSL_KEY_PASSPHRASE`.
    #[arg(long)]
    pub api_ssl_key: Option<PathBuf>,
    /// PEM certificate (chain) for serving the REST API over HTTPS.
    #[arg(long)]
    pub api_ssl_cert: Option<PathBuf>,
    /// CA certificates (PEM) that REST API clients' certificates must chain to.
    #[arg(long)]
    pub api_ssl_ca: Option<PathBuf>,
    /// Ask REST API clients for certificates.
    #[arg(long)]
    pub api_ssl_request_cert: bool,
    /// With `--api-ssl-request-cert`: turn away API clients without a valid certificate.
    #[arg(long)]
    pub api_ssl_reject_unauthorized: bool,
    /// PEM private key the proxy presents to `https://` targets (unencrypted: as in CHP, there is no
    /// passphrase for it).
    #[arg(long)]
    pub client_ssl_key: Option<PathBuf>,
    /// PEM certificate (chain) the proxy presents to `https://` targets.
    #[arg(long)]
    pub client_ssl_cert: Option<PathBuf>,
    /// CA certificates (PEM) that `https://` targets' certificates must chain to (default: the
    /// system's).
    #[arg(long)]
    pub client_ssl_ca: Option<PathBuf>,
    /// Accepted for compatibility: CHP passes it to the target connection, where it has no effect.
    #[arg(long)]
    pub client_ssl_request_cert: bool,
    /// Accepted for compatibility: targets' certificates are always verified unless `--insecure`.
    #[arg(long)]
    pub client_ssl_reject_unauthorized: bool,
    /// Other CHP options we accept but do not implement; a warning is logged for each.
    #[command(flatten)]
    pub unsupported: UnsupportedChpArgs,
}

/// Flags CHP has that we accept (so a launcher passing them still works) and warn about.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UnsupportedChpArgs {
    #[arg(long, hide = true)]
    pub ssl_protocol: Option<String>,
    #[arg(long, hide = true)]
    pub ssl_ciphers: Option<String>,
    #[arg(long, hide = true)]
    pub ssl_allow_rc4: bool,
    #[arg(long, hide = true)]
    pub ssl_dhparam: Option<String>,
    #[arg(long, hide = true)]
    pub storage_backend: Option<String>,
    #[arg(long, hide = true)]
    pub auto_rewrite: bool,
    #[arg(long, hide = true)]
    pub change_origin: bool,
    #[arg(long, hide = true)]
    pub protocol_rewrite: Option<String>,
}

impl UnsupportedChpArgs {
    fn given(&self) -> Vec<&'static str> {
        let flags: [(&'static str, bool); 8] = [
            ("--ssl-protocol", self.ssl_protocol.is_some()),
            ("--ssl-ciphers", self.ssl_ciphers.is_some()),
            ("--ssl-allow-rc4", self.ssl_allow_rc4),
            ("--ssl-dhparam", self.ssl_dhparam.is_some()),
            ("--storage-backend", self.storage_backend.is_some()),
            ("--auto-rewrite", self.auto_rewrite),
            ("--change-origin", self.change_origin),
            ("--protocol-rewrite", self.protocol_rewrite.is_some()),
        ];
        flags
            .into_iter()
            .filter(|(_, given)| *given)
            .map(|(flag, _)| flag)
            .collect()
    }
}

/// Node's TLS server semantics: `rejectUnauthorized` only matters when certificates are requested.
fn client_auth(request_cert: bool, reject_unauthorized: bool) -> ClientAuth {
    match (request_cert, reject_unauthorized) {
        (false, _) => ClientAuth::None,
        (true, false) => ClientAuth::Optional,
        (true, true) => ClientAuth::Required,
    }
}

impl ChpArgs {
    /// Turns the flags and CHP's environment variables into a [`ProxyConfig`].
    pub fn to_config(&self, env: &ChpEnv) -> Result<ProxyConfig, ProxyError> {
        let public_ip = resolve_ip(&self.ip)?;
        let api_ip = resolve_ip(&self.api_ip)?;
        let api_port = match self.api_port {
            Some(port) => port,
            None => self.port.checked_add(1).ok_or_else(|| {
                ProxyError::Config("`--port` 65535 leaves no default `--api-port`".to_owned())
            })?,
        };
        let tls = match (&self.ssl_cert, &self.ssl_key) {
            (Some(cert), Some(key)) => Some(TlsPaths {
                client_ca: self.ssl_ca.clone(),
                client_auth: client_auth(self.ssl_request_cert, self.ssl_reject_unauthorized),
                ..TlsPaths::new(
                    cert,
                    PrivateKeyFile {
                        passphrase: env.ssl_key_passphrase.clone(),
                        passphrase_env: Some(SSL_KEY_PASSPHRASE_ENV),
                        ..PrivateKeyFile::new(key)
                    },
                )
            }),
            (None, None) => None,
            _ => return Err(ProxyError::TlsHalfConfigured),
        };
        let api_tls = match (&self.api_ssl_cert, &self.api_ssl_key) {
            (Some(cert), Some(key)) => Some(TlsPaths {
                client_ca: self.api_ssl_ca.clone(),
                client_auth: client_auth(
                    self.api_ssl_request_cert,
                    self.api_ssl_reject_unauthorized,
                ),
                ..TlsPaths::new(
                    cert,
                    PrivateKeyFile {
                        passphrase: env.api_ssl_key_passphrase.clone(),
                        passphrase_env: Some(API_SSL_KEY_PASSPHRASE_ENV),
                        ..PrivateKeyFile::new(key)
                    },
                )
            }),
            (None, None) => None,
            _ => {
                return Err(ProxyError::Config(
                    "`--api-ssl-cert` and `--api-ssl-key` must be given together".to_owned(),
                ));
            }
        };
        let upstream_tls = UpstreamTls {
            ca: self.client_ssl_ca.clone(),
            client_cert: self.client_ssl_cert.clone(),
            client_key: self.client_ssl_key.clone(),
            verify: !self.insecure,
        };
        let metrics_addr = match self.metrics_port {
            Some(port) => Some(SocketAddr::new(resolve_ip(&self.metrics_ip)?, port)),
            None => None,
        };
        let custom_headers = self
            .custom_headers
            .iter()
            .map(|header| {
                header
                    .split_once(':')
                    .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                    .ok_or_else(|| {
                        ProxyError::Config(format!(
                            "`--custom-header {header}` is not `name:value`"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProxyConfig {
            public_addr: SocketAddr::new(public_ip, self.port),
            api_addr: SocketAddr::new(api_ip, api_port),
            metrics_addr,
            redirect_addr: self
                .redirect_port
                .map(|port| SocketAddr::new(public_ip, port)),
            redirect_to_port: Some(self.redirect_to.unwrap_or(self.port)),
            auth_token: env.auth_token.clone().filter(|token| !token.is_empty()),
            default_target: self.default_target.clone(),
            error_target: self.error_target.clone(),
            host_routing: self.host_routing,
            tls,
            api_tls,
            upstream_tls,
            x_forward: !self.no_x_forward,
            include_prefix: !self.no_include_prefix,
            prepend_path: !self.no_prepend_path,
            timeout: self.timeout.filter(|ms| *ms > 0).map(Duration::from_millis),
            proxy_timeout: self
                .proxy_timeout
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            keep_alive_timeout: Duration::from_millis(self.keep_alive_timeout),
            custom_headers,
            ..ProxyConfig::default()
        })
    }
}

/// An IP literal or a host name (resolved once at start). Empty or `*` means all interfaces, as in CHP
/// (z2jh passes `--api-ip=` so the hub pod can reach the API).
fn resolve_ip(host: &str) -> Result<IpAddr, ProxyError> {
    if host.is_empty() || host == "*" {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    // The resolver may list `::1` first; CHP's default `localhost` means the IPv4 loopback in practice.
    if host == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Ok(ip) = host.trim_matches(['[', ']']).parse() {
        return Ok(ip);
    }
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| addr.ip())
        .ok_or_else(|| ProxyError::InvalidAddress(host.to_owned()))
}

/// Runs the proxy until SIGTERM or SIGINT; SIGHUP reloads the TLS certificates (they are also
/// reloaded when their files change).
pub async fn run(args: ChpArgs) -> Result<(), ProxyError> {
    use tokio::signal::unix::{SignalKind, signal};

    for flag in args.unsupported.given() {
        tracing::warn!(
            flag,
            "option is accepted for configurable-http-proxy compatibility but not implemented"
        );
    }
    if args.error_path.is_some() {
        tracing::warn!("`--error-path` is ignored; errors without `--error-target` are plain text");
    }
    let config = args.to_config(&ChpEnv::from_process())?;
    if config.auth_token.is_none() {
        tracing::warn!("REST API is not authenticated: `{AUTH_TOKEN_ENV}` is not set");
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;

    let server = ProxyServer::bind(config).await?;
    if let Some(path) = &args.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            ProxyError::PidFile {
                path: path.clone(),
                source,
            }
        })?;
    }
    tracing::info!(public = %server.public_addr(), api = %server.api_addr(), "proxy listening");
    let handle = server.handle();
    let reloader = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            // Off the async workers: decrypting a key with scrypt takes tens of milliseconds.
            let reloading = handle.clone();
            let Ok(reloaded) = tokio::task::spawn_blocking(move || reloading.reload_tls()).await
            else {
                continue;
            };
            match reloaded {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(error = %crate::forward::ErrorChain(&error), "TLS reload failed; keeping the old certificate")
                }
            }
        }
    });
    let shutdown = async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    };
    let served = server.serve(shutdown).await;
    reloader.abort();
    if let Some(path) = &args.pid_file {
        let _ = std::fs::remove_file(path);
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: ChpArgs,
    }

    fn parse(argv: &[&str]) -> ChpArgs {
        TestCli::try_parse_from(std::iter::once("proxy").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn jupyterhub_command_line_parses() {
        let args = parse(&[
            "--ip",
            "",
            "--port",
            "8000",
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            "8001",
            "--error-target",
            "http://127.0.0.1:8081/hub/error",
            "--log-level",
            "info",
        ]);
        let env = ChpEnv {
            auth_token: Some("secret".to_owned()),
            ..ChpEnv::default()
        };
        let config = args.to_config(&env).unwrap();
        assert_eq!(config.public_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(config.api_addr, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(
            config.error_target.as_deref(),
            Some("http://127.0.0.1:8081/hub/error")
        );
        assert!(config.x_forward && config.include_prefix && config.prepend_path);
        assert!(
            !format!("{config:?}").contains("secret"),
            "token leaked into Debug output"
        );
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse(&[
            "--port=9000",
            "--ip=",
            "--no-x-forward",
            "--custom-header",
            "X-A: b",
            "--timeout",
            "0",
        ]);
        let config = args.to_config(&ChpEnv::default()).unwrap();
        assert_eq!(config.api_addr, "127.0.0.1:9001".parse().unwrap());
        assert!(!config.x_forward);
        assert_eq!(
            config.custom_headers,
            vec![("X-A".to_owned(), "b".to_owned())]
        );
        assert_eq!(config.timeout, None);
        assert!(config.auth_token.is_none());
        let all_interfaces = parse(&["--api-ip="]).to_config(&ChpEnv::default()).unwrap();
        assert_eq!(all_interfaces.api_addr, "0.0.0.0:8001".parse().unwrap());
    }

    #[test]
    fn jupyterhub_internal_ssl_flags_configure_api_and_target_tls() {
        // The flags JupyterHub 6.1.1 passes with `internal_ssl = True`.
        let args = parse(&[
            "--api-ssl-key",
            "internal-ssl/proxy-api/proxy-api.key",
            "--api-ssl-cert",
            "internal-ssl/proxy-api/proxy-api.crt",
            "--api-ssl-ca",
            "internal-ssl/proxy-api-ca_trust.crt",
            "--api-ssl-request-cert",
            "--api-ssl-reject-unauthorized",
            "--client-ssl-key",
            "internal-ssl/proxy-client/proxy-client.key",
            "--client-ssl-cert",
            "internal-ssl/proxy-client/proxy-client.crt",
            "--client-ssl-ca",
            "internal-ssl/proxy-client-ca_trust.crt",
            "--client-ssl-request-cert",
            "--client-ssl-reject-unauthorized",
        ]);
        let config = args.to_config(&ChpEnv::default()).unwrap();
        let api_tls = config.api_tls.expect("the API is served over TLS");
        assert_eq!(
            api_tls.cert,
            PathBuf::from("internal-ssl/proxy-api/proxy-api.crt")
        );
        assert_eq!(api_tls.client_auth, ClientAuth::Required);
        assert_eq!(
            api_tls.client_ca,
            Some(PathBuf::from("internal-ssl/proxy-api-ca_trust.crt"))
        );
        assert!(config.tls.is_none(), "the public port stays plain");
        assert_eq!(
            config.upstream_tls.client_cert,
            Some(PathBuf::from("internal-ssl/proxy-client/proxy-client.crt"))
        );
        assert_eq!(
            config.upstream_tls.ca,
            Some(PathBuf::from("internal-ssl/proxy-client-ca_trust.crt"))
        );
        assert!(config.upstream_tls.verify);
        assert!(args.unsupported.given().is_empty());
    }

    #[test]
    fn request_cert_without_reject_asks_but_admits() {
        let args = parse(&[
            "--api-ssl-key=k",
            "--api-ssl-cert=c",
            "--api-ssl-ca=ca",
            "--api-ssl-request-cert",
            "--insecure",
        ]);
        let config = args.to_config(&ChpEnv::default()).unwrap();
        assert_eq!(config.api_tls.unwrap().client_auth, ClientAuth::Optional);
        assert!(!config.upstream_tls.verify);
        let reject_alone = parse(&[
            "--api-ssl-key=k",
            "--api-ssl-cert=c",
            "--api-ssl-reject-unauthorized",
        ]);
        assert_eq!(
            reject_alone
                .to_config(&ChpEnv::default())
                .unwrap()
                .api_tls
                .unwrap()
                .client_auth,
            ClientAuth::None
        );
    }

    #[test]
    fn unimplemented_flags_are_accepted_and_reported() {
        let args = parse(&["--ssl-dhparam", "d", "--storage-backend", "x"]);
        assert_eq!(
            args.unsupported.given(),
            vec!["--ssl-dhparam", "--storage-backend"]
        );
    }

    #[test]
    fn key_passphrases_are_read_from_chps_environment_variables_and_kept_out_of_debug() {
        let env = ChpEnv::from_vars([
            (
                "CONFIGPROXY_SSL_KEY_PASSPHRASE".into(),
                "public-pass".into(),
            ),
            (
                "CONFIGPROXY_API_SSL_KEY_PASSPHRASE".into(),
                "api-pass".into(),
            ),
            ("CONFIGPROXY_AUTH_TOKEN".into(), "the-token".into()),
            ("UNRELATED".into(), "x".into()),
        ]);
        let args = parse(&[
            "--ssl-key=public.key",
            "--ssl-cert=public.crt",
            "--api-ssl-key=api.key",
            "--api-ssl-cert=api.crt",
        ]);
        let config = args.to_config(&env).unwrap();
        let public_key = &config.tls.as_ref().unwrap().key;
        assert_eq!(public_key.path, PathBuf::from("public.key"));
        assert_eq!(
            public_key.passphrase.as_ref().map(KeyPassphrase::expose),
            Some(&b"public-pass"[..])
        );
        assert_eq!(public_key.passphrase_env, Some(SSL_KEY_PASSPHRASE_ENV));
        let api_key = &config.api_tls.as_ref().unwrap().key;
        assert_eq!(
            api_key.passphrase.as_ref().map(KeyPassphrase::expose),
            Some(&b"api-pass"[..])
        );
        assert_eq!(api_key.passphrase_env, Some(API_SSL_KEY_PASSPHRASE_ENV));
        assert_eq!(config.auth_token.as_deref(), Some("the-token"));

        for debug in [format!("{config:?}"), format!("{env:?}")] {
            for secret in ["public-pass", "api-pass", "the-token"] {
                assert!(!debug.contains(secret), "{secret} leaked into {debug}");
            }
        }
    }

    #[test]
    fn empty_passphrase_variables_count_as_unset() {
        let env = ChpEnv::from_vars([
            ("CONFIGPROXY_SSL_KEY_PASSPHRASE".into(), "".into()),
            ("CONFIGPROXY_AUTH_TOKEN".into(), "".into()),
        ]);
        let config = parse(&["--ssl-key=k", "--ssl-cert=c"])
            .to_config(&env)
            .unwrap();
        assert!(config.tls.unwrap().key.passphrase.is_none());
        assert!(config.auth_token.is_none());
    }

    #[test]
    fn half_tls_is_rejected() {
        let args = parse(&["--ssl-cert", "c.pem"]);
        assert!(matches!(
            args.to_config(&ChpEnv::default()),
            Err(ProxyError::TlsHalfConfigured)
        ));
    }
}
