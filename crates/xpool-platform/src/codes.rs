//! The platform's result codes (binding-api.md §1.4 and §3) and their documented texts.
//!
//! `resultcode` is always a string on the wire. What a caller should do about each code is decided
//! in one place, `upstream::result`; the simulator picks codes from here.

pub const SUCCESS: &str = "0";

// Authentication header problems (HTTP 400).
pub const AUTH_MISSING_AUTHORIZATION: &str = "1023006";
pub const AUTH_MISSING_REALM: &str = "1023007";
pub const AUTH_MISSING_PROFILE: &str = "1023008";
pub const AUTH_BAD_REALM: &str = "1023009";
pub const AUTH_BAD_PROFILE: &str = "1023010";
pub const AUTH_BAD_TYPE: &str = "1023011";
pub const AUTH_MISSING_TYPE: &str = "1023012";
pub const AUTH_MISSING_WSSE: &str = "1023013";
pub const WSSE_MISSING_HEADER: &str = "1023026";
pub const WSSE_MISSING_USERNAME: &str = "1023027";
pub const WSSE_MISSING_NONCE: &str = "1023028";
pub const WSSE_MISSING_CREATED: &str = "1023029";
pub const WSSE_MISSING_DIGEST: &str = "1023030";
pub const AKSK_MISSING_HEADER: &str = "1023033";
pub const AKSK_MISSING_USERNAME: &str = "1023034";
pub const AKSK_MISSING_NONCE: &str = "1023035";
pub const AKSK_MISSING_CREATED: &str = "1023036";
pub const AKSK_MISSING_DIGEST: &str = "1023037";

/// With HTTP 401: the digest did not verify. Otherwise: platform flow control (see §1.4).
pub const INVALID_DIGEST_OR_FLOW_CONTROL: &str = "1010010";
pub const TIME_OUT_LIMIT: &str = "1010013";
pub const INTERNAL_SYSTEM_ERROR: &str = "1010001";
pub const INVALID_REQUEST: &str = "1010002";
pub const INVALID_APP_KEY: &str = "1010003";
pub const APP_UNAVAILABLE: &str = "1010021";
pub const SUBSCRIBER_FROZEN: &str = "1010029";
pub const API_NOT_ALLOWED: &str = "1010040";

pub const AX_ACCOUNT_NOT_EXIST: &str = "1011001";
pub const AX_INSUFFICIENT_NUMBERS: &str = "1011002";
pub const AX_TOO_MANY_NUMBERS: &str = "1011003";
pub const AX_UNBIND_ERROR: &str = "1011004";
pub const AX_NUMBER_ALLOCATED: &str = "1011005";

pub const NUMBER_NOT_APPLIED: &str = "1012001";
pub const RECORD_NOT_EXIST: &str = "1012007";
pub const INSUFFICIENT_NUMBERS: &str = "1012008";
pub const MAX_BINDINGS_EXCEEDED: &str = "1012009";
pub const NUMBER_ALREADY_BOUND: &str = "1012010";
pub const RECORDING_NOT_OPEN: &str = "1012012";
pub const NUMBER_BLACKLISTED: &str = "1012102";
pub const LEGACY_NUMBER_ALREADY_BOUND: &str = "1013102";
pub const RECORD_NOT_EXIST_GENERIC: &str = "1016001";

pub const INTERNAL_ERROR: &str = "1023001";
pub const PARAMETER_ERROR: &str = "1020001";
pub const INTERNAL_ERROR_2: &str = "1020002";
pub const APP_KEY_INVALID: &str = "1020150";
pub const IP_NOT_WHITELISTED: &str = "1020166";
pub const NO_IDLE_EXTENSION: &str = "1020167";
pub const IP_BLACKLISTED: &str = "1020176";

/// The documented English text of a code, as the platform puts it in `resultdesc`.
pub fn text(code: &str) -> &'static str {
    match code {
        SUCCESS => "Success",
        AUTH_MISSING_AUTHORIZATION => "Authorization not contained in the HTTP header.",
        AUTH_MISSING_REALM => "realm not contained in Authorization.",
        AUTH_MISSING_PROFILE => "profile not contained in Authorization.",
        AUTH_BAD_REALM => "The value of realm in Authorization must be SDP.",
        AUTH_BAD_PROFILE => "The value of profile in Authorization must be UsernameToken.",
        AUTH_BAD_TYPE => "The value of type in Authorization must be app_key.",
        AUTH_MISSING_TYPE => "type not contained in Authorization.",
        AUTH_MISSING_WSSE => "WSSE not contained in Authorization.",
        WSSE_MISSING_HEADER => "X-WSSE not contained in the HTTP header.",
        WSSE_MISSING_USERNAME => "Username not contained in X-WSSE.",
        WSSE_MISSING_NONCE => "Nonce not contained in X-WSSE.",
        WSSE_MISSING_CREATED => "Created not contained in X-WSSE.",
        WSSE_MISSING_DIGEST => "PasswordDigest not contained in X-WSSE.",
        AKSK_MISSING_HEADER => "HTTP header not found X-AKSK field.",
        AKSK_MISSING_USERNAME => "UserName not contained in X-AKSK.",
        AKSK_MISSING_NONCE => "Nonce not contained in X-AKSK.",
        AKSK_MISSING_CREATED => "Created not contained in X-AKSK.",
        AKSK_MISSING_DIGEST => "PasswordDigest not contained in X-AKSK.",
        INVALID_DIGEST_OR_FLOW_CONTROL => "Invalid digest.",
        TIME_OUT_LIMIT => "Time out limit.",
        INTERNAL_SYSTEM_ERROR => "Internal system error.",
        INVALID_REQUEST => "Invalid request.",
        INVALID_APP_KEY => "Invalid app_key.",
        APP_UNAVAILABLE => "Application unavailable.",
        SUBSCRIBER_FROZEN => "The subscriber status is frozen.",
        API_NOT_ALLOWED => "The app_key is not allowed to invoke the API.",
        AX_ACCOUNT_NOT_EXIST => "Account does not exist.",
        AX_INSUFFICIENT_NUMBERS => "Insufficient number resources.",
        AX_TOO_MANY_NUMBERS => "Exceeded the upper limit of resources that can be applied for.",
        AX_UNBIND_ERROR => "Unbind failed.",
        AX_NUMBER_ALLOCATED => "Resources have been allocated.",
        NUMBER_NOT_APPLIED => "The number is not applied.",
        RECORD_NOT_EXIST => "The record does not exist",
        INSUFFICIENT_NUMBERS => "Insufficient number of resources",
        MAX_BINDINGS_EXCEEDED => "Maximum number of resources has been exceeded",
        NUMBER_ALREADY_BOUND => "The relation number has been bound.",
        RECORDING_NOT_OPEN => "Application does not open recording",
        NUMBER_BLACKLISTED => "The number is contained in the blacklist.",
        LEGACY_NUMBER_ALREADY_BOUND => "The extend number has been bound.",
        RECORD_NOT_EXIST_GENERIC => "The record does not exist.",
        INTERNAL_ERROR | INTERNAL_ERROR_2 => "Internal error.",
        PARAMETER_ERROR => "Parameter error.",
        APP_KEY_INVALID => "The app_key is invalid",
        IP_NOT_WHITELISTED => "The app client ip is not in ip white list.",
        NO_IDLE_EXTENSION => "No idle extend Number.",
        IP_BLACKLISTED => "Authentication failed, try again later",
        _ => "Unknown error.",
    }
}

/// The flow-control text that accompanies 1010010 when it is not an authentication failure.
pub const FLOW_CONTROL_TEXT: &str = "The flow control upper limit is reached on the platform.";
