//! AXE (binding-api.md §2.3, §4.4). The test app has 1-digit extensions: 1..=9 per X.

use crate::support::platform::codes;
use crate::support::platform::wire::*;
use xpool::upstream::ErrorClass;

use crate::common::*;

const X1: &str = "+8617200000001";
const X2: &str = "+8617200000002";

fn party(i: u32) -> String {
    format!("+86137{i:08}")
}

fn on(a: &str, x: &str, ext: Option<&str>) -> AxeBindRequest {
    AxeBindRequest {
        bind_num: a.into(),
        virtual_num: Some(x.into()),
        extend_num: ext.map(Into::into),
        ..Default::default()
    }
}

fn slot(x: &str, e: &str) -> AxeSelector {
    AxeSelector::Slot {
        virtual_num: x.into(),
        extend_num: e.into(),
    }
}

#[tokio::test]
async fn bind_query_modify_unbind_round_trip() {
    let (sim, c) = Sim::start_for("k-axe").await;
    let mut req = on(A1, X1, Some("7"));
    req.time_unit = Some(TimeUnit::Hours);
    req.bind_expired_time = Some(2);
    req.callback_num = Some(A2.into());
    let b = c.axe_bind(&req).await.unwrap();
    assert_eq!((b.virtual_num.as_str(), b.extend_num.as_str()), (X1, "7"));

    for selector in [
        AxeSelector::Subscription(b.subscription_id.clone()),
        slot(X1, "7"),
    ] {
        let r = c.axe_query_v1(&selector).await.unwrap();
        assert_eq!(
            (
                r.bind_num.as_str(),
                r.virtual_num.as_str(),
                r.extend_num.as_str()
            ),
            (A1, X1, "7")
        );
        assert_eq!(r.subscription_id, b.subscription_id);
        assert_eq!(
            (r.time_unit, r.bind_expired_time),
            (Some(TimeUnit::Hours), Some(2))
        );
    }
    let live = sim.bindings("k-axe").await;
    assert_eq!(live.len(), 1);
    assert_eq!(
        (
            live[0]["x"].as_str(),
            live[0]["a"].as_str(),
            live[0]["extension"].as_str()
        ),
        (Some(X1), Some(A1), Some("7"))
    );
    assert!(live[0]["expiresAt"].is_string());

    // Modify the lifetime to 10 minutes from now: v1 keeps showing the bind-time values.
    let modify = AxeModifyRequest {
        subscription_id: Some(b.subscription_id.clone()),
        time_unit: Some(TimeUnit::Minutes),
        bind_expired_time: Some(10),
        ..Default::default()
    };
    c.axe_modify(&modify).await.unwrap();
    let r = c.axe_query_v1(&slot(X1, "7")).await.unwrap();
    assert_eq!(
        (r.time_unit, r.bind_expired_time),
        (Some(TimeUnit::Hours), Some(2)),
        "v1 quirk"
    );
    sim.advance_clock(599).await;
    assert_eq!(sim.bindings("k-axe").await.len(), 1);
    sim.advance_clock(1).await;
    assert!(
        sim.bindings("k-axe").await.is_empty(),
        "the modified lifetime applies"
    );
    expect_code(
        c.axe_query_v1(&slot(X1, "7")).await,
        codes::RECORD_NOT_EXIST,
    );

    // Unbind by X + E.
    let b = c.axe_bind(&on(A1, X1, None)).await.unwrap();
    c.axe_unbind(&slot(X1, &b.extend_num)).await.unwrap();
    assert!(sim.bindings("k-axe").await.is_empty());
    expect_refusal(
        c.axe_unbind(&AxeSelector::Subscription(b.subscription_id))
            .await,
        codes::RECORD_NOT_EXIST,
        ErrorClass::NotFound,
    );
}

#[tokio::test]
async fn extensions_are_assigned_from_the_configured_space() {
    let (_sim, c) = Sim::start_for("k-axe").await;
    let mut seen = Vec::new();
    for i in 0..9 {
        let b = c.axe_bind(&on(&party(i), X1, None)).await.unwrap();
        assert_eq!(b.extend_num.len(), 1);
        seen.push(b.extend_num);
    }
    seen.sort();
    assert_eq!(seen, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // The space 1..=9 is used up.
    expect_refusal(
        c.axe_bind(&on(&party(9), X1, None)).await,
        codes::NO_IDLE_EXTENSION,
        ErrorClass::Taken,
    );
}

#[tokio::test]
async fn a_taken_extension_and_a_repeated_a_are_refused() {
    let (_sim, c) = Sim::start_for("k-axe").await;
    c.axe_bind(&on(A1, X1, Some("3"))).await.unwrap();
    expect_code(
        c.axe_bind(&on(A2, X1, Some("3"))).await,
        codes::NO_IDLE_EXTENSION,
    );
    expect_refusal(
        c.axe_bind(&on(A1, X1, Some("4"))).await,
        codes::NUMBER_ALREADY_BOUND,
        ErrorClass::PartyConflict,
    );
    // The same A on another X is fine.
    c.axe_bind(&on(A1, X2, Some("3"))).await.unwrap();
    // An extension of the wrong length or zero is invalid.
    for bad in ["12", "0"] {
        let e = expect_code(
            c.axe_bind(&on(A3, X1, Some(bad))).await,
            codes::INVALID_REQUEST,
        );
        assert!(e.to_string().contains("extendNum"), "{e}");
    }
}

#[tokio::test]
async fn area_code_choice_and_parameter_rules() {
    let (_sim, c) = Sim::start_for("k-axe").await;
    let area = |a: &str, code: &str, m: Option<AreaMatch>| AxeBindRequest {
        bind_num: a.into(),
        area_code: Some(code.into()),
        area_match_mode: m,
        ..Default::default()
    };
    // In turn, the X each bind gets, or `None` for no idle number in the area.
    for (req, got) in [
        (area(A1, "021", None), Some(X2)),
        // A1 holds 021's only X now: strict fails, loose goes elsewhere.
        (area(A1, "021", None), None),
        (area(A1, "021", Some(AreaMatch::Loose)), Some(X1)),
        (area(A2, "0571", None), None),
    ] {
        let result = c.axe_bind(&req).await;
        match got {
            Some(x) => assert_eq!(result.unwrap().virtual_num, x, "{req:?}"),
            None => {
                expect_code(result, codes::INSUFFICIENT_NUMBERS);
            }
        }
    }

    let both = AxeBindRequest {
        callback_tone: Some("t.wav".into()),
        callback_num: Some(A3.into()),
        ..on(A4, X1, None)
    };
    let e = expect_code(c.axe_bind(&both).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("callbackNum"), "{e}");
    let inverted = AxeBindRequest {
        bind_expired_time: Some(1),
        callback_expired_time: Some(2),
        ..on(A4, X1, None)
    };
    let e = expect_code(c.axe_bind(&inverted).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("bindExpiredTime"), "{e}");
}

#[tokio::test]
async fn v2_query_pages_with_a_cursor_and_count_query_counts() {
    let config = Setup::platform().app("stores", |a| a.both("extension_digits", 3));
    let (_sim, c) = Sim::start_with_client(&config, "k-axe").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            c.axe_bind(&on(&party(i), X1, None))
                .await
                .unwrap()
                .subscription_id,
        );
    }
    c.axe_bind(&on(&party(0), X2, None)).await.unwrap();

    let mut cursor = AXE_FIRST_CURSOR.to_owned();
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = AxeQueryV2::Page {
            virtual_num: X1.into(),
            cursor: cursor.clone(),
            limit: Some(10),
        };
        let resp = c.axe_query_v2(&page).await.unwrap();
        pages += 1;
        assert!(resp.bind_info_list.len() <= 10);
        got.extend(resp.bind_info_list.into_iter().map(|r| r.subscription_id));
        match resp.next_cursor {
            Some(next) if !next.is_empty() => cursor = next,
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, ids, "every binding once, in creation order");

    let one = c
        .axe_query_v2(&AxeQueryV2::One(AxeSelector::Subscription(ids[3].clone())))
        .await
        .unwrap();
    assert_eq!(one.bind_info_list.len(), 1);
    let bad = AxeQueryV2::Page {
        virtual_num: X1.into(),
        cursor: "12_x".into(),
        limit: None,
    };
    let e = expect_code(c.axe_query_v2(&bad).await, codes::INVALID_REQUEST);
    assert!(e.to_string().contains("cursor"), "{e}");

    let count = c
        .axe_binding_count(&AxeCountQuery::Number(X1.into()))
        .await
        .unwrap();
    assert_eq!(
        count.virtual_num_list,
        [AxeCount {
            virtual_num: X1.into(),
            bind_count: 25
        }]
    );
    let all = c
        .axe_binding_count(&AxeCountQuery::Page {
            cursor: "0".into(),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(all.virtual_num_list.len(), 1);
    let next = all.next_cursor.expect("a second page");
    let rest = c
        .axe_binding_count(&AxeCountQuery::Page {
            cursor: next,
            limit: Some(1),
        })
        .await
        .unwrap();
    let mut counts: Vec<_> = all
        .virtual_num_list
        .into_iter()
        .chain(rest.virtual_num_list)
        .map(|c| (c.virtual_num, c.bind_count))
        .collect();
    counts.sort();
    assert_eq!(counts, [(X1.to_owned(), 25), (X2.to_owned(), 1)]);
    assert!(rest.next_cursor.is_none());
}
