//! Tables for people: plain columns under an upper-case header, no borders, so that they read in
//! a terminal and split on whitespace in a pipe (`awk '{print $1}'`).

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use prost_types::Timestamp;

use super::json::rfc3339;

/// A table with these column headers; the columns named in `numeric` are aligned right.
pub fn new(headers: &[&str], numeric: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for (i, header) in headers.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, 2));
            if numeric.contains(header) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    table
}

/// Prints `table` on stdout, each line without trailing spaces.
pub fn print(table: &Table) {
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}

/// An enum's name without its type prefix, in lower case: `BINDING_STATE_ACTIVE` → `active`;
/// `-` for the unspecified value.
pub fn short(name: &str, prefix: &str) -> String {
    match name.strip_prefix(prefix) {
        Some("UNSPECIFIED") => "-".to_owned(),
        Some(rest) => rest.to_ascii_lowercase(),
        None => name.to_ascii_lowercase(),
    }
}

/// `-` for an empty field.
pub fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A time to the second, `2026-05-01T08:00:00Z`; `-` when unset.
pub fn time(t: &Option<Timestamp>) -> String {
    t.as_ref()
        .map(|t| Timestamp {
            seconds: t.seconds,
            nanos: 0,
        })
        .and_then(|t| rfc3339(&t))
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_plain_columns_without_trailing_spaces() {
        let mut t = new(&["APP", "TOTAL"], &["TOTAL"]);
        t.add_row(vec!["rides", "4"]);
        t.add_row(vec!["a-longer-app", "12"]);
        let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_owned()).collect();
        assert_eq!(
            lines,
            [
                "APP           TOTAL",
                "rides             4",
                "a-longer-app     12"
            ]
        );
    }

    #[test]
    fn enum_names_are_shortened() {
        assert_eq!(short("BINDING_STATE_ACTIVE", "BINDING_STATE_"), "active");
        assert_eq!(short("NUMBER_STATE_UNSPECIFIED", "NUMBER_STATE_"), "-");
    }
}
