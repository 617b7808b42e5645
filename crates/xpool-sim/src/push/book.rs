//! The record of every push and what is still due, on the simulator's clock: retries of failed
//! Notify pushes (notifications.md §6) and CDRs waiting for their batch (§2.1). Pure
//! bookkeeping, no I/O: [`super::Pushes`] sends, this decides what and when.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::super::state::rfc3339;
use xpool_platform::push::{FeeInfo, MAX_FEES_PER_PUSH, PushKind};

/// Pushes kept for `/sim/pushes`; beyond this the oldest are forgotten.
const MAX_RECORDS: usize = 10_000;

/// Whether the sender waits for a decision (§1.4, §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Informational: answered with an empty 200, retried on failure.
    Notify,
    /// Answered with a decision; never retried (a caller is waiting).
    Block,
}

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An HTTP answer: status and body (cut to a bounded length).
    Http { status: u16, body: String },
    /// No answer: connection refused, timeout, reset, …
    Failed(String),
}

impl Answer {
    /// Only HTTP 200 counts as delivered (§0.5, §6).
    pub fn delivered(&self) -> bool {
        matches!(self, Answer::Http { status: 200, .. })
    }
}

#[derive(Debug)]
struct Attempt {
    /// On the simulator's clock.
    at: OffsetDateTime,
    answer: Answer,
}

/// One push and its attempts.
#[derive(Debug)]
struct Record {
    app_key: String,
    kind: PushKind,
    delivery: Delivery,
    url: String,
    body: Value,
    attempts: Vec<Attempt>,
    first_failure: Option<OffsetDateTime>,
    next_at: Option<OffsetDateTime>,
}

/// A push to (re)send: which record, and where and what.
#[derive(Debug, Clone)]
pub(crate) struct Send {
    pub id: u64,
    pub app_key: String,
    pub url: String,
    pub body: Value,
}

/// A CDR waiting for its batch.
#[derive(Debug)]
struct PendingCdr {
    app_key: String,
    url: String,
    fee: FeeInfo,
}

/// Work that is due.
#[derive(Debug)]
pub(crate) enum Due {
    /// Re-send this push.
    Retry(Send),
    /// Push these CDRs of one app, at most [`MAX_FEES_PER_PUSH`] per push.
    Cdrs {
        app_key: String,
        url: String,
        fees: Vec<FeeInfo>,
    },
}

/// Every push made, and what is due when.
#[derive(Debug, Default)]
pub(crate) struct Book {
    records: BTreeMap<u64, Record>,
    /// (due, record id) of the retries to make.
    retries: BTreeSet<(OffsetDateTime, u64)>,
    /// (due, sequence) of CDRs not yet pushed.
    cdrs: BTreeMap<(OffsetDateTime, u64), PendingCdr>,
    seq: u64,
}

impl Book {
    /// Records a push about to be sent; returns its id.
    pub fn open(
        &mut self,
        app_key: &str,
        kind: PushKind,
        delivery: Delivery,
        url: &str,
        body: Value,
    ) -> u64 {
        self.seq += 1;
        let record = Record {
            app_key: app_key.to_owned(),
            kind,
            delivery,
            url: url.to_owned(),
            body,
            attempts: Vec::new(),
            first_failure: None,
            next_at: None,
        };
        self.records.insert(self.seq, record);
        while self.records.len() > MAX_RECORDS {
            self.records.pop_first();
        }
        self.seq
    }

    /// What to send for push `id`.
    pub fn send_of(&self, id: u64) -> Option<Send> {
        let record = self.records.get(&id)?;
        Some(Send {
            id,
            app_key: record.app_key.clone(),
            url: record.url.clone(),
            body: record.body.clone(),
        })
    }

    /// Records an attempt's answer. A failed Notify push is booked for its next retry,
    /// `schedule[n - 1]` minutes after its first failure once `n` attempts failed; returns when.
    pub fn settle(
        &mut self,
        id: u64,
        at: OffsetDateTime,
        answer: Answer,
        schedule: &[u64],
    ) -> Option<OffsetDateTime> {
        let record = self.records.get_mut(&id)?;
        let delivered = answer.delivered();
        record.attempts.push(Attempt { at, answer });
        record.next_at = None;
        if delivered || record.delivery == Delivery::Block {
            return None;
        }
        let first = *record.first_failure.get_or_insert(at);
        let minutes = *schedule.get(record.attempts.len() - 1)?;
        let minutes = i64::try_from(minutes).ok()?;
        let next = first.checked_add(time::Duration::minutes(minutes))?;
        record.next_at = Some(next);
        self.retries.insert((next, id));
        Some(next)
    }

    /// Books a CDR, pushed once the clock reaches `due` together with every other CDR of the
    /// same app and URL due by then.
    pub fn book_cdr(&mut self, app_key: &str, url: &str, fee: FeeInfo, due: OffsetDateTime) {
        self.seq += 1;
        let pending = PendingCdr {
            app_key: app_key.to_owned(),
            url: url.to_owned(),
            fee,
        };
        self.cdrs.insert((due, self.seq), pending);
    }

    /// The earliest instant anything is due.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let retry = self.retries.first().map(|(at, _)| *at);
        let cdr = self.cdrs.first_key_value().map(|((at, _), _)| *at);
        match (retry, cdr) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the earliest work due at `now`: a retry, or the batch of CDRs of the earliest due
    /// CDR's app and URL (every such CDR due by `now`, in order).
    pub fn claim(&mut self, now: OffsetDateTime) -> Option<Due> {
        let retry = self.retries.first().copied().filter(|(at, _)| *at <= now);
        let cdr = self.cdrs.first_key_value().map(|(key, _)| *key);
        let cdr = cdr.filter(|(at, _)| *at <= now);
        match (retry, cdr) {
            (Some(r), Some(c)) if c.0 < r.0 => self.claim_cdrs(now),
            (Some((at, id)), _) => {
                self.retries.remove(&(at, id));
                match self.send_of(id) {
                    Some(send) => Some(Due::Retry(send)),
                    // Forgotten meanwhile: nothing to send, look further.
                    None => self.claim(now),
                }
            }
            (None, Some(_)) => self.claim_cdrs(now),
            (None, None) => None,
        }
    }

    fn claim_cdrs(&mut self, now: OffsetDateTime) -> Option<Due> {
        let (_, first) = self.cdrs.pop_first()?;
        let keys: Vec<(OffsetDateTime, u64)> = self
            .cdrs
            .iter()
            .take_while(|((at, _), _)| *at <= now)
            .filter(|(_, c)| c.app_key == first.app_key && c.url == first.url)
            .map(|(key, _)| *key)
            .collect();
        let mut fees = vec![first.fee];
        fees.extend(
            keys.iter()
                .filter_map(|k| self.cdrs.remove(k))
                .map(|c| c.fee),
        );
        Some(Due::Cdrs {
            app_key: first.app_key,
            url: first.url,
            fees,
        })
    }

    /// CDRs of `app_key` not pushed yet.
    pub fn pending_cdrs(&self, app_key: &str) -> usize {
        self.cdrs.values().filter(|c| c.app_key == app_key).count()
    }

    /// The pushes to `app_key`, oldest first, as `/sim/pushes` shows them.
    pub fn list(&self, app_key: &str) -> Vec<Value> {
        self.records
            .iter()
            .filter(|(_, r)| r.app_key == app_key)
            .map(|(id, r)| r.view(*id))
            .collect()
    }
}

impl Record {
    fn view(&self, id: u64) -> Value {
        let attempts: Vec<Value> = self
            .attempts
            .iter()
            .map(|a| match &a.answer {
                Answer::Http { status, body } => {
                    json!({"at": rfc3339(a.at), "status": status, "body": body})
                }
                Answer::Failed(error) => json!({"at": rfc3339(a.at), "error": error}),
            })
            .collect();
        json!({
            "id": id,
            "kind": self.kind.as_str(),
            "mode": match self.delivery {
                Delivery::Notify => "Notify",
                Delivery::Block => "Block",
            },
            "url": self.url,
            "body": self.body,
            "attempts": attempts,
            "delivered": self.attempts.iter().any(|a| a.answer.delivered()),
            "nextAttemptAt": self.next_at.map(rfc3339),
        })
    }
}

/// Splits a batch into pushes of at most [`MAX_FEES_PER_PUSH`] records.
pub(crate) fn batches(fees: Vec<FeeInfo>) -> Vec<Vec<FeeInfo>> {
    let mut out = Vec::new();
    let mut fees = fees.into_iter().peekable();
    while fees.peek().is_some() {
        out.push(fees.by_ref().take(MAX_FEES_PER_PUSH).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SCHEDULE: [u64; 6] = [1, 4, 9, 106, 203, 300];
    const T0: OffsetDateTime = datetime!(2024-03-01 02:00:00 UTC);

    fn minutes(n: i64) -> OffsetDateTime {
        T0 + time::Duration::minutes(n)
    }

    fn failed() -> Answer {
        Answer::Http {
            status: 500,
            body: String::new(),
        }
    }

    #[test]
    fn retries_follow_the_schedule_from_the_first_failure_then_stop() {
        let mut book = Book::default();
        let id = book.open(
            "k",
            PushKind::CallEvent,
            Delivery::Notify,
            "http://r/",
            json!({}),
        );
        let mut at = T0;
        for offset in SCHEDULE {
            let next = book.settle(id, at, failed(), &SCHEDULE).unwrap();
            assert_eq!(next, minutes(i64::try_from(offset).unwrap()));
            assert!(book.claim(next - time::Duration::seconds(1)).is_none());
            let Some(Due::Retry(send)) = book.claim(next) else {
                panic!("no retry due at {next}");
            };
            assert_eq!(send.id, id);
            // Retries fire late when the clock jumps; the schedule stays anchored.
            at = next + time::Duration::seconds(30);
        }
        assert_eq!(
            book.settle(id, at, failed(), &SCHEDULE),
            None,
            "six retries at most"
        );
        assert!(book.next_due().is_none());
        let view = &book.list("k")[0];
        assert_eq!(view["attempts"].as_array().unwrap().len(), 7);
        assert_eq!(view["delivered"], false);
    }

    #[test]
    fn success_and_block_pushes_are_not_retried() {
        let mut book = Book::default();
        let ok = book.open("k", PushKind::Fee, Delivery::Notify, "http://r/", json!({}));
        let failed_once = book.settle(ok, T0, Answer::Failed("refused".into()), &SCHEDULE);
        assert_eq!(failed_once, Some(minutes(1)));
        let answer = Answer::Http {
            status: 200,
            body: String::new(),
        };
        assert_eq!(book.settle(ok, minutes(1), answer, &SCHEDULE), None);
        let block = book.open(
            "k",
            PushKind::CallEvent,
            Delivery::Block,
            "http://r/",
            json!({}),
        );
        assert_eq!(book.settle(block, T0, failed(), &SCHEDULE), None);
        let views = book.list("k");
        assert_eq!(views[0]["delivered"], true);
        assert_eq!(views[0]["attempts"][0]["error"], "refused");
        assert_eq!(views[1]["mode"], "Block");
        assert!(book.list("other").is_empty());
    }

    #[test]
    fn cdrs_due_together_go_in_one_batch_per_app_and_url() {
        let mut book = Book::default();
        let fee = |icid: &str| FeeInfo {
            icid: Some(icid.into()),
            ..Default::default()
        };
        let second = T0 + time::Duration::seconds(1);
        book.book_cdr("k", "http://r/cdr", fee("a"), second);
        book.book_cdr("other", "http://o/cdr", fee("b"), second);
        book.book_cdr("k", "http://r/cdr", fee("c"), second);
        book.book_cdr("k", "http://r/cdr", fee("d"), minutes(5));
        assert_eq!(book.next_due(), Some(second));
        assert!(book.claim(T0).is_none());
        let Some(Due::Cdrs { app_key, fees, .. }) = book.claim(second) else {
            panic!("no batch");
        };
        assert_eq!(app_key, "k");
        let icids: Vec<_> = fees.iter().map(|f| f.icid.clone().unwrap()).collect();
        assert_eq!(icids, ["a", "c"]);
        assert!(
            matches!(book.claim(second), Some(Due::Cdrs { app_key, .. }) if app_key == "other")
        );
        assert!(book.claim(second).is_none());
        assert_eq!(book.pending_cdrs("k"), 1);
        assert_eq!(
            batches(vec![FeeInfo::default(); 120])
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [50, 50, 20]
        );
    }
}
