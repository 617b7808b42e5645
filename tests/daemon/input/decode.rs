//! Messages that do not decode, sent as raw bytes in a real gRPC frame: INVALID_ARGUMENT naming
//! the field where protobuf's error names one (never INTERNAL); a message over the size limit:
//! RESOURCE_EXHAUSTED. Nothing changes, and the connection keeps working.

use bytes::{Buf as _, BufMut as _};
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use xpool::grpc::pb;

use super::*;

/// Sends and receives message bodies as they are, without protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `method` with `body` as its message; the call must fail.
async fn raw_call(channel: &Channel, method: &'static str, body: Vec<u8>) -> Status {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    match grpc.unary(Request::new(body), path, Raw).await {
        Ok(r) => panic!("{method}: accepted, answered {:?}", r.into_inner()),
        Err(s) => s,
    }
}

/// A length-delimited field: tag, length, bytes.
fn field(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2, u8::try_from(value.len()).unwrap()];
    out.extend_from_slice(value);
    out
}

const BIND: &str = "/xpool.v1.BindingService/Bind";
const ADD_NUMBERS: &str = "/xpool.v1.PoolService/AddNumbers";

#[tokio::test]
async fn undecodable_messages_are_invalid_argument_naming_the_field() {
    let d = Daemon::start().await;
    let channel = Channel::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let before = snapshot(&d).await;
    let not_utf8 = [0xff, 0xfe, 0x31];
    let cases: Vec<(&str, &'static str, Vec<u8>, &str)> = vec![
        (
            "Bind, party_a not UTF-8",
            BIND,
            [field(1, b"rides"), field(2, &not_utf8)].concat(),
            "party_a",
        ),
        ("Bind, app not UTF-8", BIND, field(1, &[0xc3, 0x28]), "app"),
        (
            "AddNumbers, numbers[].number not UTF-8",
            ADD_NUMBERS,
            [
                field(1, b"rides"),
                field(2, &[field(1, &not_utf8), field(2, b"010")].concat()),
            ]
            .concat(),
            "numbers.number",
        ),
        (
            "Bind, a length past the end",
            BIND,
            vec![1 << 3 | 2, 100, b'r'],
            "app",
        ),
        (
            "Bind, a ttl that is not a Duration",
            BIND,
            field(6, b"1"),
            "ttl",
        ),
        ("Bind, junk", BIND, vec![0xff; 16], "request"),
        (
            "Health, junk",
            "/grpc.health.v1.Health/Check",
            vec![0xff; 16],
            "request",
        ),
    ];
    for (case, method, body, field) in cases {
        let status = raw_call(&channel, method, body).await;
        assert_rejected::<()>(Err(status), Code::InvalidArgument, field, case);
    }
    assert_unchanged(&d, &before, "undecodable messages").await;
    // The same connection still serves well-formed calls.
    let mut c = pb::binding_service_client::BindingServiceClient::new(channel);
    c.bind(axb()).await.unwrap();
    d.stop().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let d = Daemon::start_with(Setup::standard().server("max_message_bytes", 4096)).await;
    let before = snapshot(&d).await;
    let mut c = d.bindings().await;
    let big = with(axb(), |r| r.user_data = "u".repeat(5000));
    let err = c.bind(big).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("server.max_message_bytes"),
        "{err:?}"
    );
    let add = pb::AddNumbersRequest {
        app: "rides".into(),
        numbers: (0..300)
            .map(|i| pb::NumberSpec {
                number: format!("+86170000{i:05}"),
                area_code: "010".into(),
            })
            .collect(),
    };
    let err = d.pool().await.add_numbers(add).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Not retryable, unlike an exhausted pool.
    let r = assert_reason(&err, Code::ResourceExhausted, "MESSAGE_TOO_LARGE", &[]);
    assert_eq!(r.retry, None);
    assert_unchanged(&d, &before, "oversized messages").await;
    // Within the limit, the usual rules answer: user_data is at most 256 characters.
    let long = with(axb(), |r| r.user_data = "u".repeat(3000));
    assert_invalid(c.bind(long).await, "user_data", "Bind, user_data of 3000");
    c.bind(axb()).await.unwrap();
    d.stop().await;
}
