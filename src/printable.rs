//! Text from outside made safe to print, and bytes shown as Python shows them.
//!
//! The one rule: whatever rcmd prints or logs that came from a peer or a user (a server's
//! error, warning or failure message, a client's command line, `--cwd` or variable name in
//! the server's log) goes through [`printable`] once, where it enters rcmd's own text.
//! Only a command's output is passed through raw, as ssh passes it.

/// `line` as one line of printable text: invalid UTF-8 becomes U+FFFD, and line breaks,
/// control and other invisible characters (ESC, BEL, CR, a right-to-left override) are
/// escaped as Rust escapes them (`\n`, `\u{1b}`, `\u{202e}`), so a peer can neither forge
/// or hide a line of a log or of rcmd's own messages, nor send a terminal escape sequence.
pub fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line).escape_debug().to_string()
}

/// `bytes` in Python's bytes notation, exactly as `repr()` writes it (`b'hi\n'`,
/// `b'\x00\x00\x03\xf6'`), the way a learner sees them in their own program. At most
/// `max` characters between the quotes are shown: a longer preview is cut before an
/// escape, never inside one, and ends with `…` after the closing quote.
pub fn py_bytes(bytes: &[u8], max: usize) -> String {
    // CPython (bytes_repr): single quotes unless the bytes hold ' and no ".
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut body = String::new();
    let mut shown = 0;
    let mut cut = false;
    for &b in bytes {
        let piece = match b {
            b'\\' => "\\\\".to_string(),
            b'\t' => "\\t".to_string(),
            b'\n' => "\\n".to_string(),
            b'\r' => "\\r".to_string(),
            _ if char::from(b) == quote => format!("\\{quote}"),
            0x20..=0x7e => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        if shown + piece.len() > max {
            cut = true;
            break;
        }
        shown += piece.len();
        body.push_str(&piece);
    }
    let ellipsis = if cut { "…" } else { "" };
    format!("b{quote}{body}{quote}{ellipsis}")
}

/// Shortest run of one byte that [`py_preview`] writes as a repetition.
const RUN: usize = 4;

/// [`py_bytes`] for a short preview, with runs of one byte written as Python repeats
/// them (`b' ' * 1023 + b'x\n'`), so a reply of spaces does not show as a `b'` and a `'`
/// far apart. About `max` characters between quotes in all; a longer preview ends with `…`.
pub fn py_preview(bytes: &[u8], max: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut room = max;
    let mut rest = bytes;
    let mut cut = false;
    while !rest.is_empty() {
        let run = rest.iter().take_while(|&&b| b == rest[0]).count();
        let (part, used, took) = if run >= RUN {
            let one = py_bytes(&rest[..1], 4);
            (format!("{one} * {run}"), one.len() - 3, run)
        } else {
            // Up to the next run worth repeating.
            let plain = (0..rest.len())
                .find(|&k| rest[k..].iter().take_while(|&&b| b == rest[k]).count() >= RUN)
                .unwrap_or(rest.len());
            let part = py_bytes(&rest[..plain], room);
            let used = part.trim_end_matches('…').len().saturating_sub(3);
            if part.ends_with('…') {
                parts.push(part);
                return parts.join(" + ");
            }
            (part, used, plain)
        };
        if used > room && !parts.is_empty() {
            cut = true;
            break;
        }
        room = room.saturating_sub(used);
        parts.push(part);
        rest = &rest[took..];
    }
    let joined = parts.join(" + ");
    if cut {
        format!("{joined} + …")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::{printable, py_bytes, py_preview};

    #[test]
    fn previews_write_runs_as_python_repeats_them() {
        let spaces = [vec![b' '; 1023], b"x\n".to_vec()].concat();
        assert_eq!(py_preview(&spaces, 16), "b' ' * 1023 + b'x\\n'");
        assert_eq!(py_preview(b"hello\n", 16), "b'hello\\n'");
        assert_eq!(py_preview(b"abcabcabcabcabcabcabc", 8), "b'abcabcab'…");
        // Each part is what Python evaluates back to the bytes.
        assert_eq!(py_preview(b"ab    cd", 16), "b'ab' + b' ' * 4 + b'cd'");
    }

    #[test]
    fn py_bytes_is_pythons_repr() {
        assert_eq!(py_bytes(b"hello\n", 80), "b'hello\\n'");
        assert_eq!(py_bytes(&[0, 0, 3, 0xf6], 80), "b'\\x00\\x00\\x03\\xf6'");
        assert_eq!(py_bytes(b"it's", 80), "b\"it's\"");
        assert_eq!(py_bytes(b"'\"", 80), "b'\\'\"'");
    }

    #[test]
    fn py_bytes_cuts_between_escapes() {
        assert_eq!(py_bytes(b"0123456789", 4), "b'0123'…");
        // "ab" fits, "\n" would not: the escape is not split.
        assert_eq!(py_bytes(b"ab\ncd", 3), "b'ab'…");
        assert_eq!(py_bytes(b"", 3), "b''");
    }

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

    #[test]
    fn no_terminal_escape_gets_through() {
        // A window title (OSC ... BEL), a colour, a cleared line, a carriage return, and
        // CSI as one C1 character, in UTF-8 and as a lone byte (not UTF-8: U+FFFD).
        let hostile = b"\x1b]0;pwned\x07\x1b[31m\x1b[2K\rok\xc2\x9b2J\x9b2J";
        let p = printable(hostile);
        assert!(p.chars().all(|c| !c.is_control()), "{p}");
        assert_eq!(
            p,
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[31m\\u{1b}[2K\\rok\\u{9b}2J\u{fffd}2J"
        );
    }
}
