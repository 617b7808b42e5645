//! Replay protection: the nonces each app used while their tokens are still valid.
//!
//! binding-api.md §1.3 leaves replay protection undocumented (UNCERTAIN) and suggests rejecting
//! a nonce reused within the skew window; the simulator does so (`auth.reject_replayed_nonces`,
//! on by default) with 401 / 1010013, the code of a token outside its validity, so a client
//! that ever sent one nonce twice fails its tests. A token created at `Created` passes the skew
//! check until `Created + max_clock_skew_seconds`, so its nonce is remembered that long and no
//! longer: memory stays at most (requests per second × window) small entries.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::state::lock;

/// The nonces in use, per app key.
#[derive(Debug)]
pub(crate) struct Nonces {
    window_seconds: i64,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Hash of (app key, nonce) → the last second its token is valid (Unix time).
    valid_until: HashMap<u64, i64>,
    /// The same entries in the order they were added, for pruning.
    order: VecDeque<(i64, u64)>,
}

impl Nonces {
    pub fn new(max_clock_skew_seconds: u64) -> Self {
        Nonces {
            window_seconds: i64::try_from(max_clock_skew_seconds).unwrap_or(i64::MAX),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records the nonce of a verified token created at `created`; false when `app_key` already
    /// used it in a token that is still valid at `now` (a replay).
    pub fn first_use(
        &self,
        app_key: &str,
        nonce: &str,
        created: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        let now = now.unix_timestamp();
        let until = created.unix_timestamp().saturating_add(self.window_seconds);
        let key = {
            let mut h = DefaultHasher::new();
            (app_key, nonce).hash(&mut h);
            h.finish()
        };
        let mut seen = lock(&self.seen);
        seen.prune(now);
        if seen.valid_until.get(&key).is_some_and(|t| *t >= now) {
            return false;
        }
        seen.valid_until.insert(key, until);
        seen.order.push_back((until, key));
        true
    }
}

impl Seen {
    fn prune(&mut self, now: i64) {
        while let Some(&(until, key)) = self.order.front() {
            if until >= now {
                break;
            }
            self.order.pop_front();
            if self.valid_until.get(&key) == Some(&until) {
                self.valid_until.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_nonce_is_refused_again_while_its_token_is_valid() {
        let nonces = Nonces::new(600);
        let created = datetime!(2024-01-01 12:00 UTC);
        let now = created + time::Duration::seconds(5);
        assert!(nonces.first_use("k-axb", "abc123", created, now));
        assert!(
            !nonces.first_use("k-axb", "abc123", created, now),
            "replayed"
        );
        let later = created + time::Duration::seconds(600);
        assert!(
            !nonces.first_use("k-axb", "abc123", created, later),
            "still within the skew window"
        );
        // Another app's nonce is its own; a new nonce is fine.
        assert!(nonces.first_use("k-ax", "abc123", created, now));
        assert!(nonces.first_use("k-axb", "abc124", created, now));
    }

    #[test]
    fn nonces_are_forgotten_once_their_token_expired() {
        let nonces = Nonces::new(60);
        let created = datetime!(2024-01-01 12:00 UTC);
        for i in 0..100 {
            assert!(nonces.first_use("k", &format!("n{i}"), created, created));
        }
        let after = created + time::Duration::seconds(61);
        assert!(
            nonces.first_use("k", "n0", after, after),
            "a new token may reuse an expired token's nonce"
        );
        let seen = lock(&nonces.seen);
        assert_eq!(seen.valid_until.len(), 1, "the expired ones were pruned");
        assert_eq!(seen.order.len(), 1);
    }
}
