//! `rcmd demo sticky --html FILE`: the same runs as one self-contained page.
//!
//! For each case and stage a timeline drawn in inline SVG: the server's bytes on one lane,
//! the client's recv calls on the other, each byte coloured by the command it belongs
//! to, headers highlighted and decoded beside the bytes. No scripts and nothing fetched:
//! the page opens from disk anywhere. Every drawn read is a `rect.read` with
//! `data-read`, and each timeline says how many it holds in `data-reads`, so a test can
//! count what a person sees.

use std::fmt::Write as _;

use super::stages::{Kind, Stage, Trace};
use super::sticky::Lesson;

const COLORS: [&str; 6] = [
    "#1f9bd1", "#e0a800", "#c2185b", "#2e9e44", "#6a4fc7", "#d84315",
];
const WIDTH: f64 = 960.0;
const LEFT: f64 = 110.0;
const BAND: f64 = WIDTH - LEFT - 10.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(owner: Option<usize>) -> &'static str {
    owner.map_or("#9e9e9e", |o| COLORS[o % COLORS.len()])
}

/// The page.
pub fn page(lesson: &Lesson) -> String {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>rcmd demo sticky: the bytes on the wire</title>\n<style>\
         body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;max-width:1000px}\
         h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 2px}\
         h3{font-size:13px;margin:8px 0 0;font-weight:600}p{margin:2px 0 6px}\
         code{background:#f2f2f2;padding:0 3px}\
         svg{display:block;background:#fafafa;border:1px solid #ddd}\
         svg text{font:11px ui-monospace,monospace;fill:#333}\
         .lane{font-weight:600}.hdr{stroke:#000;stroke-width:1.2}\
         .wait{fill:#d32f2f}.legend span{display:inline-block;width:12px;height:12px;\
         vertical-align:middle;margin:0 4px 0 10px}\
         </style></head><body>\n",
    );
    let _ = write!(
        h,
        "<h1>The sticky-packet bug (粘包), byte by byte</h1>\n<p>Each timeline: the \
         server's <code>send()</code> bytes on the top lane, the client's \
         <code>recv({})</code> calls below, on the same byte axis. Colour says which \
         command a byte belongs to; outlined grey blocks are headers, decoded above \
         them. A red mark is a recv that waits forever.</p>\n",
        lesson.recv_size
    );
    for (case, title, refs, traces) in &lesson.cases {
        let _ = write!(h, "<h2>{}</h2>\n<p class=\"legend\">", esc(title));
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
        for t in traces {
            timeline(&mut h, case, t);
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn timeline(h: &mut String, case: &str, t: &Trace) {
    let total = t.len().max(1) as f64;
    let x = |at: usize| LEFT + BAND * at as f64 / total;
    let wrong = t.replies.iter().any(|r| r.waits || r.stopped_early)
        || (t.stage == Stage::Naive
            && t.reads.iter().any(|r| {
                t.owners(r.start, r.len)
                    .iter()
                    .any(|(o, _)| *o != Some(r.for_command))
            }));
    let _ = write!(
        h,
        "<h3>{}{}</h3>\n<svg width=\"{WIDTH}\" \
         height=\"96\" data-case=\"{case}\" data-stage=\"{}\" data-reads=\"{}\">\n\
         <text class=\"lane\" x=\"4\" y=\"40\">server send</text>\
         <text class=\"lane\" x=\"4\" y=\"78\">client recv</text>\n",
        t.stage.name(),
        if wrong { ": wrong replies" } else { "" },
        t.stage.name(),
        t.reads.len()
    );
    // The server's bytes, headers outlined and decoded above them.
    let mut at = 0;
    let mut label_x = 0.0f64;
    for s in &t.segments {
        let (x0, x1) = (x(at), x(at + s.len));
        let w = (x1 - x0).max(1.5);
        match &s.kind {
            Kind::Output => {
                let _ = write!(
                    h,
                    "<rect x=\"{x0:.1}\" y=\"28\" width=\"{w:.1}\" height=\"18\" \
                     fill=\"{}\"><title>#{} output, {} bytes</title></rect>",
                    color(s.owner),
                    s.owner.map_or(0, |o| o + 1),
                    s.len
                );
            }
            Kind::Header(text) | Kind::Tag(text) | Kind::Status(text) => {
                let _ = write!(
                    h,
                    "<rect class=\"hdr\" x=\"{x0:.1}\" y=\"28\" width=\"{w:.1}\" \
                     height=\"18\" fill=\"#bdbdbd\"><title>{}</title></rect>",
                    esc(text)
                );
                if matches!(s.kind, Kind::Header(_)) && x0 >= label_x {
                    let short: String = text.chars().take(44).collect();
                    let _ = write!(h, "<text x=\"{x0:.1}\" y=\"22\">{}</text>", esc(&short));
                    label_x = x0 + 6.8 * short.chars().count() as f64 + 8.0;
                }
            }
        }
        at += s.len;
    }
    h.push('\n');
    // The client's recv calls, each filled with the colours of the bytes it returned.
    for (k, r) in t.reads.iter().enumerate() {
        if r.len == 0 {
            let x0 = x(r.start) - 3.0;
            let _ = write!(
                h,
                "<rect class=\"read wait\" data-read=\"{}\" data-bytes=\"0\" x=\"{x0:.1}\" \
                 y=\"62\" width=\"6\" height=\"22\"><title>recv({}) for #{}: waits, \
                 nothing more is coming</title></rect>",
                k + 1,
                r.asked,
                r.for_command + 1
            );
            continue;
        }
        let (x0, x1) = (x(r.start), x(r.start + r.len));
        let mut p = r.start;
        for (owner, n) in t.owners(r.start, r.len) {
            let (a, b) = (x(p), x(p + n));
            let _ = write!(
                h,
                "<rect x=\"{a:.1}\" y=\"64\" width=\"{:.1}\" height=\"18\" fill=\"{}\" \
                 opacity=\"0.75\"/>",
                (b - a).max(1.0),
                color(owner)
            );
            p += n;
        }
        let _ = write!(
            h,
            "<rect class=\"read\" data-read=\"{}\" data-bytes=\"{}\" x=\"{x0:.1}\" y=\"62\" \
             width=\"{:.1}\" height=\"22\" fill=\"none\" stroke=\"#000\">\
             <title>recv({}) #{} for #{}: {} bytes</title></rect>",
            k + 1,
            r.len,
            (x1 - x0).max(1.0),
            r.asked,
            k + 1,
            r.for_command + 1,
            r.len
        );
    }
    h.push_str("\n</svg>\n");
}
