//! TLS for the gRPC listener (`[server.tls]`) and the push receiver (`[callbacks.tls]`): the certificate and key, and with
//! `client_ca_file` mutual TLS (a client without a certificate signed by that CA is refused at
//! the handshake). The files are re-read on [`ServerTls::reload`] (SIGHUP) and when they
//! change; a new handshake uses the newest good configuration, open connections keep theirs,
//! and a bad new file is logged and ignored (the old certificate stays in use).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsConfig;

/// The listener's TLS configuration, reloadable.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsConfig,
    /// The application protocols offered (ALPN).
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
    /// Modification times of the files when last loaded.
    loaded: Mutex<Vec<Option<SystemTime>>>,
}

impl ServerTls {
    /// Loads the files for gRPC (HTTP/2 only); an error says which file and why (never its
    /// content).
    pub fn load(files: &TlsConfig) -> Result<ServerTls, String> {
        Self::load_for(files, vec![b"h2".to_vec()])
    }

    /// Loads the files for plain HTTP servers (the push receiver): HTTP/1.1 and HTTP/2.
    pub fn load_http(files: &TlsConfig) -> Result<ServerTls, String> {
        Self::load_for(files, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
    }

    fn load_for(files: &TlsConfig, alpn: Vec<Vec<u8>>) -> Result<ServerTls, String> {
        let config = server_config(files, &alpn)?;
        Ok(ServerTls {
            files: files.clone(),
            alpn,
            current: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(stamps(files)),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// Re-reads the files. On an error the configuration in use stays, and the error is
    /// returned for the log.
    pub fn reload(&self) -> Result<(), String> {
        let stamps = stamps(&self.files);
        let config = server_config(&self.files, &self.alpn)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        Ok(())
    }

    /// Re-reads the files if any changed since they were last read; `Some` with the outcome
    /// when it did.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = stamps(&self.files);
        let changed = *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) != now;
        changed.then(|| {
            let result = self.reload();
            if result.is_err() {
                // Do not retry the same bad files every round: wait for the next change.
                *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = now;
            }
            result
        })
    }
}

fn paths(files: &TlsConfig) -> Vec<&PathBuf> {
    let mut paths = vec![&files.cert_file, &files.key_file];
    paths.extend(files.client_ca_file.as_ref());
    paths
}

fn stamps(files: &TlsConfig) -> Vec<Option<SystemTime>> {
    paths(files)
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Checks that the files load, for the configuration's validation: the problem, naming the
/// key, if they do not.
pub fn check(files: &TlsConfig) -> Result<(), (&'static str, String)> {
    certificates(&files.cert_file).map_err(|e| ("cert_file", e))?;
    private_key(&files.key_file).map_err(|e| ("key_file", e))?;
    if let Some(ca) = &files.client_ca_file {
        roots(ca).map_err(|e| ("client_ca_file", e))?;
    }
    server_config(files, &[]).map_err(|e| ("cert_file", e))?;
    Ok(())
}

fn server_config(files: &TlsConfig, alpn: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            certificates(&files.cert_file)?,
            private_key(&files.key_file)?,
        )
        .map_err(|e| {
            format!(
                "{} and {} do not make a certificate and its key: {e}",
                files.cert_file.display(),
                files.key_file.display()
            )
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a PEM private key from {}: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| {
            format!(
                "{} holds a certificate that is not a CA: {e}",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// The names a verified client certificate carries: its subject's common name and its DNS,
/// URI and e-mail subject alternative names, which `[[auth.clients]] subject` is matched
/// against.
pub fn client_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned());
                }
                _ => {}
            }
        }
    }
    names
}
