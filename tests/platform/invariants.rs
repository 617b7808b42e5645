//! Property test: random sequences of bind / unbind / modify / expire against the simulator keep
//! its invariants, and its state always equals a simple model of the platform's rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::support::platform::wire::*;
use proptest::prelude::*;
use xpool::upstream::{AppClient, ErrorClass, UpstreamError};

use crate::common::*;
use crate::support::{block_on, server_proptest_config};

const AXB_X: [&str; 3] = ["+8617000000001", "+8617000000002", "+8617000000003"];
const AXE_X: [&str; 2] = ["+8617200000001", "+8617200000002"];
const AXB_CAP: usize = 3;

fn party(i: u8) -> String {
    format!("+861380000{i:04}")
}

#[derive(Debug, Clone)]
enum Op {
    AxbBind {
        a: u8,
        b: u8,
        x: usize,
        minutes: Option<u8>,
    },
    AxbUnbind {
        k: usize,
    },
    AxbUnbindX {
        x: usize,
    },
    AxbModify {
        k: usize,
        b: u8,
        minutes: Option<u8>,
    },
    AxeBind {
        a: u8,
        x: usize,
        ext: Option<u8>,
        minutes: Option<u8>,
    },
    AxeUnbind {
        k: usize,
    },
    /// Moves the simulator's clock by `60 * n + 7` seconds: never onto a deadline exactly.
    Advance {
        n: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let minutes = prop::option::of(1u8..4);
    prop_oneof![
        4 => (0u8..6, 0u8..6, 0usize..3, minutes.clone()).prop_map(|(a, b, x, minutes)| Op::AxbBind { a, b, x, minutes }),
        2 => (0usize..16).prop_map(|k| Op::AxbUnbind { k }),
        1 => (0usize..3).prop_map(|x| Op::AxbUnbindX { x }),
        2 => (0usize..16, 0u8..6, minutes.clone()).prop_map(|(k, b, minutes)| Op::AxbModify { k, b, minutes }),
        4 => (0u8..6, 0usize..2, prop::option::of(1u8..10), minutes).prop_map(|(a, x, ext, minutes)| Op::AxeBind { a, x, ext, minutes }),
        2 => (0usize..16).prop_map(|k| Op::AxeUnbind { k }),
        2 => (0u8..3).prop_map(|n| Op::Advance { n }),
    ]
}

#[derive(Debug, Clone)]
struct Live {
    x: String,
    a: String,
    /// B (AXB) or the extension (AXE).
    other: String,
    expires: Option<u64>,
}

/// What the platform should hold: subscription → binding, per mode, on the model's clock.
#[derive(Default)]
struct Model {
    now: u64,
    axb: BTreeMap<String, Live>,
    axe: BTreeMap<String, Live>,
    /// Every subscription ever returned, so unbinds also hit dead ones.
    axb_ids: Vec<String>,
    axe_ids: Vec<String>,
}

impl Model {
    fn expire(&mut self) {
        let now = self.now;
        self.axb.retain(|_, l| l.expires.is_none_or(|t| t > now));
        self.axe.retain(|_, l| l.expires.is_none_or(|t| t > now));
    }

    fn deadline(&self, minutes: Option<u8>) -> Option<u64> {
        minutes.map(|m| self.now + 60 * u64::from(m))
    }

    /// A binding just accepted, which lives `minutes` from now (`None`: until unbound).
    fn live(&self, x: &str, a: String, other: String, minutes: Option<u8>) -> Live {
        Live {
            x: x.into(),
            a,
            other,
            expires: self.deadline(minutes),
        }
    }

    fn axb_on(&self, x: &str) -> impl Iterator<Item = (&String, &Live)> {
        self.axb.iter().filter(move |(_, l)| l.x == x)
    }
}

async fn apply(op: &Op, m: &mut Model, sim: &Sim, axb: &AppClient, axe: &AppClient) {
    match *op {
        Op::AxbBind { a, b, x, minutes } => {
            let (a, b, x) = (party(a), party(b), AXB_X[x]);
            if a == b {
                return;
            }
            let req = AxbBindRequest {
                caller_num: a.clone(),
                callee_num: b.clone(),
                relation_num: Some(x.into()),
                duration: minutes.map(|m| 60 * u64::from(m)),
                ..Default::default()
            };
            let conflict = m
                .axb_on(x)
                .any(|(_, l)| [&l.a, &l.other].iter().any(|p| **p == a || **p == b));
            let full = m.axb_on(x).count() >= AXB_CAP;
            match axb.axb_bind(&req).await {
                Ok(r) => {
                    assert!(!conflict && !full, "bound {a}/{b} on {x} against the rules");
                    m.axb_ids.push(r.subscription_id.clone());
                    let live = m.live(x, a, b, minutes);
                    m.axb.insert(r.subscription_id, live);
                }
                Err(e) if conflict && full => {
                    assert!(
                        matches!(e.class(), ErrorClass::PartyConflict | ErrorClass::Taken),
                        "{e}"
                    )
                }
                Err(e) if conflict => assert_eq!(e.class(), ErrorClass::PartyConflict, "{e}"),
                Err(e) if full => assert_eq!(e.class(), ErrorClass::Taken, "{e}"),
                Err(e) => panic!("bind {a}/{b} on {x} refused: {e}"),
            }
        }
        Op::AxbUnbind { k } => {
            if let Some(id) = m.axb_ids.get(k).cloned() {
                let result = axb.axb_unbind(&AxbUnbind::Subscription(id.clone())).await;
                expect_unbind(result, m.axb.remove(&id).is_some(), "AXB");
            }
        }
        Op::AxbUnbindX { x } => {
            let x = AXB_X[x];
            let had = m.axb_on(x).count();
            let result = axb.axb_unbind(&AxbUnbind::RelationNum(x.into())).await;
            m.axb.retain(|_, l| l.x != x);
            match had {
                0 => assert_eq!(result.unwrap_err().class(), ErrorClass::NotFound),
                _ => result.expect("unbind of every binding on X"),
            }
        }
        Op::AxbModify { k, b, minutes } => {
            let Some(id) = m.axb_ids.get(k).cloned() else {
                return;
            };
            let b = party(b);
            let req = AxbModifyRequest {
                subscription_id: id.clone(),
                callee_num: Some(b.clone()),
                duration: minutes.map(|m| 60 * u64::from(m)),
                ..Default::default()
            };
            let Some(live) = m.axb.get(&id).cloned() else {
                assert_eq!(
                    axb.axb_modify(&req).await.unwrap_err().class(),
                    ErrorClass::NotFound
                );
                return;
            };
            if live.a == b {
                return;
            }
            let conflict = m
                .axb_on(&live.x)
                .any(|(other, l)| *other != id && (l.a == b || l.other == b));
            match axb.axb_modify(&req).await {
                Ok(()) => {
                    assert!(!conflict, "modify put {b} twice on {}", live.x);
                    let expires = if minutes.is_some() {
                        m.deadline(minutes)
                    } else {
                        live.expires
                    };
                    m.axb.insert(
                        id,
                        Live {
                            other: b,
                            expires,
                            ..live
                        },
                    );
                }
                Err(e) => {
                    assert!(conflict, "modify refused: {e}");
                    assert_eq!(e.class(), ErrorClass::PartyConflict);
                }
            }
        }
        Op::AxeBind { a, x, ext, minutes } => {
            let (a, x) = (party(a), AXE_X[x]);
            let ext = ext.map(|e| e.to_string());
            let req = AxeBindRequest {
                bind_num: a.clone(),
                virtual_num: Some(x.into()),
                extend_num: ext.clone(),
                time_unit: Some(TimeUnit::Minutes),
                bind_expired_time: minutes.map(u64::from),
                ..Default::default()
            };
            let on_x: Vec<&Live> = m.axe.values().filter(|l| l.x == x).collect();
            let a_there = on_x.iter().any(|l| l.a == a);
            let ext_taken = ext
                .as_ref()
                .is_some_and(|e| on_x.iter().any(|l| &l.other == e));
            let space_full = on_x.len() >= 9;
            match axe.axe_bind(&req).await {
                Ok(r) => {
                    assert!(
                        !a_there && !ext_taken && !space_full,
                        "AXE bind of {a} on {x} broke a rule"
                    );
                    if let Some(e) = &ext {
                        assert_eq!(&r.extend_num, e, "the requested extension is honoured");
                    }
                    m.axe_ids.push(r.subscription_id.clone());
                    let live = m.live(x, a, r.extend_num, minutes);
                    m.axe.insert(r.subscription_id, live);
                }
                Err(e) => {
                    assert!(a_there || ext_taken || space_full, "AXE bind refused: {e}");
                    assert!(
                        matches!(e.class(), ErrorClass::PartyConflict | ErrorClass::Taken),
                        "{e}"
                    );
                }
            }
        }
        Op::AxeUnbind { k } => {
            if let Some(id) = m.axe_ids.get(k).cloned() {
                let result = axe.axe_unbind(&AxeSelector::Subscription(id.clone())).await;
                expect_unbind(result, m.axe.remove(&id).is_some(), "AXE");
            }
        }
        Op::Advance { n } => {
            let secs = 60 * u64::from(n) + 7;
            sim.advance_clock(secs).await;
            m.now += secs;
            m.expire();
        }
    }
}

/// The simulator's invariants, read through its own listing and the platform's queries.
async fn check(m: &Model, sim: &Sim, axb: &AppClient) {
    let listed = sim.bindings("k-axb").await;
    let mut per_x: HashMap<String, Vec<String>> = HashMap::new();
    for b in &listed {
        let x = b["x"].as_str().unwrap().to_owned();
        per_x.entry(x).or_default().extend([
            b["a"].as_str().unwrap().into(),
            b["b"].as_str().unwrap().into(),
        ]);
    }
    for (x, parties) in &per_x {
        let unique: BTreeSet<_> = parties.iter().collect();
        assert_eq!(
            unique.len(),
            parties.len(),
            "a party twice on {x}: {parties:?}"
        );
        assert!(parties.len() / 2 <= AXB_CAP, "{x} over its cap");
    }
    assert_same_bindings(&listed, &m.axb, "AXB");
    for x in AXB_X {
        let want = m.axb_on(x).count() as u64;
        match axb.axb_query(&AxbQuery::page(x, 1, 100)).await {
            Ok(r) => assert_eq!(
                (r.total_count, r.relation_num_list.len() as u64),
                (want, want),
                "count on {x}"
            ),
            Err(e) => assert_eq!((e.class(), want), (ErrorClass::NotFound, 0), "{x}: {e}"),
        }
    }

    let listed = sim.bindings("k-axe").await;
    let mut slots = BTreeSet::new();
    let mut holders = BTreeSet::new();
    for b in &listed {
        let (x, a, e) = (
            b["x"].as_str().unwrap(),
            b["a"].as_str().unwrap(),
            b["extension"].as_str().unwrap(),
        );
        assert!(
            slots.insert((x.to_owned(), e.to_owned())),
            "extension {e} twice on {x}"
        );
        assert!(
            holders.insert((x.to_owned(), a.to_owned())),
            "{a} twice on {x}"
        );
    }
    assert_same_bindings(&listed, &m.axe, "AXE");
}

/// The simulator lists exactly the subscriptions the model has live.
#[track_caller]
fn assert_same_bindings(listed: &[serde_json::Value], live: &BTreeMap<String, Live>, mode: &str) {
    let ids: BTreeSet<&str> = listed
        .iter()
        .map(|b| b["subscriptionId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        live.keys().map(String::as_str).collect(),
        "{mode} bindings differ from the model"
    );
}

proptest! {
    #![proptest_config(server_proptest_config())]

    #[test]
    fn random_operations_keep_the_simulator_consistent(ops in prop::collection::vec(op(), 1..40)) {
        block_on(async {
            let sim = Sim::start().await;
            let (axb, axe) = (sim.client("k-axb"), sim.client("k-axe"));
            let mut model = Model::default();
            for op in &ops {
                apply(op, &mut model, &sim, &axb, &axe).await;
                check(&model, &sim, &axb).await;
            }
            sim.stop().await;
        });
    }
}

/// An unbind by subscription succeeds if the model had the binding, else answers not found.
#[track_caller]
fn expect_unbind<T: std::fmt::Debug>(result: Result<T, UpstreamError>, was_live: bool, mode: &str) {
    if was_live {
        result.unwrap_or_else(|e| panic!("unbind of a live {mode} binding: {e}"));
    } else {
        assert_eq!(result.unwrap_err().class(), ErrorClass::NotFound);
    }
}
