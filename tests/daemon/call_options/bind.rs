//! Binds: each mode's options reach the platform, the others are refused, app defaults fill
//! in, and a tone the platform refuses leaves nothing behind.

use super::*;

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
