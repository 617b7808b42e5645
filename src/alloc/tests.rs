//! The allocator alone: no store, no platform, time passed in.

use std::collections::HashSet;

use super::*;
use crate::platform::Mode;

const AREA: &str = "010";

fn rules(mode: Mode) -> Rules {
    Rules {
        mode,
        max_bindings_per_x: 2,
        extension_digits: 1,
        max_extensions_per_x: None,
        cool_down_ms: 1_000,
        fallback_areas: Vec::new(),
    }
}

fn index(mode: Mode, xs: &[&str]) -> Index {
    let mut index = Index::new(rules(mode));
    for x in xs {
        let number = Number {
            number: x,
            area_code: AREA,
            state: NumberState::Active,
            suspect: false,
            status: NumberStatus::Normal,
        };
        index.upsert_number(&number, 0);
    }
    index
}

fn pick(index: &mut Index, a: &str, b: Option<&str>, now: i64) -> Result<Pick, NoPick> {
    let areas = [AREA.to_owned()];
    index
        .pick(&areas, a, b, &HashSet::new(), now)
        .map(|(pick, _)| pick)
}

#[test]
fn axb_spreads_load_and_keeps_each_party_once_per_x() {
    let mut ix = index(Mode::Axb, &["+8610001", "+8610002"]);
    let first = pick(&mut ix, "+861", Some("+862"), 0).unwrap();
    assert_eq!(first.x, "+8610001");
    ix.occupy(&first.occupant("+861", Some("+862")), 0);
    let second = pick(&mut ix, "+863", Some("+864"), 0).unwrap();
    assert_eq!(second.x, "+8610002", "least-loaded X first");
    ix.occupy(&second.occupant("+863", Some("+864")), 0);
    // +861 is on the first X already: the second is the only one left for it.
    let third = pick(&mut ix, "+861", Some("+865"), 0).unwrap();
    assert_eq!(third.x, "+8610002");
    ix.occupy(&third.occupant("+861", Some("+865")), 0);
    // The second X is full, the first carries +861.
    assert_eq!(
        pick(&mut ix, "+861", Some("+866"), 0),
        Err(NoPick::Exhausted {
            tried: vec![AREA.to_owned()]
        })
    );
    ix.vacate(&first.occupant("+861", Some("+862")), None, 0);
    assert_eq!(
        pick(&mut ix, "+861", Some("+866"), 0).unwrap().x,
        "+8610001"
    );
}

#[test]
fn an_ax_number_rests_for_its_cool_down_after_release() {
    let mut ix = index(Mode::Ax, &["+8610001"]);
    let taken = pick(&mut ix, "+861", None, 0).unwrap();
    ix.occupy(&taken.occupant("+861", None), 0);
    assert!(pick(&mut ix, "+862", None, 0).is_err());
    ix.vacate(&taken.occupant("+861", None), Some(0), 0);
    assert!(pick(&mut ix, "+862", None, 999).is_err(), "still cooling");
    assert_eq!(ix.number_page(None, None, 10, 999).0[0].cooling, 1);
    assert_eq!(pick(&mut ix, "+862", None, 1_000).unwrap().x, "+8610001");
}

#[test]
fn an_ax_party_holds_at_most_five_numbers() {
    let xs = [
        "+8610001", "+8610002", "+8610003", "+8610004", "+8610005", "+8610006",
    ];
    let mut ix = index(Mode::Ax, &xs);
    for _ in 0..MAX_XS_PER_A {
        let p = pick(&mut ix, "+861", None, 0).unwrap();
        ix.occupy(&p.occupant("+861", None), 0);
    }
    assert_eq!(
        pick(&mut ix, "+861", None, 0),
        Err(NoPick::PartyLimit("+861".into()))
    );
    assert!(pick(&mut ix, "+862", None, 0).is_ok());
}

#[test]
fn a_pinned_axe_extension_is_given_once() {
    let mut ix = index(Mode::Axe, &["+8610001"]);
    let pinned = ix.pinned("+8610001", Some("3"), "+861", None, 0).unwrap();
    assert_eq!(pinned.extension.as_deref(), Some("3"));
    ix.occupy(&pinned.occupant("+861", None), 0);
    assert!(matches!(
        ix.pinned("+8610001", Some("3"), "+862", None, 0),
        Err(NoPick::Pinned(_))
    ));
    let next = pick(&mut ix, "+862", None, 0).unwrap();
    assert_eq!(next.ext_choice, Some(ExtChoice::Fresh));
    assert_ne!(next.extension.as_deref(), Some("3"));
    let stats = ix.area_stats(0);
    assert_eq!((stats[0].total, stats[0].bound), (1, 1));
    assert_eq!(stats[0].free_extensions, 8);
}

#[test]
fn lifetimes_follow_the_mode() {
    let check = |mode, ttl| rules(mode).check_ttl(ttl).is_ok();
    assert!(check(Mode::Axb, MAX_TTL_SECONDS) && !check(Mode::Axb, MAX_TTL_SECONDS + 1));
    assert!(check(Mode::Axe, 120) && !check(Mode::Axe, 90));
    assert!(check(Mode::Axyb, 0) && check(Mode::Axyb, 60) && !check(Mode::Axyb, 30));
    assert!(check(Mode::Ax, 1) && check(Mode::X, 0));
}

#[test]
fn number_pages_are_sorted_and_go_on_after_their_position() {
    // Inserted out of order; the map keeps no order of its own.
    let xs = ["+8610005", "+8610001", "+8610004", "+8610002", "+8610003"];
    let mut ix = index(Mode::Axb, &xs);
    let other = Number {
        number: "+8620001",
        area_code: "021",
        state: NumberState::Active,
        suspect: false,
        status: NumberStatus::Normal,
    };
    ix.upsert_number(&other, 0);
    let page = |ix: &Index, area: Option<&str>, after: Option<&str>, limit| {
        let (views, more) = ix.number_page(area, after, limit, 0);
        let numbers: Vec<String> = views.into_iter().map(|v| v.number).collect();
        (numbers, more)
    };
    assert_eq!(
        page(&ix, Some(AREA), None, 2),
        (vec!["+8610001".to_owned(), "+8610002".to_owned()], true)
    );
    assert_eq!(
        page(&ix, Some(AREA), Some("+8610002"), 2),
        (vec!["+8610003".to_owned(), "+8610004".to_owned()], true)
    );
    assert_eq!(
        page(&ix, Some(AREA), Some("+8610004"), 2),
        (vec!["+8610005".to_owned()], false)
    );
    // Exactly a page left: no further page is promised.
    assert!(!page(&ix, Some(AREA), Some("+8610003"), 2).1);
    assert_eq!(page(&ix, None, Some("+8610005"), 10).0, ["+8620001"]);
    assert_eq!(page(&ix, Some("0755"), None, 10), (Vec::new(), false));
}
