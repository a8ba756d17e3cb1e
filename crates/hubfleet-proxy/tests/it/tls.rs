//! TLS on the public port: HTTPS with ALPN h2, certificate reload, and the HTTP→HTTPS redirect listener.
//!
//! Certificates are generated per test with the `openssl` command-line tool.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use hubfleet_proxy::{ProxyConfig, TlsPaths};

use crate::support::{TestProxy, echo_upstream};

pub(crate) fn generate_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    (cert, key)
}

fn client_trusting(cert: &Path, public: SocketAddr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", public)
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_h2_reload_and_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let (first_cert, first_key) = generate_cert(dir.path(), "first");
    let serving_cert = dir.path().join("serving.crt");
    let serving_key = dir.path().join("serving.key");
    std::fs::copy(&first_cert, &serving_cert).unwrap();
    std::fs::copy(&first_key, &serving_key).unwrap();

    let user = echo_upstream().await;
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(TlsPaths::new(&serving_cert, &serving_key)),
        // This test reloads by hand (the SIGHUP path); the file watcher has its own test.
        tls_watch_interval: None,
        redirect_addr: Some("127.0.0.1:0".parse().unwrap()),
        redirect_to_port: Some(8443),
        ..ProxyConfig::default()
    })
    .await;
    proxy.route("/user/a", &format!("http://{user}"));
    let url = |path: &str| format!("https://localhost:{}{path}", proxy.public.port());

    let client = client_trusting(&first_cert, proxy.public);
    let health = client.get(url("/_chp_healthz")).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    assert_eq!(health.status(), 200);
    let proxied = client.get(url("/user/a/x")).send().await.unwrap();
    assert_eq!(proxied.version(), reqwest::Version::HTTP_2);
    let seen: serde_json::Value = proxied.json().await.unwrap();
    assert_eq!(seen["uri"], "/user/a/x");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        seen["headers"]["host"],
        format!("localhost:{}", proxy.public.port())
    );

    // Swap the files and reload: new handshakes present the new certificate.
    let (second_cert, second_key) = generate_cert(dir.path(), "second");
    std::fs::copy(&second_cert, &serving_cert).unwrap();
    std::fs::copy(&second_key, &serving_key).unwrap();
    proxy.handle.reload_tls().unwrap();
    let new_client = client_trusting(&second_cert, proxy.public);
    assert_eq!(
        new_client
            .get(url("/_chp_healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let old_client = client_trusting(&first_cert, proxy.public);
    assert!(
        old_client.get(url("/_chp_healthz")).send().await.is_err(),
        "the old certificate is still served"
    );

    // A broken file on reload keeps the working certificate.
    std::fs::write(&serving_cert, "not a certificate").unwrap();
    assert!(proxy.handle.reload_tls().is_err());
    let after_failed_reload = client_trusting(&second_cert, proxy.public);
    assert_eq!(
        after_failed_reload
            .get(url("/_chp_healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let redirect = crate::support::http_client()
        .get(format!("http://{}/user/a/x?y=1", proxy.redirect.unwrap()))
        .header("host", "hub.example.org:80")
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        "https://hub.example.org:8443/user/a/x?y=1"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn missing_certificate_fails_to_bind() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProxyConfig {
        tls: Some(TlsPaths::new(
            dir.path().join("nope.crt"),
            dir.path().join("nope.key"),
        )),
        ..ProxyConfig::default()
    };
    let error = hubfleet_proxy::ProxyServer::bind(config).await.unwrap_err();
    assert!(
        matches!(error, hubfleet_proxy::ProxyError::Tls { .. }),
        "{error:?}"
    );
}

/// The certificate files are watched: rewriting them puts the new pair in use without a signal, and
/// a broken rewrite keeps the previous certificate serving (and is counted as a failed reload).
#[tokio::test]
async fn certificate_is_reloaded_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (first_cert, first_key) = generate_cert(dir.path(), "first");
    let (second_cert, second_key) = generate_cert(dir.path(), "second");
    let serving_cert = dir.path().join("serving.crt");
    let serving_key = dir.path().join("serving.key");
    std::fs::copy(&first_cert, &serving_cert).unwrap();
    std::fs::copy(&first_key, &serving_key).unwrap();
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(TlsPaths::new(&serving_cert, &serving_key)),
        tls_watch_interval: Some(std::time::Duration::from_millis(50)),
        ..ProxyConfig::default()
    })
    .await;
    let health = format!("https://localhost:{}/_chp_healthz", proxy.public.port());
    // A fresh client per attempt, so every check is a new handshake.
    let handshake_ok = |trusted: &Path| {
        let client = client_trusting(trusted, proxy.public);
        let health = health.clone();
        async move { client.get(health).send().await.is_ok() }
    };
    assert!(handshake_ok(&first_cert).await);

    std::fs::copy(&second_key, &serving_key).unwrap();
    std::fs::copy(&second_cert, &serving_cert).unwrap();
    let deadline = tokio::time::Instant::now() + crate::support::DEADLINE;
    while !handshake_ok(&second_cert).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rewritten certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !handshake_ok(&first_cert).await,
        "the old certificate is no longer served"
    );

    let failed_before = proxy.handle.metrics().tls_reloads_failed();
    std::fs::write(&serving_cert, "garbage, not PEM").unwrap();
    crate::support::wait_until("the watcher tried the broken files", || {
        proxy.handle.metrics().tls_reloads_failed() > failed_before
    })
    .await;
    assert!(
        handshake_ok(&second_cert).await,
        "the previous certificate keeps serving after a broken rewrite"
    );
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("hubfleet_proxy_tls_reloads_total{outcome=\"failed\"}"),
        "failed reloads are exported"
    );
    proxy.stop().await;
}
