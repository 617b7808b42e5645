//! `[cluster]`: every key, its defaults, each bad value named by its key, and the password
//! kept out of errors and `Debug`.

use super::*;

const CLUSTER: &str = r#"
[cluster]
etcd_endpoints = ["http://127.0.0.1:2379", "https://etcd-1.example.com:2379"]
node_id = "xpool-0"
advertise_addr = "xpool-0.xpool:50051"
"#;

const PASSWORD: &str = "Etcd-distinctive-PASSWORD-4411";

/// The example with `[cluster]` whose body (after the header) is `body`.
fn with_cluster(body: &str) -> String {
    format!("{EXAMPLE}\n[cluster]\n{body}\n")
}

/// The problems of a rejected config, one line each.
fn problems(text: &str) -> Vec<String> {
    error_of(parse(text)).lines().map(str::to_owned).collect()
}

/// Asserts the config is rejected with a problem at `key` (and only there) mentioning `what`.
fn rejected_at(body: &str, key: &str, what: &str) {
    let lines = problems(&with_cluster(body));
    let prefix = format!("test.toml: {key}: ");
    assert!(
        lines.iter().all(|l| l.starts_with(&prefix)) && lines.iter().any(|l| l.contains(what)),
        "expected only {key} ({what}) in {lines:#?}"
    );
}

const VALID: &str = r#"etcd_endpoints = ["http://127.0.0.1:2379"]
node_id = "n1"
advertise_addr = "10.0.0.1:50051""#;

#[test]
fn absent_is_a_single_node_and_the_defaults_are_documented() {
    assert_eq!(parse(EXAMPLE).unwrap().cluster, None);
    let config = parse(&format!("{EXAMPLE}{CLUSTER}")).unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(
        cluster.etcd_endpoints,
        ["http://127.0.0.1:2379", "https://etcd-1.example.com:2379"]
    );
    assert_eq!(cluster.node_id, "xpool-0");
    assert_eq!(cluster.advertise_addr, "xpool-0.xpool:50051");
    assert_eq!(cluster.lease_ttl_seconds, 5);
    assert_eq!(cluster.lease_ttl(), Duration::from_secs(5));
    assert_eq!(cluster.key_prefix, "/xpool/");
    assert_eq!(cluster.tls, None);
    assert_eq!(cluster.credentials, None);
}

#[test]
fn every_key_can_be_set_and_the_password_never_shows() {
    let ca = secret_file("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let key = secret_file("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    let password = secret_file(&format!("{PASSWORD}\n"));
    let body = format!(
        "etcd_endpoints = [\"https://10.0.0.5:2379\"]\nnode_id = \"a.B_c-9\"\n\
         advertise_addr = \"[fd00::7]:50051\"\nlease_ttl_seconds = 60\nkey_prefix = \"/prod/xpool/\"\n\
         username = \"xpool\"\npassword_file = {:?}\n\
         [cluster.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        password.path(),
        ca.path(),
        ca.path(),
        key.path()
    );
    let config = parse(&with_cluster(&body)).unwrap();
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(cluster.lease_ttl_seconds, 60);
    assert_eq!(cluster.key_prefix, "/prod/xpool/");
    assert_eq!(cluster.advertise_addr, "[fd00::7]:50051");
    let tls = cluster.tls.as_ref().unwrap();
    assert_eq!(tls.ca_file.as_deref(), Some(ca.path()));
    assert_eq!(tls.key_file.as_deref(), Some(key.path()));
    let credentials = cluster.credentials.as_ref().unwrap();
    assert_eq!(credentials.username, "xpool");
    assert_eq!(
        credentials.password.expose(),
        PASSWORD,
        "trailing newline trimmed"
    );
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(PASSWORD), "Debug shows the password");

    // An error elsewhere in the same config does not quote it either.
    let broken = body.replace("lease_ttl_seconds = 60", "lease_ttl_seconds = 1");
    let error = error_of(parse(&with_cluster(&broken)));
    assert!(error.contains("cluster.lease_ttl_seconds"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
}

#[test]
fn each_bad_key_is_named() {
    let valid = |from: &str, to: &str| {
        assert!(VALID.contains(from), "{from:?}");
        VALID.replace(from, to)
    };
    rejected_at(
        &valid(r#"etcd_endpoints = ["http://127.0.0.1:2379"]"#, ""),
        "cluster.etcd_endpoints",
        "is required",
    );
    rejected_at(
        &valid(r#"["http://127.0.0.1:2379"]"#, "[]"),
        "cluster.etcd_endpoints",
        "at least one",
    );
    for bad in [
        "ftp://127.0.0.1:2379",
        "127.0.0.1:2379",
        "http://",
        "http://h:2379/v3",
    ] {
        rejected_at(
            &valid(
                r#"["http://127.0.0.1:2379"]"#,
                &format!("[\"http://a:1\", {bad:?}]"),
            ),
            "cluster.etcd_endpoints[1]",
            "not an http(s)://host:port URL",
        );
    }
    rejected_at(
        &valid(r#"node_id = "n1""#, ""),
        "cluster.node_id",
        "is required",
    );
    for bad in ["", "has space", "slash/y", &"x".repeat(65)] {
        rejected_at(
            &valid(r#""n1""#, &format!("{bad:?}")),
            "cluster.node_id",
            "A-Z a-z 0-9",
        );
    }
    rejected_at(
        &valid(r#"advertise_addr = "10.0.0.1:50051""#, ""),
        "cluster.advertise_addr",
        "is required",
    );
    for (bad, what) in [
        ("10.0.0.1", "not host:port"),
        ("10.0.0.1:99999", "no valid port"),
        (":50051", "not host:port"),
        ("0.0.0.0:50051", "unspecified"),
        ("[::]:50051", "unspecified"),
    ] {
        rejected_at(
            &valid(r#""10.0.0.1:50051""#, &format!("{bad:?}")),
            "cluster.advertise_addr",
            what,
        );
    }
    for ttl in [0, 1, 61] {
        rejected_at(
            &format!("{VALID}\nlease_ttl_seconds = {ttl}"),
            "cluster.lease_ttl_seconds",
            "not 2 to 60",
        );
    }
    rejected_at(
        &format!("{VALID}\nlease_ttl_seconds = \"5\""),
        "cluster.lease_ttl_seconds",
        "invalid type",
    );
    for prefix in ["xpool/", "/xpool", ""] {
        rejected_at(
            &format!("{VALID}\nkey_prefix = {prefix:?}"),
            "cluster.key_prefix",
            "start and end with /",
        );
    }
    rejected_at(
        &format!("{VALID}\nnodes = 3"),
        "cluster.nodes",
        "unknown field",
    );
    rejected_at(
        &format!("{VALID}\npassword = \"{PASSWORD}\""),
        "cluster.password",
        "password_file",
    );
    let error = error_of(parse(&with_cluster(&format!(
        "{VALID}\npassword = \"{PASSWORD}\""
    ))));
    assert!(!error.contains(PASSWORD), "{error}");
    assert!(
        problems(&format!("cluster = 3\n{EXAMPLE}"))
            .iter()
            .any(|l| l.starts_with("test.toml: cluster: must be a table"))
    );
}

#[test]
fn tls_and_credential_files_are_checked_before_anything_connects() {
    let https = VALID.replace("http://127.0.0.1:2379", "https://127.0.0.1:2379");
    let pem = secret_file("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let not_pem = secret_file("just text");
    rejected_at(
        &format!("{https}\n[cluster.tls]\nca_file = \"/nonexistent/ca.pem\""),
        "cluster.tls.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
    rejected_at(
        &format!("{https}\n[cluster.tls]\nca_file = {:?}", not_pem.path()),
        "cluster.tls.ca_file",
        "no PEM block",
    );
    rejected_at(
        &format!("{https}\n[cluster.tls]\ncert_file = {:?}", pem.path()),
        "cluster.tls.key_file",
        "go together",
    );
    rejected_at(
        &format!(
            "{https}\n[cluster.tls]\nca_file = {:?}\ncrl_file = \"x\"",
            pem.path()
        ),
        "cluster.tls.crl_file",
        "unknown field",
    );
    rejected_at(
        &format!("{VALID}\n[cluster.tls]\nca_file = {:?}", pem.path()),
        "cluster.tls",
        "no etcd endpoint is https://",
    );
    rejected_at(
        &format!("{VALID}\nusername = \"xpool\""),
        "cluster.password_file",
        "is required",
    );
    rejected_at(
        &format!("{VALID}\npassword_file = {:?}", pem.path()),
        "cluster.username",
        "is required",
    );
    rejected_at(
        &format!("{VALID}\nusername = \"xpool\"\npassword_file = \"/nonexistent/pw\""),
        "cluster.password_file",
        "cannot read password file /nonexistent/pw",
    );
    let empty = secret_file("\n");
    rejected_at(
        &format!(
            "{VALID}\nusername = \"xpool\"\npassword_file = {:?}",
            empty.path()
        ),
        "cluster.password_file",
        "is empty",
    );
}

#[test]
fn the_environment_sets_cluster_keys_and_is_blamed_for_bad_ones() {
    let text = format!("{EXAMPLE}{CLUSTER}");
    let config = parse_env(
        &text,
        &[
            ("XPOOL__CLUSTER__NODE_ID", "xpool-2"),
            ("XPOOL__CLUSTER__LEASE_TTL_SECONDS", "9"),
            ("XPOOL__CLUSTER__ETCD_ENDPOINTS", r#"["http://etcd:2379"]"#),
        ],
    )
    .unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.node_id, "xpool-2");
    assert_eq!(cluster.lease_ttl_seconds, 9);
    assert_eq!(cluster.etcd_endpoints, ["http://etcd:2379"]);

    let error = error_of(parse_env(&text, &[("XPOOL__CLUSTER__NODE_ID", "bad id")]));
    assert!(
        error.starts_with("XPOOL__CLUSTER__NODE_ID: cluster.node_id: "),
        "{error}"
    );
}

#[test]
fn tls_between_replicas_follows_the_servers() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = secret_file(&cert.cert.pem());
    let key_file = secret_file(&cert.signing_key.serialize_pem());
    let server_tls = |client_ca: bool| {
        let mut text = format!(
            "\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}",
            cert_file.path(),
            key_file.path()
        );
        if client_ca {
            text += &format!("\nclient_ca_file = {:?}", cert_file.path());
        }
        text
    };
    let peer = |keys: &str| format!("\n[cluster.peer_tls]\n{keys}");
    let ca = format!("ca_file = {:?}", cert_file.path());
    let identity = format!(
        "cert_file = {:?}\nkey_file = {:?}",
        cert_file.path(),
        key_file.path()
    );
    // TLS on the listener: the replicas must trust each other's certificates...
    rejected_at(
        &format!("{VALID}{}", server_tls(false)),
        "cluster.peer_tls.ca_file",
        "is required with [server.tls]",
    );
    parse(&with_cluster(&format!(
        "{VALID}{}{}",
        peer(&ca),
        server_tls(false)
    )))
    .unwrap();
    // ...and, when the listener asks for client certificates, present one.
    rejected_at(
        &format!("{VALID}{}{}", peer(&ca), server_tls(true)),
        "cluster.peer_tls.cert_file",
        "server.tls.client_ca_file",
    );
    let both = format!("{ca}\n{identity}");
    let config = parse(&with_cluster(&format!(
        "{VALID}{}{}",
        peer(&both),
        server_tls(true)
    )))
    .unwrap();
    let peer_tls = config.cluster.unwrap().peer_tls.unwrap();
    assert_eq!(peer_tls.ca_file.as_deref(), Some(cert_file.path()));
    // Without TLS on the listener, peer TLS would never be used.
    rejected_at(
        &format!("{VALID}{}", peer(&ca)),
        "cluster.peer_tls",
        "[server.tls] is not",
    );
    rejected_at(
        &format!("{VALID}\n[cluster.peer_tls]\nca_file = \"/nonexistent/ca.pem\""),
        "cluster.peer_tls.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
}

#[test]
fn https_pushes_between_replicas_need_the_replicas_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = secret_file(&cert.cert.pem());
    let key_file = secret_file(&cert.signing_key.serialize_pem());
    let callbacks_tls = format!(
        "\n[callbacks.tls]\ncert_file = {:?}\nkey_file = {:?}",
        cert_file.path(),
        key_file.path()
    );
    // Forwarded pushes go to the other replicas' receivers over HTTPS: trust their CA.
    rejected_at(
        &format!("{VALID}{callbacks_tls}"),
        "cluster.peer_tls.ca_file",
        "is required with [callbacks.tls]",
    );
    let peer = format!("\n[cluster.peer_tls]\nca_file = {:?}", cert_file.path());
    parse(&with_cluster(&format!("{VALID}{peer}{callbacks_tls}"))).unwrap();
    // And peer TLS alone, with neither listener on TLS, is still refused.
    rejected_at(
        &format!("{VALID}{peer}"),
        "cluster.peer_tls",
        "nor [callbacks.tls]",
    );
}
