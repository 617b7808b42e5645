//! Value encoding: one version byte, then bincode (serde, `config::standard()`).
//!
//! This is the only module that touches bincode, and it should stay so: bincode is pinned at
//! `=2.0.1` (3.0.0 on crates.io is a tombstone that only fails to compile) and 1.x/2.x carry the
//! "unmaintained" advisory RUSTSEC-2025-0141, so one day the encoding may have to move to
//! another crate, and only this file should have to change then. A new record layout gets a new
//! version number here and a migration in `decode`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::StoreError;
use super::keys;

/// The version written today.
pub const CURRENT_VERSION: u8 = 1;

/// Values are small records; refusing absurd lengths stops a corrupt length prefix from asking
/// for a huge allocation. (The limit does not change the encoding.)
const MAX_VALUE_BYTES: usize = 1 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_VALUE_BYTES>()
}

/// Encodes `value` behind `version`.
///
/// # Panics
/// Only if serde reports an error for `T`, which the derived store records never do (bincode
/// refuses only sequences of unknown length, which derives do not produce).
pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    let body = bincode::serde::encode_to_vec(value, config())
        .expect("derived store records always encode with bincode");
    out.extend_from_slice(&body);
    out
}

/// Decodes a value stored under `key` in `tree`; anything unreadable is `StoreError::Corrupt`
/// naming both, never a panic.
pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        tree,
        detail: format!("key {}: {what}", keys::describe(key)),
    };
    let Some((&version, body)) = bytes.split_first() else {
        return Err(corrupt("empty value".into()));
    };
    if version != CURRENT_VERSION {
        return Err(corrupt(format!(
            "unknown value version {version} (this build reads {CURRENT_VERSION})"
        )));
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| corrupt(format!("undecodable value: {e}")))?;
    if read != body.len() {
        return Err(corrupt(format!("{} trailing bytes", body.len() - read)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Mode;
    use crate::store::records::{BindingId, BindingRecord, BindingState};

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
            call_direction: 1,
            record: true,
            max_call_minutes: 30,
            user_data: Some("ü".into()),
            reason: "least used".into(),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(CURRENT_VERSION, &record());
        assert_eq!(bytes[0], CURRENT_VERSION);
        let back: BindingRecord = decode("bindings", b"k", &bytes).unwrap();
        assert_eq!(back, record());
        let id: BindingId = decode("requests", b"k", &encode(1, &BindingId([9; 16]))).unwrap();
        assert_eq!(id, BindingId([9; 16]));
    }

    #[test]
    fn unknown_version_is_corrupt_naming_tree_and_key() {
        let mut bytes = encode(CURRENT_VERSION, &record());
        bytes[0] = 2;
        let err = decode::<BindingRecord>("bindings", &[0xab, 0xcd], &bytes).unwrap_err();
        match err {
            StoreError::Corrupt { tree, detail } => {
                assert_eq!(tree, "bindings");
                assert!(detail.contains("abcd"), "{detail}");
                assert!(detail.contains("version 2"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [&[][..], &[1], &[1, 0xff, 0xff, 0xff], &[0; 3]] {
            let err = decode::<BindingRecord>("bindings", b"k", bytes).unwrap_err();
            assert!(crate::store::tests::corrupt_in(&err, "bindings"), "{err:?}");
        }
        let mut trailing = encode(CURRENT_VERSION, &BindingId([1; 16]));
        trailing.push(0);
        let err = decode::<BindingId>("requests", b"k", &trailing).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
