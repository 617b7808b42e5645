//! `[callbacks]`: the receiver of the platform's pushes (notifications.md), and `[watch]`: how
//! long the change feed is kept. The per-app push keys (`verify_push_signature`,
//! `close_hint_tone`) are checked with the rest of the app in `resolve`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::source::{self, Problems};

/// `[callbacks]`: the HTTP listener for the platform's pushes. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksConfig {
    #[serde(deserialize_with = "source::de_opt_socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Peers a push is taken from (addresses or CIDR blocks); empty: any. Others get 403.
    #[serde(deserialize_with = "de_cidrs")]
    pub allow_from: Vec<IpNet>,
    /// Largest push body read; a larger one gets 400.
    pub max_push_bytes: usize,
    /// Days call records (events, CDRs) and messages are kept.
    pub retention_days: u64,
    /// Write `connectInfo` / `closeInfo` of a callin answer as one-element arrays (Huawei's Java
    /// demo) instead of single objects (the API reference); notifications.md §1.5, UNCERTAIN.
    pub answer_connect_info_as_array: bool,
    /// Largest distance between a signed push's `Created` and this host's clock.
    pub max_clock_skew_seconds: u64,
    /// `[callbacks.tls]`: HTTPS for the receiver (re-read on SIGHUP and on change, like
    /// `[server.tls]`).
    pub tls: Option<super::TlsConfig>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        CallbacksConfig {
            listen: None,
            allow_from: Vec::new(),
            max_push_bytes: 1024 * 1024,
            retention_days: 31,
            answer_connect_info_as_array: false,
            max_clock_skew_seconds: 300,
            tls: None,
        }
    }
}

impl CallbacksConfig {
    /// Whether a push from `peer` is taken.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allow_from.is_empty() || self.allow_from.iter().any(|net| net.contains(&peer))
    }
}

/// `[watch]`: the change feed that `Watch` streams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Hours a change is kept; a watcher resuming from an older one must start over.
    pub retention_hours: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            retention_hours: 24,
        }
    }
}

/// Smallest and largest `callbacks.max_push_bytes` (a CDR push of 50 records is ~40 KiB).
const PUSH_BYTES: std::ops::RangeInclusive<usize> = 1024..=64 * 1024 * 1024;
/// Longest `callbacks.retention_days` (ten years).
const MAX_RETENTION_DAYS: u64 = 3650;
/// Longest `watch.retention_hours` (a year).
const MAX_WATCH_HOURS: u64 = 8760;
/// Largest `callbacks.max_clock_skew_seconds` (a day).
const MAX_SKEW_SECONDS: u64 = 86_400;

/// Checks the values of both sections.
pub(super) fn check(callbacks: &CallbacksConfig, watch: &WatchConfig, problems: &mut Problems) {
    if let Some(tls) = &callbacks.tls
        && let Err((key, message)) = crate::tls::check(tls)
    {
        problems.push(format!("callbacks.tls.{key}"), message);
    }
    if !PUSH_BYTES.contains(&callbacks.max_push_bytes) {
        let message = format!(
            "{} is not 1024 to {} (64 MiB)",
            callbacks.max_push_bytes,
            PUSH_BYTES.end()
        );
        problems.push("callbacks.max_push_bytes", message);
    }
    if !(1..=MAX_RETENTION_DAYS).contains(&callbacks.retention_days) {
        let message = format!(
            "{} is not 1 to {MAX_RETENTION_DAYS} (ten years)",
            callbacks.retention_days
        );
        problems.push("callbacks.retention_days", message);
    }
    if !(1..=MAX_SKEW_SECONDS).contains(&callbacks.max_clock_skew_seconds) {
        let message = format!(
            "{} is not 1 to {MAX_SKEW_SECONDS} (a day)",
            callbacks.max_clock_skew_seconds
        );
        problems.push("callbacks.max_clock_skew_seconds", message);
    }
    if !(1..=MAX_WATCH_HOURS).contains(&watch.retention_hours) {
        let message = format!(
            "{} is not 1 to {MAX_WATCH_HOURS} (a year)",
            watch.retention_hours
        );
        problems.push("watch.retention_hours", message);
    }
}

/// A list of addresses (`10.0.0.7`, a host of its own) and CIDR blocks (`10.0.0.0/8`).
fn de_cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_net(text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "entry {i}: {text:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)"
                ))
            })
        })
        .collect()
}

fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks_are_both_accepted() {
        assert_eq!(parse_net("10.1.2.3/8"), Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(
            parse_net(" 192.0.2.7 "),
            Some("192.0.2.7/32".parse().unwrap())
        );
        assert_eq!(parse_net("::1"), Some("::1/128".parse().unwrap()));
        assert_eq!(parse_net("10.0.0/8"), None);
        assert_eq!(parse_net("10.0.0.0/33"), None);
    }

    #[test]
    fn the_allow_list_matches_ipv4_peers_seen_through_ipv6() {
        let mut callbacks = CallbacksConfig::default();
        let peer = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(callbacks.allows(peer("203.0.113.9")), "empty: any peer");
        callbacks.allow_from = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(callbacks.allows(peer("10.200.0.1")));
        assert!(callbacks.allows(peer("::ffff:10.200.0.1")));
        assert!(!callbacks.allows(peer("11.0.0.1")));
        assert!(!callbacks.allows(peer("::1")));
    }
}
