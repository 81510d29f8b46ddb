//! What is said about each host when it is done: the failure summary, the `--json`
//! object and the `HOST.status` file.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use super::hosts::compact;
use super::outcome::{HostResult, Outcome};

/// Why a host counts as failed, in words shared by every host that failed the same way
/// (so they group); `None` for a command that exited 0.
pub fn reason(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(format!("exit status {code}")),
        Outcome::Unreachable(why) => Some(format!("unreachable: {why}")),
        Outcome::Failed(why) => Some(why.clone()),
        Outcome::Interrupted => Some("interrupted after another host failed (-k)".into()),
        Outcome::NotStarted => Some("not started after another host failed (-k)".into()),
    }
}

/// The summary for stderr: one line per reason with the compact list of its hosts, and a
/// count first. Empty when every host exited 0.
pub fn summary(results: &[HostResult]) -> Vec<String> {
    let mut by_reason: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in results {
        if let Some(why) = reason(&r.outcome) {
            by_reason.entry(why).or_default().push(&r.name);
        }
    }
    if by_reason.is_empty() {
        return Vec::new();
    }
    // Hosts -k stopped did not fail: count them apart, so the headline is not inflated.
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
    let interrupted = count(|o| matches!(o, Outcome::Interrupted));
    let not_started = count(|o| matches!(o, Outcome::NotStarted));
    let failed = by_reason.values().map(Vec::len).sum::<usize>() - interrupted - not_started;
    let mut headline = format!("{failed} of {} hosts failed", results.len());
    if interrupted > 0 {
        headline.push_str(&format!(", {interrupted} interrupted"));
    }
    if not_started > 0 {
        headline.push_str(&format!(", {not_started} not started"));
    }
    headline.push(':');
    let mut lines = vec![headline];
    for (why, hosts) in by_reason {
        lines.push(format!("  {}: {why}", compact(&hosts)));
    }
    lines
}

/// One host as a JSON object on one line: host, status (or error), stdout, stderr,
/// seconds. Output that is not UTF-8 is shown with U+FFFD in place of the bad bytes, as
/// `String::from_utf8_lossy` shows it. The output is streamed from where it was kept,
/// never held whole in memory.
///
/// # Errors
/// Reading the kept output back, or writing `out`.
pub fn write_json(result: &mut HostResult, out: &mut dyn Write) -> io::Result<()> {
    let mut head = serde_json::json!({
        "host": result.name,
        "seconds": (result.seconds * 1000.0).round() / 1000.0,
    });
    match &result.outcome {
        Outcome::Exited(code) => head["status"] = (*code).into(),
        other => head["error"] = reason(other).unwrap_or_default().into(),
    }
    let head = head.to_string();
    out.write_all(head.strip_suffix('}').unwrap_or(&head).as_bytes())?;
    out.write_all(b",\"stdout\":\"")?;
    json_string_body(&mut result.stdout.reader()?, out)?;
    out.write_all(b"\",\"stderr\":\"")?;
    json_string_body(&mut result.stderr.reader()?, out)?;
    out.write_all(b"\"}\n")
}

/// The bytes of `src` as the inside of a JSON string, a piece at a time: decoded as
/// UTF-8 with U+FFFD for each invalid sequence (a character cut between two reads is
/// joined first), then escaped as serde_json escapes it.
fn json_string_body(src: &mut dyn Read, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes of a character whose end has not been read yet, kept at the front of `buf`.
    let mut carried = 0;
    loop {
        let n = src.read(&mut buf[carried..])?;
        let at_end = n == 0;
        let mut rest = &buf[..carried + n];
        let mut text = String::with_capacity(rest.len());
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                }
                Err(e) => {
                    let (valid, bad) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("checked valid"));
                    match e.error_len() {
                        Some(len) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[len..];
                        }
                        // Cut at the end of the input: one U+FFFD, as from_utf8_lossy.
                        None if at_end => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                        }
                        // Cut at the end of this read: the rest of it comes next.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let quoted = serde_json::to_string(&text).map_err(io::Error::other)?;
        out.write_all(&quoted.as_bytes()[1..quoted.len() - 1])?;
        if at_end {
            return Ok(());
        }
        let keep = rest.len();
        let end = carried + n;
        buf.copy_within(end - keep..end, 0);
        carried = keep;
    }
}

/// The contents of `HOST.status`: the exit status on a line; for a host where no command
/// status exists, 255 and then the reason on a second line.
pub fn status_file(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Exited(code) => format!("{code}\n"),
        other => format!("255\n{}\n", reason(other).unwrap_or_default()),
    }
}

/// A duration as a person writes it: `5s`, `0.5s`.
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::kept::Kept;

    fn result(name: &str, outcome: Outcome) -> HostResult {
        let mut stdout = Kept::default();
        stdout.write_all(b"out\xff").unwrap();
        HostResult {
            name: name.into(),
            outcome,
            seconds: 0.12345,
            stdout,
            stderr: Kept::default(),
        }
    }

    fn json(result: &mut HostResult) -> serde_json::Value {
        let mut line = Vec::new();
        write_json(result, &mut line).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn summary_groups_hosts_by_reason() {
        let results = vec![
            result("n1", Outcome::Exited(0)),
            result("n2", Outcome::Exited(3)),
            result("n3", Outcome::Unreachable("Connection refused".into())),
            result("n4", Outcome::Exited(3)),
            result("n5", Outcome::Unreachable("Connection refused".into())),
        ];
        assert_eq!(
            summary(&results),
            [
                "4 of 5 hosts failed:",
                "  n[2,4]: exit status 3",
                "  n[3,5]: unreachable: Connection refused"
            ]
        );
        assert!(summary(&results[..1]).is_empty());
        let stopped = vec![
            result("n1", Outcome::Exited(2)),
            result("n2", Outcome::Interrupted),
            result("n3", Outcome::NotStarted),
            result("n4", Outcome::NotStarted),
        ];
        assert_eq!(
            summary(&stopped)[0],
            "1 of 4 hosts failed, 1 interrupted, 2 not started:"
        );
    }

    #[test]
    fn json_has_status_or_error() {
        let ok = json(&mut result("a", Outcome::Exited(2)));
        assert_eq!(ok["host"], "a");
        assert_eq!(ok["status"], 2);
        assert_eq!(ok["stdout"], "out\u{fffd}");
        assert_eq!(ok["seconds"], 0.123);
        assert!(ok.get("error").is_none());
        let bad = json(&mut result("b", Outcome::Failed("timed out".into())));
        assert_eq!(bad["error"], "timed out");
        assert!(bad.get("status").is_none());
    }

    #[test]
    fn status_file_is_a_number_first() {
        assert_eq!(status_file(&Outcome::Exited(7)), "7\n");
        assert_eq!(
            status_file(&Outcome::Unreachable("refused".into())),
            "255\nunreachable: refused\n"
        );
    }

    #[test]
    fn json_strings_match_serde_on_lossy_text_whatever_the_reads() {
        // Characters of 2, 3 and 4 bytes, invalid bytes, a cut character at the very
        // end, and controls that JSON escapes.
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice("é€😀\"\\\n\u{1b}".as_bytes());
            data.push((i % 256) as u8);
        }
        data.extend_from_slice(&"😀".as_bytes()[..2]);
        let expected = serde_json::to_string(&String::from_utf8_lossy(&data)).unwrap();
        /// A reader that returns at most `n` bytes per read, to cut characters.
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for step in [1, 2, 3, 5, 7, 64 * 1024, usize::MAX] {
            let mut out = b"\"".to_vec();
            json_string_body(&mut Dribble(&data, step), &mut out).unwrap();
            out.push(b'"');
            assert!(out == expected.as_bytes(), "reads of {step} bytes");
        }
    }
}
