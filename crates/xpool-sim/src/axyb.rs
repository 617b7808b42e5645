//! AXYB mode (binding-api.md §2.4, §4.5): an AX relation (A reached through X) with YB
//! relations under it (each B reached through its own Y).

use std::collections::HashMap;

use axum::http::Method;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::limits::{MAX_DURATION_SECONDS, MAX_X_PER_A};
use super::params::Params;
use super::reply::{Fail, Outcome, done, ok};
use super::state::{
    BindingView, Ctx, ExpiryIndex, ExpiryKey, expiry, new_subscription_id, rfc3339,
};
use super::terms::pre_voice;
use xpool_platform::time::format_subscribe_time;
use xpool_platform::wire::{AxybBindResponse, AxybQueryResponse, AxybRecord};
use xpool_platform::{Mode, codes};

const DEFAULT_DURATION: u64 = 7200;

/// Every live AXYB relation of one app.
#[derive(Debug, Default)]
pub(crate) struct AxybState {
    axs: HashMap<String, Ax>,
    /// X ⇒ subscriptionId of the live AX using it.
    by_x: HashMap<String, String>,
    /// A ⇒ number of live AX relations.
    by_a: HashMap<String, usize>,
    /// Y ⇒ number of live YB relations.
    y_load: HashMap<String, usize>,
    expiry: ExpiryIndex<Due>,
    seq: u64,
}

/// What an expiry entry removes.
#[derive(Debug)]
enum Due {
    Ax(String),
    Yb { ax: String, y: String },
}

#[derive(Debug)]
struct Ax {
    id: String,
    a: String,
    x: String,
    call_direction: u64,
    duration: u64,
    yb_duration: u64,
    record_flag: bool,
    record_hint_tone: Option<String>,
    user_data: Option<String>,
    subscribe_time: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    expiry_key: Option<ExpiryKey>,
    seq: u64,
    ybs: Vec<Yb>,
}

#[derive(Debug)]
struct Yb {
    y: String,
    b: String,
    yb_duration: u64,
    expires_at: Option<OffsetDateTime>,
    expiry_key: Option<ExpiryKey>,
    subscribe_time: OffsetDateTime,
    seq: u64,
}

impl Ax {
    /// The call options as `/sim/bindings` shows them, by their wire names.
    fn options(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("callDirection".into(), Value::from(self.call_direction));
        map.insert("recordFlag".into(), Value::Bool(self.record_flag));
        if let Some(tone) = &self.record_hint_tone {
            map.insert("recordHintTone".into(), Value::String(tone.clone()));
        }
        map
    }
}

/// A lifetime parameter: 0 (never / tied to the AX) or 60..=7776000 seconds.
fn lifetime(p: &Params, name: &str) -> Result<Option<u64>, Fail> {
    match p.u64(name)? {
        Some(d) if d != 0 && !(60..=MAX_DURATION_SECONDS).contains(&d) => Err(Fail::invalid(name)),
        d => Ok(d),
    }
}

impl AxybState {
    /// Answers one AXYB request (the caller has checked `app_key`).
    pub fn handle(&mut self, ctx: Ctx<'_>, method: &Method, p: &Params) -> Outcome {
        match *method {
            Method::POST if p.has("subscriptionId") => self.bind_yb(ctx, p),
            Method::POST => self.bind_ax(ctx, p),
            Method::DELETE => self.unbind(p),
            _ => self.query(p),
        }
    }

    fn bind_ax(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let a = p.req_number("origNum")?;
        let area = p.area_code()?;
        let loose = p.loose_area_match()? || area.is_none();
        let call_direction = p.u64_in("callDirection", 0..=2)?.unwrap_or(0);
        let duration = lifetime(p, "duration")?.unwrap_or(DEFAULT_DURATION);
        let yb_duration = lifetime(p, "ybDuration")?.unwrap_or(0);
        let record_flag = p.bool("recordFlag")?;
        let record_hint_tone = ctx.opt_tone(p, "recordHintTone")?;
        pre_voice(ctx, p, "preVoiceX")?;
        let user_data = p.user_data()?;
        ctx.check_record_flag(record_flag)?;

        if self.by_a.get(&a).is_some_and(|n| *n >= MAX_X_PER_A) {
            return Err(Fail::new(codes::AX_TOO_MANY_NUMBERS));
        }
        let x = ctx
            .numbers
            .pick(area.as_deref(), loose, |x| !self.by_x.contains_key(x))
            .ok_or_else(|| Fail::new(codes::AX_INSUFFICIENT_NUMBERS))?;
        self.seq += 1;
        let id = new_subscription_id();
        let expires_at = expiry(ctx.now, duration);
        let ax = Ax {
            id: id.clone(),
            a,
            x: x.clone(),
            call_direction,
            duration,
            yb_duration,
            record_flag: record_flag.unwrap_or(false),
            record_hint_tone,
            user_data,
            subscribe_time: ctx.now,
            expires_at,
            expiry_key: expires_at.map(|at| self.expiry.insert(at, Due::Ax(id.clone()))),
            seq: self.seq,
            ybs: Vec::new(),
        };
        *self.by_a.entry(ax.a.clone()).or_default() += 1;
        self.by_x.insert(x.clone(), id.clone());
        self.axs.insert(id.clone(), ax);
        ok(&AxybBindResponse {
            subscription_id: id,
            relation_number: x,
        })
    }

    fn bind_yb(&mut self, ctx: Ctx<'_>, p: &Params) -> Outcome {
        let b = p.req_number("origNum")?;
        let id = p.req_str("subscriptionId")?;
        let area = p.area_code()?;
        let loose = p.loose_area_match()? || area.is_none();
        let yb_duration = lifetime(p, "ybDuration")?;
        pre_voice(ctx, p, "preVoiceY")?;

        let ax = self
            .axs
            .get(&id)
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        if ax.ybs.iter().any(|yb| yb.b == b) {
            return Err(Fail::new(codes::NUMBER_ALREADY_BOUND));
        }
        let max = ctx.app.max_relations_per_y;
        let load = |y: &str| self.y_load.get(y).copied().unwrap_or(0);
        let eligible = |y: &str| y != ax.x && load(y) < max && !ax.ybs.iter().any(|yb| yb.y == y);
        let y = ctx
            .numbers
            .candidates(area.as_deref(), loose, eligible)
            .into_iter()
            .min_by_key(|y| load(y))
            .map(str::to_owned)
            .ok_or_else(|| Fail::new(codes::INSUFFICIENT_NUMBERS))?;
        let yb_duration = yb_duration.unwrap_or(ax.yb_duration);
        let expires_at = match (expiry(ctx.now, yb_duration), ax.expires_at) {
            (Some(yb), Some(ax)) => Some(yb.min(ax)),
            (yb, _) => yb,
        };
        self.seq += 1;
        let yb = Yb {
            y: y.clone(),
            b,
            yb_duration,
            expires_at,
            expiry_key: expires_at.map(|at| {
                let due = Due::Yb {
                    ax: id.clone(),
                    y: y.clone(),
                };
                self.expiry.insert(at, due)
            }),
            subscribe_time: ctx.now,
            seq: self.seq,
        };
        *self.y_load.entry(y.clone()).or_default() += 1;
        if let Some(ax) = self.axs.get_mut(&id) {
            ax.ybs.push(yb);
        }
        ok(&AxybBindResponse {
            subscription_id: id,
            relation_number: y,
        })
    }

    fn unbind(&mut self, p: &Params) -> Outcome {
        let id = p.req_str("subscriptionId")?;
        let y = p.number("yNum")?;
        let b = p.number("bNum")?;
        let ax = self
            .axs
            .get(&id)
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        let found = match (y, b) {
            (Some(y), _) => ax.ybs.iter().find(|yb| yb.y == y),
            (None, Some(b)) => ax.ybs.iter().find(|yb| yb.b == b),
            (None, None) => {
                self.remove_ax(&id);
                return done();
            }
        };
        let y = found
            .map(|yb| yb.y.clone())
            .ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        self.remove_yb(&id, &y);
        done()
    }

    fn query(&self, p: &Params) -> Outcome {
        let ax = match (p.str("subscriptionId")?, p.number("relationNum")?) {
            (Some(id), _) => self.axs.get(&id),
            (None, Some(x)) => self.by_x.get(&x).and_then(|id| self.axs.get(id)),
            (None, None) => return Err(Fail::invalid("subscriptionId")),
        };
        let ax = ax.ok_or_else(|| Fail::new(codes::RECORD_NOT_EXIST))?;
        let base = AxybRecord {
            bind_id: ax.id.clone(),
            num_a: ax.a.clone(),
            num_x: ax.x.clone(),
            num_y: None,
            num_b: None,
            record_flag: Some(ax.record_flag),
            record_hint_tone: ax.record_hint_tone.clone(),
            subscribe_time: Some(format_subscribe_time(ax.subscribe_time)),
            call_direction: Some(ax.call_direction),
            duration: Some(ax.duration),
            yb_duration: Some(ax.yb_duration),
            user_data: ax.user_data.clone(),
        };
        let mut list: Vec<AxybRecord> = ax
            .ybs
            .iter()
            .map(|yb| AxybRecord {
                num_y: Some(yb.y.clone()),
                num_b: Some(yb.b.clone()),
                yb_duration: Some(yb.yb_duration),
                subscribe_time: Some(format_subscribe_time(yb.subscribe_time)),
                ..base.clone()
            })
            .collect();
        if list.is_empty() {
            list.push(base);
        }
        ok(&AxybQueryResponse {
            xy_relation_num_list: list,
        })
    }

    fn remove_ax(&mut self, id: &str) {
        let Some(ax) = self.axs.remove(id) else {
            return;
        };
        self.expiry.remove(ax.expiry_key);
        self.by_x.remove(&ax.x);
        if let Some(n) = self.by_a.get_mut(&ax.a) {
            *n -= 1;
            if *n == 0 {
                self.by_a.remove(&ax.a);
            }
        }
        for yb in ax.ybs {
            self.release_y(&yb);
        }
    }

    fn remove_yb(&mut self, id: &str, y: &str) {
        let Some(ax) = self.axs.get_mut(id) else {
            return;
        };
        let Some(at) = ax.ybs.iter().position(|yb| yb.y == y) else {
            return;
        };
        let yb = ax.ybs.remove(at);
        self.release_y(&yb);
    }

    fn release_y(&mut self, yb: &Yb) {
        self.expiry.remove(yb.expiry_key);
        if let Some(n) = self.y_load.get_mut(&yb.y) {
            *n -= 1;
            if *n == 0 {
                self.y_load.remove(&yb.y);
            }
        }
    }

    pub fn purge(&mut self, now: OffsetDateTime) {
        for due in self.expiry.pop_due(now) {
            match due {
                Due::Ax(id) => self.remove_ax(&id),
                Due::Yb { ax, y } => self.remove_yb(&ax, &y),
            }
        }
    }

    /// Drops the AX using `number` as X and every YB using it as Y.
    pub fn drop_number(&mut self, number: &str) {
        if let Some(id) = self.by_x.get(number).cloned() {
            self.remove_ax(&id);
        }
        let users: Vec<String> = self
            .axs
            .values()
            .filter(|ax| ax.ybs.iter().any(|yb| yb.y == number))
            .map(|ax| ax.id.clone())
            .collect();
        for id in users {
            self.remove_yb(&id, number);
        }
    }

    pub fn list(&self) -> Vec<BindingView> {
        let mut views = Vec::new();
        for ax in self.axs.values() {
            let view = BindingView {
                expires_at: ax.expires_at.map(rfc3339),
                options: ax.options(),
                ..BindingView::new(Mode::Axyb, &ax.id, &ax.x, &ax.a, ax.seq)
            };
            if ax.ybs.is_empty() {
                views.push(view);
                continue;
            }
            for yb in &ax.ybs {
                let expires = match (ax.expires_at, yb.expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                views.push(BindingView {
                    y: Some(yb.y.clone()),
                    b: Some(yb.b.clone()),
                    expires_at: expires.map(rfc3339),
                    order: yb.seq,
                    ..view.clone()
                });
            }
        }
        views
    }
}

/// What a call needs (notifications.md §1): the relation on an X, those using a Y, and a Y for
/// a B who calls X unannounced (§2.4: the platform allocates one).
impl AxybState {
    pub(crate) fn call_view_of_x(&self, x: &str) -> Option<crate::call::AxybView> {
        self.axs.get(self.by_x.get(x)?).map(Ax::call_view)
    }

    pub(crate) fn call_views_with_y(&self, y: &str) -> Vec<crate::call::AxybView> {
        let mut axs: Vec<&Ax> = self
            .axs
            .values()
            .filter(|ax| ax.ybs.iter().any(|yb| yb.y == y))
            .collect();
        axs.sort_by_key(|ax| ax.seq);
        axs.into_iter().map(Ax::call_view).collect()
    }

    /// Binds a YB for `b` under AX `id` as the YB step would; the Y, or `None` when none is free.
    pub(crate) fn allocate_y_for_call(
        &mut self,
        ctx: Ctx<'_>,
        id: &str,
        b: &str,
    ) -> Option<String> {
        let request = serde_json::json!({"subscriptionId": id, "origNum": b});
        let params = Params::from_json(request.to_string().as_bytes()).ok()?;
        let answer = self.bind_yb(ctx, &params).ok()?;
        answer.get("relationNumber")?.as_str().map(str::to_owned)
    }
}

impl Ax {
    fn call_view(&self) -> crate::call::AxybView {
        crate::call::AxybView {
            bound: crate::call::Bound {
                id: Some(self.id.clone()),
                user_data: self.user_data.clone(),
                record_flag: self.record_flag,
                max_minutes: 0,
            },
            a: self.a.clone(),
            x: self.x.clone(),
            call_direction: self.call_direction,
            ybs: self
                .ybs
                .iter()
                .map(|yb| (yb.y.clone(), yb.b.clone()))
                .collect(),
        }
    }
}
