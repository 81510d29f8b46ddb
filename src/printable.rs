//! Peer-supplied text made safe to put in a log line.

/// `line` as one line of printable text: invalid UTF-8 becomes U+FFFD, and line breaks,
/// control and other invisible characters (such as a right-to-left override) are escaped
/// as Rust escapes them (`\n`, `\u{202e}`), so a command cannot forge or hide log lines.
pub fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn nothing_can_start_a_new_log_line_or_hide_text() {
        let forged = b"true\n2026-01-01T00:00:00Z  INFO rcmd: forged\r\x1b[2J\xe2\x80\xae";
        let p = printable(forged);
        assert!(!p.contains(['\n', '\r', '\x1b', '\u{202e}']), "{p}");
        assert!(
            p.starts_with(r"true\n2026") && p.ends_with(r"\u{1b}[2J\u{202e}"),
            "{p}"
        );
        assert_eq!(printable(b"echo hi \xff"), "echo hi \u{fffd}");
    }
}
