//! AXB mode (binding-api.md §2.1, §4.2): many A–B pairs per X, each real number at most once
//! per X, optional lifetime.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use super::limits::MAX_DURATION_SECONDS;
use super::params::Params;
use super::reply::{Fail, Outcome, done, ok};
use super::state::{
    BindingView, Crud, Ctx, ExpiryIndex, ExpiryKey, expiry, new_subscription_id, rfc3339,
};
use super::terms::{CallTerms, Takes, TermsUpdate};
use xpool_platform::time::format_subscribe_time;
use xpool_platform::wire::{AxbBindResponse, AxbQueryResponse, AxbRecord};
use xpool_platform::{Mode, codes};

/// Every live AXB binding of one app.
#[derive(Debug, Default)]
pub(crate) struct AxbState {
    bindings: HashMap<String, Binding>,
    per_x: HashMap<String, XSlot>,
    expiry: ExpiryIndex<String>,
    seq: u64,
}

/// The bindings on one X.
#[derive(Debug, Default)]
struct XSlot {
    /// Real number (A or B) ⇒ subscriptionId of the one binding that uses it.
    by_number: HashMap<String, String>,
    /// Creation sequence ⇒ subscriptionId.
    order: BTreeMap<u64, String>,
}

#[derive(Debug, Clone)]
struct Binding {
    id: String,
    x: String,
    a: String,
    b: String,
    duration: u64,
    terms: CallTerms,
    subscribe_time: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    expiry_key: Option<ExpiryKey>,
    seq: u64,
}

impl Crud for AxbState {
    fn bind(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let a = p.req_number("callerNum")?;
        let b = p.req_number("calleeNum")?;
        if a == b {
            return Err(Fail::invalid("calleeNum"));
        }
        let x = p.number("relationNum")?;
        let area = p.area_code()?;
        let loose = p.loose_area_match()?;
        let duration = p.u64_in("duration", 0..=MAX_DURATION_SECONDS)?.unwrap_or(0);
        let terms = CallTerms::new(TermsUpdate::read(ctx, p, Takes::Bind)?)?;

        let max = ctx.app.max_bindings_per_x;
        let x = match x {
            Some(x) => {
                ctx.owned_number(&x, codes::NUMBER_NOT_APPLIED)?;
                let slot = self.per_x.get(&x);
                if slot.is_some_and(|s| s.order.len() >= max) {
                    return Err(Fail::new(codes::MAX_BINDINGS_EXCEEDED));
                }
                if slot.is_some_and(|s| s.uses(&a) || s.uses(&b)) {
                    return Err(Fail::new(codes::NUMBER_ALREADY_BOUND));
                }
                x
            }
            None => {
                let free = |x: &str| {
                    self.per_x
                        .get(x)
                        .is_none_or(|s| s.order.len() < max && !s.uses(&a) && !s.uses(&b))
                };
                let loose = loose || area.is_none();
                ctx.numbers
                    .pick(area.as_deref(), loose, free)
                    .ok_or_else(|| Fail::new(codes::INSUFFICIENT_NUMBERS))?
            }
        };
        self.seq += 1;
        let binding = Binding {
            id: new_subscription_id(),
            x,
            a,
            b,
            duration,
            terms,
            subscribe_time: ctx.now,
            expires_at: expiry(ctx.now, duration),
            expiry_key: None,
            seq: self.seq,
        };
        let answer = AxbBindResponse {
            subscription_id: binding.id.clone(),
            relation_num: binding.x.clone(),
            call_direction: Some(binding.terms.call_direction),
            duration: Some(duration),
            max_duration: Some(binding.terms.max_duration),
        };
        self.insert(binding);
        ok(&answer)
    }

    fn modify(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let id = p.req_str("subscriptionId")?;
        let a = p.number("callerNum")?;
        let b = p.number("calleeNum")?;
        let duration = p.u64_in("duration", 0..=MAX_DURATION_SECONDS)?;
        let terms = TermsUpdate::read(ctx, p, Takes::AxbModify)?;

        let mut binding = self
            .remove(&id)
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        let (new_a, new_b) = (
            a.clone().unwrap_or_else(|| binding.a.clone()),
            b.clone().unwrap_or_else(|| binding.b.clone()),
        );
        let slot = self.per_x.get(&binding.x);
        let conflict = new_a == new_b || slot.is_some_and(|s| s.uses(&new_a) || s.uses(&new_b));
        if conflict {
            let fail = if new_a == new_b {
                Fail::invalid("calleeNum")
            } else {
                Fail::new(codes::NUMBER_ALREADY_BOUND)
            };
            self.insert(binding);
            return Err(fail);
        }
        if let Err(fail) = binding.terms.apply(terms) {
            self.insert(binding);
            return Err(fail);
        }
        binding.a = new_a;
        binding.b = new_b;
        if let Some(d) = duration {
            binding.duration = d;
            binding.expires_at = expiry(ctx.now, d);
        }
        binding.subscribe_time = ctx.now;
        self.insert(binding);
        done()
    }

    fn unbind(&mut self, p: &Params) -> Outcome {
        if let Some(id) = p.str("subscriptionId")? {
            return match self.remove(&id) {
                Some(_) => done(),
                None => Err(Fail::new(codes::RECORD_NOT_EXIST)),
            };
        }
        let x = p
            .number("relationNum")?
            .ok_or_else(|| Fail::invalid("subscriptionId"))?;
        if self.drop_all_on(&x) == 0 {
            return Err(Fail::new(codes::RECORD_NOT_EXIST));
        }
        done()
    }

    fn query(&self, p: &Params) -> Outcome {
        if let Some(id) = p.str("subscriptionId")? {
            let binding = self
                .bindings
                .get(&id)
                .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
            return answer(1, vec![binding.record()]);
        }
        let x = p
            .number("relationNum")?
            .ok_or_else(|| Fail::invalid("subscriptionId"))?;
        let caller = p.number("callerNum")?;
        let callee = p.number("calleeNum")?;
        let page_index = p.u64("pageIndex")?.unwrap_or(1).max(1);
        let page_size = p
            .u64("pageSize")?
            .filter(|size| (10..=100).contains(size))
            .unwrap_or(50);
        let slot = self
            .per_x
            .get(&x)
            .filter(|s| !s.order.is_empty())
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        if caller.is_some() || callee.is_some() {
            let key = caller.as_ref().or(callee.as_ref());
            let found = key
                .and_then(|n| slot.by_number.get(n))
                .and_then(|id| self.bindings.get(id))
                .filter(|b| caller.as_ref().is_none_or(|c| *c == b.a))
                .filter(|b| callee.as_ref().is_none_or(|c| *c == b.b))
                .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
            return answer(1, vec![found.record()]);
        }
        let skip =
            usize::try_from((page_index - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let records = slot
            .order
            .values()
            .skip(skip)
            .take(usize::try_from(page_size).unwrap_or(50))
            .filter_map(|id| self.bindings.get(id))
            .map(Binding::record)
            .collect();
        answer(slot.order.len() as u64, records)
    }
}

impl AxbState {
    fn insert(&mut self, mut binding: Binding) {
        binding.expiry_key = binding
            .expires_at
            .map(|at| self.expiry.insert(at, binding.id.clone()));
        let slot = self.per_x.entry(binding.x.clone()).or_default();
        slot.by_number.insert(binding.a.clone(), binding.id.clone());
        slot.by_number.insert(binding.b.clone(), binding.id.clone());
        slot.order.insert(binding.seq, binding.id.clone());
        self.bindings.insert(binding.id.clone(), binding);
    }

    fn remove(&mut self, id: &str) -> Option<Binding> {
        let binding = self.bindings.remove(id)?;
        self.expiry.remove(binding.expiry_key);
        if let Some(slot) = self.per_x.get_mut(&binding.x) {
            slot.by_number.remove(&binding.a);
            slot.by_number.remove(&binding.b);
            slot.order.remove(&binding.seq);
            if slot.order.is_empty() {
                self.per_x.remove(&binding.x);
            }
        }
        Some(binding)
    }

    /// Removes every binding on `x`; returns how many there were.
    fn drop_all_on(&mut self, x: &str) -> usize {
        let Some(slot) = self.per_x.remove(x) else {
            return 0;
        };
        for id in slot.order.values() {
            if let Some(binding) = self.bindings.remove(id) {
                self.expiry.remove(binding.expiry_key);
            }
        }
        slot.order.len()
    }

    pub fn purge(&mut self, now: OffsetDateTime) {
        for id in self.expiry.pop_due(now) {
            self.remove(&id);
        }
    }

    pub fn drop_number(&mut self, x: &str) {
        self.drop_all_on(x);
    }

    pub fn list(&self) -> Vec<BindingView> {
        self.bindings
            .values()
            .map(|b| BindingView {
                b: Some(b.b.clone()),
                expires_at: b.expires_at.map(rfc3339),
                options: b.terms.view(),
                ..BindingView::new(Mode::Axb, &b.id, &b.x, &b.a, b.seq)
            })
            .collect()
    }
}

impl XSlot {
    fn uses(&self, number: &str) -> bool {
        self.by_number.contains_key(number)
    }
}

impl Binding {
    fn record(&self) -> AxbRecord {
        AxbRecord {
            subscription_id: self.id.clone(),
            relation_num: self.x.clone(),
            caller_num: self.a.clone(),
            callee_num: self.b.clone(),
            call_direction: Some(self.terms.call_direction),
            duration: Some(self.duration),
            max_duration: Some(self.terms.max_duration),
            record_flag: Some(self.terms.record_flag),
            record_hint_tone: self.terms.record_hint_tone.clone(),
            last_min_voice: self.terms.last_min_voice.clone(),
            private_sms: self.terms.private_sms,
            pre_voice: self.terms.pre_voice.clone(),
            subscribe_time: Some(format_subscribe_time(self.subscribe_time)),
            user_data: self.terms.user_data.clone(),
        }
    }
}

fn answer(total_count: u64, relation_num_list: Vec<AxbRecord>) -> Outcome {
    ok(&AxbQueryResponse {
        total_count,
        relation_num_list,
    })
}

/// What a call needs (notifications.md §1): the binding holding `party` on `x`.
impl AxbState {
    pub(crate) fn call_view(&self, x: &str, party: &str) -> Option<crate::call::AxbView> {
        let id = self.per_x.get(x)?.by_number.get(party)?;
        let b = self.bindings.get(id)?;
        Some(crate::call::AxbView {
            bound: crate::call::Bound {
                id: Some(b.id.clone()),
                user_data: b.terms.user_data.clone(),
                record_flag: b.terms.record_flag,
                max_minutes: b.terms.max_duration,
            },
            a: b.a.clone(),
            b: b.b.clone(),
            call_direction: b.terms.call_direction,
            sms: b.terms.private_sms != Some(false),
        })
    }
}
