//! Reading the README's shell blocks as a shell would: a command goes on while a quote is open
//! or a line ends in a backslash, `#` lines between commands are comments, and a comment
//! `# -> …` (with indented `#   …` lines after it) shows what the command before it prints.

/// One command of a shell block, and the output its `# ->` comment shows (empty if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// As written, lines joined by their newlines.
    pub command: String,
    pub expected: String,
}

/// The body of the first ```` ```sh ```` block after the line `heading` (from the top of the
/// file if `None`).
pub fn sh_block<'a>(markdown: &'a str, heading: Option<&str>) -> &'a str {
    let from = match heading {
        None => 0,
        Some(h) => {
            let at = markdown
                .find(&format!("\n{h}\n"))
                .unwrap_or_else(|| panic!("the README has no heading {h:?}"));
            at + h.len() + 2
        }
    };
    let rest = &markdown[from..];
    let open = rest
        .find("```sh\n")
        .unwrap_or_else(|| panic!("no ```sh block after {heading:?}"))
        + "```sh\n".len();
    let len = rest[open..]
        .find("\n```")
        .unwrap_or_else(|| panic!("the ```sh block after {heading:?} does not end"));
    &rest[open..open + len + 1]
}

/// The commands of a shell block, in order.
pub fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut current = String::new();
    let mut in_expected = false;
    for line in block.lines() {
        if current.is_empty() {
            let text = line.trim_start();
            if text.is_empty() {
                in_expected = false;
                continue;
            }
            if let Some(comment) = text.strip_prefix('#') {
                let comment = comment.trim_start();
                if let Some(shown) = comment.strip_prefix("->") {
                    let step = steps
                        .last_mut()
                        .expect("a `# ->` comment follows a command");
                    step.expected.push_str(shown);
                    in_expected = true;
                } else if in_expected && line.starts_with("#  ") {
                    steps.last_mut().unwrap().expected.push_str(comment);
                } else {
                    in_expected = false;
                }
                continue;
            }
            in_expected = false;
        }
        current.push_str(line);
        current.push('\n');
        if complete(&current) {
            let command = std::mem::take(&mut current).trim_end().to_owned();
            steps.push(Step {
                command,
                expected: String::new(),
            });
        }
    }
    assert!(current.is_empty(), "a command does not end: {current}");
    steps
}

/// Whether `text` (whole lines) is a whole command: no quote open, no line continued.
fn complete(text: &str) -> bool {
    let (mut single, mut double, mut escaped, mut continued) = (false, false, false, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
            continued = c == '\n';
            continue;
        }
        continued = false;
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
    }
    !single && !double && !continued
}

/// The words of a command after quote removal, as `sh` splits them (no expansions), without
/// its comments.
pub fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_default();
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\n') | None => {}
                            Some(n @ ('"' | '\\' | '$' | '`')) => w.push(n),
                            Some(n) => w.extend(['\\', n]),
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => word.get_or_insert_default().push(n),
            },
            '#' if word.is_none() => {
                chars.by_ref().find(|&c| c == '\n');
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// The `"key":"value"` pairs a `# ->` comment shows, leaving out values elided with `…`.
pub fn shown_pairs(expected: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = expected;
    while let Some((key, after)) = quoted(rest) {
        rest = after;
        let Some(after_colon) = after.trim_start().strip_prefix(':') else {
            continue;
        };
        let Some((value, after_value)) = after_colon
            .trim_start()
            .starts_with('"')
            .then(|| quoted(after_colon))
            .flatten()
        else {
            continue;
        };
        rest = after_value;
        if !value.contains('…') {
            pairs.push((key.to_owned(), value.to_owned()));
        }
    }
    pairs
}

/// The first `"…"` in `s` (no escapes), and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let open = s.find('"')? + 1;
    let len = s[open..].find('"')?;
    Some((&s[open..open + len], &s[open + len + 1..]))
}

#[test]
fn a_block_splits_into_commands_as_sh_reads_it() {
    let block = "a list\n\n# prose\nb -d '{\"x\":1,\n  \"y\":2}' \\\n  addr M/Bind\n\
                 # -> {\"state\":\"ACTIVE\",\"id\":\"…\",\n#     \"n\":\"+86\", …}\n\
                 # more prose, \"k\":\"v\"\nc \"q\\\"d\" e\\ f\n";
    let steps = steps(block);
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "a list",
            "b -d '{\"x\":1,\n  \"y\":2}' \\\n  addr M/Bind",
            "c \"q\\\"d\" e\\ f"
        ]
    );
    assert_eq!(
        shown_pairs(&steps[1].expected),
        [
            ("state".into(), "ACTIVE".into()),
            ("n".into(), "+86".into())
        ]
    );
    assert!(steps[2].expected.is_empty());
    assert_eq!(
        words(&steps[1].command),
        ["b", "-d", "{\"x\":1,\n  \"y\":2}", "addr", "M/Bind"]
    );
    assert_eq!(words(&steps[2].command), ["c", "q\"d", "e f"]);
    assert_eq!(words("cargo test  # run a#b\nx"), ["cargo", "test", "x"]);
}

#[test]
fn a_block_is_found_after_its_heading() {
    let md = "# t\n\n```sh\ntop\n```\n\n## Calling it\n\ntext\n\n```sh\none\ntwo\n```\n";
    assert_eq!(sh_block(md, None), "top\n");
    assert_eq!(sh_block(md, Some("## Calling it")), "one\ntwo\n");
}
