//! Watch resume tokens: where in the change feed a Watch goes on.
//!
//! A token is base64url (no padding) of a version byte and the sequence number of the last
//! change it covers, big-endian: 12 characters. Clients must treat it as opaque; it holds no
//! secret, binds to no filter (a position in the feed means the same for every filter) and
//! survives a restart of the daemon, as the feed's numbers do.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::lifecycle::PoolError;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8;

/// The token that resumes after change `seq`.
pub fn token(seq: u64) -> String {
    let mut bytes = [0; LEN];
    bytes[0] = VERSION;
    bytes[1..].copy_from_slice(&seq.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The change a request's `resume_token` goes on after.
pub fn position(token: &str) -> Result<u64, PoolError> {
    let junk = || {
        PoolError::invalid(
            "resume_token",
            "not a resume token: send back one a Watch response gave, or none to start from now",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| junk())?;
    match <[u8; LEN]>::try_from(bytes.as_slice()) {
        Ok(bytes) if bytes[0] == VERSION => {
            let mut seq = [0; 8];
            seq.copy_from_slice(&bytes[1..]);
            Ok(u64::from_be_bytes(seq))
        }
        _ => Err(junk()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: PoolError) -> String {
        match e {
            PoolError::InvalidArgument { field, .. } => field,
            other => panic!("not INVALID_ARGUMENT: {other:?}"),
        }
    }

    #[test]
    fn a_token_brings_back_its_position() {
        for seq in [0, 1, 255, 256, 1 << 40, u64::MAX] {
            let t = token(seq);
            assert_eq!(t.len(), 12, "{t}");
            assert_eq!(position(&t).unwrap(), seq);
        }
        // Pinned: the format outlives a release, tokens saved by clients must still read.
        assert_eq!(token(1), "AQAAAAAAAAAB");
        assert_eq!(position("AQAAAAAAAAEA").unwrap(), 256);
    }

    #[test]
    fn junk_and_other_versions_are_refused_naming_the_field() {
        let other_version = URL_SAFE_NO_PAD.encode([2, 0, 0, 0, 0, 0, 0, 0, 1]);
        let too_long = URL_SAFE_NO_PAD.encode([1; 10]);
        for junk in [
            "",
            "x",
            "!!!!",
            "AQAAAAAAAAAB=",
            "AQAAAAAAAA",
            other_version.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(field(position(junk).unwrap_err()), "resume_token", "{junk}");
        }
    }
}
