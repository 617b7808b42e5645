//! Behaviour tests of the simulator's business rules, run against an app's state directly.
//! `server_tests` covers the HTTP pipeline on a real socket.

mod call_tests;
mod server_tests;

use axum::http::Method;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::config::{SimAppConfig, SimConfig};
use super::params::Params;
use super::reply::Fail;
use super::server::{Endpoint, dispatch};
use super::state::AppState;

/// One app's state with a hand-moved binding clock.
struct Harness {
    config: SimAppConfig,
    state: AppState,
    now: OffsetDateTime,
}

impl Harness {
    /// An app of `mode` with `extra` TOML keys and numbers `(number, area)`.
    fn new(mode: &str, extra: &str, numbers: &[(&str, &str)]) -> Self {
        let numbers: Vec<String> = numbers
            .iter()
            .map(|(n, a)| format!(r#"{{ number = "{n}", area_code = "{a}" }}"#))
            .collect();
        let toml = format!(
            "[[apps]]\napp_key = \"k\"\napp_secret = \"s\"\nmode = \"{mode}\"\n{extra}\nnumbers = [{}]\n",
            numbers.join(", ")
        );
        let config = SimConfig::from_toml_str(&toml).unwrap().apps.remove(0);
        Harness {
            state: AppState::new(&config),
            config,
            now: OffsetDateTime::now_utc(),
        }
    }

    fn call(
        &mut self,
        ep: Endpoint,
        method: &Method,
        params: Value,
    ) -> Result<Map<String, Value>, Fail> {
        self.state.purge(self.now);
        let params = Params::from_value(params);
        dispatch(&mut self.state, &self.config, ep, method, &params, self.now)
    }

    fn ok(&mut self, ep: Endpoint, method: &Method, params: Value) -> Map<String, Value> {
        self.call(ep, method, params).unwrap()
    }

    fn code(&mut self, ep: Endpoint, method: &Method, params: Value) -> String {
        match self.call(ep, method, params) {
            Ok(_) => "0".into(),
            Err(f) => format!("{} {}", f.code, f.desc),
        }
    }

    /// Asserts that the call answers `code`: "0" for success, a result code, or a code and
    /// its description.
    fn expect(&mut self, ep: Endpoint, method: &Method, params: Value, code: &str) {
        let shown = params.to_string();
        let got = self.code(ep, method, params);
        let matches = got == code || got.starts_with(&format!("{code} "));
        assert!(matches, "{method} {shown}: {got}, expected {code}");
    }

    fn advance(&mut self, seconds: i64) {
        self.now += time::Duration::seconds(seconds);
    }
}

const X1: &str = "+8617000000001";
const X2: &str = "+8617000000002";
const X3: &str = "+8617000000003";

fn a(i: u32) -> String {
    format!("+86138{i:08}")
}

/// `base` with the fields of `extra` added.
fn with(mut base: Value, extra: Value) -> Value {
    let Value::Object(extra) = extra else {
        panic!("the extra fields are not an object");
    };
    base.as_object_mut().unwrap().extend(extra);
    base
}

fn by_id(id: &Value) -> Value {
    json!({ "subscriptionId": id })
}

fn list_len(answer: &Map<String, Value>, field: &str) -> usize {
    answer[field].as_array().map_or(0, Vec::len)
}

#[test]
fn axb_paging_defaults_and_bounds() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let mut ids = Vec::new();
    for i in 0..60 {
        let bind = json!({"callerNum": a(2 * i), "calleeNum": a(2 * i + 1), "relationNum": X1});
        ids.push(h.ok(Endpoint::Axb, &Method::POST, bind)["subscriptionId"].clone());
    }
    let page = |h: &mut Harness, extra: Value| {
        h.ok(
            Endpoint::Axb,
            &Method::GET,
            with(json!({"relationNum": X1}), extra),
        )
    };
    let first = page(&mut h, json!({}));
    assert_eq!(first["totalCount"], 60);
    assert_eq!(list_len(&first, "relationNumList"), 50);
    assert_eq!(
        first["relationNumList"][0]["subscriptionId"], ids[0],
        "creation order"
    );
    assert_eq!(
        list_len(&page(&mut h, json!({"pageSize": "5"})), "relationNumList"),
        50
    );
    assert_eq!(
        list_len(&page(&mut h, json!({"pageSize": 101})), "relationNumList"),
        50
    );
    let second = page(&mut h, json!({"pageSize": 10, "pageIndex": "2"}));
    assert_eq!(list_len(&second, "relationNumList"), 10);
    assert_eq!(second["relationNumList"][0]["subscriptionId"], ids[10]);
    let past = page(&mut h, json!({"pageSize": 10, "pageIndex": 7}));
    assert_eq!(
        (
            past["totalCount"].clone(),
            list_len(&past, "relationNumList")
        ),
        (json!(60), 0)
    );
    let one = page(&mut h, json!({"callerNum": a(4)}));
    assert_eq!(one["relationNumList"][0]["subscriptionId"], ids[2]);
    let bad = json!({"relationNum": X1, "callerNum": a(5)});
    h.expect(Endpoint::Axb, &Method::GET, bad, "1012007");
    let empty = json!({"relationNum": X2});
    h.expect(Endpoint::Axb, &Method::GET, empty, "1012007");
}

#[test]
fn axb_binding_rules() {
    let mut h = Harness::new("AXB", "max_bindings_per_x = 2", &[(X1, "010"), (X2, "021")]);
    let bind = |caller: u32, callee: u32, extra: Value| {
        with(
            json!({"callerNum": a(caller), "calleeNum": a(callee)}),
            extra,
        )
    };
    let on_x1 = || json!({"relationNum": X1});
    let first = [
        (bind(1, 2, on_x1()), "0"),
        (bind(2, 3, on_x1()), "1012010"),
        (
            bind(5, 6, json!({"relationNum": "+8617000000099"})),
            "1012001",
        ),
        // Strict: the only 010 number already holds A.
        (bind(1, 7, json!({"areaCode": "010"})), "1012008"),
    ];
    for (body, code) in first {
        h.expect(Endpoint::Axb, &Method::POST, body, code);
    }
    let loose = bind(1, 7, json!({"areaCode": "010", "areaMatchMode": "1"}));
    assert_eq!(h.ok(Endpoint::Axb, &Method::POST, loose)["relationNum"], X2);
    let then = [
        (bind(3, 4, on_x1()), "0"),
        (bind(8, 9, on_x1()), "1012009"),
        (
            bind(8, 9, json!({"relationNum": " 8617000000001"})),
            "1010002 Invalid request. relationNum",
        ),
        (
            bind(8, 9, json!({"duration": 7_776_001})),
            "1010002 Invalid request. duration",
        ),
    ];
    for (body, code) in then {
        h.expect(Endpoint::Axb, &Method::POST, body, code);
    }
    // Unbind by X removes every binding on it.
    h.expect(Endpoint::Axb, &Method::DELETE, on_x1(), "0");
    h.expect(Endpoint::Axb, &Method::DELETE, on_x1(), "1012007");
}

#[test]
fn axb_modify_rechecks_uniqueness_and_restarts_the_timer() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let first = h.ok(
        Endpoint::Axb,
        &Method::POST,
        json!({"callerNum": a(1), "calleeNum": a(2), "relationNum": X1, "duration": 100}),
    );
    let id = first["subscriptionId"].clone();
    h.ok(
        Endpoint::Axb,
        &Method::POST,
        json!({"callerNum": a(3), "calleeNum": a(4), "relationNum": X1}),
    );
    let clash = json!({"subscriptionId": id, "calleeNum": a(3)});
    h.expect(Endpoint::Axb, &Method::PUT, clash, "1012010");
    h.advance(90);
    h.expect(
        Endpoint::Axb,
        &Method::PUT,
        json!({"subscriptionId": id, "duration": "100", "calleeNum": a(5)}),
        "0",
    );
    h.advance(90);
    let got = h.ok(Endpoint::Axb, &Method::GET, by_id(&id));
    assert_eq!(got["relationNumList"][0]["calleeNum"], a(5));
    assert_eq!(got["relationNumList"][0]["duration"], 100);
    h.advance(10);
    h.expect(Endpoint::Axb, &Method::GET, by_id(&id), "1012007");
    h.expect(
        Endpoint::Axb,
        &Method::PUT,
        json!({"subscriptionId": "nope"}),
        "1012007",
    );
}

#[test]
fn expired_bindings_behave_as_unbound() {
    let mut h = Harness::new("AXB", "", &[(X1, "010")]);
    let bind = json!({"callerNum": a(1), "calleeNum": a(2), "relationNum": X1, "duration": 60});
    let id = h.ok(Endpoint::Axb, &Method::POST, bind.clone())["subscriptionId"].clone();
    h.advance(59);
    h.expect(Endpoint::Axb, &Method::GET, by_id(&id), "0");
    h.expect(Endpoint::Axb, &Method::POST, bind.clone(), "1012010");
    h.advance(1);
    h.expect(Endpoint::Axb, &Method::GET, by_id(&id), "1012007");
    h.expect(Endpoint::Axb, &Method::DELETE, by_id(&id), "1012007");
    assert_eq!(
        h.code(Endpoint::Axb, &Method::POST, bind),
        "0",
        "its numbers are free again"
    );
    assert_eq!(h.state.list().len(), 1);
}

#[test]
fn ax_limits_and_lookups() {
    let numbers: Vec<(String, &str)> = (1..=7)
        .map(|i| (format!("+86170000000{i:02}"), "010"))
        .collect();
    let numbers: Vec<(&str, &str)> = numbers.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let mut h = Harness::new("AX", "", &numbers);
    let by_area = json!({"origNum": a(1), "areaCode": "010", "privateNumType": "mobile-virtual"});
    for _ in 0..5 {
        h.expect(Endpoint::Ax, &Method::POST, by_area.clone(), "0");
    }
    h.expect(Endpoint::Ax, &Method::POST, by_area, "1011003");
    let listed = h.ok(Endpoint::Ax, &Method::GET, json!({"origNum": a(1)}));
    assert_eq!(list_len(&listed, "privateNumList"), 5);
    let taken = listed["privateNumList"][0]["privateNum"]
        .as_str()
        .unwrap()
        .to_owned();
    let busy = json!({"origNum": a(2), "privateNum": taken});
    h.expect(Endpoint::Ax, &Method::POST, busy, "1011005");
    let no_type = json!({"origNum": a(2), "areaCode": "010"});
    h.expect(
        Endpoint::Ax,
        &Method::POST,
        no_type,
        "1010002 Invalid request. privateNumType",
    );
    let callee = json!({"privateNum": taken, "origNum": a(1), "calleeNum": a(1)});
    h.expect(
        Endpoint::AxCallee,
        &Method::PUT,
        callee,
        "1010002 Invalid request. calleeNum",
    );
    let callee = json!({"privateNum": taken, "origNum": a(1), "calleeNum": a(9)});
    h.expect(Endpoint::AxCallee, &Method::PUT, callee, "0");
    h.expect(
        Endpoint::Ax,
        &Method::DELETE,
        json!({"privateNum": taken, "origNum": "ignored"}),
        "0",
    );
    h.expect(
        Endpoint::Ax,
        &Method::DELETE,
        json!({"privateNum": taken}),
        "1016001",
    );
    let none = h.ok(Endpoint::Ax, &Method::GET, json!({"privateNum": taken}));
    assert_eq!(list_len(&none, "privateNumList"), 0);
    h.expect(
        Endpoint::Axb,
        &Method::GET,
        json!({"subscriptionId": "x"}),
        "1010040",
    );
}

#[test]
fn axe_extensions_are_assigned_lowest_first() {
    let mut h = Harness::new(
        "AXE",
        "extension_digits = 1\nmax_extensions_per_x = 5",
        &[(X1, "010")],
    );
    let bind = |i: u32, extra: Value| with(json!({"bindNum": a(i), "virtualNum": X1}), extra);
    let bind_ext = |h: &mut Harness, i: u32, extra: Value| {
        let answer = h.ok(Endpoint::Axe, &Method::POST, bind(i, extra));
        answer["extendNum"].as_str().unwrap().to_owned()
    };
    assert_eq!(bind_ext(&mut h, 1, json!({})), "1");
    assert_eq!(bind_ext(&mut h, 2, json!({})), "2");
    assert_eq!(bind_ext(&mut h, 3, json!({"extendNum": "7"})), "7");
    let refused = [
        (bind(4, json!({"extendNum": 7})), "1020167"),
        (bind(1, json!({})), "1012010"),
        (
            bind(4, json!({"extendNum": "12"})),
            "1010002 Invalid request. extendNum",
        ),
    ];
    for (body, code) in refused {
        h.expect(Endpoint::Axe, &Method::POST, body, code);
    }
    let slot_1 = json!({"virtualNum": X1, "extendNum": "1"});
    h.expect(Endpoint::Axe, &Method::DELETE, slot_1, "0");
    for (i, ext) in [(5, "1"), (6, "3"), (7, "4")] {
        assert_eq!(bind_ext(&mut h, i, json!({})), ext, "the lowest free one");
    }
    // The cap of 5.
    h.expect(Endpoint::Axe, &Method::POST, bind(8, json!({})), "1020167");
    let area = json!({"bindNum": a(9), "areaCode": "010"});
    h.expect(Endpoint::Axe, &Method::POST, area, "1012008");
    h.expect(
        Endpoint::Axe,
        &Method::DELETE,
        json!({"virtualNum": X1}),
        "1010002 Invalid request. extendNum",
    );
}

#[test]
fn axe_v2_cursor_paging_and_v1_bind_time_quirk() {
    let mut h = Harness::new("AXE", "", &[(X1, "010"), (X2, "010")]);
    let mut ids = Vec::new();
    for i in 0..7 {
        let bind =
            json!({"bindNum": a(i), "virtualNum": X1, "bindExpiredTime": 2, "timeUnit": "0"});
        ids.push(h.ok(Endpoint::Axe, &Method::POST, bind)["subscriptionId"].clone());
    }
    let mut cursor = "0000000000000_0".to_owned();
    let mut seen = Vec::new();
    loop {
        let page = h.ok(
            Endpoint::AxeV2,
            &Method::GET,
            json!({"virtualNum": X1, "cursor": cursor, "limit": "3"}),
        );
        let list = page["bindInfoList"].as_array().unwrap();
        seen.extend(list.iter().map(|r| r["subscriptionId"].clone()));
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let bad = json!({"virtualNum": X1, "cursor": "12_3"});
    h.expect(
        Endpoint::AxeV2,
        &Method::GET,
        bad,
        "1010002 Invalid request. cursor",
    );
    let bad = json!({"virtualNum": X1, "cursor": "0000000000000_0", "limit": 0});
    h.expect(
        Endpoint::AxeV2,
        &Method::GET,
        bad,
        "1010002 Invalid request. limit",
    );
    let empty = h.ok(
        Endpoint::AxeV2,
        &Method::GET,
        json!({"virtualNum": X2, "cursor": "0000000000000_0"}),
    );
    assert_eq!(
        (list_len(&empty, "bindInfoList"), empty.get("nextCursor")),
        (0, None)
    );

    let modify = json!({"subscriptionId": ids[0], "timeUnit": "1", "bindExpiredTime": 10});
    h.expect(Endpoint::Axe, &Method::PUT, modify, "0");
    let v1 = h.ok(Endpoint::Axe, &Method::GET, by_id(&ids[0]));
    assert_eq!(
        (v1["timeUnit"].clone(), v1["bindExpiredTime"].clone()),
        (json!("0"), json!(2))
    );
    h.advance(11 * 60);
    h.expect(Endpoint::Axe, &Method::GET, by_id(&ids[0]), "1012007");
    h.expect(Endpoint::Axe, &Method::GET, by_id(&ids[1]), "0");

    let counts = h.ok(Endpoint::AxeCount, &Method::GET, json!({"limit": 1}));
    assert_eq!(
        counts["virtualNumList"][0],
        json!({"virtualNum": X1, "bindCount": 6})
    );
    assert_eq!(counts["nextCursor"], "1");
    let last = h.ok(Endpoint::AxeCount, &Method::GET, json!({"cursor": "1"}));
    assert_eq!(
        (list_len(&last, "virtualNumList"), last.get("nextCursor")),
        (1, None)
    );
}

#[test]
fn axyb_two_steps_query_unbind_and_expiry() {
    let mut h = Harness::new(
        "AXYB",
        "max_relations_per_y = 1",
        &[(X1, "010"), (X2, "010"), (X3, "010")],
    );
    let ax = h.ok(
        Endpoint::Axyb,
        &Method::POST,
        json!({"origNum": a(1), "areaCode": "010", "duration": 600}),
    );
    let (id, x) = (ax["subscriptionId"].clone(), ax["relationNumber"].clone());
    let yb = h.ok(
        Endpoint::Axyb,
        &Method::POST,
        json!({"origNum": a(2), "subscriptionId": id}),
    );
    assert_eq!(yb["subscriptionId"], id);
    assert_ne!(yb["relationNumber"], x);
    let again = json!({"origNum": a(2), "subscriptionId": id});
    h.expect(Endpoint::Axyb, &Method::POST, again, "1012010");
    h.expect(
        Endpoint::Axyb,
        &Method::POST,
        json!({"origNum": a(3), "subscriptionId": id}),
        "0",
    );
    assert!(
        h.code(
            Endpoint::Axyb,
            &Method::POST,
            json!({"origNum": a(4), "subscriptionId": id})
        )
        .starts_with("1012008"),
        "each Y carries one relation and X is never its own Y"
    );
    let got = h.ok(Endpoint::Axyb, &Method::GET, json!({"relationNum": x}));
    assert_eq!(list_len(&got, "xyRelationNumList"), 2);
    assert_eq!(got["xyRelationNumList"][0]["duration"], "600");
    h.expect(
        Endpoint::Axyb,
        &Method::DELETE,
        json!({"subscriptionId": id, "bNum": a(2)}),
        "0",
    );
    assert_eq!(h.state.list().len(), 1);
    let bad = json!({"origNum": a(5), "duration": 59});
    h.expect(
        Endpoint::Axyb,
        &Method::POST,
        bad,
        "1010002 Invalid request. duration",
    );
    h.advance(600);
    h.expect(Endpoint::Axyb, &Method::GET, by_id(&id), "1012007");
    assert!(h.state.list().is_empty());
    // The Ys are free again.
    let ax = h.ok(Endpoint::Axyb, &Method::POST, json!({"origNum": a(1)}));
    let id = ax["subscriptionId"].clone();
    h.expect(
        Endpoint::Axyb,
        &Method::POST,
        json!({"origNum": a(2), "subscriptionId": id}),
        "0",
    );
}
