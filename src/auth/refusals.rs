//! Logging refused calls without letting a misbehaving client flood the log: one line per
//! caller (peer address, token name) and reason per minute, with how many were refused since.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one caller's refusals of one kind are logged.
const EVERY: Duration = Duration::from_secs(60);

/// Entries kept at most; beyond that, entries older than [`EVERY`] are dropped.
const MAX_ENTRIES: usize = 10_000;

type Key = (Option<IpAddr>, &'static str, String);

/// When each caller's refusals were last logged, and how many came since.
#[derive(Debug, Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<Key, (Instant, u64)>>,
}

impl RefusalLog {
    /// Counts a refusal of `reason` for the caller (`peer`, `caller`: the token's name, or
    /// empty when none is known); `Some(n)` when it should be logged now, `n` being the
    /// refusals of that kind since the last line (this one included).
    pub fn note(
        &self,
        peer: Option<IpAddr>,
        reason: &'static str,
        caller: &str,
        now: Instant,
    ) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, (at, _)| now.duration_since(*at) < EVERY);
        }
        let key = (peer, reason, caller.to_owned());
        let Some((logged, held)) = seen.get_mut(&key) else {
            seen.insert(key, (now, 0));
            return Some(1);
        };
        *held += 1;
        if now.duration_since(*logged) >= EVERY {
            let count = *held;
            (*logged, *held) = (now, 0);
            return Some(count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_logged_once_a_minute_with_the_count_since() {
        let log = RefusalLog::default();
        let peer = Some(IpAddr::from([10, 0, 0, 7]));
        let t0 = Instant::now();
        assert_eq!(log.note(peer, "unknown_token", "", t0), Some(1));
        for i in 1..=5 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(log.note(peer, "unknown_token", "", at), None);
        }
        let other = Some(IpAddr::from([10, 0, 0, 8]));
        assert_eq!(
            log.note(other, "unknown_token", "", t0 + Duration::from_secs(2)),
            Some(1),
            "another peer is logged on its own"
        );
        assert_eq!(
            log.note(peer, "no_token", "", t0 + Duration::from_secs(3)),
            Some(1),
            "another reason too"
        );
        assert_eq!(
            log.note(peer, "unknown_token", "", t0 + EVERY),
            Some(6),
            "a minute later: the five held back and this one"
        );
    }
}
