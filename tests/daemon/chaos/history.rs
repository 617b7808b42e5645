//! What the test has seen: every acknowledged binding and request id, what became of them,
//! and the broken rules noticed under load.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use xpool::grpc::pb;

use super::{APPS, AXB_CAP, now_ms};
use crate::support::{slot, slot_conflict};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A binding the daemon acknowledged (or that a check found and adopted).
#[derive(Debug, Clone)]
pub struct Tracked {
    pub app: usize,
    /// As acknowledged: its slot must not change while it is ACTIVE.
    pub binding: pb::Binding,
    /// Its deadline, wall-clock ms (the daemon's clock is this machine's).
    pub deadline_ms: Option<i64>,
    /// An Unbind was sent (acknowledged or not): ACTIVE, RELEASING and RELEASED are all fine.
    pub unbind_sent: bool,
    /// RELEASED or EXPIRED, once an answer or a check said so: final.
    pub ended: Option<pb::BindingState>,
}

impl Tracked {
    pub fn new(app: usize, binding: pb::Binding) -> Tracked {
        let deadline_ms = super::rules::deadline_ms(&binding);
        Tracked {
            app,
            binding,
            deadline_ms,
            unbind_sent: false,
            ended: None,
        }
    }

    /// Certainly holding its slot at `t_ms`: nobody unbound it and its deadline is later.
    pub fn holds_at(&self, t_ms: i64) -> bool {
        self.ended.is_none() && !self.unbind_sent && self.deadline_ms.is_none_or(|d| d > t_ms)
    }
}

/// A Bind sent with a request id. Its party A is used by no other request, so the platform's
/// bindings of that party are the bindings of this request id.
#[derive(Debug, Clone)]
pub struct Request {
    pub app: usize,
    pub req: pb::BindRequest,
    /// The binding id of the acknowledged answer.
    pub acked: Option<String>,
    /// Refused for good (no free slot, a party at its limit): not retried.
    pub refused: bool,
}

#[derive(Debug, Default)]
pub struct Counts {
    pub ops: usize,
    pub binds_acked: usize,
    pub refused: BTreeMap<String, usize>,
    pub unbinds_acked: usize,
    pub retries: usize,
    pub interrupted: usize,
    pub adopted: usize,
}

#[derive(Debug, Default)]
pub struct History {
    pub bindings: BTreeMap<String, Tracked>,
    /// By request id (unique across apps).
    pub requests: BTreeMap<String, Request>,
    /// Broken rules noticed under load; a check fails the round on any.
    pub violations: Vec<String>,
    pub counts: Counts,
}

impl History {
    /// A Bind's answer: a new binding must be ACTIVE on a slot no live binding holds; a repeated
    /// request id must get the binding it got before.
    pub fn bind_answered(&mut self, app: usize, rid: &str, b: pb::Binding) {
        self.counts.binds_acked += 1;
        if !rid.is_empty() {
            let r = self
                .requests
                .get_mut(rid)
                .expect("a sent request is recorded");
            match &r.acked {
                Some(before) if *before != b.binding_id => self.violations.push(format!(
                    "request {rid} answered with binding {} after {before}: {b:?}",
                    b.binding_id
                )),
                _ => r.acked = Some(b.binding_id.clone()),
            }
            if b.request_id != rid || b.party_a != r.req.party_a {
                self.violations.push(format!(
                    "request {rid} answered with another's binding {b:?}"
                ));
            }
        }
        if let Some(t) = self.bindings.get(&b.binding_id) {
            if b.state() == pb::BindingState::Active && slot(&b) != slot(&t.binding) {
                self.violations.push(format!(
                    "binding {} moved from {:?} to {:?}",
                    b.binding_id,
                    slot(&t.binding),
                    slot(&b)
                ));
            }
            return;
        }
        // A binding first seen on a retry (its first answer was lost) may have expired since.
        let expired = b.state() == pb::BindingState::Expired
            && b.expire_time
                .as_ref()
                .is_some_and(|t| xpool::grpc::millis(t) <= now_ms());
        if b.state() != pb::BindingState::Active && !expired {
            self.violations
                .push(format!("a Bind made a binding that is not ACTIVE: {b:?}"));
        }
        self.check_new_slot(app, &b);
        self.bindings
            .insert(b.binding_id.clone(), Tracked::new(app, b));
    }

    /// A slot the daemon just handed out must not be held by a binding the test knows is live.
    fn check_new_slot(&mut self, app: usize, new: &pb::Binding) {
        let now = now_ms();
        let live: Vec<&pb::Binding> = self
            .bindings
            .values()
            .filter(|t| t.app == app && t.holds_at(now))
            .map(|t| &t.binding)
            .collect();
        if let Some(problem) = slot_conflict(APPS[app].mode, AXB_CAP, new, &live) {
            self.violations.push(format!(
                "{}: a Bind handed out a held slot: {problem}",
                APPS[app].name
            ));
        }
    }

    /// An Unbind's answer: RELEASED, or EXPIRED if its deadline had passed.
    pub fn unbind_answered(&mut self, id: &str, b: &pb::Binding) {
        self.counts.unbinds_acked += 1;
        let t = self.bindings.get_mut(id).expect("a tracked binding");
        let expired_in_time =
            b.state() == pb::BindingState::Expired && t.deadline_ms.is_some_and(|d| d <= now_ms());
        if b.binding_id != id || !(b.state() == pb::BindingState::Released || expired_in_time) {
            self.violations
                .push(format!("Unbind of {id} answered {b:?}"));
            return;
        }
        t.ended = Some(b.state());
    }
}
