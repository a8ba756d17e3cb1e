//! CHP's internal SSL: the REST API over mutual TLS (`--api-ssl-*`) and `https://` targets reached
//! with the proxy's own client certificate and CA bundle (`--client-ssl-*`), as JupyterHub's
//! `internal_ssl = True` sets them up. A throwaway PKI is made per test with the `openssl` tool.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use http::{Request, Response};
use hubfleet_proxy::{ClientAuth, ProxyConfig, TlsPaths, UpstreamTls};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::{TestProxy, full, http_client};

/// A CA and the certificates it issued, as PEM files in a temporary directory.
pub struct TestPki {
    dir: PathBuf,
    name: String,
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
}

impl TestPki {
    pub fn new(dir: &Path, name: &str) -> Self {
        let ca_cert = dir.join(format!("{name}-ca.crt"));
        let ca_key = dir.join(format!("{name}-ca.key"));
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-nodes", "-days", "1"])
                .args(EC_KEY)
                .args(["-subj", &format!("/CN={name}-ca")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca_cert),
        );
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca_cert,
            ca_key,
        }
    }

    /// A leaf certificate for `localhost`/127.0.0.1, usable by servers and clients (like certipy's).
    pub fn issue(&self, leaf: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.join(format!("{}-{leaf}", self.name));
        let (cert, key, csr, ext) = (
            base.with_extension("crt"),
            base.with_extension("key"),
            base.with_extension("csr"),
            base.with_extension("ext"),
        );
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-nodes"])
                .args(EC_KEY)
                .args(["-subj", &format!("/CN={leaf}")])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "1", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca_cert)
                .arg("-CAkey")
                .arg(&self.ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        (cert, key)
    }
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn openssl(command: &mut Command) {
    let output = command.output().expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A reqwest client trusting only `ca`, optionally presenting `identity` (cert, key).
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()]);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(key).unwrap();
        pem.extend(std::fs::read(cert).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// An HTTPS upstream that only admits clients with a certificate from `client_ca`, answering with
/// the request path and the client certificate's subject size (proof one was presented).
async fn mutual_tls_upstream(cert: &Path, key: &Path, client_ca: &Path) -> SocketAddr {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let client_certs = stream.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let body = serde_json::json!({
                        "uri": req.uri().to_string(),
                        "client_certificates": client_certs,
                        "x_forwarded_proto": req.headers().get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok()),
                    });
                    Ok::<_, Infallible>(Response::new(full(body.to_string())))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_target_and_error_pages_are_reached_with_the_proxy_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let targets = TestPki::new(dir.path(), "notebooks");
    let proxy_clients = TestPki::new(dir.path(), "proxy-client");
    let (target_cert, target_key) = targets.issue("notebook");
    let (client_cert, client_key) = proxy_clients.issue("proxy-client");
    let target = mutual_tls_upstream(&target_cert, &target_key, &proxy_clients.ca_cert).await;

    let proxy = TestProxy::start(ProxyConfig {
        upstream_tls: UpstreamTls {
            ca: Some(targets.ca_cert.clone()),
            client_cert: Some(client_cert.clone()),
            client_key: Some(client_key.clone()),
            verify: true,
        },
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/user/a", &format!("https://127.0.0.1:{}", target.port()));
    let response = http_client()
        .get(proxy.url("/user/a/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["uri"], "/user/a/api/status");
    assert_eq!(seen["client_certificates"], 1, "{seen}");
    assert_eq!(seen["x_forwarded_proto"], "http");

    // JupyterHub's `--error-target` is the hub's https URL under internal SSL: error pages are
    // fetched with the same client identity.
    proxy.stop().await;
    let with_error_target = TestProxy::start(ProxyConfig {
        upstream_tls: UpstreamTls {
            ca: Some(targets.ca_cert.clone()),
            client_cert: Some(client_cert.clone()),
            client_key: Some(client_key.clone()),
            verify: true,
        },
        error_target: Some(format!("https://127.0.0.1:{}/hub/error", target.port())),
        ..ProxyConfig::default()
    })
    .await;
    let missing = http_client()
        .get(with_error_target.url("/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let page: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(page["uri"], "/hub/error/404?url=%2Fnowhere", "{page}");
    assert_eq!(page["client_certificates"], 1, "{page}");
    with_error_target.stop().await;

    // Without a client identity the target refuses the handshake: a 503 like any unreachable target.
    let anonymous = TestProxy::start(ProxyConfig {
        upstream_tls: UpstreamTls {
            ca: Some(targets.ca_cert.clone()),
            ..UpstreamTls::default()
        },
        ..ProxyConfig::default()
    })
    .await;
    anonymous.route("/user/a", &format!("https://127.0.0.1:{}", target.port()));
    let refused = http_client()
        .get(anonymous.url("/user/a/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    anonymous.stop().await;
}

#[tokio::test]
async fn https_target_with_an_untrusted_certificate_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let targets = TestPki::new(dir.path(), "targets");
    let other = TestPki::new(dir.path(), "other");
    let proxy_clients = TestPki::new(dir.path(), "proxy-client");
    let (target_cert, target_key) = targets.issue("notebook");
    let (client_cert, client_key) = proxy_clients.issue("proxy-client");
    let target = mutual_tls_upstream(&target_cert, &target_key, &proxy_clients.ca_cert).await;
    let start = |verify: bool| {
        TestProxy::start(ProxyConfig {
            upstream_tls: UpstreamTls {
                // The wrong CA: the target's certificate does not chain to it.
                ca: Some(other.ca_cert.clone()),
                client_cert: Some(client_cert.clone()),
                client_key: Some(client_key.clone()),
                verify,
            },
            ..ProxyConfig::default()
        })
    };

    let verifying = start(true).await;
    verifying.route("/", &format!("https://127.0.0.1:{}", target.port()));
    let refused = http_client().get(verifying.url("/x")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    verifying.stop().await;

    let insecure = start(false).await;
    insecure.route("/", &format!("https://127.0.0.1:{}", target.port()));
    let admitted = http_client().get(insecure.url("/x")).send().await.unwrap();
    assert_eq!(admitted.status(), 200);
    insecure.stop().await;
}

#[tokio::test]
async fn rest_api_over_mutual_tls_admits_only_clients_with_a_certificate_from_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let api_pki = TestPki::new(dir.path(), "proxy-api");
    let strangers = TestPki::new(dir.path(), "strangers");
    let (api_cert, api_key) = api_pki.issue("proxy-api");
    let (hub_cert, hub_key) = api_pki.issue("hub");
    let (stranger_cert, stranger_key) = strangers.issue("stranger");

    let proxy = TestProxy::start(ProxyConfig {
        api_tls: Some(TlsPaths {
            client_ca: Some(api_pki.ca_cert.clone()),
            client_auth: ClientAuth::Required,
            ..TlsPaths::new(&api_cert, &api_key)
        }),
        auth_token: Some("secret".to_owned()),
        ..ProxyConfig::default()
    })
    .await;
    let routes_url = format!("https://127.0.0.1:{}/api/routes", proxy.api.port());

    let hub = client(&api_pki.ca_cert, Some((&hub_cert, &hub_key)));
    let listed = hub
        .get(&routes_url)
        .header("Authorization", "token secret")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let added = hub
        .post(format!("{routes_url}/user/a"))
        .header("Authorization", "token secret")
        .body(r#"{"target": "https://127.0.0.1:1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    assert!(proxy.handle.routes().lookup("/user/a/x").is_some());

    let without_certificate = client(&api_pki.ca_cert, None);
    assert!(
        without_certificate.get(&routes_url).send().await.is_err(),
        "a client without a certificate completes no request"
    );
    let with_foreign_certificate = client(&api_pki.ca_cert, Some((&stranger_cert, &stranger_key)));
    assert!(
        with_foreign_certificate
            .get(&routes_url)
            .send()
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
    let plain = http_client()
        .get(format!("http://127.0.0.1:{}/api/routes", proxy.api.port()))
        .header("Authorization", "token secret")
        .send()
        .await;
    assert!(
        plain.map_or(true, |response| !response.status().is_success()),
        "plain HTTP gets no routes"
    );
    proxy.stop().await;
}
