//! AXE paging: the v2 query's cursor over one X and the binding-count query over all Xs.

use std::ops::Bound;

use super::{AxeState, DEFAULT_LIMIT, selector};
use crate::params::Params;
use crate::reply::{Fail, Outcome, ok};
use crate::state::Ctx;
use xpool_platform::codes;
use xpool_platform::wire::{AxeCount, AxeCountResponse, AxeQueryV2Response};

impl AxeState {
    pub(super) fn query_v2(&self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        if p.has("subscriptionId") || p.has("extendNum") || !p.has("virtualNum") {
            let id = self.find(selector(ctx, p)?)?;
            let record = self.record(ctx, &id)?;
            return ok(&AxeQueryV2Response {
                bind_info_list: vec![record],
                next_cursor: None,
            });
        }
        let x = p.req_number("virtualNum")?;
        let after = parse_cursor(p.str("cursor")?.as_deref())?;
        let limit = p.u64_in("limit", 1..=100)?.unwrap_or(DEFAULT_LIMIT);
        if ctx.numbers.get(&x).is_none() {
            return Err(Fail::new(codes::NUMBER_NOT_APPLIED));
        }
        let Some(slot) = self.per_x.get(&x) else {
            return ok(&AxeQueryV2Response::default());
        };
        let mut page: Vec<(&(u64, u64), &String)> = slot
            .order
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(
                usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            )
            .collect();
        let more = page.len() as u64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = page
            .last()
            .filter(|_| more)
            .map(|((ms, seq), _)| format!("{ms:013}_{seq}"));
        let bind_info_list = page
            .into_iter()
            .map(|(_, id)| self.record(ctx, id))
            .collect::<Result<_, _>>()?;
        ok(&AxeQueryV2Response {
            bind_info_list,
            next_cursor,
        })
    }

    pub(super) fn count(&self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let count = |x: &str| AxeCount {
            virtual_num: x.to_owned(),
            bind_count: self.per_x.get(x).map_or(0, |s| s.by_ext.len() as u64),
        };
        if let Some(x) = p.number("number")? {
            if ctx.numbers.get(&x).is_none() {
                return Err(Fail::new(codes::NUMBER_NOT_APPLIED));
            }
            return ok(&AxeCountResponse {
                virtual_num_list: vec![count(&x)],
                next_cursor: None,
            });
        }
        let offset = match p.str("cursor")? {
            None => 0,
            Some(c) if c.len() <= 20 && c.bytes().all(|b| b.is_ascii_digit()) => {
                c.parse::<usize>().unwrap_or(usize::MAX)
            }
            Some(_) => return Err(Fail::invalid("cursor")),
        };
        let limit = p.u64_in("limit", 1..=100)?.unwrap_or(DEFAULT_LIMIT);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let virtual_num_list: Vec<AxeCount> = ctx
            .numbers
            .all()
            .skip(offset)
            .take(limit)
            .map(count)
            .collect();
        let end = offset.saturating_add(virtual_num_list.len());
        let next_cursor = (end < ctx.numbers.len()).then(|| end.to_string());
        ok(&AxeCountResponse {
            virtual_num_list,
            next_cursor,
        })
    }
}

/// A v2 cursor `\d{13}_\d{1,20}` as (creation ms, sequence); absent is the first page.
fn parse_cursor(cursor: Option<&str>) -> Result<(u64, u64), Fail> {
    let Some(cursor) = cursor else {
        return Ok((0, 0));
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let parsed = cursor.split_once('_').and_then(|(ms, seq)| {
        let shape = ms.len() == 13 && (1..=20).contains(&seq.len()) && digits(ms) && digits(seq);
        shape.then(|| {
            let seq = seq.parse::<u128>().unwrap_or(u128::MAX);
            (
                ms.parse().unwrap_or(0),
                u64::try_from(seq).unwrap_or(u64::MAX),
            )
        })
    });
    parsed.ok_or_else(|| Fail::invalid("cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_follow_the_documented_shape() {
        assert_eq!(parse_cursor(Some("0000000000000_0")).unwrap(), (0, 0));
        assert_eq!(
            parse_cursor(Some("1700000000000_42")).unwrap(),
            (1_700_000_000_000, 42)
        );
        assert_eq!(parse_cursor(None).unwrap(), (0, 0));
        for bad in [
            "0_0",
            "0000000000000_",
            "0000000000000-1",
            "000000000000a_1",
            "x",
        ] {
            assert_eq!(
                parse_cursor(Some(bad)).unwrap_err().desc,
                "Invalid request. cursor"
            );
        }
        let huge = format!("0000000000000_{}", "9".repeat(20));
        assert_eq!(parse_cursor(Some(&huge)).unwrap().1, u64::MAX);
    }
}
