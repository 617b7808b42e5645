//! etcd auth against a real 3-member cluster: user/password, wrong password, an expired token
//! renewed transparently, and the password kept out of errors and Debug output.

mod common;

use std::time::Duration;

use common::{EtcdCluster, bounded};
use tonic::{Code, Request, transport::Channel};
use xpool_etcd::{
    Client, Credentials, Error,
    pb::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, AuthenticateRequest,
        PutRequest, auth_client::AuthClient, kv_client::KvClient,
    },
};

const PASSWORD: &str = "correct-horse-battery";

/// Creates `root` with [`PASSWORD`] and turns auth on, with the raw API.
async fn enable_auth(endpoint: &str) {
    let channel = Channel::from_shared(endpoint.to_owned())
        .expect("auth setup")
        .connect()
        .await
        .expect("auth setup");
    let mut auth = AuthClient::new(channel);
    let user = AuthUserAddRequest {
        name: "root".into(),
        password: PASSWORD.into(),
        options: None,
    };
    auth.user_add(user).await.expect("auth setup");
    let grant = AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    };
    auth.user_grant_role(grant).await.expect("auth setup");
    auth.auth_enable(AuthEnableRequest {})
        .await
        .expect("auth setup");
}

fn client_as(cluster: &EtcdCluster, password: &str) -> Client {
    let mut config = cluster.config();
    config.credentials = Some(Credentials::new("root", password));
    Client::new(config).expect("auth setup")
}

#[tokio::test]
async fn credentials_authenticate_and_wrong_ones_fail_without_leaking() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start(3).await else {
            return;
        };
        enable_auth(&cluster.endpoint(0)).await;

        let client = client_as(&cluster, PASSWORD);
        client.put("a", "1").await.unwrap();
        assert_eq!(client.get("a").await.unwrap().first().unwrap().value, b"1");
        assert!(!format!("{client:?}").contains(PASSWORD));

        let wrong = client_as(&cluster, "not-the-password");
        let error = wrong.put("a", "2").await.unwrap_err();
        assert!(matches!(error, Error::AuthFailed(_)), "{error:?}");
        let shown = format!("{error} {error:?} {wrong:?}");
        assert!(!shown.contains("not-the-password"), "{shown}");

        let anonymous = Client::new(cluster.config()).unwrap();
        let error = anonymous.put("a", "3").await.unwrap_err();
        assert!(matches!(error, Error::AuthFailed(_)), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_is_renewed_transparently() {
    bounded(async {
        let Some(cluster) = EtcdCluster::start_with_args(3, &["--auth-token-ttl=1"]).await else {
            return;
        };
        enable_auth(&cluster.endpoint(0)).await;
        let client = client_as(&cluster, PASSWORD);
        client.put("t", "1").await.unwrap();

        // A raw token, to show that tokens do expire here.
        let channel = Channel::from_shared(cluster.endpoint(0))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let login = AuthenticateRequest {
            name: "root".into(),
            password: PASSWORD.into(),
        };
        let token = AuthClient::new(channel.clone())
            .authenticate(login)
            .await
            .unwrap()
            .into_inner()
            .token;

        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut stale = Request::new(PutRequest {
            key: b"t".to_vec(),
            value: b"raw".to_vec(),
            ..Default::default()
        });
        stale.metadata_mut().insert("token", token.parse().unwrap());
        let status = KvClient::new(channel).put(stale).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

        // The client's own token expired the same way; it authenticates again by itself.
        client.put("t", "2").await.unwrap();
        assert_eq!(client.get("t").await.unwrap().first().unwrap().value, b"2");
    })
    .await;
}
