//! What a [`Client`](crate::Client) connects to and how: endpoints, deadlines, TLS and
//! credentials. Validated by `Client::new`, before anything connects.

use std::{fmt, path::PathBuf, time::Duration};

/// The client's configuration. Build it with [`ClientConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// etcd client URLs, `http://host:port` or `https://host:port`; calls fail over between them
    /// in this order, starting from the last one that worked.
    pub endpoints: Vec<String>,
    /// TLS for `https://` endpoints; `None` with an `https://` endpoint trusts the system's roots.
    pub tls: Option<TlsConfig>,
    /// User and password for etcd's auth; `None` when auth is not enabled.
    pub credentials: Option<Credentials>,
    /// The deadline of every call unless overridden with
    /// [`Client::with_timeout`](crate::Client::with_timeout). Default 5 s.
    pub request_timeout: Duration,
    /// How long a read waits on one endpoint before trying the next (within the call's
    /// deadline), so a hung member costs one attempt, not the whole deadline. Default 2 s.
    pub attempt_timeout: Duration,
    /// TCP connect timeout per endpoint. Default 2 s.
    pub connect_timeout: Duration,
    /// How long an unanswered liveness check (HTTP/2 ping, watch progress request) takes to
    /// declare a connection dead, so a watch on a frozen member fails over. Default 3 s.
    pub keep_alive_timeout: Duration,
}

impl ClientConfig {
    /// A configuration for these endpoints with the default deadlines, no TLS and no auth.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            credentials: None,
            request_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            keep_alive_timeout: Duration::from_secs(3),
        }
    }
}

/// TLS towards etcd's client port.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM file of the CA that signed etcd's server certificates; `None` trusts the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (etcd's `--client-cert-auth`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name to verify the server certificate against, when it is not the endpoint's host.
    pub domain_name: Option<String>,
}

/// A user and password for etcd's auth. The password never appears in `Debug` output, logs or
/// errors.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// Credentials of `user`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let mut config = ClientConfig::new(["http://127.0.0.1:2379"]);
        config.credentials = Some(Credentials::new("xpool", "hunter2-secret"));
        let shown = format!("{config:?} {:#?}", config.credentials);
        assert!(shown.contains("xpool"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
