//! Value encoding: one version byte, then bincode (serde, `config::standard()`).
//!
//! This is the only module that touches bincode, and it should stay so: bincode is pinned at
//! `=2.0.1` (3.0.0 on crates.io is a tombstone that only fails to compile) and 1.x/2.x carry the
//! "unmaintained" advisory RUSTSEC-2025-0141, so one day the encoding may have to move to
//! another crate, and only this file should have to change then. Each stored type says which
//! layout version it writes ([`Stored::VERSION`]); a new layout gets the next version, and the
//! old one stays readable: its struct is kept in `legacy` and [`Stored::from_older`] migrates it
//! when it is read (nothing is rewritten until the record is next written).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::StoreError;
use super::keys;
use super::legacy;
use super::records::{BindingId, BindingRecord, NumberRecord, RequestRef, SlotRecord, SlotView};

/// A value the store keeps, with the layout version written today and the older ones it reads.
pub trait Stored: Serialize + DeserializeOwned {
    /// The version [`encode`] writes.
    const VERSION: u8 = 1;

    /// Reads `body`, written in the older layout `version`; `None` when no build ever wrote
    /// this type under that version.
    fn from_older(version: u8, body: &[u8]) -> Option<Result<Self, String>> {
        let _ = (version, body);
        None
    }
}

/// The store's format version in `meta`.
impl Stored for u32 {}
/// `requests` values.
impl Stored for BindingId {}
/// Version 2 added the platform's status and its cause.
impl Stored for NumberRecord {
    const VERSION: u8 = 2;

    fn from_older(version: u8, body: &[u8]) -> Option<Result<Self, String>> {
        match version {
            1 => Some(read_body::<legacy::NumberRecordV1>(body).map(Into::into)),
            _ => None,
        }
    }
}
/// `remembered` values: a request id kept after its binding left service.
impl Stored for RequestRef {}
/// `slots` values (store format 4).
impl Stored for SlotRecord {}

/// Version 2 replaced `call_direction`, `record` and `max_call_minutes` with `call_options`.
impl Stored for BindingRecord {
    const VERSION: u8 = 2;

    fn from_older(version: u8, body: &[u8]) -> Option<Result<Self, String>> {
        match version {
            1 => Some(read_body::<legacy::BindingRecordV1>(body).map(Into::into)),
            _ => None,
        }
    }
}

/// Values are small records; refusing absurd lengths stops a corrupt length prefix from asking
/// for a huge allocation. (The limit does not change the encoding.)
const MAX_VALUE_BYTES: usize = 1 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_BYTES>()
}

/// Encodes `value` behind its type's current version.
pub fn encode<T: Stored>(value: &T) -> Vec<u8> {
    encode_as(T::VERSION, value)
}

/// Encodes `value` behind `version`.
///
/// # Panics
/// Only if serde reports an error for `T`, which the derived store records never do (bincode
/// refuses only sequences of unknown length, which derives do not produce).
pub(super) fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    let body = bincode::serde::encode_to_vec(value, config())
        .expect("derived store records always encode with bincode");
    out.extend_from_slice(&body);
    out
}

/// Decodes one body (what follows the version byte) in the layout `T`, all of it.
pub(super) fn read_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| format!("undecodable value: {e}"))?;
    if read != body.len() {
        return Err(format!("{} trailing bytes", body.len() - read));
    }
    Ok(value)
}

/// Decodes a value stored under `key` in `tree`, migrating an older layout; anything
/// unreadable is `StoreError::Corrupt` naming both, never a panic.
pub fn decode<T: Stored>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        tree,
        detail: format!("key {}: {what}", keys::describe(key)),
    };
    let Some((&version, body)) = bytes.split_first() else {
        return Err(corrupt("empty value".into()));
    };
    let value = if version == T::VERSION {
        read_body(body)
    } else {
        T::from_older(version, body).ok_or_else(|| {
            corrupt(format!(
                "unknown value version {version} (this build reads up to {})",
                T::VERSION
            ))
        })?
    };
    value.map_err(corrupt)
}

/// Reads a `slots` value in place ([`SlotView`], borrowing from `bytes`); like [`decode`], an
/// unreadable one is `StoreError::Corrupt`.
pub fn decode_slot<'a>(key: &[u8], bytes: &'a [u8]) -> Result<SlotView<'a>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        tree: keys::SLOTS,
        detail: format!("key {}: {what}", keys::describe(key)),
    };
    match bytes.split_first() {
        Some((&version, body)) if version == SlotRecord::VERSION => {
            let (value, read) = bincode::serde::borrow_decode_from_slice(body, config())
                .map_err(|e| corrupt(format!("undecodable value: {e}")))?;
            if read != body.len() {
                return Err(corrupt(format!("{} trailing bytes", body.len() - read)));
            }
            Ok(value)
        }
        Some((version, _)) => Err(corrupt(format!("unknown value version {version}"))),
        None => Err(corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Mode;
    use crate::store::records::{BindingState, CallOptionsRecord};

    fn record() -> BindingRecord {
        BindingRecord {
            id: BindingId([7; 16]),
            app: "ride".into(),
            mode: Mode::Axb,
            state: BindingState::Active,
            x: "+8613800000000".into(),
            extension: Some("123".into()),
            y: None,
            party_a: "+8613900000001".into(),
            party_b: Some("+8613900000002".into()),
            area_code: "0755".into(),
            subscription_id: Some("sub-1".into()),
            request_id: Some("req-1".into()),
            created_at_ms: 1,
            updated_at_ms: -2,
            expires_at_ms: Some(3),
            released_at_ms: None,
            ttl_seconds: 60,
            call_options: CallOptionsRecord {
                call_direction: Some(1),
                record: Some(true),
                max_call_minutes: Some(30),
                callee_hint_tone: Some("callee.wav".into()),
                private_sms: Some(false),
                ..Default::default()
            },
            user_data: Some("ü".into()),
            reason: "least used".into(),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&record());
        assert_eq!(bytes[0], 2);
        let back: BindingRecord = decode("bindings", b"k", &bytes).unwrap();
        assert_eq!(back, record());
        let id: BindingId = decode("requests", b"k", &encode(&BindingId([9; 16]))).unwrap();
        assert_eq!(id, BindingId([9; 16]));
    }

    #[test]
    fn a_slot_reads_in_place_as_it_was_written() {
        let mut rec = record();
        rec.y = Some("+8613800000009".into());
        rec.call_options.record_hint_tone = Some("hint.wav".into());
        rec.call_options.last_minute_tone = Some("last.wav".into());
        for rec in [record(), rec] {
            let slot = SlotRecord::of(&rec);
            let bytes = encode(&slot);
            assert_eq!(SlotRecord::from(decode_slot(b"k", &bytes).unwrap()), slot);
        }
        let mut bytes = encode(&SlotRecord::of(&record()));
        bytes.push(0);
        assert!(decode_slot(b"k", &bytes).is_err(), "trailing bytes");
        for bad in [&[][..], &[2, 0], &[1, 9]] {
            assert!(crate::store::tests::corrupt_in(
                &decode_slot(b"k", bad).unwrap_err(),
                "slots"
            ));
        }
    }

    #[test]
    fn unknown_version_is_corrupt_naming_tree_and_key() {
        let mut bytes = encode(&record());
        bytes[0] = 3;
        let err = decode::<BindingRecord>("bindings", &[0xab, 0xcd], &bytes).unwrap_err();
        match err {
            StoreError::Corrupt { tree, detail } => {
                assert_eq!(tree, "bindings");
                assert!(detail.contains("abcd"), "{detail}");
                assert!(detail.contains("version 3"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [&[][..], &[1], &[2], &[1, 0xff, 0xff, 0xff], &[0; 3]] {
            let err = decode::<BindingRecord>("bindings", b"k", bytes).unwrap_err();
            assert!(crate::store::tests::corrupt_in(&err, "bindings"), "{err:?}");
        }
        let mut trailing = encode(&BindingId([1; 16]));
        trailing.push(0);
        let err = decode::<BindingId>("requests", b"k", &trailing).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
