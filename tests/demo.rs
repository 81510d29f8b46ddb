//! `rcmd demo`, run as a new user runs it: the built binary.

mod common;

use common::{rcmd, run};

fn parse(json: &str) -> serde_json::Value {
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

/// What `seq 1 1000` prints, computed here rather than trusted from the demo.
fn seq_len() -> u64 {
    (1..=1000)
        .map(|i: u64| i.to_string().len() as u64 + 1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_summary_is_the_same_on_every_run() {
    let mut first: Option<serde_json::Value> = None;
    for _ in 0..25 {
        let r = rcmd(&["demo", "sticky", "--json"], b"").await;
        r.expect_code(0);
        let v = parse(&r.stdout_str());
        let (naive, framed) = (&v["naive"], &v["framed"]);
        assert_eq!(naive["commands"], framed["commands"], "{v}");
        assert!(naive["commands"].as_u64().unwrap() >= 4, "{v}");
        assert!(
            naive["wrong"].as_u64().unwrap() > 0,
            "the bug must reproduce: {v}"
        );
        assert!(naive["misattributed_bytes"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(framed["wrong"], 0, "{v}");
        assert_eq!(framed["misattributed_bytes"], 0, "{v}");
        match &first {
            None => first = Some(v),
            Some(f) => assert_eq!(&v, f, "the demo must not depend on timing"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_side_case_leaves_seq_bytes_for_the_next_replies() {
    let r = rcmd(&["demo", "sticky", "--case", "recv", "--json"], b"").await;
    r.expect_code(0);
    let v = parse(&r.stdout_str());
    // Every naive reply is wrong; replies 2 and 3 are seq's bytes entirely, reply 4 holds
    // the rest of seq's output plus `echo hello` and `pwd`.
    assert_eq!(v["naive"]["commands"], 4);
    assert_eq!(v["naive"]["wrong"], 4);
    let pwd_len = std::env::current_dir().unwrap().to_string_lossy().len() as u64 + 1;
    let expected = 1024 + 1024 + (seq_len() - 3 * 1024) + 6 + pwd_len;
    assert_eq!(v["naive"]["misattributed_bytes"], expected, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_side_case_merges_replies_into_one_read() {
    let r = rcmd(&["demo", "sticky", "--case", "send"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("nothing left to read"), "{r}");
    assert!(out.contains("framed: 3 of 3 correct"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_half_shows_each_header_in_hex_with_its_value() {
    let r = rcmd(
        &["demo", "sticky", "--case", "split", "--header", "<H"],
        b"",
    )
    .await;
    r.expect_code(0);
    // seq's 3893 bytes plus the tag: 3894 = 0x0f36, little-endian.
    assert!(r.stdout_str().contains("<H  36 0f"), "{r}");
    assert!(r.stdout_str().contains("= 3894"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_output_has_no_escape_codes() {
    // Under a pseudo-terminal the demo colours its output...
    let tty = run(
        "script",
        &[
            "-qec",
            &format!("{} demo sticky", common::rcmd_bin()),
            "/dev/null",
        ],
        b"",
    )
    .await;
    tty.expect_code(0);
    assert!(
        tty.stdout.contains(&0x1b),
        "expected colour on a terminal\n{tty}"
    );
    // ...and NO_COLOR turns every escape code off, terminal or not.
    let cmd = format!("NO_COLOR=1 {} demo sticky", common::rcmd_bin());
    let plain = run("script", &["-qec", &cmd, "/dev/null"], b"").await;
    plain.expect_code(0);
    assert!(!plain.stdout.contains(&0x1b), "{plain}");
    assert!(plain.stdout_str().contains("framed:"), "{plain}");
    let piped = rcmd(&["demo", "sticky"], b"").await;
    assert!(
        !piped.stdout.contains(&0x1b),
        "no colour when piped\n{piped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_keeps_boundaries_but_cuts_long_replies() {
    let r = rcmd(&["demo", "udp", "--json"], b"").await;
    r.expect_code(0);
    let v = parse(&r.stdout_str());
    assert_eq!(v["udp"]["commands"], 4, "{v}");
    assert_eq!(v["udp"]["wrong"], 1, "only the long reply is wrong: {v}");
    assert_eq!(v["udp"]["lost_bytes"], seq_len() - 1024, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_a_name_lists_the_demos() {
    let r = rcmd(&["demo"], b"").await;
    r.expect_code(0);
    assert!(
        r.stdout_str().contains("sticky") && r.stdout_str().contains("udp"),
        "{r}"
    );
}
