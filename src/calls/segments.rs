//! How many parts a carrier bills for an SMS text: GSM-7 texts take 160 characters in one
//! message and 153 per part when split; anything outside GSM-7 goes as UCS-2, 70 and 67
//! (a character outside the Basic Multilingual Plane takes two UCS-2 units). Characters of the
//! GSM-7 extension table (`^{}\[~]|€` and form feed) take two septets.

/// GSM 03.38 basic character set.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table (each costs an escape septet too).
const GSM7_EXTENDED: &str = "\u{c}^{}\\[~]|€";

/// The parts `text` is billed as (at least 1).
pub fn segments(text: &str) -> u32 {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, part) = if gsm {
        (septets, 160, 153)
    } else {
        (text.encode_utf16().count(), 70, 67)
    };
    let parts = if units <= single {
        1
    } else {
        units.div_ceil(part)
    };
    u32::try_from(parts).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn gsm7_texts_split_at_160_then_153() {
        assert_eq!(segments(""), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        // Extension characters take two septets: 80 of them fill one message.
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
    }

    #[test]
    fn other_texts_go_as_ucs2_at_70_then_67() {
        assert_eq!(segments(&"你".repeat(70)), 1);
        assert_eq!(segments(&"你".repeat(71)), 2);
        assert_eq!(segments(&"你".repeat(134)), 2);
        assert_eq!(segments(&"你".repeat(135)), 3);
        // One non-GSM character makes the whole text UCS-2.
        assert_eq!(segments(&format!("{}你", "a".repeat(70))), 2);
        // Outside the BMP: two UCS-2 units each.
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
    }

    #[test]
    fn the_at_number_prefix_counts_as_content() {
        // AX mode: the platform adds "@<B>" to what A sends; those characters are billed too.
        let body = "a".repeat(150);
        assert_eq!(segments(&body), 1);
        assert_eq!(segments(&format!("@+8613900000002{body}")), 2);
    }
}
