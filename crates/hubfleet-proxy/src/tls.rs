//! TLS for the public port: PEM certificate and key loaded with rustls (ring), reloadable at runtime
//! (SIGHUP) without dropping connections, ALPN `h2` and `http/1.1`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{ProxyError, TlsError};

/// The certificate currently served, swapped atomically by [`ReloadableCert::reload`].
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadableCert {
    // The key material must never reach a log, so only the paths are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

impl ReloadableCert {
    /// Loads the PEM certificate chain and private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, ProxyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = load_certified_key(cert_path, key_path, &provider).map_err(|source| {
            ProxyError::Tls {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
                source,
            }
        })?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: ArcSwap::from_pointee(certified),
        })
    }

    /// Re-reads the files; on failure the old certificate stays in use.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let certified = load_certified_key(&self.cert_path, &self.key_path, &self.provider)
            .map_err(|source| ProxyError::Tls {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                source,
            })?;
        self.current.store(Arc::new(certified));
        Ok(())
    }

    /// A rustls server configuration serving this certificate, offering `h2` then `http/1.1`.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<ServerConfig, ProxyError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| ProxyError::Tls {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                source: TlsError::Rustls(source),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(TlsError::Pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(TlsError::Pem)?;
    CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Rustls)
}
