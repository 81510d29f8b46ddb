//! The tutorial modes' bytes (`length-ack`, `classic`, `json-header`, `naive`), as
//! `message.rs` is for `framed`: building and reading replies, and the limits both ends
//! check. No I/O here; `server/tutorial.rs` and `client/tutorial.rs` only move bytes.
//!
//! ```text
//! length-ack   str(n) as ASCII digits; wait for any answer (b'recv_ready'); stderr ‖ stdout
//! classic      pack(FMT, n) ‖ stderr ‖ stdout                      n = len(stderr)+len(stdout)
//! struct-ack   pack(FMT, n); wait for any answer (b'recv_ready'); stderr ‖ stdout
//! json-header  pack(FMT, len(h)) ‖ h ‖ stderr ‖ stdout            h = {"total_size": n, ...}
//! naive        stdout and stderr as the command produces them, nothing else
//! ```
//!
//! A request is whatever one `recv(--recv-size)` returns. Before running it the server asks
//! [`sniff::foreign_request`](super::sniff::foreign_request) whether it is really another
//! protocol, and runs nothing if so.

use serde::{Deserialize, Serialize};

use crate::wire::header::HeaderFormat;
use crate::wire::{Order, Protocol, Wire};

/// What the length-ack client answers to the length. The tutorial's server of this stage
/// checks `if data == b'recv_ready'` and sends nothing for any other word.
pub const ACK: &[u8] = b"recv_ready";

/// The json-header mode's dictionary. The tutorial's client reads only `total_size`; an
/// rcmd client uses the rest, when present, to split the streams and report the status.
/// Fields are in alphabetical order, so the bytes are the same as they always were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_size: Option<u64>,
    /// Set (true) only by a server started with `--order stdout-first`, so an rcmd client
    /// splits the streams the right way round; absent, stderr comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_first: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_size: Option<u64>,
    pub total_size: u64,
}

impl JsonHeader {
    /// The header for a command's output; `None` if the sizes do not add up in a `u64`.
    pub fn for_output(stdout: u64, stderr: u64, exit_code: i32) -> Option<JsonHeader> {
        Some(JsonHeader {
            exit_code: Some(exit_code),
            stderr_size: Some(stderr),
            stdout_first: None,
            stdout_size: Some(stdout),
            total_size: stdout.checked_add(stderr)?,
        })
    }

    /// Parses a header as the tutorial's `json.loads` would, requiring only `total_size`.
    ///
    /// # Errors
    /// A message quoting the header when it is not a JSON object with a `total_size`.
    pub fn parse(bytes: &[u8]) -> Result<JsonHeader, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            let printable = crate::printable::printable;
            format!(
                "JSON header is not usable ({}): {}",
                printable(e.to_string().as_bytes()),
                printable(bytes)
            )
        })
    }

    /// The header as sent: compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of numbers always serialises")
    }

    /// `(stderr, stdout)` byte counts when the header says how the output splits and the
    /// parts add up to `total_size` (checked: a lying header cannot overflow); otherwise the
    /// whole output is to be treated as stdout.
    pub fn split(&self) -> Option<(u64, u64)> {
        let (e, o) = (self.stderr_size?, self.stdout_size?);
        (e.checked_add(o) == Some(self.total_size)).then_some((e, o))
    }
}

// ---------------------------------------------------------------- replies (server side)

/// The most a reply's output may hold in `wire`'s mode, given the server's `--max-spool`:
/// classic also cannot describe more than its header holds.
pub fn spool_limit(wire: &Wire, max_spool: u64) -> u64 {
    match wire.protocol {
        Protocol::Classic | Protocol::StructAck => max_spool.min(wire.header.max_len() as u64),
        _ => max_spool,
    }
}

/// What the reply says when a command's output passed [`spool_limit`]; the command has
/// been killed.
pub fn overflow_message(wire: &Wire, max_spool: u64) -> String {
    let limit = spool_limit(wire, max_spool);
    if limit < max_spool {
        too_large_message(wire.header, limit + 1)
    } else {
        format!(
            "rcmd: the output passed the server's --max-spool of {max_spool} bytes; \
             the command was killed\n"
        )
    }
}

fn too_large_message(header: HeaderFormat, len: u64) -> String {
    format!(
        "rcmd: the reply is {len} bytes or more, more than header format '{header}' can \
         describe (at most {}); the command was killed. Use a wider --header such as q\n",
        header.max_value()
    )
}

/// Everything a reply sends before the output (stderr and stdout, in `wire.order`):
/// `pack(FMT, n)` in classic, `pack(FMT, len(h)) ‖ h` in json-header, `str(n)` in
/// length-ack and `pack(FMT, n)` in struct-ack (the server then waits for the client's
/// answer), nothing in naive.
///
/// # Errors
/// The explanation to send instead (see [`message_reply`]) when the header cannot
/// describe the reply: a wrapped length would desynchronise the client for good.
pub fn reply_head(
    wire: &Wire,
    stdout: u64,
    stderr: u64,
    exit_code: i32,
) -> Result<Vec<u8>, String> {
    let total = stdout.checked_add(stderr);
    let mut head = Vec::new();
    let fits = match (wire.protocol, total) {
        (Protocol::Naive, _) => true,
        (_, None) => false,
        (Protocol::LengthAck, Some(n)) => {
            head.extend_from_slice(n.to_string().as_bytes());
            true
        }
        (Protocol::JsonHeader, Some(_)) => {
            let mut json =
                JsonHeader::for_output(stdout, stderr, exit_code).expect("total checked above");
            if wire.order == Order::StdoutFirst {
                json.stdout_first = Some(true);
            }
            let json = json.to_bytes();
            let fits = wire.header.pack_into(json.len() as i128, &mut head).is_ok();
            head.extend_from_slice(&json);
            fits
        }
        (_, Some(n)) => wire.header.pack_into(i128::from(n), &mut head).is_ok(),
    };
    if fits {
        Ok(head)
    } else {
        Err(too_large_message(wire.header, total.unwrap_or(u64::MAX)))
    }
}

/// A whole reply carrying `msg` (as stderr, with `exit_code` where the mode has one) in
/// place of a command's output, so a client of `wire`'s mode shows it. Cut to what the
/// header can describe. In length-ack the digits and the message go out together: for a
/// connection turned away before any exchange (a server that can wait for the answer
/// uses [`message_parts`]).
pub fn message_reply(wire: &Wire, msg: &str, exit_code: i32) -> Vec<u8> {
    let (mut head, body) = message_parts(wire, msg, exit_code);
    head.extend_from_slice(&body);
    head
}

/// [`message_reply`] as the head (sent before length-ack's wait for an answer) and the rest.
pub fn message_parts(wire: &Wire, msg: &str, exit_code: i32) -> (Vec<u8>, Vec<u8>) {
    match wire.protocol {
        Protocol::LengthAck => {
            return (msg.len().to_string().into_bytes(), msg.as_bytes().to_vec());
        }
        Protocol::StructAck => {
            let body = &msg.as_bytes()[..msg.len().min(wire.header.max_len())];
            let mut head = Vec::new();
            wire.header
                .pack_into(body.len() as i128, &mut head)
                .expect("length cut to the header's maximum");
            return (head, body.to_vec());
        }
        _ => {}
    }
    (message_reply_inner(wire, msg, exit_code), Vec::new())
}

fn message_reply_inner(wire: &Wire, msg: &str, exit_code: i32) -> Vec<u8> {
    let header = wire.header;
    let body = &msg.as_bytes()[..msg.len().min(header.max_len())];
    let mut out = Vec::new();
    match wire.protocol {
        Protocol::JsonHeader => {
            // Under 90 bytes of JSON: every header format can describe that (b holds 127).
            let json = JsonHeader::for_output(0, body.len() as u64, exit_code)
                .expect("small sizes add up")
                .to_bytes();
            if header.pack_into(json.len() as i128, &mut out).is_ok() {
                out.extend_from_slice(&json);
                out.extend_from_slice(body);
            }
        }
        Protocol::Naive | Protocol::LengthAck => out.extend_from_slice(msg.as_bytes()),
        Protocol::Classic | Protocol::StructAck | Protocol::Framed => {
            header
                .pack_into(body.len() as i128, &mut out)
                .expect("length cut to the header's maximum");
            out.extend_from_slice(body);
        }
    }
    out
}

/// Why a command longer than one read is not run: the server would see only its first
/// `recv_size` bytes, a different command (`rm -rf /tmp/build` cut to `rm -rf /`).
pub fn too_long_message(recv_size: usize) -> String {
    format!("rcmd: command longer than --recv-size {recv_size} bytes; not run\n")
}

// ---------------------------------------------------------------- replies (client side)

/// Most digits a length-ack length can have: those of `u64::MAX`.
pub const MAX_DIGITS: usize = 20;

/// Reads length-ack's announcement, `str(n)`: the length and how many bytes its digits
/// took. Anything after the digits is already output (a refusal is sent in one go).
///
/// # Errors
/// A message quoting what came when it does not start with a number that fits a `u64`.
pub fn parse_length(first: &[u8]) -> Result<(u64, usize), String> {
    let digits = first.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&first[..digits])
        .ok()
        .filter(|_| digits > 0)
        .and_then(|d| d.parse::<u64>().ok())
        .map(|n| (n, digits))
        .ok_or_else(|| {
            format!(
                "expected the reply's length as ASCII digits, got {}",
                crate::printable::printable(&first[..first.len().min(40)])
            )
        })
}

/// Why a client will not send a command: the server would cut it at `recv_size` bytes.
pub fn check_command_len(len: usize, recv_size: usize) -> Result<(), String> {
    if len <= recv_size {
        return Ok(());
    }
    Err(format!(
        "the command is {len} bytes, longer than --recv-size {recv_size}: the server would \
         read only its first {recv_size} bytes and run them as a command. Not sent; raise \
         --recv-size on both ends"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(protocol: Protocol, header: &str) -> Wire {
        Wire {
            header: header.parse().unwrap(),
            ..Wire::new(protocol)
        }
    }

    #[test]
    fn tutorial_json_header_needs_only_total_size() {
        let h =
            JsonHeader::parse(br#"{"filename": "a.txt", "md5": "x", "total_size": 12}"#).unwrap();
        assert_eq!(h.total_size, 12);
        assert_eq!(h.stdout_size, None);
        assert_eq!(h.split(), None);
        assert!(JsonHeader::parse(br#"{"size": 1}"#).is_err());
        assert!(JsonHeader::parse(b"not json").is_err());
    }

    #[test]
    fn json_header_bytes_are_unchanged() {
        // PROTOCOL.md's hex dump of `echo hi`.
        let h = JsonHeader::for_output(3, 0, 0).unwrap();
        assert_eq!(
            h.to_bytes(),
            br#"{"exit_code":0,"stderr_size":0,"stdout_size":3,"total_size":3}"#
        );
    }

    #[test]
    fn a_lying_split_cannot_overflow() {
        let h = JsonHeader {
            exit_code: None,
            stderr_size: Some(u64::MAX),
            stdout_first: None,
            stdout_size: Some(2),
            total_size: 1,
        };
        // Wrapping arithmetic would say MAX + 2 == 1 and trust the split.
        assert_eq!(h.split(), None);
        assert_eq!(JsonHeader::for_output(u64::MAX, 1, 0), None);
        let ok = JsonHeader::for_output(3, 4, 0).unwrap();
        assert_eq!(ok.split(), Some((4, 3)));
    }

    #[test]
    fn reply_heads_by_mode() {
        let w = wire(Protocol::Classic, "!I");
        assert_eq!(reply_head(&w, 3, 2, 0).unwrap(), vec![0, 0, 0, 5]);
        assert!(reply_head(&w, u64::MAX, 1, 0).is_err());
        let b = wire(Protocol::Classic, "b");
        assert!(reply_head(&b, 100, 28, 0).unwrap_err().contains("'b'"));
        assert_eq!(
            reply_head(&wire(Protocol::Naive, "i"), 9, 9, 0).unwrap(),
            b""
        );
        let j = reply_head(&wire(Protocol::JsonHeader, ">H"), 3, 0, 0).unwrap();
        assert_eq!(j[..2], [0, 62]);
    }

    #[test]
    fn spool_limit_is_the_smaller_of_flag_and_header() {
        assert_eq!(spool_limit(&wire(Protocol::Classic, "h"), 1 << 30), 32767);
        assert_eq!(spool_limit(&wire(Protocol::Classic, "q"), 1 << 30), 1 << 30);
        assert_eq!(
            spool_limit(&wire(Protocol::JsonHeader, "b"), 1 << 30),
            1 << 30
        );
        assert!(overflow_message(&wire(Protocol::Classic, "h"), 1 << 30).contains("'h'"));
        assert!(overflow_message(&wire(Protocol::Classic, "q"), 10).contains("--max-spool"));
    }

    #[test]
    fn length_ack_heads_are_digits_and_parse_back() {
        let w = wire(Protocol::LengthAck, "i");
        assert_eq!(reply_head(&w, 3893, 0, 0).unwrap(), b"3893");
        assert_eq!(parse_length(b"3893").unwrap(), (3893, 4));
        assert_eq!(parse_length(b"12rcmd: no").unwrap(), (12, 2));
        assert!(parse_length(b"hello").is_err());
        assert!(parse_length(b"99999999999999999999999").is_err());
        let (head, body) = message_parts(&w, "rcmd: no\n", 255);
        assert_eq!((head, body), (b"9".to_vec(), b"rcmd: no\n".to_vec()));
    }

    #[test]
    fn stdout_first_is_said_in_the_json_header_only_when_set() {
        let mut w = wire(Protocol::JsonHeader, "i");
        w.order = Order::StdoutFirst;
        let head = reply_head(&w, 3, 4, 0).unwrap();
        let h = JsonHeader::parse(&head[4..]).unwrap();
        assert_eq!(h.stdout_first, Some(true));
        assert_eq!(h.split(), Some((4, 3)));
    }

    #[test]
    fn long_commands_are_refused_before_sending() {
        assert!(check_command_len(1024, 1024).is_ok());
        let e = check_command_len(1031, 1024).unwrap_err();
        assert!(e.contains("1031") && e.contains("--recv-size 1024"), "{e}");
    }
}
