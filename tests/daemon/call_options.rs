//! Call options through the gRPC API: each mode takes the options binding-api.md §2 gives it
//! and passes them to the platform under their wire names; the others are refused naming the
//! option, changing nothing; `[apps.call_defaults]` fill what a request leaves unset;
//! UpdateBinding changes them on the platform where the mode's modify allows it; a tone the
//! platform does not know is an error naming the option, leaving no binding behind.

use serde_json::{Value, json};
use tonic::Code;
use xpool::grpc::pb;

use crate::input::{assert_invalid, assert_unchanged, snapshot};
use crate::support::*;

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

#[tokio::test]
async fn each_mode_passes_the_options_it_takes_to_the_platform() {
    let d = Daemon::start().await;
    for case in cases() {
        let asked = only(&every_option(), case.takes);
        let b = d.bind_ok(bind_with(&case, 1, asked.clone())).await;
        // What is in force is what was asked: nothing else is shown.
        assert_eq!(b.call_options.as_ref(), Some(&asked), "{}", case.app);
        assert_eq!(d.get(&b.binding_id).await, b, "{}", case.app);
        if let Some(key) = case.key {
            assert_eq!(on_platform(&d, key, &b).await, case.wire, "{}", case.app);
        }
    }
    // AXYB and AX take A_TO_B_ONLY; AXB and AXYB B_TO_A_ONLY too.
    let b_to_a = pb::CallOptions {
        call_direction: pb::CallDirection::BToAOnly.into(),
        ..Default::default()
    };
    for (case, key) in [(&cases()[0], "k-axb"), (&cases()[3], "k-axyb")] {
        let b = d.bind_ok(bind_with(case, 11, b_to_a.clone())).await;
        assert_eq!(on_platform(&d, key, &b).await["callDirection"], 2);
    }
    // Nothing asked: the platform's defaults, shown as such (both ways, not recorded, SMS on).
    let plain = d
        .bind_ok(bind_with(&cases()[0], 21, Default::default()))
        .await;
    let shown = pb::CallOptions {
        call_direction: pb::CallDirection::Both.into(),
        record: Some(false),
        private_sms: Some(true),
        ..Default::default()
    };
    assert_eq!(plain.call_options, Some(shown));
    assert_eq!(
        on_platform(&d, "k-axb", &plain).await,
        json!({"callDirection": 0, "recordFlag": false, "maxDuration": 0})
    );
    let plain = d
        .bind_ok(bind_with(&cases()[2], 21, Default::default()))
        .await;
    let shown = pb::CallOptions {
        record: Some(false),
        ..Default::default()
    };
    assert_eq!(
        plain.call_options,
        Some(shown),
        "AXE shows no direction or SMS"
    );
    assert_all_local_equals_sim(&d).await;
    d.stop().await;
}

#[tokio::test]
async fn options_a_mode_does_not_take_are_refused_naming_them_and_change_nothing() {
    let (d, mut c) = Daemon::start_with_client().await;
    let before = snapshot(&d).await;
    for case in cases() {
        for field in ALL.iter().filter(|f| !case.takes.contains(f)) {
            let what = format!("{} with {field}", case.app);
            let req = bind_with(&case, 1, only(&every_option(), &[field]));
            assert_invalid(c.bind(req).await, &format!("call_options.{field}"), &what);
            assert_unchanged(&d, &before, &what).await;
        }
    }
    let ax = &cases()[1];
    let axb = &cases()[0];
    let bad = [
        (
            "AX, only B calls A",
            bind_with(
                ax,
                1,
                pb::CallOptions {
                    call_direction: pb::CallDirection::BToAOnly.into(),
                    ..Default::default()
                },
            ),
            "call_options.call_direction",
        ),
        (
            "a last-minute tone without a call limit",
            bind_with(axb, 1, only(&every_option(), &["last_minute_tone"])),
            "call_options.last_minute_tone",
        ),
        (
            "a last-minute tone with no limit (0)",
            bind_with(axb, 1, {
                let mut o = only(&every_option(), &["last_minute_tone"]);
                o.max_call_minutes = Some(0);
                o
            }),
            "call_options.last_minute_tone",
        ),
        (
            "a tone of 129 characters",
            bind_with(
                axb,
                1,
                pb::CallOptions {
                    caller_hint_tone: "t".repeat(129),
                    ..Default::default()
                },
            ),
            "call_options.caller_hint_tone",
        ),
        (
            "a tone with spaces around",
            bind_with(
                axb,
                1,
                pb::CallOptions {
                    record_hint_tone: " rec.wav".into(),
                    ..Default::default()
                },
            ),
            "call_options.record_hint_tone",
        ),
        (
            "a tone with a line break",
            bind_with(
                &cases()[2],
                1,
                pb::CallOptions {
                    callback_tone: "cb\n.wav".into(),
                    ..Default::default()
                },
            ),
            "call_options.callback_tone",
        ),
    ];
    for (what, req, field) in bad {
        assert_invalid(c.bind(req).await, field, what);
        assert_unchanged(&d, &before, what).await;
    }
    d.stop().await;
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

#[tokio::test]
async fn app_defaults_apply_and_a_request_overrides_them() {
    let d = Daemon::start_with(with_defaults()).await;
    let axb = &cases()[0];
    let b = d.bind_ok(bind_with(axb, 1, Default::default())).await;
    let expected = pb::CallOptions {
        call_direction: pb::CallDirection::BToAOnly.into(),
        record: Some(true),
        max_call_minutes: Some(10),
        last_minute_tone: "last.wav".into(),
        private_sms: Some(false),
        ..Default::default()
    };
    assert_eq!(b.call_options, Some(expected));
    assert_eq!(
        on_platform(&d, "k-axb", &b).await,
        json!({
            "callDirection": 2, "recordFlag": true, "maxDuration": 10,
            "lastMinVoice": "last.wav", "privateSms": false
        })
    );
    // Each field of the request wins; with no call limit the default last-minute tone has
    // nothing to play before and stays out.
    let own = pb::CallOptions {
        record: Some(false),
        max_call_minutes: Some(0),
        private_sms: Some(true),
        ..Default::default()
    };
    let b = d.bind_ok(bind_with(axb, 3, own)).await;
    let expected = pb::CallOptions {
        call_direction: pb::CallDirection::BToAOnly.into(),
        record: Some(false),
        private_sms: Some(true),
        ..Default::default()
    };
    assert_eq!(b.call_options, Some(expected));
    assert_eq!(
        on_platform(&d, "k-axb", &b).await,
        json!({"callDirection": 2, "recordFlag": false, "maxDuration": 0, "privateSms": true})
    );
    // AXE: its defaults; the other apps have none.
    let axe = &cases()[2];
    let mine = pb::CallOptions {
        callback_tone: "mine.wav".into(),
        ..Default::default()
    };
    let b = d.bind_ok(bind_with(axe, 1, mine)).await;
    assert_eq!(
        on_platform(&d, "k-axe", &b).await,
        json!({"recordFlag": true, "callbackTone": "mine.wav"})
    );
    let b = d.bind_ok(bind_with(axe, 3, Default::default())).await;
    assert_eq!(
        on_platform(&d, "k-axe", &b).await,
        json!({"recordFlag": true, "callbackTone": "cb.wav"})
    );
    let b = d
        .bind_ok(bind_with(&cases()[1], 1, Default::default()))
        .await;
    assert_eq!(
        on_platform(&d, "k-ax", &b).await,
        json!({"callDirection": 0, "recordFlag": false, "maxDuration": 0})
    );
    assert_all_local_equals_sim(&d).await;
    d.stop().await;
}

#[tokio::test]
async fn update_binding_changes_options_on_the_platform_and_the_binding() {
    let d = Daemon::start_with(with_defaults()).await;
    let axb = &cases()[0];
    let plain = pb::CallOptions {
        record: Some(false),
        ..Default::default()
    };
    let b = d.bind_ok(bind_with(axb, 1, plain)).await;

    // Without a mask, the options set change; the others stay.
    let set = pb::CallOptions {
        max_call_minutes: Some(20),
        caller_hint_tone: "caller.wav".into(),
        private_sms: Some(true),
        ..Default::default()
    };
    let u = update(&d, options_update(&b, set))
        .await
        .unwrap()
        .into_inner();
    let o = u.call_options.clone().unwrap();
    assert_eq!(o.max_call_minutes, Some(20));
    assert_eq!(o.caller_hint_tone, "caller.wav");
    assert_eq!((o.private_sms, o.record), (Some(true), Some(false)));
    assert_eq!(
        o.last_minute_tone, "last.wav",
        "the default, under the default limit"
    );
    assert_eq!(d.get(&b.binding_id).await, u);
    assert_eq!(
        on_platform(&d, "k-axb", &b).await,
        json!({
            "callDirection": 2, "recordFlag": false, "maxDuration": 20,
            "lastMinVoice": "last.wav", "privateSms": true,
            "preVoice": {"callerHintTone": "caller.wav"}
        })
    );

    // Named but unset: back to the app's default (SMS off, a 10-minute limit); a lifetime in
    // the same call.
    let req = pb::UpdateBindingRequest {
        ttl: xpool::grpc::ttl(600),
        update_mask: mask(&[
            "ttl",
            "call_options.private_sms",
            "call_options.max_call_minutes",
        ]),
        ..options_update(&b, Default::default())
    };
    let u = update(&d, req).await.unwrap().into_inner();
    let o = u.call_options.clone().unwrap();
    assert_eq!((o.private_sms, o.max_call_minutes), (Some(false), Some(10)));
    assert_eq!(
        u.expire_time.unwrap().seconds - u.update_time.unwrap().seconds,
        600
    );
    assert_eq!(
        on_platform(&d, "k-axb", &b).await,
        json!({
            "callDirection": 2, "recordFlag": false, "maxDuration": 10,
            "lastMinVoice": "last.wav", "privateSms": false,
            "preVoice": {"callerHintTone": "caller.wav"}
        })
    );
    let sub = d.sim.bindings("k-axb").await;
    assert!(sub[0]["expiresAt"].is_string(), "{sub:?}");
    // No limit takes the last-minute tone along (the platform is told to drop it).
    let unlimited = pb::CallOptions {
        max_call_minutes: Some(0),
        ..Default::default()
    };
    let u = update(&d, options_update(&b, unlimited))
        .await
        .unwrap()
        .into_inner();
    let o = u.call_options.clone().unwrap();
    assert_eq!(
        (o.max_call_minutes, o.last_minute_tone.as_str()),
        (None, "")
    );
    assert_eq!(
        on_platform(&d, "k-axb", &b).await,
        json!({
            "callDirection": 2, "recordFlag": false, "maxDuration": 0, "privateSms": false,
            "preVoice": {"callerHintTone": "caller.wav"}
        })
    );

    // "call_options" names them all: unset ones go back to the defaults; the one that differs
    // from the platform's value is changed.
    let req = pb::UpdateBindingRequest {
        update_mask: mask(&["call_options"]),
        ..options_update(
            &b,
            pb::CallOptions {
                caller_hint_tone: "caller.wav".into(),
                ..Default::default()
            },
        )
    };
    let u = update(&d, req).await.unwrap().into_inner();
    let o = u.call_options.unwrap();
    assert_eq!((o.record, o.max_call_minutes), (Some(true), Some(10)));
    assert_eq!(o.last_minute_tone, "last.wav");
    let options = on_platform(&d, "k-axb", &b).await;
    assert_eq!(
        (
            &options["recordFlag"],
            &options["maxDuration"],
            &options["lastMinVoice"]
        ),
        (&json!(true), &json!(10), &json!("last.wav"))
    );

    // What the mode's modify cannot change is refused, naming it, and nothing changes.
    let before = snapshot(&d).await;
    let refused = [
        (
            "AXB record_hint_tone",
            options_update(&b, only(&every_option(), &["record_hint_tone"])),
            "call_options.record_hint_tone",
        ),
        (
            "AXB callback_tone",
            options_update(&b, only(&every_option(), &["callback_tone"])),
            "call_options.callback_tone",
        ),
        (
            "AXB removing a hint tone",
            pb::UpdateBindingRequest {
                update_mask: mask(&["call_options.caller_hint_tone"]),
                ..options_update(&b, Default::default())
            },
            "call_options.caller_hint_tone",
        ),
        (
            "a last-minute tone without a limit",
            pb::UpdateBindingRequest {
                update_mask: mask(&[
                    "call_options.max_call_minutes",
                    "call_options.last_minute_tone",
                ]),
                ..options_update(&b, {
                    let mut o = only(&every_option(), &["last_minute_tone"]);
                    o.max_call_minutes = Some(0);
                    o
                })
            },
            "call_options.last_minute_tone",
        ),
        (
            "an unknown option in update_mask",
            pb::UpdateBindingRequest {
                update_mask: mask(&["call_options.colour"]),
                ..options_update(&b, Default::default())
            },
            "update_mask",
        ),
        (
            "nothing set and no mask",
            options_update(&b, Default::default()),
            "update_mask",
        ),
    ];
    for (what, req, field) in refused {
        assert_invalid(update(&d, req).await, field, what);
        assert_unchanged(&d, &before, what).await;
    }

    // AX: its modify takes the call limit, not the direction.
    let ax = d
        .bind_ok(bind_with(&cases()[1], 1, Default::default()))
        .await;
    let limit = pb::CallOptions {
        max_call_minutes: Some(15),
        ..Default::default()
    };
    update(&d, options_update(&ax, limit)).await.unwrap();
    assert_eq!(on_platform(&d, "k-ax", &ax).await["maxDuration"], 15);
    let direction = only(&every_option(), &["call_direction"]);
    assert_invalid(
        update(&d, options_update(&ax, direction)).await,
        "call_options.call_direction",
        "AX direction",
    );

    // AXE: tones change, a tone cannot be removed.
    let axe = d
        .bind_ok(bind_with(&cases()[2], 1, Default::default()))
        .await;
    let tones = pb::CallOptions {
        callback_tone: "other.wav".into(),
        record_hint_tone: "rec.wav".into(),
        ..Default::default()
    };
    let u = update(&d, options_update(&axe, tones))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.call_options.unwrap().callback_tone, "other.wav");
    assert_eq!(
        on_platform(&d, "k-axe", &axe).await,
        json!({"recordFlag": true, "recordHintTone": "rec.wav", "callbackTone": "other.wav"})
    );
    let clear = pb::UpdateBindingRequest {
        update_mask: mask(&["call_options.record_hint_tone"]),
        ..options_update(&axe, Default::default())
    };
    assert_invalid(
        update(&d, clear).await,
        "call_options.record_hint_tone",
        "AXE removing a tone",
    );

    // AXYB has no modify; X mode changes here only.
    let chat = d
        .bind_ok(bind_with(&cases()[3], 1, Default::default()))
        .await;
    let record = only(&every_option(), &["record"]);
    let err = update(&d, options_update(&chat, record.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let local = d
        .bind_ok(bind_with(&cases()[4], 1, Default::default()))
        .await;
    let requests = d.sim.requests("k-axb").await;
    let u = update(&d, options_update(&local, record))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.call_options.unwrap().record, Some(true));
    assert_eq!(d.sim.requests("k-axb").await, requests);
    assert_all_local_equals_sim(&d).await;
    d.stop().await;
}

#[tokio::test]
async fn a_tone_the_platform_refuses_is_named_and_leaves_no_binding() {
    let tones = vec!["rec.wav", "cb.wav", "caller.wav"];
    let setup = Setup::standard()
        .app("rides", |a| a.sim("tones", tones.clone()))
        .app("stores", |a| a.sim("tones", tones.clone()));
    let d = Daemon::start_with(setup).await;
    let axb = &cases()[0];
    let axe = &cases()[2];
    let before = snapshot(&d).await;
    let unknown = [
        (
            "AXB record_hint_tone",
            bind_with(
                axb,
                1,
                pb::CallOptions {
                    record_hint_tone: "missing.wav".into(),
                    ..Default::default()
                },
            ),
            "call_options.record_hint_tone",
        ),
        (
            "AXB callee_hint_tone",
            bind_with(axb, 1, {
                let mut o = only(&every_option(), &["caller_hint_tone"]);
                o.callee_hint_tone = "missing.wav".into();
                o
            }),
            "call_options.callee_hint_tone",
        ),
        (
            "AXE callback_tone",
            bind_with(
                axe,
                1,
                pb::CallOptions {
                    callback_tone: "missing.wav".into(),
                    ..Default::default()
                },
            ),
            "call_options.callback_tone",
        ),
    ];
    for (what, req, field) in unknown {
        let err = d.bind_refused(req, Code::InvalidArgument).await;
        assert!(
            err.message().starts_with(&format!("{field}: ")),
            "{what}: {err:?}"
        );
        assert!(err.message().contains("1010002"), "{what}: {err:?}");
        // The platform was asked, and nothing is left of the reservation on either side.
        assert!(
            d.list("", pb::BindingState::Unspecified).await.is_empty(),
            "{what}"
        );
        for key in ["k-axb", "k-axe"] {
            assert!(d.sim.bindings(key).await.is_empty(), "{what}");
        }
    }
    let after = snapshot(&d).await;
    assert_eq!(after.numbers, before.numbers, "the pool is as it was");

    // An update with an unknown tone is refused the same way and changes nothing.
    let known = only(&every_option(), &["record_hint_tone", "caller_hint_tone"]);
    let b = d.bind_ok(bind_with(axb, 1, known)).await;
    let missing = pb::CallOptions {
        caller_hint_tone: "missing.wav".into(),
        ..Default::default()
    };
    assert_invalid(
        update(&d, options_update(&b, missing)).await,
        "call_options.caller_hint_tone",
        "update with an unknown tone",
    );
    assert_eq!(d.get(&b.binding_id).await, b);
    assert_eq!(
        on_platform(&d, "k-axb", &b).await["preVoice"],
        json!({"callerHintTone": "caller.wav"})
    );
    d.stop().await;
}
