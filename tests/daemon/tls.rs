//! The gRPC listener over TLS, against the built binary: with `client_ca_file`, a client
//! without a certificate, with one from another CA, or speaking plaintext is refused at the
//! handshake; a certificate whose name `[[auth.clients]]` knows gets that caller's scopes;
//! new certificate files are served after SIGHUP while open connections keep working.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use crate::support::certs::Ca;
use crate::support::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon child serving TLS with `[server.tls]` from `dir`.
struct TlsDaemon {
    proc: tokio::process::Child,
    addr: String,
    log: PathBuf,
}

impl TlsDaemon {
    async fn spawn(dir: &Path, setup: &Setup, ca: &Ca) -> TlsDaemon {
        let config = dir.join("xpool.toml");
        std::fs::write(
            &config,
            setup.daemon_toml("127.0.0.1:0", "http://127.0.0.1:9", &dir.join("store")),
        )
        .unwrap();
        let log = dir.join("daemon.log");
        let proc = xpool_serve(&log)
            .arg("--config")
            .arg(&config)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(addr) = listening_addr(&log) {
                break addr.replace("http://", "https://");
            }
            assert!(
                Instant::now() < deadline,
                "no listening line:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let daemon = TlsDaemon { proc, addr, log };
        let client = ca.sign("health-probe");
        within("TLS health", async {
            loop {
                if let Ok(channel) = daemon.connect(&ca.pem, Some(&client)).await
                    && HealthClient::new(channel)
                        .check(HealthCheckRequest::default())
                        .await
                        .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        daemon
    }

    /// A TLS channel trusting `ca_pem`, presenting `client` (cert, key) if given.
    async fn connect(
        &self,
        ca_pem: &str,
        client: Option<&(String, String)>,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        if let Some((cert, key)) = client {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    /// Whether a Bind over a new connection (trusting `ca_pem`, presenting `client`) fails,
    /// at connecting or at the call.
    async fn refuses(&self, ca_pem: &str, client: Option<&(String, String)>, i: u32) -> bool {
        match self.connect(ca_pem, client).await {
            Err(_) => true,
            Ok(channel) => self.bind(channel, i).await.is_err(),
        }
    }

    async fn bind(&self, channel: Channel, i: u32) -> Result<(), tonic::Status> {
        let mut client = BindingServiceClient::new(channel);
        rpc(
            "Bind",
            client.bind(bind("local", &party(i), Some(&party(i + 1)))),
        )
        .await
        .map(drop)
    }
}

fn setup(dir: &Path, ca: &Ca) -> Setup {
    let (cert, key) = ca.sign("xpool-server");
    let tls = format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        write(dir, "server.pem", &cert),
        write(dir, "server.key", &key),
        write(dir, "ca.pem", &ca.pem),
    );
    let token = xpool::auth::sha256_hex(b"xpool_reader-token-0123456789");
    Setup::standard().only(&["local"]).daemon_section(&format!(
        "{tls}[auth]\n[[auth.clients]]\nname = \"ops\"\nsubject = \"ops.example.internal\"\n\
         scopes = [\"admin\"]\n[[auth.tokens]]\nname = \"reader\"\ntoken_sha256 = \"{token}\"\n\
         scopes = [\"read:local\"]\n"
    ))
}

#[tokio::test]
async fn mutual_tls_refuses_strangers_and_maps_known_certificates_to_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("xpool test CA");
    let mut daemon = TlsDaemon::spawn(dir.path(), &setup(dir.path(), &ca), &ca).await;

    // A certificate the config names: that caller's scopes, no token needed.
    let ops = ca.sign("ops.example.internal");
    let channel = daemon.connect(&ca.pem, Some(&ops)).await.unwrap();
    daemon.bind(channel.clone(), 1).await.unwrap();

    // The CLI over mutual TLS, with the same flags on each command.
    let cli = |command: &'static str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"));
        cmd.args([
            command,
            "--server",
            &daemon.addr.replace("127.0.0.1", "localhost"),
        ])
        .arg("--ca-file")
        .arg(dir.path().join("ca.pem"))
        .arg("--cert-file")
        .arg(write(dir.path(), "ops.pem", &ops.0))
        .arg("--key-file")
        .arg(write(dir.path(), "ops.key", &ops.1))
        .env_remove("XPOOL_TOKEN");
        cmd
    };
    let health = within("xpool health over TLS", cli("health").output())
        .await
        .unwrap();
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let reconcile = within(
        "xpool reconcile over TLS",
        cli("reconcile").args(["--app", "local"]).output(),
    )
    .await
    .unwrap();
    assert!(reconcile.status.success(), "{reconcile:?}");
    let no_cert = within(
        "xpool health without a client certificate",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_xpool"))
            .args(["health", "--server", &daemon.addr, "--ca-file"])
            .arg(dir.path().join("ca.pem"))
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(no_cert.status.code(), Some(1), "{no_cert:?}");

    // A good certificate of a caller the config does not name: authenticated at the TLS
    // layer, but it has no scopes without a token.
    let stranger = ca.sign("someone.example.internal");
    let other = daemon.connect(&ca.pem, Some(&stranger)).await.unwrap();
    let refused = daemon.bind(other, 3).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // No certificate, one from another CA, plaintext: refused at the handshake (under TLS
    // 1.3 the client learns it on its first call).
    let foreign = Ca::new("another CA").sign("ops.example.internal");
    for (what, client) in [("no certificate", None), ("another CA's", Some(&foreign))] {
        assert!(
            daemon.refuses(&ca.pem, client, 5).await,
            "{what}: a call went through"
        );
    }
    let plain = Channel::from_shared(daemon.addr.replace("https://", "http://"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(
            daemon.bind(channel, 9).await.is_err(),
            "plaintext on a TLS port"
        );
    }

    // New files, then SIGHUP: a new connection sees the new certificate (signed by a new CA),
    // the open one keeps working.
    let ca2 = Ca::new("xpool test CA, renewed");
    let (cert, key) = ca2.sign("xpool-server");
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemon.proc.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    within("the renewed certificate to be served", async {
        loop {
            if let Ok(renewed) = daemon.connect(&ca2.pem, Some(&ops)).await
                && daemon.bind(renewed, 11).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    daemon.bind(channel, 13).await.unwrap();
    assert!(
        daemon.refuses(&ca.pem, Some(&ops), 15).await,
        "a new connection trusting only the old CA fails"
    );

    let log = std::fs::read_to_string(&daemon.log).unwrap();
    // The refused handshakes are in the log at warn level, with the reason, once a minute
    // per peer address: the no-certificate, other-CA and plaintext attempts all came from
    // 127.0.0.1 within the minute.
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains("WARN"), "{}", failed[0]);
    assert!(failed[0].contains("peer"), "{}", failed[0]);
    assert!(log.contains("TLS certificate and key re-read"), "{log}");
    assert!(log.contains("gRPC over TLS"), "{log}");
    daemon.proc.kill().await.unwrap();
}

#[tokio::test]
async fn the_push_receiver_answers_over_https() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("xpool test CA");
    let (cert, key) = ca.sign("xpool-pushes");
    let tls = format!(
        "[callbacks.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        write(dir.path(), "pushes.pem", &cert),
        write(dir.path(), "pushes.key", &key),
    );
    let d = Daemon::start_with(
        Setup::standard()
            .only(&["local"])
            .receiver()
            .daemon_section(&tls),
    )
    .await;
    let url = d.receiver.clone().unwrap().replace("http://", "https://");
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let callin = serde_json::json!({
        "eventType": "callin",
        "statusInfo": {
            "timestamp": "2026-12-03 00:00:00",
            "sessionId": "tls-1",
            "caller": party(1),
            "called": "+8617400000001",
            "notifyMode": "Block",
        }
    });
    let answer = within(
        "an X-mode callin over HTTPS",
        https.post(&url).json(&callin).send(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        body["operation"], "close",
        "no binding for that caller: {body}"
    );

    let plain = reqwest::Client::new()
        .post(d.receiver.clone().unwrap())
        .json(&callin)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP on the HTTPS receiver"
    );
    d.stop().await;
}
