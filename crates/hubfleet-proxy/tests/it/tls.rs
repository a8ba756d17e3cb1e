//! TLS on the public port: HTTPS with ALPN h2, certificate reload, encrypted private keys, and the
//! HTTP→HTTPS redirect listener.
//!
//! Certificates are generated per test with the `openssl` command-line tool.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use hubfleet_proxy::{KeyPassphrase, PrivateKeyFile, ProxyConfig, TlsPaths};

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

/// Whether a new handshake (a fresh client each call) succeeds trusting only the certificate in `trusted`.
async fn handshake_ok(proxy: &TestProxy, trusted: &Path) -> bool {
    let health = format!("https://localhost:{}/_chp_healthz", proxy.public.port());
    client_trusting(trusted, proxy.public)
        .get(health)
        .send()
        .await
        .is_ok()
}

/// Polls until new handshakes present the certificate in `trusted`.
async fn wait_until_served(proxy: &TestProxy, trusted: &Path, what: &str) {
    let deadline = tokio::time::Instant::now() + crate::support::DEADLINE;
    while !handshake_ok(proxy, trusted).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} was never served (reloads failed: {})",
            proxy.handle.metrics().tls_reloads_failed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
    assert!(handshake_ok(&proxy, &first_cert).await);

    std::fs::copy(&second_key, &serving_key).unwrap();
    std::fs::copy(&second_cert, &serving_cert).unwrap();
    wait_until_served(&proxy, &second_cert, "the rewritten certificate").await;
    assert!(
        !handshake_ok(&proxy, &first_cert).await,
        "the old certificate is no longer served"
    );

    let failed_before = proxy.handle.metrics().tls_reloads_failed();
    std::fs::write(&serving_cert, "garbage, not PEM").unwrap();
    crate::support::wait_until("the watcher tried the broken files", || {
        proxy.handle.metrics().tls_reloads_failed() > failed_before
    })
    .await;
    assert!(
        handshake_ok(&proxy, &second_cert).await,
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

// Encrypted private keys (CHP's `CONFIGPROXY_SSL_KEY_PASSPHRASE` / `CONFIGPROXY_API_SSL_KEY_PASSPHRASE`).

const PASSPHRASE: &str = "correct horse battery staple";
const PASSPHRASE_ENV: &str = "CONFIGPROXY_SSL_KEY_PASSPHRASE";

fn openssl(args: &[&std::ffi::OsStr]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How a test key is encrypted.
#[derive(Debug, Clone, Copy)]
enum KeyEncryption {
    /// `openssl genpkey -aes256`: PBES2, PBKDF2 (HMAC-SHA256), AES-256-CBC.
    GenpkeyAes256,
    /// `openssl pkcs8 -topk8 -v2 aes-256-cbc -scrypt`: PBES2, scrypt, AES-256-CBC.
    Pkcs8Scrypt,
    /// `openssl ec -aes256`: OpenSSL's traditional `Proc-Type: 4,ENCRYPTED` PEM.
    Traditional,
    /// `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA1` (OpenSSL 1.0's default PRF).
    Pkcs8HmacSha1,
    /// `openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES`: PKCS#12's scheme, not PBES2.
    Pkcs8Sha1TripleDes,
}

/// A self-signed certificate for `localhost` and its P-256 key, encrypted with `PASSPHRASE`.
fn generate_encrypted_cert(
    dir: &Path,
    name: &str,
    encryption: KeyEncryption,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let pass = format!("pass:{PASSPHRASE}");
    if let KeyEncryption::GenpkeyAes256 = encryption {
        // A fresh key written encrypted, then a certificate made from it.
        let cert = dir.join(format!("{name}.crt"));
        openssl(&[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "EC".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-aes256".as_ref(),
            "-pass".as_ref(),
            pass.as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]);
        openssl(&[
            "req".as_ref(),
            "-x509".as_ref(),
            "-key".as_ref(),
            key.as_os_str(),
            "-passin".as_ref(),
            pass.as_ref(),
            "-subj".as_ref(),
            "/CN=localhost".as_ref(),
            "-addext".as_ref(),
            "subjectAltName=DNS:localhost".as_ref(),
            "-addext".as_ref(),
            "basicConstraints=critical,CA:FALSE".as_ref(),
            "-days".as_ref(),
            "1".as_ref(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        return (cert, key);
    }
    // The others encrypt a key in the clear made with its certificate.
    let (cert, plain_key) = generate_cert(dir, &format!("{name}-plain"));
    match encryption {
        KeyEncryption::GenpkeyAes256 => unreachable!("handled above"),
        KeyEncryption::Pkcs8Scrypt => openssl(&[
            "pkcs8".as_ref(),
            "-topk8".as_ref(),
            "-v2".as_ref(),
            "aes-256-cbc".as_ref(),
            "-scrypt".as_ref(),
            "-in".as_ref(),
            plain_key.as_os_str(),
            "-passout".as_ref(),
            pass.as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]),
        KeyEncryption::Pkcs8HmacSha1 => openssl(&[
            "pkcs8".as_ref(),
            "-topk8".as_ref(),
            "-v2".as_ref(),
            "aes-256-cbc".as_ref(),
            "-v2prf".as_ref(),
            "hmacWithSHA1".as_ref(),
            "-in".as_ref(),
            plain_key.as_os_str(),
            "-passout".as_ref(),
            pass.as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]),
        KeyEncryption::Pkcs8Sha1TripleDes => openssl(&[
            "pkcs8".as_ref(),
            "-topk8".as_ref(),
            "-v1".as_ref(),
            "PBE-SHA1-3DES".as_ref(),
            "-in".as_ref(),
            plain_key.as_os_str(),
            "-passout".as_ref(),
            pass.as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]),
        KeyEncryption::Traditional => openssl(&[
            "ec".as_ref(),
            "-in".as_ref(),
            plain_key.as_os_str(),
            "-aes256".as_ref(),
            "-passout".as_ref(),
            pass.as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ]),
    }
    (cert, key)
}

/// The key file as the CLI builds it from `--ssl-key` and `CONFIGPROXY_SSL_KEY_PASSPHRASE`.
fn key_with_passphrase(key: &Path, passphrase: Option<&str>) -> PrivateKeyFile {
    PrivateKeyFile {
        passphrase: passphrase.map(KeyPassphrase::new),
        passphrase_env: Some(PASSPHRASE_ENV),
        ..PrivateKeyFile::new(key)
    }
}

/// An error and all its sources, as the binary prints them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

async fn bind_error(cert: &Path, key: PrivateKeyFile) -> String {
    let config = ProxyConfig {
        tls: Some(TlsPaths::new(cert, key)),
        ..ProxyConfig::default()
    };
    let error = hubfleet_proxy::ProxyServer::bind(config).await.unwrap_err();
    assert!(
        matches!(error, hubfleet_proxy::ProxyError::Tls { .. }),
        "{error:?}"
    );
    error_chain(&error)
}

#[tokio::test]
async fn encrypted_pkcs8_keys_serve_https_with_their_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let user = echo_upstream().await;
    for encryption in [KeyEncryption::GenpkeyAes256, KeyEncryption::Pkcs8Scrypt] {
        let name = format!("{encryption:?}");
        let (cert, key) = generate_encrypted_cert(dir.path(), &name, encryption);
        let key_pem = std::fs::read_to_string(&key).unwrap();
        assert!(
            key_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{encryption:?} wrote {key_pem}"
        );
        let proxy = TestProxy::start(ProxyConfig {
            tls: Some(TlsPaths::new(
                &cert,
                key_with_passphrase(&key, Some(PASSPHRASE)),
            )),
            tls_watch_interval: None,
            ..ProxyConfig::default()
        })
        .await;
        proxy.route("/user/a", &format!("http://{user}"));
        let response = client_trusting(&cert, proxy.public)
            .get(format!(
                "https://localhost:{}/user/a/x",
                proxy.public.port()
            ))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{encryption:?}: {error}"));
        assert_eq!(response.status(), 200, "{encryption:?}");
        let seen: serde_json::Value = response.json().await.unwrap();
        assert_eq!(seen["uri"], "/user/a/x", "{encryption:?}");
        proxy.stop().await;
    }
}

/// CHP launchers may set the passphrase variable for every key; a key in the clear ignores it.
#[tokio::test]
async fn passphrase_given_for_a_key_in_the_clear_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_cert(dir.path(), "clear");
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(TlsPaths::new(
            &cert,
            key_with_passphrase(&key, Some(PASSPHRASE)),
        )),
        tls_watch_interval: None,
        ..ProxyConfig::default()
    })
    .await;
    let health = client_trusting(&cert, proxy.public)
        .get(format!(
            "https://localhost:{}/_chp_healthz",
            proxy.public.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    proxy.stop().await;
}

/// SIGHUP and the file watcher both decrypt a replaced encrypted key with the kept passphrase.
#[tokio::test]
async fn encrypted_key_is_reloaded_on_file_change_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (first_cert, first_key) =
        generate_encrypted_cert(dir.path(), "first", KeyEncryption::GenpkeyAes256);
    let (second_cert, second_key) =
        generate_encrypted_cert(dir.path(), "second", KeyEncryption::Pkcs8Scrypt);
    let (third_cert, third_key) =
        generate_encrypted_cert(dir.path(), "third", KeyEncryption::GenpkeyAes256);
    let serving_cert = dir.path().join("serving.crt");
    let serving_key = dir.path().join("serving.key");
    std::fs::copy(&first_cert, &serving_cert).unwrap();
    std::fs::copy(&first_key, &serving_key).unwrap();
    let proxy = TestProxy::start(ProxyConfig {
        tls: Some(TlsPaths::new(
            &serving_cert,
            key_with_passphrase(&serving_key, Some(PASSPHRASE)),
        )),
        tls_watch_interval: Some(std::time::Duration::from_millis(50)),
        ..ProxyConfig::default()
    })
    .await;
    assert!(handshake_ok(&proxy, &first_cert).await);

    // The watcher picks up the rewritten files.
    std::fs::copy(&second_key, &serving_key).unwrap();
    std::fs::copy(&second_cert, &serving_cert).unwrap();
    wait_until_served(&proxy, &second_cert, "the rewritten encrypted key").await;
    assert_eq!(proxy.handle.metrics().tls_reloads_failed(), 0);

    // The SIGHUP path reloads by hand.
    std::fs::copy(&third_key, &serving_key).unwrap();
    std::fs::copy(&third_cert, &serving_cert).unwrap();
    proxy.handle.reload_tls().unwrap();
    assert!(handshake_ok(&proxy, &third_cert).await);
    assert!(!handshake_ok(&proxy, &second_cert).await);
    proxy.stop().await;
}

#[tokio::test]
async fn encrypted_key_without_passphrase_fails_to_bind_naming_the_file_and_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_encrypted_cert(dir.path(), "locked", KeyEncryption::GenpkeyAes256);
    let message = bind_error(&cert, key_with_passphrase(&key, None)).await;
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(message.contains("is encrypted"), "{message}");
    assert!(message.contains(PASSPHRASE_ENV), "{message}");
    assert!(!message.contains(PASSPHRASE), "{message}");
}

#[tokio::test]
async fn wrong_passphrase_fails_to_bind_without_revealing_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "hunter2-but-longer";
    for encryption in [KeyEncryption::GenpkeyAes256, KeyEncryption::Pkcs8Scrypt] {
        let (cert, key) =
            generate_encrypted_cert(dir.path(), &format!("{encryption:?}"), encryption);
        let message = bind_error(&cert, key_with_passphrase(&key, Some(wrong))).await;
        assert!(message.contains(&key.display().to_string()), "{message}");
        assert!(message.contains("wrong passphrase"), "{message}");
        assert!(message.contains(PASSPHRASE_ENV), "{message}");
        assert!(!message.contains(wrong), "{message}");
        assert!(!message.contains(PASSPHRASE), "{message}");
    }
}

#[tokio::test]
async fn traditional_encrypted_key_fails_with_the_pkcs8_conversion_command() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = generate_encrypted_cert(dir.path(), "legacy", KeyEncryption::Traditional);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("Proc-Type: 4,ENCRYPTED"),
        "openssl wrote a traditional encrypted key"
    );
    let message = bind_error(&cert, key_with_passphrase(&key, Some(PASSPHRASE))).await;
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(
        message.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key"),
        "{message}"
    );
    assert!(!message.contains(PASSPHRASE), "{message}");
}

#[tokio::test]
async fn encrypted_pkcs8_in_an_unsupported_scheme_fails_with_the_conversion_command() {
    let dir = tempfile::tempdir().unwrap();
    for encryption in [
        KeyEncryption::Pkcs8HmacSha1,
        KeyEncryption::Pkcs8Sha1TripleDes,
    ] {
        let (cert, key) =
            generate_encrypted_cert(dir.path(), &format!("{encryption:?}"), encryption);
        let message = bind_error(&cert, key_with_passphrase(&key, Some(PASSPHRASE))).await;
        assert!(message.contains(&key.display().to_string()), "{message}");
        assert!(message.contains("cannot read"), "{message}");
        assert!(
            message.contains("openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key"),
            "{message}"
        );
        assert!(!message.contains(PASSPHRASE), "{message}");
    }
}
