//! Deadlines on the way to the leader: the caller's `grpc-timeout`, and what the leader gets.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The metadata that carries a call's deadline.
pub(super) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// What a forwarding hop keeps of the `left` of a caller's deadline: a tenth, at most 50 ms
/// (as a proxy's `grpc-timeout` offset).
pub(super) fn hop_margin(left: Duration) -> Duration {
    (left / 10).min(Duration::from_millis(50))
}

/// The caller's deadline: its `grpc-timeout`, if valid (at most 8 digits and a unit).
pub(super) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value: the finest unit that fits in 8 digits, rounded down.
pub(super) fn encode_timeout(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let value = [
        (left.as_micros(), 'u'),
        (left.as_millis(), 'm'),
        (u128::from(left.as_secs()), 'S'),
        (u128::from(left.as_secs() / 60), 'M'),
    ]
    .into_iter()
    .find(|(n, _)| *n <= MAX)
    .map_or_else(
        || format!("{}H", (u128::from(left.as_secs() / 3600)).min(MAX)),
        |(n, unit)| format!("{n}{unit}"),
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("99999999H"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_read_and_written() {
        let read = |v: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
            grpc_timeout(&headers)
        };
        assert_eq!(read("3S"), Some(Duration::from_secs(3)));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        for bad in ["", "S", "3", "3s", "123456789m", "-1S", "+1S", "1.5S"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        for (left, want) in [
            (Duration::from_millis(1500), "1500000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(200_000), "200000S"),
            (Duration::from_secs(200_000_000), "3333333M"),
            (Duration::from_secs(u64::MAX), "99999999H"),
            (Duration::ZERO, "0u"),
        ] {
            assert_eq!(encode_timeout(left), want, "{left:?}");
        }
        assert_eq!(
            hop_margin(Duration::from_millis(300)),
            Duration::from_millis(30)
        );
        assert_eq!(
            hop_margin(Duration::from_secs(30)),
            Duration::from_millis(50)
        );
        assert_eq!(hop_margin(Duration::ZERO), Duration::ZERO);
    }
}
