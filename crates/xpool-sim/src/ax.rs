//! AX mode (binding-api.md §2.2, §4.3): each X belongs to at most one A, each A holds at most
//! five Xs, no lifetime; plus the temporary callee A may call out to.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::limits::MAX_X_PER_A;
use super::params::Params;
use super::reply::{Fail, Outcome, done, ok};
use super::state::{BindingView, Crud, Ctx, TempCallee, expiry, new_subscription_id, rfc3339};
use super::terms::{CallTerms, Takes, TermsUpdate};
use xpool_platform::time::format_subscribe_time;
use xpool_platform::wire::{AxBindResponse, AxQueryResponse, AxRecord, PRIVATE_NUM_TYPE};
use xpool_platform::{Mode, codes};

const MAX_CALLEE_SECONDS: u64 = 259_200;

/// Every AX binding of one app.
#[derive(Debug, Default)]
pub(crate) struct AxState {
    bindings: HashMap<String, Binding>,
    /// X ⇒ subscriptionId.
    by_x: HashMap<String, String>,
    /// A ⇒ subscriptionIds in creation order (at most five).
    by_a: HashMap<String, Vec<String>>,
    seq: u64,
}

#[derive(Debug, Clone)]
struct Binding {
    id: String,
    x: String,
    a: String,
    terms: CallTerms,
    subscribe_time: OffsetDateTime,
    /// The last temporary callee: who A reaches by dialling X, until when.
    temp_callee: Option<TempCallee>,
    seq: u64,
}

impl Crud for AxState {
    fn bind(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let a = p.req_number("origNum")?;
        let x = p.number("privateNum")?;
        let area = p.area_code()?;
        let num_type = p.one_of("privateNumType", &[PRIVATE_NUM_TYPE])?;
        let loose = p.loose_area_match()?;
        p.one_of("calleeNumDisplay", &["0", "1"])?;
        p.one_of("turnFlag", &["on", "off"])?;
        let terms = CallTerms::new(TermsUpdate::read(ctx, p, Takes::Bind)?)?;

        let full = self.by_a.get(&a).is_some_and(|xs| xs.len() >= MAX_X_PER_A);
        let x = match (x, area) {
            (Some(x), _) => {
                ctx.owned_number(&x, codes::AX_ACCOUNT_NOT_EXIST)?;
                if self.by_x.contains_key(&x) {
                    return Err(Fail::new(codes::AX_NUMBER_ALLOCATED));
                }
                if full {
                    return Err(Fail::new(codes::AX_TOO_MANY_NUMBERS));
                }
                x
            }
            (None, Some(area)) => {
                if num_type.is_none() {
                    return Err(Fail::invalid("privateNumType"));
                }
                if full {
                    return Err(Fail::new(codes::AX_TOO_MANY_NUMBERS));
                }
                ctx.numbers
                    .pick(Some(&area), loose, |x| !self.by_x.contains_key(x))
                    .ok_or_else(|| Fail::new(codes::AX_INSUFFICIENT_NUMBERS))?
            }
            (None, None) => return Err(Fail::invalid("privateNum")),
        };
        self.seq += 1;
        let binding = Binding {
            id: new_subscription_id(),
            x,
            a,
            terms,
            subscribe_time: ctx.now,
            temp_callee: None,
            seq: self.seq,
        };
        let answer = AxBindResponse {
            orig_num: binding.a.clone(),
            private_num: binding.x.clone(),
            subscription_id: binding.id.clone(),
        };
        self.insert(binding);
        ok(&answer)
    }

    fn modify(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let id = p.str("subscriptionId")?;
        let x = p.number("privateNum")?;
        let new_a = p.number("origNum")?;
        let terms = TermsUpdate::read(ctx, p, Takes::AxModify)?;

        let id = self.select(id, x)?;
        let Some(binding) = self.bindings.get(&id) else {
            return Err(Fail::new(codes::RECORD_NOT_EXIST_GENERIC));
        };
        let mut binding = binding.clone();
        if let Some(a) = new_a.filter(|a| *a != binding.a) {
            if self.by_a.get(&a).is_some_and(|xs| xs.len() >= MAX_X_PER_A) {
                return Err(Fail::new(codes::AX_TOO_MANY_NUMBERS));
            }
            binding.a = a;
        }
        binding.terms.apply(terms)?;
        binding.subscribe_time = ctx.now;
        self.remove(&id);
        self.insert(binding);
        done()
    }

    fn unbind(&mut self, p: &Params) -> Outcome {
        let id = p.str("subscriptionId")?;
        let x = p.number("privateNum")?;
        if id.is_none() && x.is_none() {
            return Err(Fail::invalid("privateNum"));
        }
        let id = self.select(id, x)?;
        match self.remove(&id) {
            Some(_) => done(),
            None => Err(Fail::new(codes::RECORD_NOT_EXIST_GENERIC)),
        }
    }

    fn query(&self, p: &Params) -> Outcome {
        let id = p.str("subscriptionId")?;
        let a = p.number("origNum")?;
        let x = p.number("privateNum")?;
        let ids: Vec<&String> = match (id, a, x) {
            (Some(id), _, _) => self
                .bindings
                .get_key_value(&id)
                .map(|(k, _)| k)
                .into_iter()
                .collect(),
            (None, Some(a), _) => self.by_a.get(&a).into_iter().flatten().collect(),
            (None, None, Some(x)) => self.by_x.get(&x).into_iter().collect(),
            (None, None, None) => return Err(Fail::invalid("subscriptionId")),
        };
        let private_num_list = ids
            .into_iter()
            .filter_map(|id| self.bindings.get(id))
            .map(Binding::record)
            .collect();
        ok(&AxQueryResponse { private_num_list })
    }
}

impl AxState {
    /// `PUT /rest/caas/privatenumber/calleenumber/v1.0` (§2.2.5).
    pub fn set_callee(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let id = p.str("subscriptionId")?;
        let a = p.number("origNum")?;
        let x = p.number("privateNum")?;
        let callee = p.req_number("calleeNum")?;
        let duration = p.u64_in("duration", 1..=MAX_CALLEE_SECONDS)?.unwrap_or(60);
        p.user_data()?;
        let id = match (id, a, x) {
            (Some(id), _, _) => id,
            (None, Some(a), Some(x)) => self
                .by_x
                .get(&x)
                .filter(|id| self.bindings.get(*id).is_some_and(|b| b.a == a))
                .cloned()
                .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST_GENERIC))?,
            (None, Some(_), None) => return Err(Fail::invalid("privateNum")),
            (None, None, Some(_)) => return Err(Fail::invalid("origNum")),
            (None, None, None) => return Err(Fail::invalid("subscriptionId")),
        };
        let binding = self
            .bindings
            .get_mut(&id)
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST_GENERIC))?;
        if callee == binding.a {
            return Err(Fail::invalid("calleeNum"));
        }
        let until = expiry(ctx.now, duration).map(rfc3339);
        binding.temp_callee = Some(TempCallee {
            number: callee,
            until,
        });
        done()
    }

    /// The subscriptionId named by `subscriptionId` (wins) or `privateNum`.
    fn select(&self, id: Option<String>, x: Option<String>) -> Result<String, Fail> {
        match (id, x) {
            (Some(id), _) => Ok(id),
            (None, Some(x)) => self
                .by_x
                .get(&x)
                .cloned()
                .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST_GENERIC)),
            (None, None) => Err(Fail::invalid("subscriptionId")),
        }
    }

    fn insert(&mut self, binding: Binding) {
        self.by_x.insert(binding.x.clone(), binding.id.clone());
        let ids = self.by_a.entry(binding.a.clone()).or_default();
        let at = ids
            .iter()
            .position(|id| self.bindings.get(id).is_some_and(|b| b.seq > binding.seq))
            .unwrap_or(ids.len());
        ids.insert(at, binding.id.clone());
        self.bindings.insert(binding.id.clone(), binding);
    }

    fn remove(&mut self, id: &str) -> Option<Binding> {
        let binding = self.bindings.remove(id)?;
        self.by_x.remove(&binding.x);
        if let Some(ids) = self.by_a.get_mut(&binding.a) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_a.remove(&binding.a);
            }
        }
        Some(binding)
    }

    pub fn drop_number(&mut self, x: &str) {
        if let Some(id) = self.by_x.get(x).cloned() {
            self.remove(&id);
        }
    }

    pub fn list(&self) -> Vec<BindingView> {
        self.bindings
            .values()
            .map(|b| BindingView {
                callee: b.temp_callee.clone(),
                options: b.terms.view(),
                ..BindingView::new(Mode::Ax, &b.id, &b.x, &b.a, b.seq)
            })
            .collect()
    }
}

impl Binding {
    fn record(&self) -> AxRecord {
        AxRecord {
            orig_num: self.a.clone(),
            private_num: self.x.clone(),
            private_num_type: Some(PRIVATE_NUM_TYPE.to_owned()),
            subscribe_time: Some(format_subscribe_time(self.subscribe_time)),
            subscription_id: Some(self.id.clone()),
            record_flag: Some(self.terms.record_flag),
            max_duration: Some(self.terms.max_duration),
            call_direction: Some(self.terms.call_direction),
            record_hint_tone: self.terms.record_hint_tone.clone(),
            last_min_voice: self.terms.last_min_voice.clone(),
            private_sms: self.terms.private_sms,
            pre_voice: self.terms.pre_voice.clone(),
            user_data: self.terms.user_data.clone(),
        }
    }
}

/// What a call needs (notifications.md §1): the binding on `x`.
impl AxState {
    pub(crate) fn call_view(&self, x: &str) -> Option<crate::call::AxView> {
        let b = self.bindings.get(self.by_x.get(x)?)?;
        Some(crate::call::AxView {
            bound: crate::call::Bound {
                id: Some(b.id.clone()),
                user_data: b.terms.user_data.clone(),
                record_flag: b.terms.record_flag,
                max_minutes: b.terms.max_duration,
            },
            a: b.a.clone(),
            call_direction: b.terms.call_direction,
            callee: b
                .temp_callee
                .as_ref()
                .map(|c| (c.number.clone(), c.until.clone())),
            sms: b.terms.private_sms != Some(false),
        })
    }
}
