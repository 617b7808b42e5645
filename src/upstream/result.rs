//! What a caller should do about each platform result code: the one place where codes are
//! classified (binding-api.md §3, "Client action").

use crate::platform::codes;

/// The action a result calls for. Unknown codes keep their verbatim code and text in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Platform overload or fault (flow control, internal errors): try again after a delay.
    RetryLater,
    /// The chosen X or extension is taken or full: pick another.
    Taken,
    /// A party already appears on that X (AXB 1012010 and its legacy 1013102): pick another X,
    /// or, if the exact binding exists already, adopt it.
    PartyConflict,
    /// The party already holds the most numbers it may (AX: 5): another X will not help.
    PartyLimit,
    /// No such binding (also after the platform expired it). For an unbind this means done.
    NotFound,
    /// The platform found no free number for the area it was asked to choose in.
    Exhausted,
    /// The X is not the app's, is badly formed, or is blacklisted: stop using it.
    NumberUnusable,
    /// Authentication failed: stop calling (the platform blacklists an IP after repeated
    /// failures) until the secret or clock is fixed.
    Auth,
    /// The app is misconfigured (app key, mode, IP whitelist, recording): fix the configuration.
    Config,
    /// The request itself is malformed: fix the input; do not retry as is.
    InvalidRequest,
    /// The account is frozen (usually arrears): nothing works until it is topped up.
    AccountFrozen,
    /// A code this client does not know; kept verbatim in the error.
    Unknown,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::RetryLater => "retry later",
            ErrorClass::Taken => "number taken",
            ErrorClass::PartyConflict => "party conflict",
            ErrorClass::PartyLimit => "party limit",
            ErrorClass::NotFound => "not found",
            ErrorClass::Exhausted => "no free number",
            ErrorClass::NumberUnusable => "number unusable",
            ErrorClass::Auth => "authentication failure",
            ErrorClass::Config => "configuration error",
            ErrorClass::InvalidRequest => "invalid request",
            ErrorClass::AccountFrozen => "account frozen",
            ErrorClass::Unknown => "unknown result",
        })
    }
}

/// Classifies a non-success result. `http_status` disambiguates 1010010, which the docs give
/// both as "Invalid digest" (HTTP 401) and as platform flow control (§1.4).
pub fn classify(http_status: u16, code: &str, desc: &str) -> ErrorClass {
    use ErrorClass::*;
    match code {
        codes::INVALID_DIGEST_OR_FLOW_CONTROL => {
            if http_status == 401 || desc.to_ascii_lowercase().contains("digest") {
                Auth
            } else {
                RetryLater
            }
        }
        codes::TIME_OUT_LIMIT | codes::IP_BLACKLISTED => Auth,
        c if is_auth_header_code(c) => Auth,
        codes::INTERNAL_SYSTEM_ERROR | codes::INTERNAL_ERROR | codes::INTERNAL_ERROR_2 => {
            RetryLater
        }
        codes::INVALID_REQUEST | codes::PARAMETER_ERROR => InvalidRequest,
        codes::INVALID_APP_KEY
        | codes::APP_KEY_INVALID
        | codes::APP_UNAVAILABLE
        | codes::API_NOT_ALLOWED
        | codes::IP_NOT_WHITELISTED
        | codes::RECORDING_NOT_OPEN => Config,
        codes::SUBSCRIBER_FROZEN => AccountFrozen,
        codes::AX_NUMBER_ALLOCATED | codes::MAX_BINDINGS_EXCEEDED | codes::NO_IDLE_EXTENSION => {
            Taken
        }
        codes::NUMBER_ALREADY_BOUND | codes::LEGACY_NUMBER_ALREADY_BOUND => PartyConflict,
        codes::AX_TOO_MANY_NUMBERS => PartyLimit,
        codes::RECORD_NOT_EXIST | codes::RECORD_NOT_EXIST_GENERIC => NotFound,
        codes::AX_INSUFFICIENT_NUMBERS | codes::INSUFFICIENT_NUMBERS => Exhausted,
        codes::AX_ACCOUNT_NOT_EXIST
        | codes::AX_UNBIND_ERROR
        | codes::NUMBER_NOT_APPLIED
        | codes::NUMBER_BLACKLISTED => NumberUnusable,
        _ => Unknown,
    }
}

/// 1023006–1023037: a malformed or missing authentication header.
fn is_auth_header_code(code: &str) -> bool {
    code.len() == 7
        && code.starts_with("10230")
        && code
            .parse::<u32>()
            .is_ok_and(|n| (1_023_006..=1_023_037).contains(&n))
}

/// Classifies an HTTP answer that carried no platform result (a gateway page, an empty body).
pub fn classify_http(http_status: u16) -> ErrorClass {
    match http_status {
        // The docs: a 404 normally means the base URL or the path is wrong.
        404 | 405 => ErrorClass::Config,
        401 | 403 => ErrorClass::Auth,
        429 | 500..=599 => ErrorClass::RetryLater,
        _ => ErrorClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorClass::*;
    use super::*;

    /// Every code of binding-api.md §1.4 and §3, with the class the docs' "client action" implies.
    const TABLE: &[(u16, &str, ErrorClass)] = &[
        (400, "1023006", Auth),
        (400, "1023007", Auth),
        (400, "1023013", Auth),
        (400, "1023026", Auth),
        (400, "1023030", Auth),
        (400, "1023033", Auth),
        (400, "1023037", Auth),
        (401, "1010010", Auth),
        (401, "1010013", Auth),
        (403, "1010002", InvalidRequest),
        (403, "1010003", Config),
        (403, "1010010", RetryLater),
        (403, "1010021", Config),
        (403, "1010029", AccountFrozen),
        (403, "1010040", Config),
        (403, "1011001", NumberUnusable),
        (403, "1011002", Exhausted),
        (403, "1011003", PartyLimit),
        (403, "1011004", NumberUnusable),
        (403, "1011005", Taken),
        (403, "1012001", NumberUnusable),
        (403, "1012007", NotFound),
        (403, "1012008", Exhausted),
        (403, "1012009", Taken),
        (403, "1012010", PartyConflict),
        (403, "1012012", Config),
        (403, "1012102", NumberUnusable),
        (403, "1013102", PartyConflict),
        (403, "1016001", NotFound),
        (403, "1020166", Config),
        (403, "1020167", Taken),
        (403, "1020176", Auth),
        (500, "1010001", RetryLater),
        (500, "1023001", RetryLater),
        (500, "1020001", InvalidRequest),
        (500, "1020002", RetryLater),
        (500, "1020150", Config),
    ];

    #[test]
    fn every_documented_code_has_its_class() {
        for &(status, code, want) in TABLE {
            let desc = match (status, code) {
                (403, codes::INVALID_DIGEST_OR_FLOW_CONTROL) => codes::FLOW_CONTROL_TEXT,
                _ => codes::text(code),
            };
            assert_eq!(
                classify(status, code, desc),
                want,
                "code {code} (HTTP {status})"
            );
        }
    }

    #[test]
    fn flow_control_and_bad_digest_share_a_code() {
        assert_eq!(classify(401, "1010010", "Invalid digest."), Auth);
        assert_eq!(
            classify(403, "1010010", codes::FLOW_CONTROL_TEXT),
            RetryLater
        );
        assert_eq!(classify(200, "1010010", "Invalid digest."), Auth);
    }

    #[test]
    fn unknown_codes_stay_unknown() {
        assert_eq!(classify(403, "1099999", "new"), Unknown);
        assert_eq!(classify(400, "1023038", ""), Unknown);
        assert_eq!(classify(400, "10230", ""), Unknown);
    }

    #[test]
    fn bare_http_answers() {
        assert_eq!(classify_http(404), Config);
        assert_eq!(classify_http(503), RetryLater);
        assert_eq!(classify_http(418), Unknown);
    }
}
