//! Call options (binding-api.md §0.5, §2.1–2.4, §4.1.4): tone file names against the app's
//! allow-list, `maxDuration` in 0..=1440, a last-minute tone only with a call limit, `privateSms`
//! as "true"/"false", `callbackTone` and `callbackNum` exclusive. What a bind or modify sets is
//! kept and shown by the mode's query and by `/sim/bindings`.

use crate::support::platform::wire::*;
use crate::support::platform::{codes, paths};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

const AXB_X: &str = "+8617000000001";
const AX_X: &str = "+8617100000001";
const AXE_X: &str = "+8617200000001";

/// The platform setup with tone allow-lists on the AXB, AX, AXE and AXYB apps.
fn with_tones() -> Setup {
    let tones = vec!["rec.wav", "last.wav", "caller.wav", "callee.wav", "cb.wav"];
    let mut setup = Setup::platform();
    for app in ["rides", "drivers", "stores", "chat"] {
        setup = setup.app(app, |a| a.sim("tones", tones.clone()));
    }
    setup
}

fn pre_voice(caller: &str, callee: &str) -> Option<PreVoice> {
    Some(PreVoice {
        caller_hint_tone: Some(caller.into()),
        callee_hint_tone: Some(callee.into()),
    })
}

/// Every AXB option: `tone` as the record hint tone.
fn axb_all(tone: &str) -> AxbBindRequest {
    AxbBindRequest {
        caller_num: A1.into(),
        callee_num: A2.into(),
        relation_num: Some(AXB_X.into()),
        call_direction: Some(2),
        record_flag: Some(true),
        record_hint_tone: Some(tone.into()),
        max_duration: Some(30),
        last_min_voice: Some("last.wav".into()),
        private_sms: Some(false),
        pre_voice: pre_voice("caller.wav", "callee.wav"),
        ..Default::default()
    }
}

/// The options `/sim/bindings` shows for the app's only binding.
async fn options_of(sim: &Sim, app_key: &str) -> Value {
    let bindings = sim.bindings(app_key).await;
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    bindings[0]["options"].clone()
}

#[tokio::test]
async fn axb_keeps_every_option_and_shows_it() {
    let (sim, c) = Sim::start_with_client(&with_tones(), "k-axb").await;
    let bound = c.axb_bind(&axb_all("rec.wav")).await.unwrap();
    let q = c
        .axb_query(&AxbQuery::Subscription(bound.subscription_id.clone()))
        .await
        .unwrap();
    let rec = &q.relation_num_list[0];
    assert_eq!(rec.call_direction, Some(2));
    assert_eq!(rec.record_flag, Some(true));
    assert_eq!(rec.record_hint_tone.as_deref(), Some("rec.wav"));
    assert_eq!(rec.max_duration, Some(30));
    assert_eq!(rec.last_min_voice.as_deref(), Some("last.wav"));
    assert_eq!(rec.private_sms, Some(false));
    assert_eq!(rec.pre_voice, pre_voice("caller.wav", "callee.wav"));
    assert_eq!(
        options_of(&sim, "k-axb").await,
        json!({
            "callDirection": 2, "recordFlag": true, "recordHintTone": "rec.wav",
            "maxDuration": 30, "lastMinVoice": "last.wav", "privateSms": false,
            "preVoice": {"callerHintTone": "caller.wav", "calleeHintTone": "callee.wav"}
        })
    );

    // Modify changes what §2.1.3 lists; recordHintTone is not among them and stays.
    let modify = AxbModifyRequest {
        subscription_id: bound.subscription_id.clone(),
        call_direction: Some(0),
        max_duration: Some(60),
        private_sms: Some(true),
        record_flag: Some(false),
        pre_voice: Some(PreVoice {
            caller_hint_tone: None,
            callee_hint_tone: Some("caller.wav".into()),
        }),
        ..Default::default()
    };
    c.axb_modify(&modify).await.unwrap();
    let body = sim.raw(Method::PUT, paths::AXB, "k-axb").body(
        json!({"subscriptionId": bound.subscription_id, "recordHintTone": "cb.wav"}).to_string(),
    );
    assert_eq!(raw_send(body).await.1, codes::SUCCESS);
    assert_eq!(
        options_of(&sim, "k-axb").await,
        json!({
            "callDirection": 0, "recordFlag": false, "recordHintTone": "rec.wav",
            "maxDuration": 60, "lastMinVoice": "last.wav", "privateSms": true,
            "preVoice": {"callerHintTone": "caller.wav", "calleeHintTone": "caller.wav"}
        })
    );
}

#[tokio::test]
async fn unknown_tone_files_are_invalid_requests_naming_the_parameter() {
    let setup = with_tones();
    let sim = Sim::start_with(&setup).await;
    let axb = sim.client("k-axb");
    let mut cases: Vec<(&str, AxbBindRequest)> = vec![("recordHintTone", axb_all("nope.wav"))];
    let mut last = axb_all("rec.wav");
    last.last_min_voice = Some("nope.wav".into());
    cases.push(("lastMinVoice", last));
    let mut caller = axb_all("rec.wav");
    caller.pre_voice = pre_voice("nope.wav", "callee.wav");
    cases.push(("preVoice.callerHintTone", caller));
    let mut callee = axb_all("rec.wav");
    callee.pre_voice = pre_voice("caller.wav", "nope.wav");
    cases.push(("preVoice.calleeHintTone", callee));
    for (param, req) in cases {
        let e = expect_code(axb.axb_bind(&req).await, codes::INVALID_REQUEST);
        assert!(e.to_string().contains(param), "{param}: {e}");
    }
    assert!(sim.bindings("k-axb").await.is_empty());

    let ax = sim.client("k-ax");
    let req = AxBindRequest {
        orig_num: A1.into(),
        private_num: Some(AX_X.into()),
        record_hint_tone: Some("nope.wav".into()),
        ..Default::default()
    };
    let e = expect_code(ax.ax_bind(&req).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("recordHintTone"), "{e}");

    let axe = sim.client("k-axe");
    let req = AxeBindRequest {
        bind_num: A1.into(),
        virtual_num: Some(AXE_X.into()),
        callback_tone: Some("nope.wav".into()),
        ..Default::default()
    };
    let e = expect_code(axe.axe_bind(&req).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("callbackTone"), "{e}");

    let axyb = sim.client("k-axyb");
    let req = AxybAxRequest {
        orig_num: A1.into(),
        area_code: Some("010".into()),
        record_hint_tone: Some("nope.wav".into()),
        ..Default::default()
    };
    let e = expect_code(axyb.axyb_bind_ax(&req).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("recordHintTone"), "{e}");
    for key in ["k-axb", "k-ax", "k-axe", "k-axyb"] {
        assert!(sim.bindings(key).await.is_empty(), "{key}");
    }

    // Without an allow-list any name of 1 to 128 characters is a tone; 129 is not.
    let (sim, axb) = Sim::start_for("k-axb").await;
    axb.axb_bind(&axb_all(&"t".repeat(128))).await.unwrap();
    let mut long = axb_all("rec.wav");
    long.caller_num = A3.into();
    long.callee_num = A4.into();
    long.last_min_voice = Some("t".repeat(129));
    let e = expect_code(axb.axb_bind(&long).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("lastMinVoice"), "{e}");
    assert_eq!(sim.bindings("k-axb").await.len(), 1);
}

#[tokio::test]
async fn max_duration_last_minute_tone_and_private_sms_are_checked() {
    let (sim, c) = Sim::start_for("k-axb").await;
    let bind = |change: &dyn Fn(&mut AxbBindRequest)| {
        let mut req = axb_all("rec.wav");
        change(&mut req);
        req
    };
    let over = bind(&|r| r.max_duration = Some(1441));
    let e = expect_code(c.axb_bind(&over).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("maxDuration"), "{e}");
    // A last-minute tone needs a call limit.
    for no_limit in [None, Some(0)] {
        let req = bind(&|r| r.max_duration = no_limit);
        let e = expect_code(c.axb_bind(&req).await, codes::INVALID_REQUEST);
        assert!(e.to_string().contains("lastMinVoice"), "{e}");
    }
    // privateSms is "true" or "false" (a JSON boolean is read as one too).
    for bad in [json!("yes"), json!(1), json!("TRUE")] {
        let body =
            json!({"callerNum": A1, "calleeNum": A2, "relationNum": AXB_X, "privateSms": bad});
        let (_, code, desc) = raw_send(
            sim.raw(Method::POST, paths::AXB, "k-axb")
                .body(body.to_string()),
        )
        .await;
        assert_eq!(code, codes::INVALID_REQUEST, "{bad}");
        assert!(desc.contains("privateSms"), "{desc}");
    }
    assert!(sim.bindings("k-axb").await.is_empty());
    let body =
        json!({"callerNum": A1, "calleeNum": A2, "relationNum": AXB_X, "privateSms": "false"});
    let (_, code, _) = raw_send(
        sim.raw(Method::POST, paths::AXB, "k-axb")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(code, codes::SUCCESS);
    assert_eq!(options_of(&sim, "k-axb").await["privateSms"], false);

    // Modify: lifting the limit while the tone stays is refused and changes nothing; removing
    // the tone ("" — lastMinVoice is String(0-128)) first, then the limit, works.
    let id = sim.bindings("k-axb").await[0]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let modify = |change: &dyn Fn(&mut AxbModifyRequest)| {
        let mut req = AxbModifyRequest {
            subscription_id: id.clone(),
            ..Default::default()
        };
        change(&mut req);
        req
    };
    c.axb_modify(&modify(&|r| {
        r.max_duration = Some(5);
        r.last_min_voice = Some("last.wav".into());
    }))
    .await
    .unwrap();
    let e = expect_code(
        c.axb_modify(&modify(&|r| r.max_duration = Some(0))).await,
        codes::INVALID_REQUEST,
    );
    assert!(e.to_string().contains("lastMinVoice"), "{e}");
    assert_eq!(options_of(&sim, "k-axb").await["maxDuration"], 5);
    c.axb_modify(&modify(&|r| r.last_min_voice = Some(String::new())))
        .await
        .unwrap();
    c.axb_modify(&modify(&|r| r.max_duration = Some(0)))
        .await
        .unwrap();
    let options = options_of(&sim, "k-axb").await;
    assert_eq!(options["maxDuration"], 0);
    assert!(options.get("lastMinVoice").is_none(), "{options}");
}

#[tokio::test]
async fn ax_keeps_its_options_and_modifies_what_its_modify_takes() {
    let (sim, c) = Sim::start_with_client(&with_tones(), "k-ax").await;
    let req = AxBindRequest {
        orig_num: A1.into(),
        private_num: Some(AX_X.into()),
        call_direction: Some(1),
        record_flag: Some(true),
        record_hint_tone: Some("rec.wav".into()),
        max_duration: Some(10),
        last_min_voice: Some("last.wav".into()),
        private_sms: Some(true),
        pre_voice: pre_voice("caller.wav", "callee.wav"),
        ..Default::default()
    };
    let bound = c.ax_bind(&req).await.unwrap();
    let rec = c
        .ax_query(&AxSelector::Subscription(bound.subscription_id.clone()))
        .await
        .unwrap()
        .private_num_list
        .remove(0);
    assert_eq!(
        (rec.call_direction, rec.max_duration, rec.private_sms),
        (Some(1), Some(10), Some(true))
    );
    assert_eq!(rec.last_min_voice.as_deref(), Some("last.wav"));
    assert_eq!(rec.pre_voice, pre_voice("caller.wav", "callee.wav"));

    // AX modify (§2.2.3) takes privateSms, maxDuration, recordFlag and lastMinVoice; the
    // direction and preVoice it does not take are ignored.
    let body = json!({
        "subscriptionId": bound.subscription_id, "privateSms": "false", "maxDuration": 20,
        "recordFlag": false, "lastMinVoice": "cb.wav", "callDirection": 0,
        "preVoice": {"callerHintTone": "callee.wav"}
    });
    let (_, code, desc) = raw_send(
        sim.raw(Method::PUT, paths::AX, "k-ax")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(code, codes::SUCCESS, "{desc}");
    assert_eq!(
        options_of(&sim, "k-ax").await,
        json!({
            "callDirection": 1, "recordFlag": false, "recordHintTone": "rec.wav",
            "maxDuration": 20, "lastMinVoice": "cb.wav", "privateSms": false,
            "preVoice": {"callerHintTone": "caller.wav", "calleeHintTone": "callee.wav"}
        })
    );
    let unknown = AxModifyRequest {
        subscription_id: Some(bound.subscription_id),
        last_min_voice: Some("nope.wav".into()),
        ..Default::default()
    };
    let e = expect_code(c.ax_modify(&unknown).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("lastMinVoice"), "{e}");
    assert_eq!(options_of(&sim, "k-ax").await["lastMinVoice"], "cb.wav");
}

#[tokio::test]
async fn axe_and_axyb_keep_their_tones() {
    let setup = with_tones();
    let sim = Sim::start_with(&setup).await;
    let axe = sim.client("k-axe");
    let req = AxeBindRequest {
        bind_num: A1.into(),
        virtual_num: Some(AXE_X.into()),
        record_flag: Some(true),
        record_hint_tone: Some("rec.wav".into()),
        callback_tone: Some("cb.wav".into()),
        ..Default::default()
    };
    let bound = axe.axe_bind(&req).await.unwrap();
    let rec = axe
        .axe_query_v1(&AxeSelector::Subscription(bound.subscription_id.clone()))
        .await
        .unwrap();
    assert_eq!(rec.callback_tone.as_deref(), Some("cb.wav"));
    assert_eq!(rec.record_hint_tone.as_deref(), Some("rec.wav"));
    assert_eq!(
        options_of(&sim, "k-axe").await,
        json!({"recordFlag": true, "recordHintTone": "rec.wav", "callbackTone": "cb.wav"})
    );
    // callbackTone and callbackNum exclusive, on modify too; a modify changes the tones.
    let both = AxeModifyRequest {
        subscription_id: Some(bound.subscription_id.clone()),
        callback_tone: Some("cb.wav".into()),
        callback_num: Some(A3.into()),
        ..Default::default()
    };
    let e = expect_code(axe.axe_modify(&both).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("callbackNum"), "{e}");
    let change = AxeModifyRequest {
        subscription_id: Some(bound.subscription_id),
        record_hint_tone: Some("last.wav".into()),
        callback_tone: Some("caller.wav".into()),
        ..Default::default()
    };
    axe.axe_modify(&change).await.unwrap();
    assert_eq!(
        options_of(&sim, "k-axe").await,
        json!({"recordFlag": true, "recordHintTone": "last.wav", "callbackTone": "caller.wav"})
    );

    let axyb = sim.client("k-axyb");
    let req = AxybAxRequest {
        orig_num: A1.into(),
        area_code: Some("010".into()),
        call_direction: Some(1),
        record_flag: Some(true),
        record_hint_tone: Some("rec.wav".into()),
        ..Default::default()
    };
    let ax = axyb.axyb_bind_ax(&req).await.unwrap();
    let q = axyb
        .axyb_query(&AxybQuery::Subscription(ax.subscription_id))
        .await
        .unwrap();
    assert_eq!(
        q.xy_relation_num_list[0].record_hint_tone.as_deref(),
        Some("rec.wav")
    );
    assert_eq!(
        options_of(&sim, "k-axyb").await,
        json!({"callDirection": 1, "recordFlag": true, "recordHintTone": "rec.wav"})
    );
}
