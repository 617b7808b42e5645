//! `xpool numbers` and `xpool stats`: changes checked through PoolService, tables and JSON
//! against what it answers.

use serde_json::Value;
use xpool::grpc::pb;

use super::xpool;
use crate::support::*;

async fn numbers_of(d: &Daemon, app: &str) -> Vec<pb::NumberInfo> {
    list_numbers(&mut d.pool().await, app).await
}

fn state_of(numbers: &[pb::NumberInfo], number: &str) -> Option<pb::NumberState> {
    numbers
        .iter()
        .find(|n| n.number == number)
        .map(|n| n.state())
}

#[tokio::test]
async fn numbers_are_added_listed_drained_undrained_and_removed() {
    let d = Daemon::start_with(Setup::standard().only(&["rides"])).await;
    let (n9, n10) = ("+8617000000009", "+8617000000010");
    let added = xpool(
        &d.addr,
        None,
        &[
            "numbers",
            "add",
            "--app",
            "rides",
            "--number",
            n9,
            "--area",
            "0755",
            "--number",
            &format!("{n10}:010"),
        ],
    )
    .await;
    let rows = added.exits(0).rows();
    assert!(rows.contains(&vec![
        n9, "0755", "active", "normal", "0", "0", "0", "added"
    ]));
    assert!(rows.contains(&vec![
        n10, "010", "active", "normal", "0", "0", "0", "added"
    ]));
    let numbers = numbers_of(&d, "rides").await;
    assert_eq!(numbers.len(), 6, "{numbers:?}");
    assert_eq!(state_of(&numbers, n9), Some(pb::NumberState::Active));

    // The whole list, and one area's, as the API has them.
    let listed = xpool(&d.addr, None, &["numbers", "list", "--app", "rides"]).await;
    let listed: Vec<&str> = listed.exits(0).rows().iter().map(|r| r[0]).collect();
    let want: Vec<&str> = numbers.iter().map(|n| n.number.as_str()).collect();
    assert_eq!(listed, want);
    let area = xpool(
        &d.addr,
        None,
        &["numbers", "list", "--app", "rides", "--area", "0755"],
    )
    .await;
    let area: Vec<Vec<&str>> = area.exits(0).rows();
    let area: Vec<(&str, &str)> = area.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(area, [("+8617000000004", "0755"), (n9, "0755")]);

    // Drain and undrain: the table shows the state the API then reports.
    let drained = xpool(
        &d.addr,
        None,
        &["numbers", "drain", "--app", "rides", n9, n10],
    )
    .await;
    let rows = drained.exits(0).rows();
    assert_eq!(rows.len(), 2, "{drained:?}");
    assert!(rows.iter().all(|r| r[2] == "draining"), "{drained:?}");
    let numbers = numbers_of(&d, "rides").await;
    assert_eq!(state_of(&numbers, n9), Some(pb::NumberState::Draining));
    assert_eq!(state_of(&numbers, n10), Some(pb::NumberState::Draining));
    let undrained = xpool(&d.addr, None, &["numbers", "undrain", "--app", "rides", n9]).await;
    assert_eq!(undrained.exits(0).rows()[0][..3], [n9, "0755", "active"]);
    let numbers = numbers_of(&d, "rides").await;
    assert_eq!(state_of(&numbers, n9), Some(pb::NumberState::Active));
    assert_eq!(state_of(&numbers, n10), Some(pb::NumberState::Draining));

    // --output json: the numbers as the API has them, keys as grpcurl prints them.
    let json = xpool(
        &d.addr,
        None,
        &["numbers", "list", "--app", "rides", "--output", "json"],
    )
    .await
    .exits(0)
    .json();
    let listed = json["numbers"].as_array().unwrap();
    assert_eq!(listed.len(), numbers.len(), "{json}");
    let ten = listed.iter().find(|n| n["number"] == n10).unwrap();
    assert_eq!(ten["areaCode"], "010", "{ten}");
    assert_eq!(ten["state"], "NUMBER_STATE_DRAINING", "{ten}");
    assert_eq!(ten["status"], "NUMBER_STATUS_NORMAL", "{ten}");
    assert_eq!(ten["bindingCount"], 0, "{ten}");
    assert_eq!(ten["freeExtensionCount"], "0", "int64 as a string: {ten}");

    // Remove both; added again, one is "updated" (it was removed).
    let removed = xpool(
        &d.addr,
        None,
        &["numbers", "remove", "--app", "rides", n9, n10],
    )
    .await;
    assert_eq!(removed.exits(0).stdout, "removed 2 number(s)\n");
    let numbers = numbers_of(&d, "rides").await;
    assert_eq!(state_of(&numbers, n9), None, "{numbers:?}");
    assert_eq!(state_of(&numbers, n10), None, "{numbers:?}");
    let again = xpool(
        &d.addr,
        None,
        &[
            "numbers", "add", "--app", "rides", "--number", n9, "--area", "0755", "--output",
            "json",
        ],
    )
    .await
    .exits(0)
    .json();
    assert_eq!(again["added"], Value::Array(vec![]), "{again}");
    assert_eq!(again["updated"][0]["number"], n9, "{again}");

    // A number without an area is the command line's fault: exit 2, nothing asked.
    let no_area = ["numbers", "add", "--app", "rides", "--number", n10];
    let no_area = xpool(&d.addr, None, &no_area).await;
    assert!(
        no_area.exits(2).stderr.contains("no area code"),
        "{no_area:?}"
    );
    assert_eq!(state_of(&numbers_of(&d, "rides").await, n10), None);
    d.stop().await;
}

#[tokio::test]
async fn stats_show_every_app_and_area_as_the_api_counts_them() {
    let d = Daemon::start().await;
    d.bind_ok(in_area("rides", &party(1), Some(&party(2)), "010"))
        .await;
    d.bind_ok(in_area("drivers", &party(3), None, "021")).await;
    let drain = pb::DrainNumbersRequest {
        app: "rides".into(),
        numbers: vec!["+8617000000004".into()],
    };
    rpc("DrainNumbers", d.pool().await.drain_numbers(drain))
        .await
        .unwrap();

    let table = xpool(&d.addr, None, &["stats"]).await;
    let header = table.exits(0).stdout.lines().next().unwrap().to_owned();
    let header: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "APP", "AREA", "TOTAL", "FREE", "BOUND", "COOLING", "DRAINING", "HELD", "FREE EXT"
        ]
    );
    let mut want = Vec::new();
    for app in ["rides", "drivers", "stores", "chat", "local"] {
        for a in d.pool_stats(app).await.areas {
            let n = |v: i64| v.to_string();
            want.push(vec![
                app.to_owned(),
                a.area_code.clone(),
                n(a.total.into()),
                n(a.free.into()),
                n(a.bound.into()),
                n(a.cooling_down.into()),
                n(a.draining.into()),
                n(a.held_by_platform.into()),
                n(a.free_extensions),
            ]);
        }
    }
    let mut rows: Vec<Vec<String>> = table
        .rows()
        .iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect();
    rows.sort();
    want.sort();
    assert_eq!(rows, want, "{table:?}");
    // What the rows must show, not only agree on: the drained 0755 number, the bound AX number,
    // the AXE extensions.
    let row = |app: &str, area: &str| {
        rows.iter()
            .find(|r| r[0] == app && r[1] == area)
            .unwrap_or_else(|| panic!("no row {app} {area}: {table:?}"))
            .clone()
    };
    assert_eq!(
        row("rides", "0755")[2..],
        ["1", "0", "0", "0", "1", "0", "0"]
    );
    assert_eq!(row("drivers", "021")[2..5], ["1", "0", "1"]);
    assert_eq!(
        row("stores", "010")[8],
        "198",
        "2 numbers of 99 extensions, 01 to 99"
    );

    let json = xpool(
        &d.addr,
        None,
        &["stats", "--app", "stores", "--output", "json"],
    )
    .await;
    let json = json.exits(0).json();
    assert_eq!(json["apps"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["apps"][0]["app"], "stores");
    let area = &json["apps"][0]["areas"][0];
    assert_eq!(area["areaCode"], "010", "{json}");
    assert_eq!(area["total"], 2, "{json}");
    assert_eq!(area["freeExtensions"], "198", "{json}");
    assert_eq!(area["heldByPlatform"], 0, "{json}");
    d.stop().await;
}
