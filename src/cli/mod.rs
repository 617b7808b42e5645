//! What the binary adds to the daemon library: `serve` (signals, and the embedded default's
//! in-process simulator), the `bench` load generator, the `store` tools, the `reconcile`
//! client and the admin commands (`numbers`, `bindings`, `stats`, `watch`).

pub mod admin;
pub mod bench;
pub mod cluster;
pub mod embedded;
pub mod health;
pub mod logging;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod reconcile;
pub mod serve;
pub mod store;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// How a CLI command reaches a running daemon: the same flags on every command.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// The daemon's gRPC address (`https://…` for TLS).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token (`[[auth.tokens]]`).
    #[arg(long, env = "XPOOL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) the daemon's certificate is checked against; implies TLS.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --key-file.
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
}

impl DaemonArgs {
    /// A connected channel, over TLS when the address is `https://` or a CA is given.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut endpoint = Channel::from_shared(self.server.clone())
            .with_context(|| format!("--server {:?}", self.server))?;
        let tls = self.server.starts_with("https://") || self.ca_file.is_some();
        if tls {
            let mut config = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_file {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("reading --ca-file {}", ca.display()))?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
                let cert = std::fs::read(cert)
                    .with_context(|| format!("reading --cert-file {}", cert.display()))?;
                let key = std::fs::read(key)
                    .with_context(|| format!("reading --key-file {}", key.display()))?;
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config)?;
        }
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach {}", self.server))
    }

    /// Adds the token to every call.
    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        Bearer::new(self.token.as_deref())
    }
}

/// Adds `authorization: Bearer <token>` to every call of a client, when a token is given
/// (`--token` / `XPOOL_TOKEN`).
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None` when no token is given; an error if the token cannot be sent as metadata.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        let value = token
            .map(|token| {
                format!("Bearer {}", token.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow::anyhow!("the token has characters metadata cannot carry"))
            })
            .transpose()?;
        Ok(Bearer(value))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}
