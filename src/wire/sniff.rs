//! Recognising what the peer speaks: another protocol's opening where a tutorial-mode
//! command was expected (server side), a reply in another mode than the client's own
//! (client side, framed and tutorial clients alike), and the messages that say so.
//! No I/O here.

use std::fmt;

use crate::wire::header::HeaderFormat;
use crate::wire::message::{Tag, MAGIC};
use crate::wire::tutorial::{JsonHeader, MAX_DIGITS};
use crate::wire::{Protocol, Wire};

// ---------------------------------------------------------------- requests (server side)

/// Another protocol's opening, found where a tutorial-mode command was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// An HTTP request line, or a `Host:`/`Origin:` header: a browser or `curl`, perhaps
    /// sent by a web page to a port on localhost.
    Http,
    /// A TLS ClientHello.
    Tls,
    /// An SSH client's banner.
    Ssh,
    /// rcmd's own `framed` hello: a client started with another `--protocol`.
    FramedHello,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Foreign::Http => "an HTTP request",
            Foreign::Tls => "a TLS ClientHello",
            Foreign::Ssh => "an SSH banner",
            Foreign::FramedHello => "an rcmd framed hello",
        })
    }
}

/// The header sizes Python's `struct` has for one integer: `b`, `h`, `i`, `q`.
const HEADER_SIZES: [usize; 4] = [1, 2, 4, 8];

/// Whether a first read is another protocol's opening rather than a command. Checked on
/// every request: a shell would happily run `GET /;touch$IFS/x; HTTP/1.1`.
pub fn foreign_request(first: &[u8]) -> Option<Foreign> {
    if first.starts_with(&[0x16, 0x03]) {
        return Some(Foreign::Tls);
    }
    if first.starts_with(b"SSH-") {
        return Some(Foreign::Ssh);
    }
    if HEADER_SIZES.iter().any(|&s| {
        first.get(s..).is_some_and(|rest| {
            rest.starts_with(&[Tag::Hello.byte()]) && rest[1..].starts_with(MAGIC)
        })
    }) {
        return Some(Foreign::FramedHello);
    }
    let mut lines = first.split(|&b| b == b'\n');
    if lines.next().is_some_and(is_http_request_line) || starts_like_http(first) {
        return Some(Foreign::Http);
    }
    let http_header = |line: &[u8]| {
        let line = line.trim_ascii_start();
        ["host:", "origin:"]
            .iter()
            .any(|h| line.len() >= h.len() && line[..h.len()].eq_ignore_ascii_case(h.as_bytes()))
    };
    if first.split(|&b| b == b'\n').any(http_header) {
        return Some(Foreign::Http);
    }
    None
}

/// A request line cut short by the read (a long URL fills `--recv-size` before ` HTTP/`
/// arrives): one of HTTP's methods, a space, and a target as a browser sends one.
fn starts_like_http(first: &[u8]) -> bool {
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    METHODS.iter().any(|m| {
        first
            .strip_prefix(m.as_bytes())
            .and_then(|rest| rest.strip_prefix(b" "))
            .is_some_and(|target| {
                target.starts_with(b"/") || target.starts_with(b"*") || target.starts_with(b"http")
            })
    })
}

/// `METHOD SP TARGET SP HTTP/…`, as RFC 9112 draws a request line.
fn is_http_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(method_end) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (method, rest) = (&line[..method_end], &line[method_end + 1..]);
    let Some(target_end) = rest.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (target, version) = (&rest[..target_end], &rest[target_end + 1..]);
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !method.is_empty()
        && method.iter().all(tchar)
        && !target.is_empty()
        && version.starts_with(b"HTTP/")
}

/// What the server says when it refuses a request; `None` when the peer gets no reply
/// (it speaks something else entirely, so nothing we send would mean anything to it).
pub fn foreign_message(wire: &Wire, foreign: Foreign) -> Option<String> {
    (foreign == Foreign::FramedHello).then(|| {
        let name = wire.protocol.name();
        format!(
            "rcmd: this server speaks {name}; the client sent a framed hello: use --protocol {name}\n"
        )
    })
}

// ---------------------------------------------------------------- replies (client side)

/// How many bytes after its own header a client gathers before judging a reply with
/// [`identify_reply`]: enough for any JSON header or error frame rcmd sends.
pub const PROBE: usize = 512;

/// Which mode a reply's first bytes look like, or `None` when nothing stands out (plain
/// output in the caller's own mode looks like that). `first` is the start of the reply as
/// received: at least the caller's header and, as available, up to [`PROBE`] bytes more.
/// `ours` is the caller's own `--header`: an interpretation that agrees with it is taken
/// to be the caller's mode, so output starting with `!` or `{` is not mistaken.
///
/// Recognised, in this order:
/// - `framed`: a server hello (`H` `rcmd` version after a header of any size), or an error
///   frame (`!` and text after a header of any size and byte order, at most 4 KiB long,
///   nothing after it) whose length reads differently under `ours`;
/// - `json-header`: under `ours`, a length `L` then `L` bytes of JSON with a `total_size`;
/// - `classic`: a header (of any size and byte order, `ours` first) then text.
///
/// Used by every client: one that gets a reply in another mode says which, instead of
/// printing raw frames.
pub fn identify_reply(first: &[u8], ours: HeaderFormat) -> Option<Protocol> {
    let ours_len = first
        .get(..ours.size())
        .and_then(|h| ours.unpack_len(h).ok());
    if framed_shape(first, Some((ours.size(), ours_len))) {
        return Some(Protocol::Framed);
    }
    // Our own reading first: output in our mode is never taken for another.
    let ours_first = || {
        ours_len
            .map(|l| (ours.size(), l, true))
            .into_iter()
            .chain(readings(first).map(|(s, l)| (s, l, false)))
    };
    let json = ours_first().any(|(s, len, _)| {
        let rest = &first[s..];
        usize::try_from(len)
            .ok()
            .and_then(|len| rest.get(..len))
            .is_some_and(|j| j.starts_with(b"{") && JsonHeader::parse(j).is_ok())
    });
    if json {
        return Some(Protocol::JsonHeader);
    }
    // Text after our header; after any other, only a short reply that arrived whole (a
    // classic server's refusal), since text somewhere in a reply proves little.
    let classic = ours_first().any(|(s, len, is_ours)| {
        let rest = &first[s..];
        let body = &rest[..rest.len().min(usize::try_from(len).unwrap_or(usize::MAX))];
        let shape = if is_ours {
            !body.starts_with(b"{")
        } else {
            len <= PROBE as u64 && rest.len() as u64 == len
        };
        len > 0 && !body.is_empty() && shape && is_text(body)
    });
    classic.then_some(Protocol::Classic)
}

/// Printable UTF-8 (a character cut at the end allowed), tabs and line ends.
pub fn is_text(bytes: &[u8]) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // A multi-byte character cut by the end of what arrived is still text.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here")
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// Every way the start of `first` can be read as a length: each header size, both byte
/// orders.
fn readings(first: &[u8]) -> impl Iterator<Item = (usize, u64)> + '_ {
    HEADER_SIZES
        .into_iter()
        .flat_map(move |s| {
            let head = first.get(..s)?;
            let be = head.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
            let le = head.iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b));
            Some([(s, be), (s, le)])
        })
        .flatten()
}

/// Whether `first` has the shape of an rcmd framed server's answer: its hello, or an
/// error frame. With `ours` (a header's size and the length it reads), an error frame
/// that reads the same way as the caller's own header is left to the caller's mode.
fn framed_shape(first: &[u8], ours: Option<(usize, Option<u64>)>) -> bool {
    // The hello: a fixed shape with a non-text version byte, so no output looks like it.
    let hello = readings(first).any(|(s, len)| {
        let rest = &first[s..];
        len == 10
            && rest.len() >= 6
            && rest[0] == Tag::Hello.byte()
            && &rest[1..5] == MAGIC
            && (1..=9).contains(&rest[5])
    });
    hello
        || readings(first).any(|(s, len)| {
            let rest = &first[s..];
            let agrees_with_ours = ours.is_some_and(|(size, l)| s == size && Some(len) == l);
            !agrees_with_ours
                && (2..=4096).contains(&len)
                && rest.len() as u64 <= len
                && rest.len() >= 2
                && rest[0] == Tag::Error.byte()
                && is_text(&rest[1..])
        })
}

/// Whether `got` is one whole classic reply: a header, of some size and byte order, whose
/// length is exactly what follows it.
pub fn is_whole_classic_reply(got: &[u8]) -> bool {
    readings(got).any(|(s, len)| len > 0 && len == (got.len() - s) as u64)
}

/// Whether `got` is a classic header and nothing more, announcing a short reply: what
/// the first read of a classic server's reply returns when its output is still on the way.
pub fn is_classic_header_alone(got: &[u8]) -> bool {
    readings(got).any(|(s, len)| s == got.len() && len > 0 && len <= PROBE as u64)
}

/// Whether a reply with no shape of its own (naive mode's) is in fact an rcmd framed
/// server's answer.
pub fn is_framed_reply(first: &[u8]) -> bool {
    framed_shape(first, None)
}

/// What a client says when [`identify_reply`] found another mode than its own. A framed
/// reply a tutorial client can read is one without TLS.
pub fn wrong_mode_message(theirs: Protocol) -> String {
    match theirs {
        Protocol::Framed => {
            "the server speaks `framed` without TLS; try --protocol framed --plaintext".into()
        }
        _ => {
            let name = theirs.name();
            format!("the server speaks `{name}`; try --protocol {name}")
        }
    }
}

/// What a plaintext client says when the server answered with TLS records.
pub const TLS_SERVER_MESSAGE: &str =
    "the server speaks `framed` over TLS (rcmd's default); try --protocol framed without \
     --plaintext";

/// Whether a reply starts as a TLS record does (an alert or a handshake, version 3.x): a
/// TLS server that read our plaintext as a broken handshake.
pub fn is_tls_reply(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, minor, ..] if *minor <= 0x04)
}

/// The mode a tutorial server names in its refusal of a framed hello ([`foreign_message`]),
/// when `first` holds one: the one reply every mode's client can read in plain text.
pub fn refusal_names_mode(first: &[u8]) -> Option<Protocol> {
    const SAYS: &[u8] = b"rcmd: this server speaks ";
    let at = first.windows(SAYS.len()).position(|w| w == SAYS)? + SAYS.len();
    let name = first[at..].split(|&b| b == b';').next()?;
    let name = std::str::from_utf8(name).ok()?;
    <Protocol as clap::ValueEnum>::from_str(name, false).ok()
}

/// The mode a server likely speaks when its reply stopped before our header was whole:
/// a length-ack length waiting for its answer, or a naive reply (text, no header).
pub fn short_reply_mode(first: &[u8]) -> Option<Protocol> {
    if is_bare_length(first) {
        Some(Protocol::LengthAck)
    } else {
        (!first.is_empty() && is_text(first)).then_some(Protocol::Naive)
    }
}

/// Whether `first`, all that came before the server went quiet or closed, is a length-ack
/// length on its own: that server waits for an answer before saying more.
pub fn is_bare_length(first: &[u8]) -> bool {
    (1..=MAX_DIGITS).contains(&first.len()) && first.iter().all(u8::is_ascii_digit)
}

/// What a client says when a reply started and then stopped coming: `got` bytes of it
/// (of `expected`, when known) arrived, then nothing for `waited`.
pub fn stall_message(
    got: usize,
    expected: Option<u64>,
    waited: std::time::Duration,
    wire: &Wire,
) -> String {
    let bytes = |n: u64| if n == 1 { "byte" } else { "bytes" };
    let so_far = match expected {
        Some(n) => format!("{got} of {n} {}", bytes(n)),
        None => format!("{got} {}", bytes(got as u64)),
    };
    let cause = match wire.protocol {
        // The server holds the output until it accepts the answer.
        Protocol::LengthAck | Protocol::StructAck => format!(
            "A length-ack server sends the output only once it accepts this client's answer \
             to the length ({}); a server waiting for another word, or one in another \
             --protocol, stops here",
            crate::printable::py_bytes(crate::wire::tutorial::ACK, 40)
        ),
        _ => {
            let ours = wire.header;
            format!(
                "The likely cause is different --header formats on the two ends (this client \
                 reads a {}-byte '{ours}' header; a server using another format sends another \
                 size), or a server in another --protocol",
                ours.size()
            )
        }
    };
    format!("the reply stopped after {so_far} and nothing more came for {waited:?}. {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tutorial::message_reply;

    fn wire(protocol: Protocol, header: &str) -> Wire {
        Wire {
            header: header.parse().unwrap(),
            ..Wire::new(protocol)
        }
    }

    #[test]
    fn other_protocols_are_recognised_in_a_request() {
        for (bytes, what) in [
            (
                &b"GET /;touch$IFS/tmp/x; HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                Foreign::Http,
            ),
            (b"POST /run HTTP/1.0\r\n", Foreign::Http),
            (b"M-SEARCH * HTTP/1.1\r\n", Foreign::Http),
            (b"echo hi\nHost: evil.example\n", Foreign::Http),
            (b"x\r\n  origin: http://evil\r\n", Foreign::Http),
            (b"\x16\x03\x01\x02\x00\x01", Foreign::Tls),
            (b"SSH-2.0-OpenSSH_9.6\r\n", Foreign::Ssh),
            (
                b"\x00\x00\x00\x0aHrcmd\x01\x00\x10\x00\x00",
                Foreign::FramedHello,
            ),
            (
                b"\x0e\x00Hrcmd\x01\x00\x10\x00\x00tokn",
                Foreign::FramedHello,
            ),
        ] {
            assert_eq!(foreign_request(bytes), Some(what), "{bytes:?}");
        }
        for ok in [
            &b"echo hi"[..],
            b"ls -l /",
            b"curl -s http://localhost/ | head",
            b"echo GET / HTTP",
            b"grep -r host: /etc",
            b"",
        ] {
            assert_eq!(foreign_request(ok), None, "{ok:?}");
        }
    }

    #[test]
    fn only_a_framed_hello_gets_an_answer() {
        let w = wire(Protocol::Classic, "i");
        let message = foreign_message(&w, Foreign::FramedHello).unwrap();
        let reply = message_reply(&w, &message, 255);
        let text = String::from_utf8_lossy(&reply[4..]);
        assert!(text.contains("speaks classic") && text.contains("--protocol classic"));
        assert_eq!(foreign_message(&w, Foreign::Http), None);
    }

    fn framed_error(msg: &str) -> Vec<u8> {
        let mut v = ((msg.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(b'!');
        v.extend_from_slice(msg.as_bytes());
        v
    }

    #[test]
    fn replies_of_each_mode_are_recognised() {
        let i = HeaderFormat::NATIVE_INT;
        let hello = b"\x00\x00\x00\x0aHrcmd\x01\x00\x10\x00\x00";
        assert_eq!(identify_reply(hello, i), Some(Protocol::Framed));
        let err = framed_error("frame of 1701013615 bytes exceeds the limit");
        assert_eq!(identify_reply(&err, i), Some(Protocol::Framed));
        let mut json = 62i32.to_ne_bytes().to_vec();
        json.extend_from_slice(&JsonHeader::for_output(3, 0, 0).unwrap().to_bytes());
        assert_eq!(identify_reply(&json, i), Some(Protocol::JsonHeader));
        let mut classic = 3i32.to_ne_bytes().to_vec();
        classic.extend_from_slice(b"hi\n");
        assert_eq!(identify_reply(&classic, i), Some(Protocol::Classic));
        // A classic reply in a header other than ours, as a framed client sees one.
        assert_eq!(
            identify_reply(&classic, HeaderFormat::NETWORK_U32),
            Some(Protocol::Classic)
        );
    }

    #[test]
    fn output_that_merely_starts_like_another_mode_is_ours() {
        let i = HeaderFormat::NATIVE_INT;
        for out in [&b"!important\n"[..], b"{\"a\": 1}\n", b"Hrcmd\n"] {
            let mut reply = (out.len() as i32).to_ne_bytes().to_vec();
            reply.extend_from_slice(out);
            assert_eq!(
                identify_reply(&reply, i),
                Some(Protocol::Classic),
                "{out:?}"
            );
        }
        // Binary output says nothing either way.
        assert_eq!(identify_reply(&[2, 0, 0, 0, 0xff, 0], i), None);
        assert_eq!(identify_reply(&[0, 0], i), None);
    }
}
