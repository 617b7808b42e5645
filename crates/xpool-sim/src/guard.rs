//! The failed-authentication IP blacklist (binding-api.md §1.4, 1020176).
//!
//! Every authentication failure counts against the caller's IP; once `max_failures` fall within
//! `failure_window_seconds`, the IP is refused for `blacklist_seconds`. Real time throughout.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::AuthSettings;
use super::state::lock;

/// Failure history and blacklist of caller IPs.
#[derive(Debug)]
pub(crate) struct IpGuard {
    max_failures: usize,
    window: Duration,
    ban: Duration,
    ips: Mutex<HashMap<IpAddr, Record>>,
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

impl IpGuard {
    pub fn new(settings: &AuthSettings) -> Self {
        IpGuard {
            max_failures: usize::try_from(settings.max_failures).unwrap_or(usize::MAX),
            window: Duration::from_secs(settings.failure_window_seconds),
            ban: Duration::from_secs(settings.blacklist_seconds),
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// True while `ip` is blacklisted.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        let mut ips = lock(&self.ips);
        let Some(record) = ips.get_mut(&ip) else {
            return false;
        };
        match record.banned_until {
            Some(until) if now < until => true,
            Some(_) => {
                ips.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts one failed authentication; bans the IP when the threshold is reached.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut ips = lock(&self.ips);
        let record = ips.entry(ip).or_default();
        while record
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        if record.failures.len() >= self.max_failures {
            record.failures.clear();
            record.banned_until = Some(now + self.ban);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_failures: u32) -> IpGuard {
        IpGuard::new(&AuthSettings {
            max_failures,
            failure_window_seconds: 60,
            blacklist_seconds: 1800,
            ..AuthSettings::default()
        })
    }

    #[test]
    fn the_threshold_failure_bans_the_ip_for_the_ban_time() {
        let g = guard(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        g.record_failure(ip, t0);
        g.record_failure(ip, t0);
        assert!(!g.is_banned(ip, t0));
        g.record_failure(ip, t0);
        assert!(g.is_banned(ip, t0));
        assert!(!g.is_banned(other, t0));
        assert!(g.is_banned(ip, t0 + Duration::from_secs(1799)));
        assert!(!g.is_banned(ip, t0 + Duration::from_secs(1800)));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let g = guard(3);
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        g.record_failure(ip, t0);
        g.record_failure(ip, t0 + Duration::from_secs(30));
        g.record_failure(ip, t0 + Duration::from_secs(61));
        assert!(!g.is_banned(ip, t0 + Duration::from_secs(61)));
        g.record_failure(ip, t0 + Duration::from_secs(62));
        assert!(g.is_banned(ip, t0 + Duration::from_secs(62)));
    }
}
