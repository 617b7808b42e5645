//! Time formats on the wire.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// `Created` of the UsernameToken: UTC, `YYYY-MM-DDTHH:MM:SSZ`, no fraction.
const CREATED: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `subscribeTime` of query records: `yyyy-MM-dd HH:mm:ss` in the platform's local time.
const SUBSCRIBE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// The platform's local time zone, UTC+8 (binding-api.md §2.1.4 calls it probable).
pub const PLATFORM_OFFSET: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// Formats a UTC instant as a `Created` value.
pub fn format_created(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(CREATED)
        .unwrap_or_default()
}

/// Parses a `Created` value; `None` when it does not follow the format exactly.
pub fn parse_created(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, CREATED)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Formats an instant as `subscribeTime` in the platform's time zone.
pub fn format_subscribe_time(at: OffsetDateTime) -> String {
    at.to_offset(PLATFORM_OFFSET)
        .format(SUBSCRIBE)
        .unwrap_or_default()
}

/// Parses a `subscribeTime` value, read in the platform's time zone.
pub fn parse_subscribe_time(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, SUBSCRIBE)
        .ok()
        .map(|t| t.assume_offset(PLATFORM_OFFSET))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn created_is_utc_without_fraction() {
        let t = datetime!(2018-02-12 23:30:20.123 +8);
        assert_eq!(format_created(t), "2018-02-12T15:30:20Z");
        assert_eq!(
            parse_created("2018-02-12T15:30:20Z"),
            Some(datetime!(2018-02-12 15:30:20 UTC))
        );
        assert_eq!(parse_created("2018-02-12T15:30:20.5Z"), None);
        assert_eq!(parse_created("2018-02-12 15:30:20"), None);
    }

    #[test]
    fn subscribe_time_is_beijing_time() {
        let t = datetime!(2024-01-01 00:00:00 UTC);
        assert_eq!(format_subscribe_time(t), "2024-01-01 08:00:00");
        assert_eq!(parse_subscribe_time("2024-01-01 08:00:00"), Some(t));
    }
}
