//! Pushes to the customer's server (notifications.md §0, §6): sending, signing, retrying and
//! batching CDRs, all on the simulator's clock.
//!
//! A push's first attempt is made by whoever causes it (a `/sim/call`, `/sim/sms` or
//! `/sim/numstatus` control), before that control answers. What comes later — retries of failed
//! Notify pushes and the CDR batches — is due at instants of the simulator's clock and is sent by
//! a *round*: the background job runs one whenever something falls due in real time, and
//! `POST /sim/clock` runs one after moving the clock and answers only when it is done, so a test
//! that advances the clock sees every push due by then made, without sleeping.

mod book;
mod sign;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) use book::Delivery;
use book::{Answer, Book, Due, batches};

use super::config::{PushSettings, SimAppConfig};
use super::state::{Clock, Sim, lock};
use xpool_platform::push::{self, FeeInfo, FeeNotification, PushKind};

/// The longest answer body kept for `/sim/pushes`.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Longest the background job sleeps before looking again.
const IDLE: Duration = Duration::from_secs(3600);

/// Every push the simulator made or still has to make.
#[derive(Debug)]
pub(crate) struct Pushes {
    settings: PushSettings,
    http: reqwest::Client,
    book: Mutex<Book>,
    /// Held for a whole round, so rounds run one at a time: `POST /sim/clock` waits for a round
    /// the background job started before running its own.
    rounds: tokio::sync::Mutex<()>,
    /// Wakes the background job when work is booked; a wake while it is busy is kept for later.
    wake: Notify,
}

impl Pushes {
    pub fn new(settings: PushSettings) -> Self {
        // With `rustls-no-provider`, rustls needs a process-wide provider (for https URLs);
        // installing twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .build()
            .unwrap_or_default();
        Pushes {
            settings,
            http,
            book: Mutex::new(Book::default()),
            rounds: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    /// Sends a Notify push now; a failure is booked for retry. True when it was delivered.
    pub async fn notify(
        &self,
        clock: &Clock,
        app: &SimAppConfig,
        url: &str,
        kind: PushKind,
        body: &impl Serialize,
    ) -> bool {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let id = lock(&self.book).open(&app.app_key, kind, Delivery::Notify, url, body.clone());
        self.attempt(clock, app, id, url, &body).await.delivered()
    }

    /// Sends a Block push once (it is never retried) and returns the body of a 200 answer.
    pub async fn block(
        &self,
        clock: &Clock,
        app: &SimAppConfig,
        url: &str,
        kind: PushKind,
        body: &impl Serialize,
    ) -> Option<String> {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let id = lock(&self.book).open(&app.app_key, kind, Delivery::Block, url, body.clone());
        match self.attempt(clock, app, id, url, &body).await {
            Answer::Http { status: 200, body } => Some(body),
            _ => None,
        }
    }

    /// Books a call's CDR for the batch pushed when the clock reaches `due`.
    pub fn book_cdr(&self, app: &SimAppConfig, url: &str, fee: FeeInfo, due: OffsetDateTime) {
        lock(&self.book).book_cdr(&app.app_key, url, fee, due);
        self.wake.notify_one();
    }

    /// The clock moved: the background job looks again at what is due when.
    pub fn clock_moved(&self) {
        self.wake.notify_one();
    }

    /// The pushes to one app, and how many of its CDRs wait for their batch.
    pub fn list(&self, app_key: &str) -> (Vec<Value>, usize) {
        let book = lock(&self.book);
        (book.list(app_key), book.pending_cdrs(app_key))
    }

    /// Makes every push due at the simulator's clock (looking again after each, so a clock jump
    /// past several retries makes them all); returns how many were made.
    pub async fn round(&self, sim: &Sim) -> usize {
        let _turn = self.rounds.lock().await;
        let mut made = 0;
        loop {
            let due = lock(&self.book).claim(sim.clock.now());
            match due {
                None => return made,
                Some(Due::Retry(send)) => {
                    made += 1;
                    if let Some(app) = sim.apps.get(&send.app_key) {
                        self.attempt(&sim.clock, &app.config, send.id, &send.url, &send.body)
                            .await;
                    }
                }
                Some(Due::Cdrs { app_key, url, fees }) => {
                    let Some(app) = sim.apps.get(&app_key) else {
                        continue;
                    };
                    for batch in batches(fees) {
                        made += 1;
                        let body = FeeNotification::new(batch);
                        self.notify(&sim.clock, &app.config, &url, PushKind::Fee, &body)
                            .await;
                    }
                }
            }
        }
    }

    /// One attempt of push `id`: sends, records the answer, books a retry if one is due.
    async fn attempt(
        &self,
        clock: &Clock,
        app: &SimAppConfig,
        id: u64,
        url: &str,
        body: &Value,
    ) -> Answer {
        let answer = self.send(app, url, body).await;
        let schedule = &self.settings.retry_minutes;
        let retry = lock(&self.book).settle(id, clock.now(), answer.clone(), schedule);
        if retry.is_some() {
            self.wake.notify_one();
        }
        tracing::debug!(app = %app.app_key, %url, id, ?answer, ?retry, "push attempt");
        answer
    }

    /// POSTs one body, signed for `app`; what came back.
    async fn send(&self, app: &SimAppConfig, url: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, push::CONTENT_TYPE)
            .timeout(Duration::from_millis(self.settings.timeout_ms))
            .body(bytes);
        let signing = self.settings.sign;
        let now = OffsetDateTime::now_utc();
        for (name, value) in sign::headers(signing, &app.app_key, &app.app_secret, now) {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer::Failed(describe(&e)),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => {
                let cut = bytes.len().min(MAX_ANSWER_BYTES);
                let body = String::from_utf8_lossy(&bytes[..cut]).into_owned();
                Answer::Http { status, body }
            }
            Err(e) => Answer::Failed(describe(&e)),
        }
    }
}

/// A failed request in a few words.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The innermost cause names the problem (e.g. "Connection refused").
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{what}: {cause}")
}

/// The background job: a round whenever something falls due in real time, until `cancel`.
pub(crate) async fn run(sim: Arc<Sim>, cancel: CancellationToken) {
    loop {
        let next = lock(&sim.pushes.book).next_due();
        let wait = next.map_or(IDLE, |due| {
            let left = Duration::try_from(due - sim.clock.now()).unwrap_or(Duration::ZERO);
            // A little late rather than early: the two clocks are read separately.
            (left + Duration::from_millis(10)).min(IDLE)
        });
        tokio::select! {
            () = cancel.cancelled() => return,
            () = sim.pushes.wake.notified() => continue,
            () = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = sim.pushes.round(&sim) => {}
        }
    }
}
