//! Call options through the gRPC API: each mode takes the options binding-api.md §2 gives it
//! and passes them to the platform under their wire names; the others are refused naming the
//! option, changing nothing; `[apps.call_defaults]` fill what a request leaves unset;
//! UpdateBinding changes them on the platform where the mode's modify allows it; a tone the
//! platform does not know is an error naming the option, leaving no binding behind.
//!
//! `bind` (what a Bind takes, refuses and gets by default) and `update` (UpdateBinding); the
//! per-mode table and the helpers are here.

use serde_json::{Value, json};
use tonic::Code;
use xpool::grpc::pb;

use crate::input::{assert_invalid, assert_unchanged, snapshot};
use crate::support::*;

mod bind;
mod update;

/// One value for every option.
fn every_option() -> pb::CallOptions {
    pb::CallOptions {
        call_direction: pb::CallDirection::AToBOnly.into(),
        record: Some(true),
        max_call_minutes: Some(30),
        record_hint_tone: "rec.wav".into(),
        last_minute_tone: "last.wav".into(),
        caller_hint_tone: "caller.wav".into(),
        callee_hint_tone: "callee.wav".into(),
        callback_tone: "cb.wav".into(),
        private_sms: Some(false),
    }
}

/// `from` with only the options named in `fields` kept.
fn only(from: &pb::CallOptions, fields: &[&str]) -> pb::CallOptions {
    let mut o = pb::CallOptions::default();
    for field in fields {
        match *field {
            "call_direction" => o.call_direction = from.call_direction,
            "record" => o.record = from.record,
            "max_call_minutes" => o.max_call_minutes = from.max_call_minutes,
            "record_hint_tone" => o.record_hint_tone.clone_from(&from.record_hint_tone),
            "last_minute_tone" => o.last_minute_tone.clone_from(&from.last_minute_tone),
            "caller_hint_tone" => o.caller_hint_tone.clone_from(&from.caller_hint_tone),
            "callee_hint_tone" => o.callee_hint_tone.clone_from(&from.callee_hint_tone),
            "callback_tone" => o.callback_tone.clone_from(&from.callback_tone),
            "private_sms" => o.private_sms = from.private_sms,
            other => panic!("no option {other}"),
        }
    }
    o
}

const ALL: [&str; 9] = [
    "call_direction",
    "record",
    "max_call_minutes",
    "record_hint_tone",
    "last_minute_tone",
    "caller_hint_tone",
    "callee_hint_tone",
    "callback_tone",
    "private_sms",
];

/// One app of [`Setup::standard`]: the options its mode takes (binding-api.md §2.1.1 AXB,
/// §2.2.1 AX, §2.3.1 AXE, §2.4.1 AXYB; X mode: what its callin answer carries) and how
/// [`every_option`] of them reaches the platform.
struct Case {
    app: &'static str,
    key: Option<&'static str>,
    b: bool,
    takes: &'static [&'static str],
    wire: Value,
}

const AXB_AX: &[&str] = &[
    "call_direction",
    "record",
    "max_call_minutes",
    "record_hint_tone",
    "last_minute_tone",
    "caller_hint_tone",
    "callee_hint_tone",
    "private_sms",
];

fn cases() -> Vec<Case> {
    let tones_and_sms = json!({
        "callDirection": 1, "recordFlag": true, "recordHintTone": "rec.wav",
        "maxDuration": 30, "lastMinVoice": "last.wav", "privateSms": false,
        "preVoice": {"callerHintTone": "caller.wav", "calleeHintTone": "callee.wav"}
    });
    vec![
        Case {
            app: "rides",
            key: Some("k-axb"),
            b: true,
            takes: AXB_AX,
            wire: tones_and_sms.clone(),
        },
        Case {
            app: "drivers",
            key: Some("k-ax"),
            b: false,
            takes: AXB_AX,
            wire: tones_and_sms,
        },
        Case {
            app: "stores",
            key: Some("k-axe"),
            b: false,
            takes: &["record", "record_hint_tone", "callback_tone"],
            wire: json!({"recordFlag": true, "recordHintTone": "rec.wav", "callbackTone": "cb.wav"}),
        },
        Case {
            app: "chat",
            key: Some("k-axyb"),
            b: true,
            takes: &["call_direction", "record", "record_hint_tone"],
            wire: json!({"callDirection": 1, "recordFlag": true, "recordHintTone": "rec.wav"}),
        },
        Case {
            app: "local",
            key: None,
            b: true,
            takes: &[
                "call_direction",
                "record",
                "max_call_minutes",
                "record_hint_tone",
                "last_minute_tone",
            ],
            wire: Value::Null,
        },
    ]
}

fn bind_with(case: &Case, n: u32, options: pb::CallOptions) -> pb::BindRequest {
    let b = party(n + 1);
    pb::BindRequest {
        call_options: Some(options),
        ..bind(case.app, &party(n), case.b.then_some(b.as_str()))
    }
}

/// The options the platform keeps for the binding `b` of app `key`.
async fn on_platform(d: &Daemon, key: &str, b: &pb::Binding) -> Value {
    let all = d.sim.bindings(key).await;
    let found = all
        .iter()
        .find(|v| v["subscriptionId"] == b.subscription_id.as_str())
        .unwrap_or_else(|| panic!("{} not on the platform: {all:?}", b.binding_id));
    found["options"].clone()
}

async fn update(
    d: &Daemon,
    req: pb::UpdateBindingRequest,
) -> Result<tonic::Response<pb::Binding>, tonic::Status> {
    d.bindings().await.update_binding(req).await
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn options_update(b: &pb::Binding, options: pb::CallOptions) -> pb::UpdateBindingRequest {
    pb::UpdateBindingRequest {
        binding_id: b.binding_id.clone(),
        call_options: Some(options),
        ..Default::default()
    }
}

/// [`Setup::standard`] with `[apps.call_defaults]` for the AXB and AXE apps.
fn with_defaults() -> Setup {
    let table = |text: &str| toml::Value::Table(text.parse().expect("a TOML table"));
    Setup::standard()
        .app("rides", |a| {
            a.daemon(
                "call_defaults",
                table(
                    r#"call_direction = "b_to_a_only"
                    record = true
                    max_call_minutes = 10
                    last_minute_tone = "last.wav"
                    private_sms = false"#,
                ),
            )
        })
        .app("stores", |a| {
            a.daemon(
                "call_defaults",
                table(
                    r#"record = true
                    callback_tone = "cb.wav""#,
                ),
            )
        })
}
