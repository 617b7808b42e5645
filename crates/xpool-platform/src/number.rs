//! Number formats (binding-api.md §0.3).

/// True for a number in the platform's global format: `+`, a country code not starting with 0,
/// and the national number, 8 to 15 digits in all (E.164 allows at most 15).
pub fn is_global(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// True for an area (city) code: 2 to 6 digits, as `010` or `0755`.
pub fn is_area_code(code: &str) -> bool {
    (2..=6).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
}

/// True for an AXE extension of exactly `digits` digits that is not all zeros
/// (the extension space is 1 ..= 10^digits − 1).
pub fn is_extension(ext: &str, digits: u8) -> bool {
    ext.len() == usize::from(digits)
        && ext.bytes().all(|b| b.is_ascii_digit())
        && ext.bytes().any(|b| b != b'0')
}

/// True when user data follows §0.4: 1–256 characters, no braces, no CJK characters.
pub fn is_valid_user_data(data: &str) -> bool {
    let len = data.chars().count();
    (1..=256).contains(&len) && !data.chars().any(|c| c == '{' || c == '}' || is_cjk(c))
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x2E80..=0x2FDF | 0x3000..=0x303F | 0x3040..=0x30FF | 0x3100..=0x312F | 0x3190..=0x31FF
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFFEF | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_numbers() {
        assert!(is_global("+8613800000001"));
        assert!(is_global("+8675528000001"));
        assert!(!is_global("8613800000001"), "the + is required");
        assert!(
            !is_global(" 8613800000001"),
            "an unescaped + decodes to a space"
        );
        assert!(!is_global("+86138000000011234"), "too long");
        assert!(
            !is_global("+0613800000001"),
            "country codes do not start with 0"
        );
        assert!(!is_global("+86-13800000001"));
    }

    #[test]
    fn extensions_have_the_configured_length_and_are_not_zero() {
        assert!(is_extension("0001", 4));
        assert!(is_extension("9", 1));
        assert!(!is_extension("1", 4));
        assert!(!is_extension("0000", 4));
        assert!(!is_extension("12a4", 4));
    }

    #[test]
    fn user_data_rules() {
        assert!(is_valid_user_data("order-42"));
        assert!(!is_valid_user_data(""));
        assert!(!is_valid_user_data("{json}"));
        assert!(!is_valid_user_data("订单"));
        assert!(!is_valid_user_data(&"x".repeat(257)));
        assert!(is_valid_user_data(&"x".repeat(256)));
    }
}
