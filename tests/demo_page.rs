//! `rcmd demo sticky --html`: the page rendered by a real browser (headless Chromium),
//! checked for what a person would see.

mod common;

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

/// The `data-reads` of each timeline and the reads drawn in it, by (case, stage).
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
            (
                attr("data-case"),
                attr("data-stage"),
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

    let profile = tempfile::tempdir().unwrap();
    let mut args = chromium_args(profile.path());
    args.extend([
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        "--dump-dom".into(),
    ]);
    args.push(format!("file://{}", page.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shown = run(CHROMIUM, &args, b"").await;
    shown.expect_code(0);
    let dom = shown.stdout_str();
    assert!(
        !shown.stderr_str().contains("CONSOLE"),
        "console messages\n{shown}"
    );
    assert!(dom.contains("The sticky-packet bug"), "{shown}");

    let drawn = timelines(&dom);
    assert_eq!(
        drawn.len(),
        3 * 4,
        "a timeline per case and stage: {drawn:?}"
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
    // framed, pipelined: the three replies are in one read.
    assert_eq!(reads("send", "framed"), 1);
}
