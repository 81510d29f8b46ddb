//! `rcmd demo sticky --html`: the page rendered by a real browser (headless Chromium),
//! checked for what a person would see.

use crate::common;

use common::{rcmd, run};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's arguments for a quiet, sandboxed-off headless run with a fresh profile.
fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Run in the rendered page: every label's box, as laid out by Chromium, must lie inside
/// its drawing and clear of every other label. Writes what it found into `pre#measured`.
const MEASURE: &str = r#"
const out = [];
for (const svg of document.querySelectorAll('svg')) {
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  const seen = [];
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    const id = svg.dataset.case + '/' + svg.dataset.stage + ' ' + t.textContent;
    if (b.width == 0 || b.x < 0 || b.y < 0 || b.x + b.width > w || b.y + b.height > h) {
      out.push('outside ' + id + ' at ' + [b.x, b.y, b.width, b.height, w, h].join(' '));
    }
    // A pixel of slack: rows of labels may touch, not cover each other.
    for (const [other, o] of seen) {
      if (b.x + 1 < o.x + o.width && o.x + 1 < b.x + b.width
          && b.y + 1 < o.y + o.height && o.y + 1 < b.y + b.height) {
        out.push('overlap ' + id + ' / ' + other);
      }
    }
    seen.push([t.textContent, b]);
  }
}
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = out.length + ' problems\n' + out.join('\n') + '\n';
document.body.appendChild(pre);
"#;

/// What `MEASURE` wrote into the dumped DOM.
fn measurements(dom: &str) -> String {
    let open = "<pre id=\"measured\">";
    let at = dom.find(open).expect("the measurements") + open.len();
    dom[at..at + dom[at..].find("</pre>").unwrap()]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Every header (`rect.head` with `data-head`) has its decode (`text.decode` with the same
/// `data-for`) in the same timeline, and the split case's headers are all there.
fn every_header_decoded(html: &str) {
    for svg in html.split("<svg").skip(1) {
        let svg = &svg[..svg.find("</svg>").unwrap()];
        let heads: Vec<&str> = svg
            .split("data-head=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        for k in &heads {
            let label = format!("class=\"decode\" data-for=\"{k}\"");
            assert!(svg.contains(&label), "header {k} has no decode in{svg}");
        }
        let stage = |name: &str| svg.contains(&format!("data-stage=\"{name}\""));
        if svg.contains("data-case=\"split\"") {
            // Two commands: a length each; framed, an output frame and a status each.
            let want = if stage("naive") {
                0
            } else if stage("framed") {
                4
            } else {
                2
            };
            assert_eq!(heads.len(), want, "split case's headers in{svg}");
        }
    }
}

/// The `data-reads` of each timeline and the reads drawn in it, by (case, stage), with
/// the row (`replies`, or `requests` for the server's reads) in the stage's name.
fn timelines(dom: &str) -> Vec<(String, String, usize, usize)> {
    dom.split("<svg")
        .skip(1)
        .map(|svg| {
            let body = &svg[..svg.find("</svg>").expect("closed svg")];
            let attr = |name: &str| {
                let at = body.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
                body[at..at + body[at..].find('"').unwrap()].to_string()
            };
            let drawn = body.matches("class=\"read").count();
            let stage = match attr("data-row").as_str() {
                "replies" => attr("data-stage"),
                row => format!("{} {row}", attr("data-stage")),
            };
            (
                attr("data-case"),
                stage,
                attr("data-reads").parse().unwrap(),
                drawn,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_renders_in_chromium_with_every_read_drawn() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is needed (.ci/run installs it: apt-get install -y chromium)"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("sticky.html");
    let r = rcmd(&["demo", "sticky", "--html", page.to_str().unwrap()], b"").await;
    r.expect_code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained: no scripts, nothing fetched"
    );

    // The page has no script; a copy with one measures what Chromium drew.
    let measured = dir.path().join("measured.html");
    std::fs::write(
        &measured,
        html.replace("</body>", &format!("<script>{MEASURE}</script></body>")),
    )
    .unwrap();

    let profile = tempfile::tempdir().unwrap();
    let mut args = chromium_args(profile.path());
    args.extend([
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        "--dump-dom".into(),
    ]);
    args.push(format!("file://{}", measured.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shown = run(CHROMIUM, &args, b"").await;
    shown.expect_code(0);
    let dom = shown.stdout_str();
    assert!(
        !shown.stderr_str().contains("CONSOLE"),
        "console messages\n{shown}"
    );
    assert!(dom.contains("The sticky-packet bug"), "{shown}");
    let problems = measurements(&dom);
    assert!(
        problems.starts_with("0 problems"),
        "every label whole inside its drawing, none over another:\n{problems}"
    );
    every_header_decoded(&html);

    let drawn = timelines(&dom);
    assert_eq!(
        drawn.len(),
        4 * 4 + 4,
        "a timeline per case and stage, and the server's reads of pipelined requests: \
         {drawn:?}"
    );
    for (case, stage, said, seen) in &drawn {
        assert_eq!(said, seen, "{case}/{stage}: reads said and drawn");
    }
    let reads = |case: &str, stage: &str| {
        drawn
            .iter()
            .find(|t| t.0 == case && t.1 == stage)
            .unwrap()
            .3
    };
    // One recv per command; the reply to #4 holds the rest of the stream.
    assert_eq!(reads("recv", "naive"), 4);
    // One read gets all three replies; the next two wait.
    assert_eq!(reads("send", "naive"), 3);
    // 2048 bytes: 2 full reads and one that waits; the pausing reply: 1024 + 68.
    assert_eq!(reads("split", "naive"), 5);
    // classic: recv(4) then ceil(n / 1024) reads, per command.
    assert_eq!(reads("recv", "classic"), 5 + 2 + 2 + 2);
    // framed, read at the end: the three replies are in one read.
    assert_eq!(reads("send", "framed"), 1);
    // Pipelined: each server's one recv reads all three requests. Without request
    // framing the client's first read is the one reply, the next waits; framed reads all
    // three replies at once.
    for stage in ["naive", "length-ack", "classic", "framed"] {
        assert_eq!(reads("send-pipelined", &format!("{stage} requests")), 1);
    }
    assert_eq!(reads("send-pipelined", "naive"), 2);
    assert_eq!(reads("send-pipelined", "classic"), 3);
    assert_eq!(reads("send-pipelined", "framed"), 1);
    // A verdict under every timeline, per command.
    // Per case, its commands times four stages: 4, 3, 3 and 2 commands.
    assert_eq!(
        html.matches("<li class=").count(),
        4 * (4 + 3 + 3 + 2),
        "{html}"
    );
    assert!(html.contains("WRONG: stopped early"), "{html}");
    // Chinese terms carry English beside them.
    assert!(
        html.contains("粘包</span> zhānbāo, \"sticky packets\""),
        "{html}"
    );
    assert!(html.contains("拆包</span> (split packets)"), "{html}");
}

#[tokio::test]
async fn page_shows_bytes_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("split.html");
    let path = page.to_str().unwrap();
    rcmd(&["demo", "sticky", "--case", "split", "--html", path], b"")
        .await
        .expect_code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    for python in [
        // classic: struct.pack('i', 2048) on this (little-endian) machine.
        "struct.unpack('i', b'\\x00\\x08\\x00\\x00') = (2048,)",
        // framed: 2048 bytes of output and the tag, network order.
        "struct.unpack('!I', b'\\x00\\x00\\x08\\x01') = (2049,): 'O' stdout + 2048 bytes",
        "int(b'2048') = 2048",
        // What the second command's first recv returned.
        "b'1\\n2\\n3\\n4\\n5\\n6'…",
        // The first command's spaces, as Python repeats them.
        ">b' ' * 1024<",
        ">b' ' * 1022 + b'x\\n'<",
    ] {
        assert!(html.contains(python), "{python} in\n{html}");
    }
    // Never a quote far from its b'.
    assert!(!html.contains("b'    "), "{html}");
    assert!(!html.contains("\\u{"), "no Rust escapes");
}

#[tokio::test]
async fn page_is_the_same_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut pages = Vec::new();
    for n in 0..3 {
        let page = dir.path().join(format!("{n}.html"));
        rcmd(&["demo", "sticky", "--html", page.to_str().unwrap()], b"")
            .await
            .expect_code(0);
        pages.push(std::fs::read(&page).unwrap());
    }
    assert!(
        pages.windows(2).all(|w| w[0] == w[1]),
        "three runs, three identical pages"
    );
    assert!(String::from_utf8_lossy(&pages[0]).contains("normalised"));
}

#[tokio::test]
async fn writing_the_page_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.html");
    let r = rcmd(&["demo", "sticky", "--html", page.to_str().unwrap()], b"").await;
    r.expect_code(0);
    let said = format!("wrote {} (4 cases, open it in a browser)\n", page.display());
    assert!(r.stderr_str().ends_with(&said), "{r}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "the page and nothing else: {names:?}");
}

#[tokio::test]
async fn page_that_cannot_be_written_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // No such directory: refused before the demo runs.
    let missing = dir.path().join("no-such-dir").join("page.html");
    let r = rcmd(
        &["demo", "sticky", "--html", missing.to_str().unwrap()],
        b"",
    )
    .await;
    r.expect_code(255);
    assert!(r.stdout.is_empty(), "refused before any run\n{r}");
    let err = r.stderr_str();
    assert!(
        err.contains(&format!("cannot write the page {}", missing.display()))
            && err.contains("no such directory")
            && !err.contains("os error")
            && !err.contains(".rcmd-page-"),
        "{r}"
    );
    // A directory in the way: found only when the page is put in place.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    let r = rcmd(&["demo", "sticky", "--html", taken.to_str().unwrap()], b"").await;
    r.expect_code(255);
    assert!(
        r.stderr_str()
            .contains(&format!("cannot write the page {}", taken.display())),
        "{r}"
    );
    assert!(!r.stderr_str().contains("wrote "), "{r}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["taken"], "nothing half-written left behind");
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 0);
}

#[tokio::test]
async fn page_is_written_when_the_output_is_closed_early() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("a.html");
    let mut child = common::rcmd_command()
        .args(["demo", "sticky", "--html", page.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the first write, as `| head -1` soon is.
    drop(child.stdout.take());
    let out = tokio::time::timeout(common::PROCESS_DEADLINE, child.wait_with_output())
        .await
        .expect("the demo never ended")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.contains(&page.display().to_string()), "{err}");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(html.contains("</svg>"), "a whole page");
}
