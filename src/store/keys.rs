//! Every key encoding of the store, in one place (STYLE.md rule 9).
//!
//! Integers are big-endian so that byte order is numeric order. Strings are length-prefixed
//! (u16 big-endian byte length, then the UTF-8 bytes), so that `(app, x)` keys of different apps
//! can never collide or share a prefix: `("ride", …)` keys do not start with the `("rides", …)`
//! prefix. Within one app, length-prefixed strings sort by (byte length, bytes), which for
//! canonical digit strings is numeric order.
//!
//! | tree       | key                                 | value                          |
//! |------------|-------------------------------------|--------------------------------|
//! | `bindings` | id (16 bytes)                       | `BindingRecord`                |
//! | `requests` | str(app) ‖ str(request_id)          | `BindingId`                    |
//! | `numbers`  | str(app) ‖ str(number)              | `NumberRecord`                 |
//! | `expiry`   | deadline ms (u64 BE) ‖ id (16 bytes) | empty: the key is the entry   |
//! | `slots`    | str(app) ‖ str(x) ‖ id (16 bytes)   | `SlotRecord`: every binding holding a slot (x empty: AXYB before the platform chose) |
//! | `open`     | id (16 bytes)                       | empty: PENDING and RELEASING bindings |
//! | `released` | left ms (u64 BE) ‖ id (16 bytes)    | empty: RELEASED and EXPIRED bindings without a request id (none, or forgotten), by when they left service |
//! | `remembered` | left ms (u64 BE) ‖ id (16 bytes)  | `RequestRef`: RELEASED and EXPIRED bindings whose request id is still remembered; with the time's top bit set, a tombstone (the record deleted, the request id still taken) |
//! | `meta`     | ASCII name, e.g. `format`, `job/…`  | per key                        |
//! | `calls`    | call id (16 bytes, UUID v7)         | `CallStored`: one call's events and CDR |
//! | `sessions` | str(app) ‖ str(session_id)          | call id                        |
//! | `call_links` | binding id ‖ call id (16 + 16)    | empty: the calls of a binding  |
//! | `messages` | message id (16 bytes, UUID v7)      | `MessageStored`: one SMS notification |
//! | `message_ids` | str(app) ‖ str(smsIdentifier) ‖ str(mode) | message id          |
//! | `changes`  | seq (u64 BE)                        | `ChangeStored`: the change feed, oldest first |
//! | `subscriptions` | str(app) ‖ str(subscription_id) | `BindingId`                   |
//!
//! `expiry`, `released` and `remembered` keys share one layout ([`timed`]): a time, then an id,
//! so a range scan up to a time finds everything due by then, earliest first. A binding that
//! left service has one entry in `released` or `remembered`, never both: taking one out of
//! service is one index write, not two (an expiry burst makes hundreds of thousands).
//! `remembered` tombstones sort after every live entry ([`remembered_tombstone`]), so the scan
//! for records to delete never walks over them.

use super::records::BindingId;

pub const BINDINGS: &str = "bindings";
pub const REQUESTS: &str = "requests";
pub const NUMBERS: &str = "numbers";
pub const EXPIRY: &str = "expiry";
pub const SLOTS: &str = "slots";
pub const OPEN: &str = "open";
pub const META: &str = "meta";
pub const RELEASED: &str = "released";
pub const REMEMBERED: &str = "remembered";
pub const CALLS: &str = "calls";
pub const SESSIONS: &str = "sessions";
pub const CALL_LINKS: &str = "call_links";
pub const MESSAGES: &str = "messages";
pub const MESSAGE_IDS: &str = "message_ids";
pub const CHANGES: &str = "changes";
pub const SUBSCRIPTIONS: &str = "subscriptions";

/// `slots` key: a binding that holds a slot on `x`.
pub fn slot(app: &str, x: &str, id: &BindingId) -> Result<Vec<u8>, KeyTooLong> {
    let mut key = pair(app, x)?;
    key.extend_from_slice(&id.0);
    Ok(key)
}

/// Prefix of every `slots` key of (app, x).
pub fn slot_prefix(app: &str, x: &str) -> Result<Vec<u8>, KeyTooLong> {
    pair(app, x)
}

/// Reads a `slots` key back into (app, x, id).
pub fn parse_slot(key: &[u8]) -> Option<(&str, &str, BindingId)> {
    let (app, rest) = split_str(key)?;
    let (x, id) = split_str(rest)?;
    Some((app, x, parse_binding(id)?))
}

/// The length-prefixed string at the start of `key`, and what follows it.
fn split_str(key: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let text = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((text, &rest[len..]))
}

/// `sessions` key: str(app) ‖ str(session_id).
pub fn session(app: &str, session_id: &str) -> Result<Vec<u8>, KeyTooLong> {
    pair(app, session_id)
}

/// `call_links` key: binding id ‖ call id.
pub fn call_link(binding: &BindingId, call: &[u8; 16]) -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(&binding.0);
    key[16..].copy_from_slice(call);
    key
}

/// `message_ids` key: str(app) ‖ str(sms_identifier) ‖ str(mode).
pub fn message_id(app: &str, sms_identifier: &str, mode: &str) -> Result<Vec<u8>, KeyTooLong> {
    let mut key = pair(app, sms_identifier)?;
    push_str(&mut key, mode)?;
    Ok(key)
}

/// `changes` key: the sequence number, big-endian.
pub fn change(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Reads a `changes` key back.
pub fn parse_change(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

/// `subscriptions` key: str(app) ‖ str(subscription_id).
pub fn subscription(app: &str, subscription_id: &str) -> Result<Vec<u8>, KeyTooLong> {
    pair(app, subscription_id)
}

/// `meta` key holding the on-disk format version of the whole store.
pub const META_FORMAT: &[u8] = b"format";

/// `meta` key: the write-ahead log's last record applied to this database (u64 big-endian).
pub const META_WAL_APPLIED: &[u8] = b"wal/applied";

/// `meta` key: whether the log was closed cleanly (one byte, 1 = clean; absent = clean).
pub const META_WAL_CLEAN: &[u8] = b"wal/clean";

/// Length of a time-ordered key (`expiry`, `released`, `remembered`): 8-byte ms, 16-byte id.
pub const TIMED_KEY_LEN: usize = 8 + 16;

/// Length of an `expiry` key: 8-byte deadline, 16-byte id.
pub const EXPIRY_KEY_LEN: usize = TIMED_KEY_LEN;

/// A string part of a key is longer than a u16 length prefix can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooLong {
    pub len: usize,
}

impl std::fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key part of {} bytes is longer than {} bytes",
            self.len,
            u16::MAX
        )
    }
}

fn push_str(buf: &mut Vec<u8>, s: &str) -> Result<(), KeyTooLong> {
    let len = u16::try_from(s.len()).map_err(|_| KeyTooLong { len: s.len() })?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn pair(a: &str, b: &str) -> Result<Vec<u8>, KeyTooLong> {
    let mut key = Vec::with_capacity(4 + a.len() + b.len());
    push_str(&mut key, a)?;
    push_str(&mut key, b)?;
    Ok(key)
}

/// `bindings` key: the id's 16 bytes (UUID v7, so creation order).
pub fn binding(id: &BindingId) -> [u8; 16] {
    id.0
}

/// Reads a `bindings` key back.
pub fn parse_binding(key: &[u8]) -> Option<BindingId> {
    key.try_into().ok().map(BindingId)
}

/// `requests` key: str(app) ‖ str(request_id).
pub fn request(app: &str, request_id: &str) -> Result<Vec<u8>, KeyTooLong> {
    pair(app, request_id)
}

/// `numbers` key: str(app) ‖ str(number).
pub fn number(app: &str, number: &str) -> Result<Vec<u8>, KeyTooLong> {
    pair(app, number)
}

/// Prefix of every `numbers` key of one app: str(app).
pub fn number_prefix(app: &str) -> Result<Vec<u8>, KeyTooLong> {
    let mut key = Vec::with_capacity(2 + app.len());
    push_str(&mut key, app)?;
    Ok(key)
}

/// A record's i64 ms deadline as the u64 stored in keys (negatives clamp to 0).
pub fn deadline_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// A time-ordered key: ms (u64 BE, negatives clamped to 0) ‖ id.
pub fn timed(ms: i64, id: &BindingId) -> [u8; TIMED_KEY_LEN] {
    let mut key = [0u8; TIMED_KEY_LEN];
    key[..8].copy_from_slice(&deadline_u64(ms).to_be_bytes());
    key[8..].copy_from_slice(&id.0);
    key
}

/// The greatest possible time-ordered key at `ms`: an inclusive upper bound for "at or before
/// `ms`".
pub fn timed_bound(ms: i64) -> [u8; TIMED_KEY_LEN] {
    timed(ms, &BindingId([0xff; 16]))
}

/// Reads a time-ordered key back into (ms, id).
pub fn parse_timed(key: &[u8]) -> Option<(i64, BindingId)> {
    let key: &[u8; TIMED_KEY_LEN] = key.try_into().ok()?;
    let (ms, id) = key.split_at(8);
    let ms = u64::from_be_bytes(ms.try_into().ok()?);
    Some((i64::try_from(ms).ok()?, BindingId(id.try_into().ok()?)))
}

/// `expiry` key: deadline ms (u64 BE, negatives clamped to 0) ‖ id.
pub fn expiry(deadline_ms: i64, id: &BindingId) -> [u8; EXPIRY_KEY_LEN] {
    timed(deadline_ms, id)
}

/// The greatest possible `expiry` key with a deadline of `now_ms`: an inclusive upper bound for
/// "due at or before `now_ms`".
pub fn expiry_due_bound(now_ms: i64) -> [u8; EXPIRY_KEY_LEN] {
    timed_bound(now_ms)
}

/// Reads an `expiry` key back into (deadline ms, id).
pub fn parse_expiry(key: &[u8]) -> Option<(i64, BindingId)> {
    parse_timed(key)
}

/// `released` key: when the binding left service (ms) ‖ id.
pub fn released(left_ms: i64, id: &BindingId) -> [u8; TIMED_KEY_LEN] {
    timed(left_ms, id)
}

/// `remembered` key of a binding whose record is kept: when it left service (ms) ‖ id.
pub fn remembered(left_ms: i64, id: &BindingId) -> [u8; TIMED_KEY_LEN] {
    timed(left_ms, id)
}

/// The top bit of a `remembered` key's time: set, the entry is a tombstone.
const TOMBSTONE: u64 = 1 << 63;

/// `remembered` key of a tombstone: a binding deleted while its request id is still
/// remembered. Its time has the top bit set, so tombstones sort after every live entry.
pub fn remembered_tombstone(left_ms: i64, id: &BindingId) -> [u8; TIMED_KEY_LEN] {
    let mut key = timed(left_ms, id);
    key[..8].copy_from_slice(&(deadline_u64(left_ms) | TOMBSTONE).to_be_bytes());
    key
}

/// The greatest possible tombstone key at `ms`: an inclusive upper bound for tombstones of
/// bindings that left service at or before `ms`.
pub fn remembered_tombstone_bound(ms: i64) -> [u8; TIMED_KEY_LEN] {
    remembered_tombstone(ms, &BindingId([0xff; 16]))
}

/// Reads a `remembered` key back into (left ms, id, whether it is a tombstone).
pub fn parse_remembered(key: &[u8]) -> Option<(i64, BindingId, bool)> {
    let key: &[u8; TIMED_KEY_LEN] = key.try_into().ok()?;
    let (ms, id) = key.split_at(8);
    let ms = u64::from_be_bytes(ms.try_into().ok()?);
    let left = i64::try_from(ms & !TOMBSTONE).ok()?;
    Some((left, BindingId(id.try_into().ok()?), ms & TOMBSTONE != 0))
}

/// A key as hex, for error messages.
pub fn describe(key: &[u8]) -> String {
    use std::fmt::Write as _;
    key.iter()
        .fold(String::with_capacity(2 * key.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BindingId {
        BindingId([n; 16])
    }

    #[test]
    fn binding_key_is_the_id_bytes() {
        let id = BindingId(std::array::from_fn(|i| i as u8));
        assert_eq!(binding(&id), std::array::from_fn::<u8, 16, _>(|i| i as u8));
        assert_eq!(parse_binding(&binding(&id)), Some(id));
        assert_eq!(parse_binding(&[1, 2, 3]), None);
    }

    #[test]
    fn request_key_bytes() {
        assert_eq!(
            request("ride", "r1").unwrap(),
            [0, 4, b'r', b'i', b'd', b'e', 0, 2, b'r', b'1']
        );
        assert_eq!(request("", "").unwrap(), [0, 0, 0, 0]);
    }

    #[test]
    fn number_key_bytes() {
        assert_eq!(
            number("ab", "+861").unwrap(),
            [0, 2, b'a', b'b', 0, 4, b'+', b'8', b'6', b'1']
        );
        assert_eq!(number_prefix("ab").unwrap(), [0, 2, b'a', b'b']);
        // Multi-byte UTF-8: the prefix counts bytes, not chars.
        assert_eq!(number_prefix("é").unwrap(), [0, 2, 0xc3, 0xa9]);
    }

    #[test]
    fn pairs_cannot_collide() {
        // Without length prefixes both would be "abc".
        assert_ne!(request("ab", "c").unwrap(), request("a", "bc").unwrap());
        let ride = number_prefix("ride").unwrap();
        assert!(!number("rides", "1").unwrap().starts_with(&ride));
        assert!(number("ride", "1").unwrap().starts_with(&ride));
    }

    #[test]
    fn too_long_strings_are_refused() {
        let long = "x".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(request(&long, "r"), Err(KeyTooLong { len: long.len() }));
        assert_eq!(number("a", &long), Err(KeyTooLong { len: long.len() }));
        let max = "x".repeat(usize::from(u16::MAX));
        assert_eq!(number_prefix(&max).unwrap()[..2], [0xff, 0xff]);
    }

    #[test]
    fn numbers_of_one_app_sort_numerically() {
        let mut keys = [
            number("a", "100").unwrap(),
            number("a", "99").unwrap(),
            number("a", "101").unwrap(),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                number("a", "99").unwrap(),
                number("a", "100").unwrap(),
                number("a", "101").unwrap()
            ]
        );
    }

    #[test]
    fn expiry_key_bytes() {
        assert_eq!(
            expiry(0x0102_0304_0506_0708, &id(0xab)),
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
                0xab, 0xab, 0xab, 0xab, 0xab, 0xab
            ]
        );
        assert_eq!(
            expiry(-5, &id(0))[..8],
            [0; 8],
            "negative deadlines clamp to 0"
        );
        assert_eq!(parse_expiry(&expiry(42, &id(7))), Some((42, id(7))));
        assert_eq!(parse_expiry(&[0; 23]), None);
    }

    #[test]
    fn expiry_keys_sort_by_deadline_then_id() {
        let deadlines = [0, 1, 255, 256, 65_535, 65_536, 1_700_000_000_000, i64::MAX];
        let keys: Vec<_> = deadlines.iter().map(|&d| expiry(d, &id(0xff))).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "byte order is deadline order"
        );
        // A later deadline sorts after an earlier one whatever the ids.
        assert!(expiry(1000, &id(0xff)) < expiry(1001, &id(0)));
        assert!(expiry(1000, &id(1)) < expiry(1000, &id(2)));
    }

    #[test]
    fn due_bound_includes_every_id_at_now_and_nothing_later() {
        let bound = expiry_due_bound(1000);
        assert!(expiry(1000, &id(0xff)) <= bound);
        assert!(expiry(1000, &id(0)) <= bound);
        assert!(expiry(1001, &id(0)) > bound);
    }

    #[test]
    fn released_and_remembered_keys_are_time_then_id() {
        let key = released(0x0102_0304_0506_0708, &id(0xab));
        assert_eq!(key[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(key[8..], [0xab; 16]);
        assert_eq!(remembered(0x0102_0304_0506_0708, &id(0xab)), key);
        assert_eq!(parse_timed(&key), Some((0x0102_0304_0506_0708, id(0xab))));
        assert!(released(999, &id(0xff)) < released(1000, &id(0)));
        assert!(released(1000, &id(0xff)) <= timed_bound(1000));
        assert!(released(1001, &id(0)) > timed_bound(1000));
    }

    #[test]
    fn remembered_tombstones_sort_after_every_live_entry() {
        let live = remembered(i64::MAX >> 1, &id(0xff));
        let tombstone = remembered_tombstone(1000, &id(0xab));
        assert!(live < tombstone);
        assert!(tombstone > timed_bound(i64::MAX));
        assert_eq!(tombstone[0], 0x80);
        assert_eq!(tombstone[1..8], 1000u64.to_be_bytes()[1..]);
        assert_eq!(parse_remembered(&tombstone), Some((1000, id(0xab), true)));
        assert_eq!(
            parse_remembered(&remembered(1000, &id(0xab))),
            Some((1000, id(0xab), false))
        );
        assert!(remembered_tombstone(1000, &id(0xff)) <= remembered_tombstone_bound(1000));
        assert!(remembered_tombstone(1001, &id(0)) > remembered_tombstone_bound(1000));
    }

    #[test]
    fn slot_key_bytes_and_back() {
        let key = slot("ab", "+861", &id(3)).unwrap();
        let mut expected = vec![0, 2, b'a', b'b', 0, 4, b'+', b'8', b'6', b'1'];
        expected.extend_from_slice(&[3; 16]);
        assert_eq!(key, expected);
        assert!(key.starts_with(&slot_prefix("ab", "+861").unwrap()));
        assert_eq!(parse_slot(&key), Some(("ab", "+861", id(3))));
        let no_x = slot("ab", "", &id(4)).unwrap();
        assert_eq!(parse_slot(&no_x), Some(("ab", "", id(4))));
        assert_eq!(parse_slot(&key[..key.len() - 1]), None, "id cut short");
        assert_eq!(parse_slot(&[0, 9, b'a']), None, "string cut short");
        assert_eq!(parse_slot(&[0, 1, 0xff, 0, 0]), None, "not UTF-8");
    }

    #[test]
    fn describe_is_hex() {
        assert_eq!(describe(&[0, 0xab, 0x10]), "00ab10");
    }
}
