//! Per-app pacing: a governor rate limiter plus a pause that a flow-control answer sets.
//!
//! The limiter is generic over governor's clock so tests can drive it with
//! `governor::clock::FakeRelativeClock` (governor ignores tokio's paused time).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Which calls go first when several wait for the app's limiter: unbinds (and expiry) before
/// binds, binds before reconciliation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Background = 0,
    #[default]
    Normal = 1,
    Urgent = 2,
}

/// One app's limiter.
pub struct Limiter<C: Clock = DefaultClock> {
    gov: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Set by a flow-control answer: no call before this instant.
    paused_until: Mutex<Option<C::Instant>>,
    /// Callers waiting for a slot, per priority.
    waiting: [AtomicUsize; 3],
    /// The spacing of slots at the configured rate.
    slot: Duration,
}

/// Counts a waiter of one priority for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter<DefaultClock> {
    /// `rate` calls per second with bursts of up to `burst` calls.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32) -> Self {
        Self::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(rate: NonZeroU32, burst: NonZeroU32, clock: C) -> Self {
        let quota = Quota::per_second(rate).allow_burst(burst);
        Limiter {
            gov: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            paused_until: Mutex::new(None),
            waiting: Default::default(),
            slot: Duration::from_secs(1) / rate.get(),
        }
    }

    /// Takes a slot now, or says how long until one may be free.
    pub fn check(&self) -> Result<(), Duration> {
        let now = self.clock.now();
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused.filter(|until| *until > now) {
            return Err(Duration::from(until.duration_since(now)));
        }
        self.gov
            .check()
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Holds back every call for `backoff` (extends, never shortens, a pause in force).
    pub fn pause(&self, backoff: Duration) {
        let until = self.clock.now() + backoff.into();
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Waits for a slot, at most `max_wait`; past that, answers how long a slot is away. While
    /// callers of a higher priority wait, a caller leaves the slots to them.
    pub async fn acquire(&self, max_wait: Duration, priority: Priority) -> Result<(), Duration> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let _waiting = Waiting::new(&self.waiting[priority as usize]);
        loop {
            let outranked = self.waiting[priority as usize + 1..]
                .iter()
                .any(|w| w.load(Ordering::SeqCst) > 0);
            let slot = if outranked {
                Err(self.slot)
            } else {
                self.check()
            };
            match slot {
                Ok(()) => return Ok(()),
                Err(wait) => {
                    let wake = tokio::time::Instant::now() + wait;
                    if wake > deadline {
                        return Err(wait);
                    }
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Whether a call at `priority` gets a slot without waiting.
    async fn admits_now(limiter: &Limiter<FakeRelativeClock>, priority: Priority) -> bool {
        limiter.acquire(Duration::ZERO, priority).await.is_ok()
    }

    /// Offers a call every millisecond for `secs` seconds; returns the instants (ms) admitted.
    fn drive(
        limiter: &Limiter<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        secs: u64,
    ) -> Vec<u64> {
        let mut admitted = Vec::new();
        for ms in 0..secs * 1000 {
            if limiter.check().is_ok() {
                admitted.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        admitted
    }

    #[test]
    fn calls_never_exceed_rate_plus_burst_in_any_window() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(nz(100), nz(10), clock.clone());
        let admitted = drive(&limiter, &clock, 10);
        // Any one-second window holds at most burst + rate calls...
        for (i, &start) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&t| t < start + 1000)
                .count();
            assert!(
                in_window <= 110,
                "{in_window} calls in the second from {start} ms"
            );
        }
        // ...and the long-run rate is the configured one, not less.
        assert!(
            (1000..=1010).contains(&admitted.len()),
            "{} calls in 10 s",
            admitted.len()
        );
        // After the initial burst, calls are spaced by 1/rate.
        let tail = &admitted[20..];
        assert!(
            tail.windows(2).all(|w| w[1] - w[0] >= 10),
            "spacing below 10 ms"
        );
    }

    #[test]
    fn a_denied_check_says_how_long_to_wait() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(nz(4), nz(1), clock.clone());
        assert!(limiter.check().is_ok());
        let wait = limiter.check().unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        clock.advance(wait);
        assert!(limiter.check().is_ok());
    }

    #[test]
    fn pause_holds_every_call_back() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(nz(1000), nz(1000), clock.clone());
        limiter.pause(Duration::from_secs(5));
        limiter.pause(Duration::from_secs(1)); // a shorter pause does not shorten it
        assert_eq!(limiter.check().unwrap_err(), Duration::from_secs(5));
        clock.advance(Duration::from_millis(4999));
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check().is_ok());
    }

    #[tokio::test]
    async fn acquire_gives_up_when_the_slot_is_past_the_wait() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(nz(1), nz(1), clock);
        assert!(admits_now(&limiter, Priority::Normal).await);
        // The fake clock never moves, so the next slot stays one second away.
        let err = limiter
            .acquire(Duration::from_millis(10), Priority::Normal)
            .await
            .unwrap_err();
        assert_eq!(err, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn waiting_unbinds_go_before_binds_and_binds_before_background_work() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(nz(1000), nz(1), clock.clone());
        let urgent = Waiting::new(&limiter.waiting[Priority::Urgent as usize]);
        // A free slot exists, but an urgent caller is waiting: a normal caller yields.
        assert!(!admits_now(&limiter, Priority::Normal).await);
        assert!(!admits_now(&limiter, Priority::Background).await);
        assert!(admits_now(&limiter, Priority::Urgent).await);
        drop(urgent);
        clock.advance(Duration::from_millis(1));
        let normal = Waiting::new(&limiter.waiting[Priority::Normal as usize]);
        assert!(!admits_now(&limiter, Priority::Background).await);
        drop(normal);
        assert!(admits_now(&limiter, Priority::Background).await);
    }
}
