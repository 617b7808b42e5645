//! An app's allocation rules, the order in which areas are tried, and the lifetime rules.

use crate::platform::Mode;

/// Longest lifetime of a binding: the platform's 90 days.
pub const MAX_TTL_SECONDS: u64 = 7_776_000;

/// What the index needs to know about an app.
#[derive(Debug, Clone)]
pub struct Rules {
    pub mode: Mode,
    /// AXB and X mode: most live bindings on one X.
    pub max_bindings_per_x: u32,
    /// AXE: extension length, 1–4.
    pub extension_digits: u8,
    pub max_extensions_per_x: Option<u32>,
    /// AX numbers and AXE extensions rest this long after release.
    pub cool_down_ms: i64,
    /// Areas tried after the requested one, in order.
    pub fallback_areas: Vec<String>,
}

impl Rules {
    /// Whether a binding of this app may live `ttl_seconds` (0 = no deadline); the message
    /// says why not. Bind and UpdateBinding both ask here.
    pub fn check_ttl(&self, ttl_seconds: u64) -> Result<(), String> {
        if ttl_seconds > MAX_TTL_SECONDS {
            return Err(format!("at most {MAX_TTL_SECONDS} (90 days)"));
        }
        match self.mode {
            Mode::Axe if !ttl_seconds.is_multiple_of(60) => {
                Err("AXE lifetimes are whole minutes (a multiple of 60)".into())
            }
            Mode::Axyb if ttl_seconds != 0 && ttl_seconds < 60 => {
                Err("AXYB lifetimes are 0 (none) or at least 60 s".into())
            }
            _ => Ok(()),
        }
    }
}

/// Why an area is on the list, for the binding's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaRule {
    Requested,
    Fallback,
    Any,
}

impl AreaRule {
    pub fn describe(self, area: &str) -> String {
        match self {
            AreaRule::Requested => format!("requested area {area}"),
            AreaRule::Fallback => format!("fallback area {area}"),
            AreaRule::Any => format!("any area ({area})"),
        }
    }
}

/// The areas a Bind may use, in order: the requested one, the app's fallbacks, then (when the
/// request allows any area, or names none) every other area, those with the most free numbers
/// first. `free` counts the eligible numbers of an area.
pub fn area_order(
    rules: &Rules,
    requested: Option<&str>,
    any_area: bool,
    all_areas: &[String],
    mut free: impl FnMut(&str) -> usize,
) -> Vec<(String, AreaRule)> {
    let mut order: Vec<(String, AreaRule)> = Vec::new();
    let push = |order: &mut Vec<(String, AreaRule)>, area: &str, rule| {
        if !order.iter().any(|(a, _)| a == area) {
            order.push((area.to_owned(), rule));
        }
    };
    if let Some(area) = requested {
        push(&mut order, area, AreaRule::Requested);
    }
    for area in &rules.fallback_areas {
        push(&mut order, area, AreaRule::Fallback);
    }
    if any_area || requested.is_none() {
        let mut rest: Vec<(usize, &String)> = all_areas
            .iter()
            .filter(|a| !order.iter().any(|(o, _)| o == *a))
            .map(|a| (free(a), a))
            .collect();
        rest.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(y.1)));
        for (_, area) in rest {
            push(&mut order, area, AreaRule::Any);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(fallback: &[&str]) -> Rules {
        Rules {
            mode: Mode::Axb,
            max_bindings_per_x: 10,
            extension_digits: 4,
            max_extensions_per_x: None,
            cool_down_ms: 0,
            fallback_areas: fallback.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn requested_then_fallback_then_the_roomiest_others() {
        let all: Vec<String> = ["010", "021", "0755", "0571"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let free = |a: &str| match a {
            "0755" => 5,
            "0571" => 9,
            _ => 1,
        };
        let strict = area_order(&rules(&["021"]), Some("010"), false, &all, free);
        assert_eq!(
            strict,
            [
                ("010".into(), AreaRule::Requested),
                ("021".into(), AreaRule::Fallback)
            ]
        );
        let any = area_order(&rules(&["021"]), Some("010"), true, &all, free);
        let names: Vec<_> = any.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["010", "021", "0571", "0755"]);
        let unspecified = area_order(&rules(&[]), None, false, &all, free);
        assert_eq!(unspecified[0], ("0571".into(), AreaRule::Any));
    }
}
