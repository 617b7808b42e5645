//! Injected faults and per-app request statistics, both driven by the `/sim/` controls.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::Rng as _;
use serde::Serialize;

use super::reply::Fail;
use xpool_platform::codes;

/// The faults injected into one app's authenticated requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Faults {
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// Probability of 500 / 1010001.
    pub error_rate: f64,
    /// Probability of 403 / 1010010 flow control.
    pub flow_control_rate: f64,
    /// Probability that a successful change is committed but never answered.
    pub lost_response_rate: f64,
    /// Requests per second allowed (burst = the rate); beyond it 1010010 flow control.
    pub rps_limit: Option<u32>,
}

/// Faults plus the token bucket that enforces `rps_limit`.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub faults: Faults,
    bucket: Option<Bucket>,
}

impl FaultState {
    /// Replaces the faults and restarts the rate limiter full.
    pub fn set(&mut self, faults: Faults) {
        self.bucket = faults
            .rps_limit
            .map(|rate| Bucket::new(rate, Instant::now()));
        self.faults = faults;
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
        state.set(Faults {
            error_rate: 1.0,
            ..Faults::default()
        });
        assert_eq!(state.check(Instant::now()).unwrap_err().code, "1010001");
        state.set(Faults {
            flow_control_rate: 1.0,
            ..Faults::default()
        });
        let fail = state.check(Instant::now()).unwrap_err();
        assert_eq!((fail.code, fail.status.as_u16()), ("1010010", 403));
        state.set(Faults::default());
        assert!(state.check(Instant::now()).is_ok() && !state.lose_response());
    }
}
