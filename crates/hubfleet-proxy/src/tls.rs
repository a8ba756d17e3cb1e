//! TLS with rustls (ring): the public port and the REST API as servers (certificates reloadable at
//! runtime on SIGHUP or when the files change, optional client-certificate checks), and the client side
//! for `https://` route targets (CHP's internal SSL: our own CA bundle and client identity).

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::{ProxyError, TlsError};

/// Whether a TLS server asks its clients for certificates (CHP's `--*-ssl-request-cert` and
/// `--*-ssl-reject-unauthorized`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients are not asked for a certificate.
    #[default]
    None,
    /// Clients are asked; one without a certificate is let in, one with an invalid certificate is not.
    Optional,
    /// Only clients with a certificate issued by the configured CA get in.
    Required,
}

/// The passphrase of an encrypted private key. Its `Debug` never shows it, and it has no `Display`.
#[derive(Clone)]
pub struct KeyPassphrase(Vec<u8>);

impl KeyPassphrase {
    /// A passphrase as given by the operator (bytes, since an environment variable need not be UTF-8).
    pub fn new(passphrase: impl Into<Vec<u8>>) -> Self {
        Self(passphrase.into())
    }

    /// The passphrase itself, for decrypting. Never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPassphrase(<redacted>)")
    }
}

/// A PEM private key file: PKCS#8, PKCS#1 or SEC1 in the clear, or encrypted PKCS#8
/// (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, PBES2 with PBKDF2 or scrypt) with its passphrase.
/// The passphrase is kept with the path so every reload can decrypt the file again.
#[derive(Clone)]
pub struct PrivateKeyFile {
    pub path: PathBuf,
    /// Decrypts the key if it is encrypted; ignored for a key in the clear (as Node does for CHP).
    pub passphrase: Option<KeyPassphrase>,
    /// The environment variable an operator sets the passphrase in (CHP's
    /// `CONFIGPROXY_SSL_KEY_PASSPHRASE` and `CONFIGPROXY_API_SSL_KEY_PASSPHRASE`), named in errors
    /// about a missing or wrong passphrase.
    pub passphrase_env: Option<&'static str>,
}

impl PrivateKeyFile {
    /// A key file without a passphrase.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            passphrase: None,
            passphrase_env: None,
        }
    }
}

impl fmt::Debug for PrivateKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyFile")
            .field("path", &self.path)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("passphrase_env", &self.passphrase_env)
            .finish()
    }
}

impl From<PathBuf> for PrivateKeyFile {
    fn from(path: PathBuf) -> Self {
        Self::new(path)
    }
}

impl From<&PathBuf> for PrivateKeyFile {
    fn from(path: &PathBuf) -> Self {
        Self::new(path)
    }
}

impl From<&Path> for PrivateKeyFile {
    fn from(path: &Path) -> Self {
        Self::new(path)
    }
}

impl From<&str> for PrivateKeyFile {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

/// PEM files for a TLS listener (the public port or the REST API).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key, and its passphrase if it is encrypted.
    pub key: PrivateKeyFile,
    /// CA certificates that client certificates must chain to (needed unless `client_auth` is `None`).
    pub client_ca: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

impl TlsPaths {
    /// A certificate and key, without client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PrivateKeyFile>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            client_auth: ClientAuth::None,
        }
    }
}

/// How the proxy connects to `https://` targets (CHP's `--client-ssl-*` and `--insecure`).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA certificates that targets' certificates must chain to; the system's roots when unset.
    pub ca: Option<PathBuf>,
    /// The proxy's client certificate chain and key, presented to targets that ask for one. The key
    /// must be in the clear: CHP has no passphrase for `--client-ssl-key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Verify targets' certificates (`--insecure` turns this off).
    pub verify: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        Self {
            ca: None,
            client_cert: None,
            client_key: None,
            verify: true,
        }
    }
}

/// The crypto provider for every TLS configuration of the proxy.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS listener's certificate, swapped atomically by [`ReloadableCert::reload`] (SIGHUP) or
/// [`ReloadableCert::reload_if_changed`] (the file watcher).
pub struct ReloadableCert {
    cert_path: PathBuf,
    key: PrivateKeyFile,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// A digest of the files' contents when last looked at, so the watcher reloads (or reports a
    /// broken pair) once per change rather than on every poll.
    last_seen: Mutex<u64>,
}

impl fmt::Debug for ReloadableCert {
    // The key material must never reach a log, so only the paths are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key.path)
            .finish()
    }
}

impl ReloadableCert {
    /// Loads the PEM certificate chain and private key (decrypting the key if it is encrypted).
    pub fn load(cert_path: &Path, key: &PrivateKeyFile) -> Result<Self, ProxyError> {
        let provider = provider();
        let files = PairFiles::read(cert_path, key);
        let certified = files
            .certified_key(&provider)
            .map_err(|source| ProxyError::tls("the certificate", source))?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key: key.clone(),
            provider,
            current: ArcSwap::from_pointee(certified),
            last_seen: Mutex::new(files.digest()),
        })
    }

    /// Re-reads the files; on failure the old certificate stays in use.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let files = PairFiles::read(&self.cert_path, &self.key);
        self.apply(&files)
    }

    /// Re-reads the files if their contents changed since they were last looked at: `None` when
    /// unchanged, otherwise the outcome of the reload (on failure the old certificate stays).
    pub fn reload_if_changed(&self) -> Option<Result<(), ProxyError>> {
        let files = PairFiles::read(&self.cert_path, &self.key);
        let digest = files.digest();
        {
            let mut last_seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            if *last_seen == digest {
                return None;
            }
            *last_seen = digest;
        }
        Some(self.apply(&files))
    }

    fn apply(&self, files: &PairFiles) -> Result<(), ProxyError> {
        let certified = files
            .certified_key(&self.provider)
            .map_err(|source| ProxyError::tls("the certificate", source))?;
        self.current.store(Arc::new(certified));
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = files.digest();
        Ok(())
    }

    /// The certificate files, for log messages.
    pub fn paths(&self) -> (&Path, &Path) {
        (&self.cert_path, &self.key.path)
    }

    /// A rustls server configuration serving this certificate with the given client-certificate
    /// policy and ALPN protocols (most preferred first).
    pub(crate) fn server_config(
        self: &Arc<Self>,
        paths: &TlsPaths,
        alpn: &[&[u8]],
    ) -> Result<ServerConfig, ProxyError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| ProxyError::tls("the TLS listener", TlsError::Rustls(source)))?;
        let builder = match paths.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Required => {
                let ca = paths.client_ca.as_deref().ok_or_else(|| {
                    ProxyError::Config(format!(
                        "client certificates are requested for `{}` but no CA file is given to check them",
                        paths.cert.display()
                    ))
                })?;
                let roots = root_store(ca)
                    .map_err(|source| ProxyError::tls("client certificate checks", source))?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                );
                let verifier = if paths.client_auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|source| {
                    ProxyError::tls("client certificate checks", TlsError::Verifier(source))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The bytes of a certificate/key pair as read in one go (or why they could not be read), so the
/// digest and the parsed key always describe the same contents.
struct PairFiles<'a> {
    cert_path: &'a Path,
    key_file: &'a PrivateKeyFile,
    cert: std::io::Result<Vec<u8>>,
    key: std::io::Result<Vec<u8>>,
}

impl<'a> PairFiles<'a> {
    fn read(cert_path: &'a Path, key_file: &'a PrivateKeyFile) -> Self {
        Self {
            cert_path,
            key_file,
            cert: std::fs::read(cert_path),
            key: std::fs::read(&key_file.path),
        }
    }

    fn digest(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        for file in [&self.cert, &self.key] {
            match file {
                Ok(bytes) => bytes.hash(&mut hasher),
                Err(error) => error.kind().hash(&mut hasher),
            }
        }
        hasher.finish()
    }

    /// The parsed certificate chain and private key.
    fn chain_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let cert = self.cert.as_ref().map_err(|source| TlsError::Read {
            path: self.cert_path.to_owned(),
            source: clone_io_error(source),
        })?;
        let key = self.key.as_ref().map_err(|source| TlsError::Read {
            path: self.key_file.path.clone(),
            source: clone_io_error(source),
        })?;
        let chain = certificates(cert, self.cert_path)?;
        let key = private_key(key, self.key_file)?;
        Ok((chain, key))
    }

    /// The pair ready to serve; fails if the key does not belong to the certificate.
    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let (chain, key) = self.chain_and_key()?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
            cert: self.cert_path.to_owned(),
            key: self.key_file.path.clone(),
            source,
        })
    }
}

const ENCRYPTED_PKCS8_BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_PKCS8_END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";

/// The private key in a PEM file, decrypted with the file's passphrase if it is encrypted PKCS#8.
fn private_key(pem: &[u8], key_file: &PrivateKeyFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = || key_file.path.clone();
    if let Some(block) = encrypted_pkcs8_block(pem) {
        let Some(passphrase) = &key_file.passphrase else {
            return Err(TlsError::KeyPassphraseMissing {
                path: path(),
                passphrase_env: key_file.passphrase_env,
            });
        };
        return decrypt_pkcs8(block, passphrase).map_err(|failure| match failure {
            DecryptFailure::Unreadable(source) => TlsError::EncryptedKeyUnreadable {
                path: path(),
                source,
            },
            DecryptFailure::WrongPassphrase(source) => TlsError::KeyPassphraseWrong {
                path: path(),
                passphrase_env: key_file.passphrase_env,
                source,
            },
        });
    }
    if is_traditional_encrypted(pem) {
        return Err(TlsError::TraditionalEncryptedKey { path: path() });
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::Pem {
        path: path(),
        source,
    })
}

/// The first `ENCRYPTED PRIVATE KEY` PEM block of a file (the file may hold other blocks too); to
/// the end of the file if its end line is missing, so the PEM decoder reports it.
fn encrypted_pkcs8_block(pem: &[u8]) -> Option<&[u8]> {
    let start = find(pem, ENCRYPTED_PKCS8_BEGIN)?;
    let rest = &pem[start..];
    let end =
        find(rest, ENCRYPTED_PKCS8_END).map_or(rest.len(), |at| at + ENCRYPTED_PKCS8_END.len());
    Some(&rest[..end])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// OpenSSL's traditional ("legacy") encryption: a `Proc-Type: 4,ENCRYPTED` header (with
/// `DEK-Info`) inside an `RSA`/`EC PRIVATE KEY` block. Not supported; the error says how to convert.
fn is_traditional_encrypted(pem: &[u8]) -> bool {
    pem.split(|byte| *byte == b'\n').any(|line| {
        let line = line.trim_ascii();
        line.starts_with(b"Proc-Type:") && find(line, b"ENCRYPTED").is_some()
    })
}

enum DecryptFailure {
    /// Damaged, or encrypted with a scheme we do not implement.
    Unreadable(pkcs8::Error),
    WrongPassphrase(pkcs8::Error),
}

/// Decrypts an encrypted PKCS#8 PEM block into the plain PKCS#8 DER rustls takes.
fn decrypt_pkcs8(
    block: &[u8],
    passphrase: &KeyPassphrase,
) -> Result<PrivateKeyDer<'static>, DecryptFailure> {
    use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};

    // The block starts with the `ENCRYPTED PRIVATE KEY` line and the decoder insists the end line
    // matches it, so the label needs no further check.
    let (_label, der) = pkcs8::der::pem::decode_vec(block)
        .map_err(|error| DecryptFailure::Unreadable(error.into()))?;
    // Schemes other than PBES2 (e.g. PKCS#12's SHA1-3DES) already fail here.
    let encrypted =
        EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(DecryptFailure::Unreadable)?;
    let plain = encrypted
        .decrypt(passphrase.expose())
        .map_err(|error| match error {
            pkcs8::Error::EncryptedPrivateKey(
                pkcs8::pkcs5::Error::DecryptFailed,
            )
            // A wrong passphrase can leave valid padding around bytes that are not DER.
            | pkcs8::Error::Asn1(_) => DecryptFailure::WrongPassphrase(error),
            // E.g. PBKDF2 with HMAC-SHA1 (OpenSSL 1.0's default), which pkcs8 gates behind a feature.
            other => DecryptFailure::Unreadable(other),
        })?;
    // The same: decrypted bytes that are DER but not a private key mean the passphrase was wrong.
    PrivateKeyInfoRef::try_from(plain.as_bytes()).map_err(DecryptFailure::WrongPassphrase)?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        plain.as_bytes().to_vec(),
    )))
}

fn clone_io_error(error: &std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), error.to_string())
}

/// Every certificate in a PEM file; at least one.
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The certificates of a PEM CA bundle as trust anchors.
fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(&pem, path)? {
        roots.add(cert).map_err(|source| TlsError::Anchor {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The rustls client configuration for `https://` targets: the configured CA bundle or the system's roots, and the client identity if given.
pub(crate) fn upstream_client_config(upstream: &UpstreamTls) -> Result<ClientConfig, ProxyError> {
    let provider = provider();
    let fail = |source| ProxyError::tls("connections to https targets", source);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| fail(TlsError::Rustls(source)))?;
    let builder = if !upstream.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                provider: provider.clone(),
            }))
    } else {
        let roots = match &upstream.ca {
            Some(ca) => root_store(ca).map_err(fail)?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };
    let config = match (&upstream.client_cert, &upstream.client_key) {
        (Some(cert), Some(key)) => {
            let key = PrivateKeyFile::new(key);
            let files = PairFiles::read(cert, &key);
            // Checked as a pair first, so a key that does not match names both files.
            files.certified_key(&provider).map_err(fail)?;
            let (chain, key) = files.chain_and_key().map_err(fail)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| fail(TlsError::Rustls(source)))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ProxyError::Config(
                "`--client-ssl-cert` and `--client-ssl-key` must be given together".to_owned(),
            ));
        }
    };
    // ALPN (`http/1.1`) is set by the connector, which insists on setting it itself.
    Ok(config)
}

/// The operating system's trusted roots (what CHP's Node uses for `https://` targets without a CA).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "cannot load some system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates for https targets");
    roots
}

/// `--insecure`: accepts any certificate a target presents (signatures are still checked, so the
/// handshake itself is sound). Only for targets on a trusted network.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
