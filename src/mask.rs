//! Real phone numbers in log lines: every log line that prints a party number (A, B, a caller or
//! callee) prints it through [`Masked`], never the number itself. X (and Y) numbers are the
//! company's own, not personal data, and are logged in full.

use std::fmt;

/// A party number for a log line: the country code and the first 3 national digits stay, the
/// last 4 digits stay, every digit between them is a `*`:
/// `+8613800010001` → `+86138****0001`.
///
/// Shorter numbers keep less, so that at least 4 digits (all of them, for 4 or fewer) are
/// masked: the last digits first (up to 4), then the first ones (up to 3). Digits without a `+`
/// are a national number (no country code); anything else is not a number and prints one `*`
/// per character.
#[derive(Debug, Clone, Copy)]
pub struct Masked<'a>(pub &'a str);

/// Digits always masked when the number has that many.
const MIN_MASKED: usize = 4;
/// National digits kept at the start and at the end, at most.
const HEAD: usize = 3;
const TAIL: usize = 4;

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (plus, digits) = match self.0.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", self.0),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return f.write_str(&"*".repeat(self.0.chars().count()));
        }
        let country = if plus.is_empty() {
            0
        } else {
            country_code_len(digits).min(digits.len())
        };
        let (country, national) = digits.split_at(country);
        let n = national.len();
        let masked = n.saturating_sub(HEAD + TAIL).max(MIN_MASKED.min(n));
        let kept = n - masked;
        let tail = kept.min(TAIL);
        let head = kept - tail;
        write!(
            f,
            "{plus}{country}{}{}{}",
            &national[..head],
            "*".repeat(masked),
            &national[n - tail..]
        )
    }
}

/// Length of the E.164 country code that `digits` starts with (ITU-T E.164 assignments:
/// 1 and 7 are one digit, the codes listed below two, every other one three).
fn country_code_len(digits: &str) -> usize {
    const TWO_DIGIT: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with(['1', '7']) {
        1
    } else if TWO_DIGIT.iter().any(|cc| digits.starts_with(cc)) {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::Masked;

    fn masked(number: &str) -> String {
        Masked(number).to_string()
    }

    #[test]
    fn chinese_mobile_keeps_country_code_first_three_and_last_four() {
        assert_eq!(masked("+8613800010001"), "+86138****0001");
        assert_eq!(masked("+8619912345678"), "+86199****5678");
    }

    #[test]
    fn country_codes_of_one_two_and_three_digits() {
        assert_eq!(masked("+12025550143"), "+120****0143");
        assert_eq!(masked("+447911123456"), "+4479****3456");
        assert_eq!(masked("+85291234567"), "+852****4567");
    }

    #[test]
    fn longer_numbers_mask_every_middle_digit() {
        assert_eq!(masked("+86138000100012345"), "+86138********2345");
    }

    #[test]
    fn shorter_numbers_mask_at_least_four_digits() {
        // A Beijing landline: 10 national digits.
        assert_eq!(masked("+861012345678"), "+8610****5678");
        assert_eq!(masked("+8612345678"), "+86****5678");
        assert_eq!(masked("+86123456"), "+86****56");
        assert_eq!(masked("+861234"), "+86****");
        assert_eq!(masked("+8612"), "+86**");
        assert_eq!(masked("+86"), "+86");
        assert_eq!(masked("+8"), "+8");
        assert_eq!(masked("+"), "+");
    }

    #[test]
    fn national_digits_have_no_country_code() {
        assert_eq!(masked("13800010001"), "138****0001");
        assert_eq!(masked("12345"), "****5");
        assert_eq!(masked(""), "");
    }

    #[test]
    fn anything_else_is_masked_whole() {
        assert_eq!(masked("+86 138 0001 0001"), "*****************");
        assert_eq!(masked("anonymous"), "*********");
        assert_eq!(masked("+86１３８"), "******");
    }

    #[test]
    fn never_prints_a_middle_digit() {
        for len in 0..20 {
            let number = format!("+86{}", "5".repeat(len));
            let shown = masked(&number);
            assert_eq!(shown.len(), number.len(), "{shown}");
            let kept = shown.chars().filter(char::is_ascii_digit).count() - 2;
            assert!(
                kept + 4 <= len || kept == 0,
                "{number} shows {kept} of {len} national digits: {shown}"
            );
        }
    }
}

/// Every tracing macro in the workspace's sources that names a party number routes it through
/// [`Masked`] (a guard for log lines added later; it reads the source, not the logs).
#[cfg(test)]
mod guard {
    use std::path::{Path, PathBuf};

    const MACROS: [&str; 5] = ["trace!(", "debug!(", "info!(", "warn!(", "error!("];

    /// Identifiers that hold a real number.
    fn is_party(token: &str) -> bool {
        ["party", "caller", "callee", "orig_num", "bind_num"]
            .iter()
            .any(|p| token.starts_with(p))
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The macro call starting at `start` (just past its `(`), with string literals blanked.
    fn call_at(text: &str, start: usize) -> String {
        let (mut depth, mut in_str, mut escaped) = (1, false, false);
        let mut code = String::new();
        for c in text[start..].chars() {
            if in_str {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => in_str = false,
                    _ => escaped = false,
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            code.push(c);
        }
        code
    }

    #[test]
    fn log_lines_print_party_numbers_only_masked() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        sources(&root.join("crates"), &mut files);
        let mut unmasked = Vec::new();
        // This file names the macros in strings.
        for file in files.iter().filter(|f| !f.ends_with("src/mask.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for name in MACROS {
                for (at, _) in text.match_indices(name) {
                    let code = call_at(&text, at + name.len());
                    let tokens = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                    let names_party = tokens.clone().any(is_party);
                    if names_party && !tokens.clone().any(|t| t == "Masked") {
                        let line = text[..at].lines().count();
                        unmasked.push(format!("{}:{line}", file.display()));
                    }
                }
            }
        }
        assert!(
            unmasked.is_empty(),
            "log lines printing a party number without mask::Masked: {unmasked:?}"
        );
    }
}
