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

/// Times of call events and CDRs (notifications.md §0.4): `yyyy-MM-dd HH:mm:ss` in UTC.
const EVENT: &[FormatItem<'static>] = SUBSCRIBE;

/// `timeStamp` of SMS events (notifications.md §0.4): ISO-8601 UTC with milliseconds.
const SMS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

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

/// Formats an instant as a call-event `timestamp` or a CDR time: UTC, no fraction.
pub fn format_event_time(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(EVENT)
        .unwrap_or_default()
}

/// Parses a call-event `timestamp` or a CDR time, read as UTC.
pub fn parse_event_time(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, EVENT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Formats an instant as an SMS event's `timeStamp`: UTC with milliseconds.
pub fn format_sms_time(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(SMS).unwrap_or_default()
}

/// Parses an SMS event's `timeStamp`.
pub fn parse_sms_time(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, SMS)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
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

    #[test]
    fn push_times_are_utc() {
        let t = datetime!(2024-03-01 10:15:07.4567 +8);
        assert_eq!(format_event_time(t), "2024-03-01 02:15:07");
        assert_eq!(
            parse_event_time("2024-03-01 02:15:07"),
            Some(datetime!(2024-03-01 02:15:07 UTC))
        );
        assert_eq!(format_sms_time(t), "2024-03-01T02:15:07.456Z");
        assert_eq!(
            parse_sms_time("2020-12-23T09:06:16.450Z"),
            Some(datetime!(2020-12-23 09:06:16.450 UTC))
        );
    }
}
