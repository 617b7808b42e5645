//! The per-app circuit breaker. One authentication failure opens it at once: the platform
//! blacklists an IP for 30 minutes after repeated failed authentications, so a wrong secret
//! must stop reaching the platform after the first failure. After a cool-off it lets one probe
//! call through (half-open); the probe's answer closes or re-opens it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe call is in flight; everyone else waits for its answer.
    HalfOpen,
}

/// The state of a breaker as `Breaker::circuit` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Calls go through.
    Closed,
    /// Calls are refused without reaching the platform.
    Open,
    /// The next call (or the one in flight) is a probe.
    HalfOpen,
}

/// Permission to send one call; report its outcome with [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Permit {
    Normal,
    Probe,
}

/// What came of a call, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The platform authenticated the call (whatever else it answered).
    Authenticated,
    /// The platform rejected the credentials: open for this long.
    AuthFailed(Duration),
    /// No platform answer (timeout, transport error): says nothing about credentials.
    NoAnswer,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: Mutex::new(State::Closed),
        }
    }
}

/// How long to tell callers to wait while a probe is out.
const PROBE_WAIT: Duration = Duration::from_secs(1);

impl Breaker {
    /// Lets a call through, or says how long until the circuit half-opens.
    pub fn admit(&self) -> Result<Permit, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed => Ok(Permit::Normal),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    *state = State::HalfOpen;
                    Ok(Permit::Probe)
                }
            }
            State::HalfOpen => Err(PROBE_WAIT),
        }
    }

    /// Without taking a permit: how long until a call could go, if not now.
    pub fn blocked_for(&self) -> Option<Duration> {
        match *self.lock() {
            State::Closed => None,
            State::Open { until } => {
                let now = Instant::now();
                (now < until).then(|| until - now)
            }
            State::HalfOpen => Some(PROBE_WAIT),
        }
    }

    /// Records the outcome of a call admitted with `permit`.
    pub fn record(&self, permit: Permit, verdict: Verdict) {
        let mut state = self.lock();
        match verdict {
            Verdict::AuthFailed(open_for) => {
                *state = State::Open {
                    until: Instant::now() + open_for,
                };
            }
            Verdict::Authenticated if permit == Permit::Probe || *state == State::HalfOpen => {
                *state = State::Closed;
            }
            Verdict::Authenticated => {}
            // The probe learned nothing: let the next call probe again.
            Verdict::NoAnswer if permit == Permit::Probe && *state == State::HalfOpen => {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
            Verdict::NoAnswer => {}
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.lock() == State::Closed
    }

    /// What the breaker is doing now, for people and dashboards.
    pub fn circuit(&self) -> Circuit {
        match *self.lock() {
            State::Closed => Circuit::Closed,
            State::Open { until } if Instant::now() < until => Circuit::Open,
            // The cool-off is over: the next call is the probe.
            State::Open { .. } | State::HalfOpen => Circuit::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_OFF: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn opens_at_once_and_half_opens_after_the_cool_off() {
        let b = Breaker::default();
        let p = b.admit().unwrap();
        b.record(p, Verdict::AuthFailed(COOL_OFF));
        assert_eq!(b.admit(), Err(COOL_OFF));

        tokio::time::advance(COOL_OFF).await;
        assert_eq!(b.admit(), Ok(Permit::Probe));
        // Only one probe at a time.
        assert_eq!(b.admit(), Err(PROBE_WAIT));
        b.record(Permit::Probe, Verdict::Authenticated);
        assert_eq!(b.admit(), Ok(Permit::Normal));
        assert!(b.is_closed());
    }

    /// A breaker whose probe, the first call after the cool-off, gets `verdict`.
    async fn probed(verdict: Verdict) -> Breaker {
        let b = Breaker::default();
        b.record(Permit::Normal, Verdict::AuthFailed(COOL_OFF));
        tokio::time::advance(COOL_OFF).await;
        let p = b.admit().unwrap();
        b.record(p, verdict);
        b
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = probed(Verdict::AuthFailed(COOL_OFF)).await;
        assert_eq!(b.admit(), Err(COOL_OFF));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_without_answer_lets_the_next_call_probe() {
        let b = probed(Verdict::NoAnswer).await;
        assert_eq!(b.admit(), Ok(Permit::Probe));
    }
}
