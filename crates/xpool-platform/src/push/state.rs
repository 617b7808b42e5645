//! Hang-up reasons: `stateCode` of a `disconnect` event (notifications.md §1.7, the
//! PrivateNumber table, not VoiceCall's), which the simulator also puts in a failed call's CDR as
//! `ulFailReason` (§2.4 uses the same numbers for these cases).

/// Normal hang-up after the call was connected.
pub const NORMAL: u64 = 0;
/// Caller hung up before the callee rang.
pub const CALLER_ABANDONED: u64 = 7501;
/// Callee rejected the call.
pub const CALLEE_REJECTED: u64 = 7503;
/// The longest call time was reached (`maxDuration`).
pub const MAX_DURATION: u64 = 8010;
/// AX: A dialed X but no temporary callee is set.
pub const AX_NO_CALLEE: u64 = 8013;
/// AXB / X mode: no binding, bad number, or an invalid Block answer.
pub const NO_BINDING: u64 = 8014;
/// AX/AXB: the binding's `callDirection` does not allow this direction.
pub const DIRECTION_NOT_ALLOWED: u64 = 8016;
/// X mode: the customer's Block answer said to hang up.
pub const X_CLOSED: u64 = 8017;
/// No service permission, including "no AX binding exists".
pub const NO_PERMISSION: u64 = 8018;
/// AXE / AX: A called X and no callback record exists.
pub const CALLBACK_NOT_FOUND: u64 = 8019;
/// AXE: binding missing or expired (B called X + E).
pub const AXE_NO_BINDING: u64 = 8022;
/// AXYB: no binding.
pub const AXYB_NO_BINDING: u64 = 8030;
/// AXYB: no Y could be allocated during the call.
pub const AXYB_NO_Y: u64 = 8031;
/// AXYB: a bound number dialed its own privacy number.
pub const AXYB_OWN_NUMBER: u64 = 8032;
/// AXE: an empty extension was keyed in.
pub const EMPTY_EXTENSION: u64 = 8033;
/// The X number is unavailable (paused or unavailable, §3).
pub const X_UNAVAILABLE: u64 = 8055;

/// The English `stateDesc` of a code (0's is the documented text; the others paraphrase §1.7).
pub fn desc(code: u64) -> &'static str {
    match code {
        NORMAL => "The user releases the call.",
        CALLER_ABANDONED => "The caller hung up before the callee rang.",
        7502 => "The caller hung up after the callee started ringing.",
        CALLEE_REJECTED => "The callee rejected the call.",
        7504 => "The call was refused.",
        MAX_DURATION => "The maximum call duration was reached.",
        AX_NO_CALLEE => "Invalid AX call: no callee is set.",
        NO_BINDING => "Invalid call: the binding does not exist.",
        DIRECTION_NOT_ALLOWED => "The call direction is not allowed.",
        X_CLOSED => "The call was released as the customer instructed.",
        NO_PERMISSION => "The service has no permission.",
        CALLBACK_NOT_FOUND => "The callback record does not exist.",
        AXE_NO_BINDING => "The binding does not exist or has expired.",
        AXYB_NO_BINDING => "The AXYB binding does not exist.",
        AXYB_NO_Y => "Failed to allocate a Y number.",
        AXYB_OWN_NUMBER => "A bound number called its own privacy number.",
        EMPTY_EXTENSION => "The extension is empty.",
        X_UNAVAILABLE => "The X number is unavailable.",
        8035 => "The callee did not answer.",
        8101 => "The callee did not answer.",
        8102 => "The callee is busy.",
        _ => "The call failed.",
    }
}

/// What a hang-up code means, in notifications.md §1.7's words (the PrivateNumber table);
/// `None` for a code the table does not list.
pub fn meaning(code: u64) -> Option<&'static str> {
    Some(match code {
        0 => "normal hang-up after the call was connected",
        522 => "platform voice ports exhausted",
        7001 => "call-frequency control per developer",
        7002 => "call-frequency control per app",
        7003 => "call-frequency control per display number",
        7004 => "callee blacklisted",
        7005 => "caller blacklisted",
        7100 => "app does not exist",
        7101 => "app has no privacy-number resources",
        7102 => "platform internal error",
        7105 => "service type mismatch",
        7106 => "app lacks the PrivateNumber capability",
        7107 => "security-control prompt failed to play",
        7108 => "account frozen",
        7109 => "tenant voice ports exhausted",
        7500 => "call prefix restricted",
        7501 => "caller hung up before the callee rang",
        7502 => "caller hung up after the callee started ringing",
        7503 => "callee rejected",
        7504 => "call refused (callee rejected, do-not-disturb, blacklist or interception app)",
        7507 => "no play file",
        7516 => "caller hung up before forwarding",
        8006 => "X-mode play file does not exist",
        8007 => "last-minute prompt failed to play",
        8008 => "prompt-and-collect failed",
        8010 => "max call duration reached",
        8011 => "platform internal error",
        8012 => "invalid app_key",
        8013 => "invalid AX call: the AX binding has no temporary callee",
        8014 => {
            "invalid call: the binding does not exist, a number is malformed, or (X mode) the Block answer was invalid"
        }
        8015 => "recording failed",
        8016 => "call direction not allowed by the binding",
        8017 => "X mode: the customer's Block answer said to hang up",
        8018 => "service has no permission (including: no AX binding exists)",
        8019 => "callback record not found",
        8020 => "platform service exception",
        8022 => "binding missing or expired (AXE, B called X)",
        8023 => "fixed-line number not allowed as caller",
        8024 => "\"show real caller number\" mode not allowed",
        8025 => "dialed X number does not exist (AXE)",
        8030 => "AXYB binding does not exist",
        8031 => "AXYB: no Y number could be allocated during the call",
        8032 => "AXYB: a bound number dialed its own privacy number",
        8033 => "empty extension received (AXE)",
        8035 => "no answer: the platform's connect timeout (about 90 s after forwarding)",
        8040 => "platform internal error",
        8041 => "recording failed",
        8042 => "international inbound calls restricted",
        8043 => "international outbound calls restricted",
        8044 => "abnormal call-time control",
        8046 => "abnormal answer-rate control",
        8047 => "frequency control per caller",
        8048 => "frequency control per callee",
        8049 => "frequency control per service number",
        8050 => "calling-hours restriction",
        8051 => "sub-enterprise suspended",
        8055 => "X number unavailable (calls and SMS disabled)",
        8056 => "test-call number control",
        8057 => "call-direction control",
        8058 => "practitioner not real-name verified",
        8059 => "blocked by the carrier",
        8100 => "callee number does not exist",
        8101 => "no answer after ringing",
        8102 => "callee busy",
        8103 => "callee unreachable",
        8104 => "callee powered off or without network",
        8105 => "callee number suspended",
        _ => return None,
    })
}

/// The Q.850 cause (`fwdUnaswRsn`, §2.5) and SIP status a CDR gives for a forwarded call that
/// ended with `code`; `(0, 0)` when not applicable.
pub fn forward_failure(code: u64) -> (u64, u64) {
    match code {
        CALLEE_REJECTED | 7504 => (21, 603),
        8101 | 8035 => (19, 480),
        8102 => (17, 486),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_has_its_own_text() {
        let codes = [
            NORMAL,
            CALLER_ABANDONED,
            CALLEE_REJECTED,
            MAX_DURATION,
            AX_NO_CALLEE,
            NO_BINDING,
            DIRECTION_NOT_ALLOWED,
            X_CLOSED,
            NO_PERMISSION,
            CALLBACK_NOT_FOUND,
            AXE_NO_BINDING,
            AXYB_NO_BINDING,
            AXYB_NO_Y,
            AXYB_OWN_NUMBER,
            EMPTY_EXTENSION,
            X_UNAVAILABLE,
        ];
        for code in codes {
            assert_ne!(desc(code), desc(1), "{code}");
        }
        assert_eq!(forward_failure(CALLEE_REJECTED), (21, 603));
        for code in codes {
            assert!(meaning(code).is_some(), "{code} has no meaning");
        }
        assert_eq!(meaning(1), None);
        assert_eq!(forward_failure(NORMAL), (0, 0));
    }
}
