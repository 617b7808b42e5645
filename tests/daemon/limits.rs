//! Greedy or broken clients cannot hurt the others: Binds are shed (OVERLOADED) while the
//! store's disk cannot keep up instead of queueing without bound, 2,000 idle connections do
//! not stop a connected client's Binds, a client that stops reading its Watch does not hold
//! up anyone's Binds, and oversized metadata or responses are refused, not served.

use std::time::Duration;

use tokio::net::TcpStream;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;
use xpool::grpc::pb::watch_service_client::WatchServiceClient;
use xpool::store::faults::{self, Error, Point, Times};

use crate::support::*;

/// The local X-mode app alone, with room for a few thousand bindings.
fn roomy() -> Setup {
    Setup::standard()
        .only(&["local"])
        .app("local", |app| app.daemon("max_bindings_per_x", 5000))
}

async fn channel(d: &Daemon) -> Channel {
    within(
        "connecting",
        Channel::from_shared(d.addr.clone()).unwrap().connect(),
    )
    .await
    .unwrap()
}

/// A Bind on the local X-mode app that the caller gives up on after `deadline`.
fn bind_within(i: u32, deadline: Duration) -> tonic::Request<pb::BindRequest> {
    let mut req = tonic::Request::new(bind("local", &party(i), Some(&party(i + 1))));
    req.set_timeout(deadline);
    req
}

#[tokio::test]
async fn binds_are_shed_while_the_disk_cannot_keep_up_and_served_again_after() {
    let d = Daemon::start_with(roomy().server("max_queued_writes", 2)).await;
    let mut client = BindingServiceClient::new(channel(&d).await);
    d.bind_ok(bind("local", &party(900), Some(&party(901))))
        .await;

    // The disk stops answering for a while: each Bind's write waits for a sync that hangs.
    faults::stall_for(Duration::from_millis(1500));
    let store = d.dir.path().join("store");
    faults::set(&store, Point::LogSync, Error::Stall, Times::Always);
    let mut shed = None;
    for i in 0..6 {
        match rpc(
            "Bind",
            client.bind(bind_within(10 + 2 * i, Duration::from_millis(400))),
        )
        .await
        {
            Err(s) if refusal(&s).reason == "OVERLOADED" => {
                shed = Some(s);
                break;
            }
            Err(s) => assert_eq!(s.code(), Code::Unavailable, "waiting on the disk: {s:?}"),
            Ok(b) => panic!("a Bind was acknowledged while its write could not be synced: {b:?}"),
        }
    }
    let shed = shed.expect("with 2 writes waiting, a Bind is shed");
    assert_eq!(shed.code(), Code::Unavailable);
    assert!(refusal(&shed).retry.is_some(), "{shed:?}");
    assert!(
        shed.message().contains("server.max_queued_writes"),
        "{shed:?}"
    );

    // The disk answers again: the queue drains and Binds are served.
    faults::clear(&store);
    within("Binds served again", async {
        let mut i = 100;
        loop {
            if rpc("Bind", client.bind(bind_within(i, Duration::from_secs(5))))
                .await
                .is_ok()
            {
                return;
            }
            i += 2;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_stop_a_bind() {
    let d = Daemon::start_with(
        roomy()
            .server("max_connections", 3000)
            .server("handshake_timeout_seconds", 60),
    )
    .await;
    let mut client = BindingServiceClient::new(channel(&d).await);
    let host = d.addr.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(&host).await.unwrap());
    }
    within("the daemon to hold the idle connections", async {
        while d.connections.open() < 2001 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for i in 0..20 {
        rpc(
            "Bind",
            client.bind(bind("local", &party(2 * i), Some(&party(2 * i + 1)))),
        )
        .await
        .unwrap();
    }
    // A new client gets in too.
    let mut fresh = BindingServiceClient::new(channel(&d).await);
    rpc(
        "Bind",
        fresh.bind(bind("local", &party(500), Some(&party(501)))),
    )
    .await
    .unwrap();
    drop(idle);
    d.stop().await;
}

#[tokio::test]
async fn a_watcher_that_stops_reading_holds_up_no_one() {
    let d = Daemon::start_with(roomy()).await;
    // Its stream is opened and then never read: the daemon's sends to it fill the HTTP/2
    // window and wait.
    let mut watcher = WatchServiceClient::new(channel(&d).await);
    let _stuck = rpc("Watch", watcher.watch(pb::WatchRequest::default()))
        .await
        .unwrap();
    let mut client = BindingServiceClient::new(channel(&d).await);
    for i in 0..400 {
        let b = rpc(
            "Bind",
            client.bind(bind("local", &party(2 * i), Some(&party(2 * i + 1)))),
        )
        .await
        .unwrap();
        rpc(
            "Unbind",
            client.unbind(pb::UnbindRequest::by_id(&b.binding_id)),
        )
        .await
        .unwrap();
    }
    d.stop().await;
}

#[tokio::test]
async fn oversized_metadata_and_responses_are_refused() {
    let d = Daemon::start_with(roomy().server("max_response_bytes", 2048)).await;
    let mut client = BindingServiceClient::new(channel(&d).await);

    // 20 KiB of metadata, over the default 16 KiB header limit.
    let mut req = tonic::Request::new(bind("local", &party(1), Some(&party(2))));
    let big: MetadataValue<_> = "x".repeat(20 * 1024).parse().unwrap();
    req.metadata_mut().insert("x-padding", big);
    assert!(rpc("Bind", client.bind(req)).await.is_err());
    assert!(
        d.list("local", pb::BindingState::Active).await.is_empty(),
        "the refused call changed nothing"
    );

    // A listing page larger than max_response_bytes fails instead of reaching the client.
    let mut client = BindingServiceClient::new(channel(&d).await);
    for i in 0..30 {
        rpc(
            "Bind",
            client.bind(bind("local", &party(10 + 2 * i), Some(&party(11 + 2 * i)))),
        )
        .await
        .unwrap();
    }
    let list = pb::ListBindingsRequest {
        app: "local".into(),
        page_size: 30,
        ..Default::default()
    };
    let refused = rpc("ListBindings", client.list_bindings(list))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{refused:?}");
    let small = pb::ListBindingsRequest {
        app: "local".into(),
        page_size: 2,
        ..Default::default()
    };
    let page = rpc("ListBindings", client.list_bindings(small))
        .await
        .unwrap();
    assert_eq!(page.bindings.len(), 2);
    d.stop().await;
}
