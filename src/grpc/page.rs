//! Pages of List calls (AIP-158): page sizes and opaque page tokens.
//!
//! A token is base64url of a version byte, the first 8 bytes of a SHA-256 of the call's
//! filters and the position to go on after (a binding id, a number). Clients must treat it as
//! opaque; the filter hash lets the server refuse a token brought to a call with other filters,
//! whose position would silently skip or repeat entries. Tokens hold no secret and survive a
//! restart of the daemon.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::lifecycle::PoolError;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page; a larger `page_size` is read as this.
pub const MAX_PAGE_SIZE: usize = 1000;

const VERSION: u8 = 1;
const HASH_LEN: usize = 8;

/// The page size a request asks for: 0 is the default, more than the maximum is the maximum.
pub fn page_size(page_size: i32) -> Result<usize, PoolError> {
    match usize::try_from(page_size) {
        Err(_) => Err(PoolError::invalid("page_size", "must not be negative")),
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// The filters of one List call, in a fixed order: a token is valid only with the same ones.
#[derive(Debug, Clone)]
pub struct Filters {
    hash: [u8; HASH_LEN],
}

impl Filters {
    /// `method` and its filter values; each value is length-prefixed, so no two different
    /// lists hash alike by concatenation.
    pub fn new(method: &str, values: &[&str]) -> Self {
        let mut h = Sha256::new();
        for part in std::iter::once(method).chain(values.iter().copied()) {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let mut hash = [0; HASH_LEN];
        hash.copy_from_slice(&digest[..HASH_LEN]);
        Filters { hash }
    }

    /// The token of the page after `position`.
    pub fn token(&self, position: &str) -> String {
        let mut bytes = Vec::with_capacity(1 + HASH_LEN + position.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.hash);
        bytes.extend_from_slice(position.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position a request's `page_token` goes on after (`None` for the first page).
    pub fn position(&self, token: &str) -> Result<Option<String>, PoolError> {
        if token.is_empty() {
            return Ok(None);
        }
        let junk = || PoolError::invalid("page_token", "not a page token of this call");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| junk())?;
        let (&version, rest) = bytes.split_first().ok_or_else(junk)?;
        if version != VERSION || rest.len() < HASH_LEN {
            return Err(junk());
        }
        let (hash, position) = rest.split_at(HASH_LEN);
        if hash != self.hash {
            return Err(PoolError::invalid(
                "page_token",
                "was issued for other filters; repeat the first call's filters or start over \
                 without a token",
            ));
        }
        String::from_utf8(position.to_vec())
            .map(Some)
            .map_err(|_| junk())
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
    fn a_token_brings_back_its_position_with_the_same_filters() {
        let f = Filters::new("ListNumbers", &["rides", "010"]);
        let token = f.token("+8613800000001");
        assert_eq!(
            Filters::new("ListNumbers", &["rides", "010"])
                .position(&token)
                .unwrap(),
            Some("+8613800000001".to_owned())
        );
        assert_eq!(f.position("").unwrap(), None);
    }

    #[test]
    fn a_token_used_with_other_filters_is_refused() {
        let token = Filters::new("ListNumbers", &["rides", "010"]).token("+86138");
        for other in [
            Filters::new("ListNumbers", &["rides", "020"]),
            Filters::new("ListNumbers", &["rides0", "10"]),
            Filters::new("ListBindings", &["rides", "010"]),
        ] {
            assert_eq!(field(other.position(&token).unwrap_err()), "page_token");
        }
    }

    #[test]
    fn junk_tokens_are_refused() {
        let f = Filters::new("ListBindings", &[]);
        for junk in ["x", "!!!", "AA", &URL_SAFE_NO_PAD.encode([2; 12])] {
            assert_eq!(field(f.position(junk).unwrap_err()), "page_token", "{junk}");
        }
    }

    #[test]
    fn page_sizes_are_capped_not_refused() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert_eq!(page_size(1001).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(page_size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
        assert_eq!(field(page_size(-1).unwrap_err()), "page_size");
    }
}
