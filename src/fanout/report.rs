//! What is said about each host when it is done: the failure summary, the `--json`
//! object and the `HOST.status` file.

use std::collections::BTreeMap;
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

/// One host as a JSON object: host, status (or error), stdout, stderr, seconds. Output
/// that is not UTF-8 is shown with U+FFFD in place of the bad bytes.
pub fn json(result: &HostResult) -> serde_json::Value {
    let mut object = serde_json::json!({
        "host": result.name,
        "stdout": String::from_utf8_lossy(&result.stdout),
        "stderr": String::from_utf8_lossy(&result.stderr),
        "seconds": (result.seconds * 1000.0).round() / 1000.0,
    });
    match &result.outcome {
        Outcome::Exited(code) => object["status"] = (*code).into(),
        other => object["error"] = reason(other).unwrap_or_default().into(),
    }
    object
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

    fn result(name: &str, outcome: Outcome) -> HostResult {
        HostResult {
            name: name.into(),
            outcome,
            seconds: 0.12345,
            stdout: b"out\xff".to_vec(),
            stderr: Vec::new(),
        }
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
        let ok = json(&result("a", Outcome::Exited(2)));
        assert_eq!(ok["host"], "a");
        assert_eq!(ok["status"], 2);
        assert_eq!(ok["stdout"], "out\u{fffd}");
        assert_eq!(ok["seconds"], 0.123);
        assert!(ok.get("error").is_none());
        let bad = json(&result("b", Outcome::Failed("timed out".into())));
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
}
