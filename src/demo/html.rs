//! `rcmd demo sticky --html FILE`: the same runs as one self-contained page.
//!
//! For each case and stage a timeline drawn in inline SVG: the server's bytes on one lane,
//! the client's recv calls on the other, each byte coloured by the command it belongs
//! to, every header highlighted and decoded beside its bytes, and what each recv returned
//! shown below it, in Python's bytes notation (a run of one byte as Python repeats it),
//! and under each timeline the verdict on each command's reply. Where requests were
//! pipelined, a timeline before it draws them the other way round: the client's sends on
//! top, the server's recv calls below (`data-row="requests"`). No scripts and nothing fetched: the page
//! opens from disk anywhere. Every drawn read is a `rect.read` with `data-read`, and each
//! timeline says how many it holds in `data-reads`; every header is a `rect.head` with
//! `data-head`, decoded by the `text.decode` with the same `data-for`, so a test can
//! check what a person sees.
//!
//! Labels never leave the drawing: each is placed whole, in the lowest row above (headers)
//! or below (reads) its lane where it overlaps no other label, and tied to its bytes by a
//! thin line; the drawing grows by a row when it needs one.
//!
//! The page is the same on every run. The only thing that varies is how rcmd's server cuts
//! a command's output into frames (one per read of the command's pipe, and how much a read
//! gets depends on scheduling), so the framed stage is drawn normalised, and says so: each
//! command's stdout as one frame, then its stderr as one, then its status, with the
//! client's recv calls redrawn over those bytes.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use tokio_util::codec::Encoder;

use super::stages::{self, Kind, Recv, Stage, Trace};
use super::sticky::{self, Lesson};
use super::Reference;
use crate::printable::{py_bytes, py_preview};
use crate::wire::frame::DEFAULT_MAX_FRAME;
use crate::wire::header::HeaderFormat;
use crate::wire::message::{ServerCodec, ServerMessage};

const COLORS: [&str; 6] = [
    "#1f9bd1", "#e0a800", "#c2185b", "#2e9e44", "#6a4fc7", "#d84315",
];
const WIDTH: f64 = 960.0;
const LEFT: f64 = 110.0;
const BAND: f64 = WIDTH - LEFT - 10.0;
/// Height of one row of labels.
const ROW: f64 = 14.0;
/// Width of one character of the labels' 11px monospace font, rounded up so a label is
/// never wider than the room made for it.
const CHAR_W: f64 = 7.0;
/// Characters of a recv's bytes shown below it (between the quotes); the tooltip has more.
const PREVIEW: usize = 16;
const TOOLTIP_PREVIEW: usize = 160;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(owner: Option<usize>) -> &'static str {
    owner.map_or("#9e9e9e", |o| COLORS[o % COLORS.len()])
}

/// What a run of drawn bytes is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Output,
    /// A length header, with its decode.
    Head(String),
    /// A framed message's tag byte.
    Tag,
    /// The rest of a framed status message.
    Status,
}

/// A run of the server's bytes as drawn: whose, what, and the bytes themselves.
#[derive(Debug, Clone)]
struct Piece {
    owner: Option<usize>,
    part: Part,
    bytes: Vec<u8>,
}

/// One stage's timeline as it is drawn.
struct Drawing {
    pieces: Vec<Piece>,
    reads: Vec<Recv>,
    /// The framing was redrawn (see the module's doc).
    normalised: bool,
}

impl Drawing {
    fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.bytes.len()).sum()
    }

    fn bytes(&self, start: usize, len: usize) -> Vec<u8> {
        let all: Vec<u8> = self.pieces.iter().flat_map(|p| p.bytes.clone()).collect();
        all[start.min(all.len())..(start + len).min(all.len())].to_vec()
    }

    /// The owners of bytes `start..start + len`, as (owner, bytes) runs.
    fn owners(&self, start: usize, len: usize) -> Vec<(Option<usize>, usize)> {
        let mut runs: Vec<(Option<usize>, usize)> = Vec::new();
        let mut at = 0;
        for p in &self.pieces {
            let (lo, hi) = (at.max(start), (at + p.bytes.len()).min(start + len));
            if hi > lo {
                match runs.last_mut() {
                    Some(last) if last.0 == p.owner => last.1 += hi - lo,
                    _ => runs.push((p.owner, hi - lo)),
                }
            }
            at += p.bytes.len();
        }
        runs
    }
}

fn codec_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("drawing the framed stage: {e}"))
}

/// The bytes of a trace, rebuilt from what each command printed (the trace holds only
/// their lengths); the framed stage normalised.
fn drawing(
    t: &Trace,
    refs: &[Reference],
    merged: Option<&Reference>,
    header: HeaderFormat,
    recv_size: usize,
) -> io::Result<Drawing> {
    if t.stage == Stage::Framed {
        return framed(t, refs, header, recv_size);
    }
    let mut pieces = Vec::new();
    for s in &t.segments {
        let Some(i) = s.owner else { continue };
        // Requests that stuck together got one reply: the output of all of them as one.
        let r = match merged {
            Some(m) if !t.requests.is_empty() => m,
            _ => &refs[i],
        };
        let body = match t.stage {
            Stage::Naive => r.raw(),
            _ => stages::spooled(r),
        };
        let piece = match &s.kind {
            Kind::Output => Piece {
                owner: s.owner,
                part: Part::Output,
                bytes: body,
            },
            Kind::Header(_) if t.stage == Stage::Classic => {
                let head = HeaderFormat::NATIVE_INT
                    .pack(body.len() as i128)
                    .map_err(codec_error)?;
                let decode = format!(
                    "struct.unpack('{}', {}) = ({},)",
                    HeaderFormat::NATIVE_INT,
                    py_bytes(&head, 64),
                    body.len()
                );
                Piece {
                    owner: s.owner,
                    part: Part::Head(decode),
                    bytes: head,
                }
            }
            Kind::Header(_) => {
                let digits = body.len().to_string().into_bytes();
                let decode = format!(
                    "int({}) = {}: the length as text",
                    py_bytes(&digits, 64),
                    body.len()
                );
                Piece {
                    owner: s.owner,
                    part: Part::Head(decode),
                    bytes: digits,
                }
            }
            Kind::Tag(_) | Kind::Status(_) => continue,
        };
        if piece.bytes.len() != s.len {
            return Err(io::Error::other(format!(
                "the {} stage's bytes differ from what the commands printed",
                t.stage.name()
            )));
        }
        pieces.push(piece);
    }
    Ok(Drawing {
        pieces,
        reads: t.reads.clone(),
        normalised: false,
    })
}

/// The client's requests as the server's recv calls met them (the pipelined case).
fn request_drawing(t: &Trace) -> Drawing {
    let pieces = t
        .requests
        .iter()
        .map(|s| Piece {
            owner: s.owner,
            part: match &s.kind {
                Kind::Header(text) => Part::Head(text.clone()),
                Kind::Tag(_) | Kind::Status(_) => Part::Tag,
                Kind::Output => Part::Output,
            },
            bytes: s.bytes.clone(),
        })
        .collect();
    Drawing {
        pieces,
        reads: t.server_reads.clone(),
        normalised: false,
    }
}

/// The framed stage, normalised: per command its stdout as one frame, its stderr as one,
/// its status; the reads made again over those bytes, `recv(N)` until each batch of
/// replies is read, as the stage's client reads.
fn framed(
    t: &Trace,
    refs: &[Reference],
    header: HeaderFormat,
    recv_size: usize,
) -> io::Result<Drawing> {
    let codec = ServerCodec::new(header, DEFAULT_MAX_FRAME);
    let mut pieces = Vec::new();
    let mut ends = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        for (stderr, out) in [(false, &r.stdout), (true, &r.stderr)] {
            if out.is_empty() {
                continue;
            }
            let mut head = BytesMut::new();
            codec
                .encode_output_head(stderr, out.len(), &mut head)
                .map_err(codec_error)?;
            let (len_bytes, tag) = head.split_at(head.len() - 1);
            let decode = format!(
                "struct.unpack('{header}', {}) = ({},): {} + {} bytes",
                py_bytes(len_bytes, 64),
                out.len() + 1,
                if stderr { "'E' stderr" } else { "'O' stdout" },
                out.len()
            );
            pieces.push(Piece {
                owner: Some(i),
                part: Part::Head(decode),
                bytes: len_bytes.to_vec(),
            });
            pieces.push(Piece {
                owner: Some(i),
                part: Part::Tag,
                bytes: tag.to_vec(),
            });
            pieces.push(Piece {
                owner: Some(i),
                part: Part::Output,
                bytes: out.to_vec(),
            });
        }
        let mut frame = BytesMut::new();
        ServerCodec::new(header, DEFAULT_MAX_FRAME)
            .encode(ServerMessage::Done(r.status.clone()), &mut frame)
            .map_err(codec_error)?;
        let (len_bytes, payload) = frame.split_at(header.size());
        let decode = format!(
            "struct.unpack('{header}', {}) = ({},): '{}' {}",
            py_bytes(len_bytes, 64),
            payload.len(),
            char::from(payload[0]),
            r.status
        );
        pieces.push(Piece {
            owner: Some(i),
            part: Part::Head(decode),
            bytes: len_bytes.to_vec(),
        });
        pieces.push(Piece {
            owner: Some(i),
            part: Part::Tag,
            bytes: payload[..1].to_vec(),
        });
        pieces.push(Piece {
            owner: Some(i),
            part: Part::Status,
            bytes: payload[1..].to_vec(),
        });
        ends.push(pieces.iter().map(|p| p.bytes.len()).sum::<usize>());
    }
    let mut d = Drawing {
        pieces,
        reads: Vec::new(),
        normalised: true,
    };
    // Replies read together stay together: a reply ends a batch unless the run's reads
    // crossed its end (the pipelined case reads several replies in one recv).
    let crossed = |i: usize| {
        let end = t
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner == Some(i))
            .map(|(k, _)| t.segments[..=k].iter().map(|s| s.len).sum::<usize>())
            .max()
            .unwrap_or(0);
        t.reads
            .iter()
            .any(|r| r.start < end && end < r.start + r.len)
    };
    let mut at = 0;
    for (i, &end) in ends.iter().enumerate() {
        if i + 1 < ends.len() && crossed(i) {
            continue;
        }
        while at < end {
            let owner = d.owners(at, 1).first().and_then(|o| o.0).unwrap_or(i);
            let len = recv_size.min(end - at);
            d.reads.push(Recv {
                start: at,
                len,
                asked: recv_size,
                for_command: owner,
            });
            at += len;
        }
    }
    Ok(d)
}

/// Writes the page to `path` whole or not at all: into a temporary file beside it, renamed
/// over `path` once complete. Made before the demo runs, so a path that cannot be written
/// is reported before any work.
pub struct PageFile {
    path: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl PageFile {
    /// # Errors
    /// The directory of `path` does not exist or cannot be written.
    pub fn create(path: &Path) -> io::Result<PageFile> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // 0o666 before the umask: the mode any new file of the user's gets.
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::Builder::new()
            .prefix(".rcmd-page-")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| cannot_write(path, e))?;
        Ok(PageFile {
            path: path.to_path_buf(),
            temp,
        })
    }

    /// Writes `lesson`'s page and puts it in place; returns what to tell the user.
    ///
    /// # Errors
    /// Writing fails, or `path` cannot be replaced (a directory, say). The temporary file
    /// is removed either way.
    pub fn finish(mut self, lesson: &Lesson) -> io::Result<String> {
        let page = page(lesson)?;
        let path = self.path;
        self.temp
            .write_all(page.as_bytes())
            .and_then(|()| self.temp.as_file().sync_all())
            .map_err(|e| cannot_write(&path, e))?;
        self.temp
            .persist(&path)
            .map_err(|e| cannot_write(&path, e.error))?;
        let n = lesson.cases.len();
        Ok(format!(
            "wrote {} ({n} case{}, open it in a browser)",
            path.display(),
            if n == 1 { "" } else { "s" }
        ))
    }
}

/// Names the user's FILE, never the temporary file beside it, so the message is the same
/// on every run.
fn cannot_write(path: &Path, e: io::Error) -> io::Error {
    let why = match e.kind() {
        // Creating the temporary file is the first thing that fails for a missing directory.
        io::ErrorKind::NotFound => "no such directory".to_string(),
        _ => crate::text::io_reason(&e),
    };
    io::Error::new(
        e.kind(),
        format!("cannot write the page {}: {why}", path.display()),
    )
}

/// The page.
///
/// # Errors
/// The runs' bytes differ from what the commands printed (a broken trace).
pub fn page(lesson: &Lesson) -> io::Result<String> {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>rcmd demo sticky: the bytes on the wire</title>\n<style>\
         body{font:14px/1.4 system-ui,sans-serif,'Noto Sans CJK SC','Noto Sans SC',\
         'Source Han Sans SC','PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei';\
         margin:16px;color:#222;max-width:1000px}\
         .zh{font-family:'Noto Sans CJK SC','Noto Sans SC','Source Han Sans SC',\
         'PingFang SC','Hiragino Sans GB','Microsoft YaHei','WenQuanYi Micro Hei',\
         'Droid Sans Fallback',sans-serif}\
         ul.verdicts{margin:2px 0 10px;padding-left:18px;font-size:13px}\
         li.ok{color:#2e7d32}li.wrong{color:#c62828}\
         h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 2px}\
         h3{font-size:13px;margin:8px 0 0;font-weight:600}p{margin:2px 0 6px}\
         code{background:#f2f2f2;padding:0 3px}\
         svg{display:block;background:#fafafa;border:1px solid #ddd}\
         svg text{font:11px ui-monospace,monospace;fill:#333;white-space:pre}\
         svg text.lane{font-weight:600}svg text.preview{fill:#555}\
         .hdr{stroke:#000;stroke-width:1.2}.tie{stroke:#888;stroke-width:0.8}\
         .wait{fill:#d32f2f}.legend span{display:inline-block;width:12px;height:12px;\
         vertical-align:middle;margin:0 4px 0 10px}\
         </style></head><body>\n",
    );
    let _ = write!(
        h,
        "<h1>The sticky-packet bug (<span class=\"zh\" lang=\"zh-Hans\">粘包</span> \
         zhānbāo, \"sticky packets\"), byte by byte</h1>\n<p>Each timeline: the \
         server's <code>send()</code> bytes on the top lane, the client's \
         <code>recv({})</code> calls below, on the same byte axis. Colour says which \
         command a byte belongs to; outlined grey blocks are headers, decoded above \
         them as Python's <code>struct.unpack</code> reads them. Below each recv, the \
         first bytes it returned, as Python prints them (a run of one byte as Python \
         repeats it: <code>b' ' * 1023</code>). A red mark is a recv that waits \
         forever. Under each timeline, the verdict on each command's reply. Where the \
         client sends its requests without waiting, a timeline above shows them the \
         other way round: the client's <code>send()</code> bytes, and the server's \
         <code>recv(1024)</code> calls over them.</p>\n<p>The page is the same on every run. The framed stage is \
         drawn <em>normalised</em>: rcmd's server sends a frame for each piece of output \
         it reads from a command, and how the output is cut into pieces depends on \
         scheduling; the page draws each command's stdout as one frame, then its stderr \
         as one, and the recv calls over those bytes.</p>\n",
        lesson.recv_size
    );
    for run in &lesson.cases {
        let (case, refs) = (run.key, &run.refs);
        let _ = write!(h, "<h2>{}</h2>\n<p class=\"legend\">", heading(run.title));
        for (i, r) in refs.iter().enumerate() {
            let _ = write!(
                h,
                "<span style=\"background:{}\"></span>#{} <code>{}</code>",
                color(Some(i)),
                i + 1,
                esc(&r.command)
            );
        }
        h.push_str("</p>\n");
        for t in &run.traces {
            if !t.requests.is_empty() {
                let lanes = Lanes {
                    title: format!("{}, the server's side", t.stage.name()),
                    top: "client send",
                    bottom: "server recv",
                    row: "requests",
                };
                timeline(&mut h, case, t, &request_drawing(t), &lanes);
            }
            let d = drawing(
                t,
                refs,
                run.merged.as_ref(),
                lesson.header,
                lesson.recv_size,
            )?;
            let lanes = Lanes {
                title: t.stage.name().to_string(),
                top: "server send",
                bottom: "client recv",
                row: "replies",
            };
            timeline(&mut h, case, t, &d, &lanes);
            h.push_str("<ul class=\"verdicts\">");
            for (i, r) in refs.iter().enumerate() {
                let v = sticky::verdict(t, i, r, lesson.recv_size);
                let _ = write!(
                    h,
                    "<li class=\"{}\">#{} {}</li>",
                    if v.wrong { "wrong" } else { "ok" },
                    i + 1,
                    esc(&v.text)
                );
            }
            h.push_str("</ul>\n");
        }
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Chinese terms in a title marked as such (for their fonts), with English beside them
/// already in the title.
fn heading(title: &str) -> String {
    let mut out = String::new();
    let mut zh = String::new();
    for c in esc(title).chars() {
        if ('\u{4e00}'..='\u{9fff}').contains(&c) {
            zh.push(c);
            continue;
        }
        if !zh.is_empty() {
            let _ = write!(out, "<span class=\"zh\" lang=\"zh-Hans\">{zh}</span>");
            zh.clear();
        }
        out.push(c);
    }
    if !zh.is_empty() {
        let _ = write!(out, "<span class=\"zh\" lang=\"zh-Hans\">{zh}</span>");
    }
    out
}

/// What a timeline's two lanes are, and its heading.
struct Lanes {
    title: String,
    top: &'static str,
    bottom: &'static str,
    /// `data-row`: `replies`, or `requests` for the server's reads of them.
    row: &'static str,
}

/// Labels placed in rows beside a lane, row 0 nearest it.
#[derive(Default)]
struct Rows {
    /// Per row, the spans taken by labels and by the lines tying farther labels.
    taken: Vec<Vec<(f64, f64)>>,
}

/// Room kept between two labels in a row.
const GAP: f64 = 8.0;

impl Rows {
    fn free(&self, row: usize, lo: f64, hi: f64) -> bool {
        self.taken
            .get(row)
            .is_none_or(|spans| spans.iter().all(|&(a, b)| hi <= a || b <= lo))
    }

    fn take(&mut self, row: usize, lo: f64, hi: f64) {
        if self.taken.len() <= row {
            self.taken.resize(row + 1, Vec::new());
        }
        self.taken[row].push((lo, hi));
    }

    /// Places labels of `chars` characters for the bytes at `at`, each as (x, row): it
    /// starts just right of `at`, or ends just left of it where it would otherwise pass
    /// the right edge; it goes in the nearest row where it fits and where the line tying
    /// it to `at` crosses no nearer label. Labels ending at their bytes are placed left
    /// to right, then those starting there right to left: each new label's line then
    /// passes only labels that end before it or start after it.
    fn place_all(&mut self, labels: &[(f64, usize)]) -> Vec<(f64, usize)> {
        let starts: Vec<Option<f64>> = labels
            .iter()
            .map(|&(at, chars)| {
                let w = CHAR_W * chars as f64;
                (at + 2.0 + w <= WIDTH - 4.0).then_some(at + 2.0)
            })
            .collect();
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| match starts[i] {
                None => (0, labels[i].0),
                Some(_) => (1, -labels[i].0),
            };
            key(a).partial_cmp(&key(b)).expect("positions are numbers")
        });
        let mut placed = vec![(0.0, 0); labels.len()];
        for i in order {
            let (at, chars) = labels[i];
            let w = CHAR_W * chars as f64;
            let x = starts[i].unwrap_or((at - 2.0 - w).max(4.0));
            placed[i] = (x, self.place(at, x, w));
        }
        placed
    }

    fn place(&mut self, at: f64, x: f64, w: f64) -> usize {
        let line = (at - 0.5, at + 0.5);
        let fits = |rows: &Rows, row: usize| {
            rows.free(row, x - GAP, x + w + GAP) && (0..row).all(|r| rows.free(r, line.0, line.1))
        };
        // A row above all others always holds the label; only its line might cross
        // another (two labels tied inside each other's spans): then the line does.
        let row = (0..=self.len())
            .find(|&row| fits(self, row))
            .unwrap_or(self.len());
        self.take(row, x, x + w);
        for r in 0..row {
            self.take(r, line.0, line.1);
        }
        row
    }

    fn len(&self) -> usize {
        self.taken.len()
    }
}

/// A label and where it goes.
struct Label {
    text: String,
    at: f64,
    x: f64,
    row: usize,
    attrs: String,
}

fn timeline(h: &mut String, case: &str, t: &Trace, d: &Drawing, lanes: &Lanes) {
    let total = d.len().max(1) as f64;
    let x = |at: usize| LEFT + BAND * at as f64 / total;
    let wrong = t.replies.iter().any(|r| r.waits || r.stopped_early)
        || (t.stage == Stage::Naive
            && d.reads.iter().any(|r| {
                d.owners(r.start, r.len)
                    .iter()
                    .any(|(o, _)| *o != Some(r.for_command))
            }));

    // Every header's decode above the server's lane, every read's bytes below the client's.
    let mut heads = Vec::new();
    let mut at = 0;
    for (k, p) in d.pieces.iter().enumerate() {
        if let Part::Head(text) = &p.part {
            heads.push(Label {
                text: text.clone(),
                at: (x(at) + x(at + p.bytes.len())) / 2.0,
                x: 0.0,
                row: 0,
                attrs: format!("class=\"decode\" data-for=\"{k}\""),
            });
        }
        at += p.bytes.len();
    }
    let mut previews: Vec<Label> = d
        .reads
        .iter()
        .enumerate()
        .map(|(k, r)| Label {
            text: if r.len == 0 {
                "waits".to_string()
            } else {
                py_preview(&d.bytes(r.start, r.len), PREVIEW)
            },
            at: (x(r.start) + x(r.start + r.len)) / 2.0,
            x: 0.0,
            row: 0,
            attrs: format!("class=\"preview\" data-for=\"{}\"", k + 1),
        })
        .collect();
    let (mut above, mut below) = (Rows::default(), Rows::default());
    for (rows, labels) in [(&mut above, &mut heads), (&mut below, &mut previews)] {
        let wanted: Vec<(f64, usize)> = labels
            .iter()
            .map(|l| (l.at, l.text.chars().count()))
            .collect();
        for (l, (x, row)) in labels.iter_mut().zip(rows.place_all(&wanted)) {
            l.x = x;
            l.row = row;
        }
    }

    let server = 14.0 + ROW * above.len() as f64;
    let client = server + 36.0;
    let bottom = client + 22.0;
    let height = bottom + 8.0 + ROW * below.len() as f64;
    let _ = write!(
        h,
        "<h3>{}{}{}</h3>\n<svg width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" data-case=\"{case}\" data-stage=\"{}\" \
         data-row=\"{}\" data-reads=\"{}\">\n\
         <text class=\"lane\" x=\"4\" y=\"{:.1}\">{}</text>\
         <text class=\"lane\" x=\"4\" y=\"{:.1}\">{}</text>\n",
        esc(&lanes.title),
        if d.normalised {
            " (normalised: one frame per stream)"
        } else {
            ""
        },
        match (wrong, lanes.row) {
            (false, _) => "",
            (true, "requests") => ": requests stuck together",
            (true, _) => ": wrong replies",
        },
        t.stage.name(),
        lanes.row,
        d.reads.len(),
        server + 13.0,
        lanes.top,
        client + 13.0,
        lanes.bottom,
    );
    for l in &heads {
        let y = server - 4.0 - ROW * l.row as f64;
        let _ = write!(
            h,
            "<line class=\"tie\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{server:.1}\"/>\
             <text {} x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            l.at,
            y + 2.0,
            l.at,
            l.attrs,
            l.x,
            esc(&l.text)
        );
    }
    h.push('\n');

    // The server's bytes, headers and tags outlined.
    let mut at = 0;
    for (k, p) in d.pieces.iter().enumerate() {
        let (x0, x1) = (x(at), x(at + p.bytes.len()));
        let w = (x1 - x0).max(1.5);
        let n = p.bytes.len();
        let bytes = py_preview(&p.bytes, TOOLTIP_PREVIEW);
        let _ = match &p.part {
            Part::Output => write!(
                h,
                "<rect x=\"{x0:.1}\" y=\"{server}\" width=\"{w:.1}\" height=\"18\" \
                 fill=\"{}\"><title>#{} output, {n} bytes: {}</title></rect>",
                color(p.owner),
                p.owner.map_or(0, |o| o + 1),
                esc(&bytes)
            ),
            Part::Head(text) => write!(
                h,
                "<rect class=\"hdr head\" data-head=\"{k}\" x=\"{x0:.1}\" y=\"{server}\" \
                 width=\"{w:.1}\" height=\"18\" fill=\"#bdbdbd\"><title>{}</title></rect>",
                esc(text)
            ),
            Part::Tag | Part::Status => write!(
                h,
                "<rect class=\"hdr\" x=\"{x0:.1}\" y=\"{server}\" width=\"{w:.1}\" \
                 height=\"18\" fill=\"#bdbdbd\"><title>{}</title></rect>",
                esc(&bytes)
            ),
        };
        at += n;
    }
    h.push('\n');

    // The client's recv calls, each filled with the colours of the bytes it returned.
    for (k, r) in d.reads.iter().enumerate() {
        if r.len == 0 {
            let x0 = x(r.start) - 3.0;
            let _ = write!(
                h,
                "<rect class=\"read wait\" data-read=\"{}\" data-bytes=\"0\" x=\"{x0:.1}\" \
                 y=\"{client}\" width=\"6\" height=\"22\"><title>recv({}) for #{}: waits, \
                 nothing more is coming</title></rect>",
                k + 1,
                r.asked,
                r.for_command + 1
            );
            continue;
        }
        let (x0, x1) = (x(r.start), x(r.start + r.len));
        let mut p = r.start;
        for (owner, n) in d.owners(r.start, r.len) {
            let (a, b) = (x(p), x(p + n));
            let _ = write!(
                h,
                "<rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"18\" fill=\"{}\" \
                 opacity=\"0.75\"/>",
                client + 2.0,
                (b - a).max(1.0),
                color(owner)
            );
            p += n;
        }
        let _ = write!(
            h,
            "<rect class=\"read\" data-read=\"{}\" data-bytes=\"{}\" x=\"{x0:.1}\" \
             y=\"{client}\" width=\"{:.1}\" height=\"22\" fill=\"none\" stroke=\"#000\">\
             <title>recv({}) #{} for #{}: {} bytes, {}</title></rect>",
            k + 1,
            r.len,
            (x1 - x0).max(1.0),
            r.asked,
            k + 1,
            r.for_command + 1,
            r.len,
            esc(&py_preview(&d.bytes(r.start, r.len), TOOLTIP_PREVIEW))
        );
    }
    h.push('\n');
    for l in &previews {
        let y = bottom + 8.0 + ROW * l.row as f64 + 3.0;
        let _ = write!(
            h,
            "<line class=\"tie\" x1=\"{:.1}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\
             <text {} x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            l.at,
            l.at,
            y - 10.0,
            l.attrs,
            l.x,
            esc(&l.text)
        );
    }
    h.push_str("\n</svg>\n");
}
