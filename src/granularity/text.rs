//! Plain-text helpers for messages. They live here because `granularity` is the crate's leaf
//! (it imports nothing of ours), so every layer may use them.

/// Makes a message (often another library's) safe to embed in a one-line error: lines trimmed
/// and joined with "; ", runs of white space collapsed, and cut to 300 characters with "…".
pub fn one_line(message: impl std::fmt::Display) -> String {
    let text = message.to_string();
    let joined = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match joined.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &joined[..i]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn messages_become_one_short_line() {
        assert_eq!(one_line("  expected `)`\n\n   at  line 3 \n"), "expected `)`; at line 3");
        let long = "é".repeat(400);
        let s = one_line(&long);
        assert_eq!(s.chars().count(), 301);
        assert!(s.ends_with('…') && !s.contains('\n'));
    }
}
