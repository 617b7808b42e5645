//! UpdateBinding: options change on the platform first, then here, where the mode's modify
//! takes them.

use super::*;

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
