//! Injected faults and per-app request statistics, both driven by the `/sim/` controls.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde::Serialize;

use super::reply::Fail;
use xpool_platform::codes;

/// The faults injected into one app's authenticated requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Faults {
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// The app stalls for this long from when the faults are set, as a platform whose process
    /// is stopped: requests are held unanswered and carried out when the stall ends (or the
    /// faults are set again), whether or not their client still waits.
    pub hang_ms: u64,
    /// Probability of 500 / 1010001.
    pub error_rate: f64,
    /// Probability of 403 / 1010010 flow control.
    pub flow_control_rate: f64,
    /// Probability that a successful change is committed but never answered.
    pub lost_response_rate: f64,
    /// Requests per second allowed (burst = the rate); beyond it 1010010 flow control.
    pub rps_limit: Option<u32>,
}

/// Faults plus the token bucket that enforces `rps_limit` and the stall that `hang_ms` sets.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub faults: Faults,
    bucket: Option<Bucket>,
    hang: Option<Hang>,
}

/// A stall in force: until when, and the requests held meanwhile, oldest first.
#[derive(Debug)]
struct Hang {
    until: Instant,
    held: Vec<Held>,
}

/// A request held by a stall: carrying it out (and answering it, if anyone still listens).
pub(crate) struct Held(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Held {
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Held(Box::pin(work))
    }

    /// Carries it out now.
    pub async fn run(self) {
        self.0.await;
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// Carries out the requests a stall held, one after another and newest first: a platform
/// resuming from a stall serves what queued up in no particular order, and this one lets a
/// request overtake every request sent before it.
pub(crate) async fn release(held: Vec<Held>) {
    for work in held.into_iter().rev() {
        work.run().await;
    }
}

impl FaultState {
    /// Replaces the faults, restarts the rate limiter full and starts the stall `hang_ms` asks
    /// for. Returns the requests an earlier stall held, for [`release`].
    pub fn set(&mut self, faults: Faults, now: Instant) -> Vec<Held> {
        self.bucket = faults.rps_limit.map(|rate| Bucket::new(rate, now));
        let ended = self.hang.take().map(|h| h.held).unwrap_or_default();
        self.hang = (faults.hang_ms > 0).then(|| Hang {
            until: now + Duration::from_millis(faults.hang_ms),
            held: Vec::new(),
        });
        self.faults = faults;
        ended
    }

    /// Whether the app stalls at `now`.
    pub fn hung(&self, now: Instant) -> bool {
        self.hang.as_ref().is_some_and(|h| h.until > now)
    }

    /// Holds `work` until the stall ends; gives it back when the app does not stall at `now`.
    pub fn hold(&mut self, work: Held, now: Instant) -> Result<(), Held> {
        match &mut self.hang {
            Some(hang) if hang.until > now => {
                hang.held.push(work);
                Ok(())
            }
            _ => Err(work),
        }
    }

    /// Ends a stall whose time is up at `now` (a later stall set since is left alone) and
    /// returns the requests it held, for [`release`].
    pub fn end_hang(&mut self, now: Instant) -> Vec<Held> {
        match &self.hang {
            Some(hang) if hang.until <= now => self.hang.take().map(|h| h.held).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Decides the fault for one request (after its latency): flow control or internal error.
    pub fn check(&mut self, now: Instant) -> Result<(), Fail> {
        if let Some(bucket) = &mut self.bucket
            && !bucket.try_take(now)
        {
            return Err(Fail::flow_control());
        }
        let mut rng = rand::rng();
        if self.faults.flow_control_rate > 0.0 && rng.random_bool(self.faults.flow_control_rate) {
            return Err(Fail::flow_control());
        }
        if self.faults.error_rate > 0.0 && rng.random_bool(self.faults.error_rate) {
            return Err(Fail::new(codes::INTERNAL_SYSTEM_ERROR));
        }
        Ok(())
    }

    /// Rolls whether a committed change loses its response.
    pub fn lose_response(&self) -> bool {
        self.faults.lost_response_rate > 0.0
            && rand::rng().random_bool(self.faults.lost_response_rate)
    }
}

/// A token bucket of `rate` tokens per second holding at most `rate` tokens.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Self {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Requests that authenticated as one app, by the result code answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Stats {
    pub requests: u64,
    /// Result code (or `"lost"` for an unanswered change) ⇒ count.
    pub by_code: BTreeMap<String, u64>,
}

impl Stats {
    /// Counts one answered (or lost) request.
    pub fn count(&mut self, code: &str) {
        self.requests += 1;
        *self.by_code.entry(code.to_owned()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_of_the_rate_then_refills() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(5, t0);
        assert_eq!((0..10).filter(|_| bucket.try_take(t0)).count(), 5);
        assert!(!bucket.try_take(t0 + Duration::from_millis(100)));
        assert!(bucket.try_take(t0 + Duration::from_millis(300)));
    }

    #[test]
    fn certain_faults_always_fire() {
        let mut state = FaultState::default();
        let now = Instant::now();
        state.set(
            Faults {
                error_rate: 1.0,
                ..Faults::default()
            },
            now,
        );
        assert_eq!(state.check(now).unwrap_err().code, "1010001");
        state.set(
            Faults {
                flow_control_rate: 1.0,
                ..Faults::default()
            },
            now,
        );
        let fail = state.check(now).unwrap_err();
        assert_eq!((fail.code, fail.status.as_u16()), ("1010010", 403));
        state.set(Faults::default(), now);
        assert!(state.check(now).is_ok() && !state.lose_response());
    }

    fn hang_ms(ms: u64) -> Faults {
        Faults {
            hang_ms: ms,
            ..Faults::default()
        }
    }

    /// A held request that records `n` in `log` when it is carried out.
    fn logging(log: &std::sync::Arc<std::sync::Mutex<Vec<u32>>>, n: u32) -> Held {
        let log = std::sync::Arc::clone(log);
        Held::new(async move { log.lock().unwrap().push(n) })
    }

    #[tokio::test]
    async fn a_stall_holds_requests_until_it_ends_then_releases_them_newest_first() {
        let log = std::sync::Arc::default();
        let t0 = Instant::now();
        let mut state = FaultState::default();
        assert!(state.set(hang_ms(1000), t0).is_empty());
        assert!(state.hung(t0));
        for n in 1..=3 {
            assert!(state.hold(logging(&log, n), t0).is_ok());
        }
        // Not over yet: nothing is released.
        assert!(state.end_hang(t0 + Duration::from_millis(999)).is_empty());
        let later = t0 + Duration::from_millis(1000);
        assert!(!state.hung(later));
        assert!(
            state.hold(logging(&log, 4), later).is_err(),
            "over: not held"
        );
        release(state.end_hang(later)).await;
        assert_eq!(*log.lock().unwrap(), [3, 2, 1]);
        assert!(state.end_hang(later).is_empty(), "released once");
    }

    #[tokio::test]
    async fn setting_the_faults_again_ends_a_stall_at_once() {
        let log = std::sync::Arc::default();
        let t0 = Instant::now();
        let mut state = FaultState::default();
        state.set(hang_ms(60_000), t0);
        assert!(state.hold(logging(&log, 1), t0).is_ok());
        // A new stall replaces the old one: the old one's held requests go now, and the old
        // one's end (still ahead for the new one) releases nothing.
        let replaced = state.set(hang_ms(60_000), t0 + Duration::from_millis(10));
        assert!(state.hold(logging(&log, 2), t0).is_ok());
        release(replaced).await;
        assert_eq!(*log.lock().unwrap(), [1]);
        assert!(
            state
                .end_hang(t0 + Duration::from_millis(60_000))
                .is_empty()
        );
        release(state.set(Faults::default(), t0)).await;
        assert_eq!(*log.lock().unwrap(), [1, 2]);
        assert!(!state.hung(t0));
    }
}
