//! `rcmd demo`, run as a new user runs it: the built binary.

use crate::common;

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
    // Ten runs at once: most of a run is waiting, and runs that share the processor are
    // a harder test of not depending on timing than runs one after another.
    let runs = (0..10).map(|_| rcmd(&["demo", "sticky", "--json"], b""));
    for r in futures_util::future::join_all(runs).await {
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
        for stage in ["length_ack", "classic", "framed"] {
            // The tutorial's fixes go wrong only where requests stuck together.
            assert_eq!(v[stage]["wrong"], v[stage]["wrong_pipelined"], "{v}");
            assert_eq!(v[stage]["misattributed_bytes"], 0, "{v}");
        }
        assert_eq!(v["framed"]["wrong"], 0, "{v}");
        assert_eq!(v["classic"]["wrong_pipelined"], 3, "{v}");
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
    // The demo runs its commands in `/`: pwd prints "/\n" wherever it was started.
    let pwd_len = 2;
    let expected = 1024 + 1024 + (seq_len() - 3 * 1024) + 6 + pwd_len;
    assert_eq!(v["naive"]["misattributed_bytes"], expected, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_side_case_merges_replies_into_one_read() {
    let r = rcmd(&["demo", "sticky", "--case", "send"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("waits: nothing queued, nothing coming"), "{r}");
    assert!(out.contains("framed      6 of 6 correct"), "{r}");
    assert!(out.contains("all 3 replies in 1 read of up to 1024"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_stick_together_on_the_servers_side_but_frames_survive() {
    let r = rcmd(&["demo", "sticky", "--case", "send"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    let pipelined = out
        .find("requests that arrive before the server reads")
        .expect("the pipelined half");
    let half = &out[pipelined..];
    // Every tutorial stage gets the same pipelined sends, and the server's one recv
    // reads them as one command line.
    let server_read = "server recv(1024) → 38 bytes: 10 of #1, 3 of #2, 25 of #3";
    assert_eq!(half.matches(server_read).count(), 3, "{r}");
    assert_eq!(
        half.matches("ran it; this is that command's output")
            .count(),
        3,
        "{r}"
    );
    assert!(
        half.contains("b'hellopwdls /nonexistent-rcmd-demo\\n'"),
        "{r}"
    );
    // rcmd's framing keeps them apart.
    assert!(
        half.contains("the server decodes 3 'R' frames from it: one command each"),
        "{r}"
    );
    for stage in ["length-ack", "classic"] {
        let line = format!("{stage:<11} 3 of 6 wrong: pipelined requests ran as one command");
        assert!(out.contains(&line), "{line:?}\n{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_half_shows_each_header_in_hex_with_its_value() {
    let r = rcmd(
        &["demo", "sticky", "--case", "split", "--header", "<H"],
        b"",
    )
    .await;
    r.expect_code(0);
    // printf's 2048 bytes plus the tag: 2049 = 0x0801, little-endian.
    assert!(
        r.stdout_str()
            .contains("01 08  <H → 2049 = 1 tag byte 'O' (stdout) + 2048 bytes"),
        "{r}"
    );
    // The pausing seq comes in a frame per burst the server read: how many depends on
    // timing, so it is one line that says so.
    assert!(
        r.stdout_str()
            .contains("'O' stdout: 3893 bytes, a frame per read of the pipe (count varies)"),
        "{r}"
    );
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
    assert!(plain.stdout_str().contains("framed "), "{plain}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_is_the_same_from_any_directory_and_environment() {
    let here = rcmd(&["demo", "sticky"], b"").await;
    here.expect_code(0);
    let deep = tempfile::tempdir().unwrap();
    let elsewhere = deep.path().join("a-directory-with-a-long-name");
    std::fs::create_dir(&elsewhere).unwrap();
    let there = run(
        "sh",
        &[
            "-c",
            "cd \"$1\" && HOME=/nonexistent LANG=C.UTF-8 USER=someone exec \"$2\" demo sticky",
            "sh",
            elsewhere.to_str().unwrap(),
            common::rcmd_bin(),
        ],
        b"",
    )
    .await;
    there.expect_code(0);
    assert_eq!(
        here.stdout_str(),
        there.stdout_str(),
        "the text must not depend on where or by whom the demo runs\n{there}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_print_identical_text() {
    let a = rcmd(&["demo", "sticky"], b"").await;
    a.expect_code(0);
    let b = rcmd(&["demo", "sticky"], b"").await;
    assert_eq!(
        a.stdout_str(),
        b.stdout_str(),
        "the text must not depend on timing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_fits_in_80_columns() {
    let all: [&[&str]; 14] = [
        &["demo"][..],
        &["demo", "sticky"],
        &["demo", "sticky", "--case", "recv"],
        &["demo", "sticky", "--case", "send"],
        &["demo", "sticky", "--case", "split"],
        &["demo", "sticky", "--recv-size", "16"],
        &["demo", "sticky", "--step"],
        &["demo", "sticky", "--recv-size", "4096"],
        &["demo", "sticky", "--case", "recv", "--recv-size", "8192"],
        &["demo", "sticky", "--header", "<Q", "--recv-size", "65535"],
        &["demo", "udp"],
        &["demo", "udp", "--recv-size", "16"],
        &["demo", "udp", "--recv-size", "8192"],
        &["demo", "rtt", "--delay", "1"],
    ];
    // All at once: most of a demo is waiting on its own sockets.
    let runs = futures_util::future::join_all(all.iter().map(|args| rcmd(args, b""))).await;
    for r in runs {
        r.expect_code(0);
        // Characters, not bytes: the text holds Chinese.
        for line in r.stdout_str().lines().chain(r.stderr_str().lines()) {
            let n = line.chars().count();
            assert!(n <= 80, "{n} columns: {line}\n{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_teaches_before_it_is_needed() {
    let r = rcmd(&["demo", "sticky"], b"").await;
    let out = r.stdout_str();
    let legend = out.find("recv(N)").expect("legend");
    assert!(
        legend < out.find("━━ 1 of 4").unwrap(),
        "legend first\n{out}"
    );
    assert!(out.contains("b'' only when the"), "Python's words\n{out}");
    // Every part of a bar, its unread tail included.
    assert!(
        out.contains("after the last | were sent but never read"),
        "{out}"
    );
    // The tag byte explained where the length is shown.
    assert!(
        out.contains("3894 = 1 tag byte 'O' (stdout) + 3893 bytes"),
        "{out}"
    );
    // The learner's loop: where it waits and where it stops early.
    assert!(out.contains("so the loop calls"), "{out}");
    assert!(out.contains("stopped early"), "{out}");
    assert!(
        out.contains("length-ack") && out.contains("classic"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigger_buffer_gets_a_hint_that_brings_the_bug_back() {
    for size in ["4096", "8192"] {
        let r = rcmd(
            &["demo", "sticky", "--case", "recv", "--recv-size", size],
            b"",
        )
        .await;
        // The demo did what it was asked and explained the result: success.
        r.expect_code(0);
        let out = r.stdout_str();
        let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("A bigger buffer only hides the bug"), "{r}");
        assert!(
            words.contains(&format!("only because recv({size}) hid the bug")),
            "{r}"
        );
        assert!(
            out.contains("\n    rcmd demo sticky --case recv --recv-size 1024\n"),
            "{r}"
        );
    }
    // The command it shows brings the bug back.
    let back = rcmd(
        &[
            "demo",
            "sticky",
            "--case",
            "recv",
            "--recv-size",
            "1024",
            "--json",
        ],
        b"",
    )
    .await;
    back.expect_code(0);
    assert_eq!(parse(&back.stdout_str())["naive"]["wrong"], 4, "{back}");
    // The exit status is documented.
    let help = rcmd(&["demo", "sticky", "--help"], b"").await;
    assert!(help.stdout_str().contains("Exit status:"), "{help}");
    assert!(help.stdout_str().contains("hides the bug"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_case_text_holds_for_a_bigger_buffer() {
    let r = rcmd(
        &["demo", "sticky", "--case", "split", "--recv-size", "4096"],
        b"",
    )
    .await;
    r.expect_code(0);
    let out = r.stdout_str();
    // The reply that fills its last read is made for the buffer: 2 × 4096 bytes.
    assert!(out.contains("prints 8192 bytes alone"), "{r}");
    assert!(
        out.contains("WRONG: all 8192 bytes came, but the last read was full"),
        "{r}"
    );
    assert!(out.contains("stopped early"), "{r}");
    assert!(!out.contains("No bug"), "{r}");
    // A read that waits forever is followed by the next command's reads: the text says
    // how the demo got past it.
    let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(
            "waits forever (the demo gives up on it there and goes on with the next command)"
        ),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_summary_says_nothing_was_cut_when_nothing_was() {
    let r = rcmd(&["demo", "udp", "--recv-size", "8192"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("4 of 4 replies correct, 0 bytes lost"), "{r}");
    assert!(!out.contains("is cut\n") && !out.ends_with("is cut"), "{r}");
    let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("A bigger buffer only hides the loss"), "{r}");
    assert!(
        out.contains("\n    rcmd demo udp --recv-size 1024\n"),
        "{r}"
    );
    let back = rcmd(&["demo", "udp", "--recv-size", "1024", "--json"], b"").await;
    back.expect_code(0);
    assert_eq!(parse(&back.stdout_str())["udp"]["wrong"], 1, "{back}");
    let help = rcmd(&["demo", "udp", "--help"], b"").await;
    assert!(help.stdout_str().contains("Exit status:"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_shows_each_read_right_after_its_enter() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mut child = common::rcmd_command()
        .args(["demo", "sticky", "--case", "send", "--step"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // naive's three reads, then length-ack's length and its output.
    let expected = [
        "  ▸ naive #1: recv(1024) → 78 bytes b\"hello\\n/\\nls: cannot",
        "  ▸ naive #2: recv(1024) → waits",
        "  ▸ naive #3: recv(1024) → waits",
        "  ▸ length-ack #1: recv(1024) → 1 byte b'6'",
        "  ▸ length-ack #1: recv(6) → 6 bytes b'hello\\n'",
    ];
    for (sent, want) in expected.iter().enumerate() {
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
        // The read's line comes before the next Enter is sent: wait for it (bounded,
        // so a demo that waits for all its reads first fails instead of hanging).
        let line = tokio::time::timeout(common::PROCESS_DEADLINE, async {
            loop {
                let line = lines.next_line().await.unwrap().expect("output ended");
                if line.contains('▸') {
                    return line;
                }
                seen.push(line);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line for read {} after its Enter: {seen:#?}", sent + 1));
        assert!(line.starts_with(want), "read {}: {line}", sent + 1);
    }
    // End of input: the rest runs without stopping, and the demo ends well.
    drop(stdin);
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(line);
    }
    let status = tokio::time::timeout(common::PROCESS_DEADLINE, child.wait())
        .await
        .expect("the demo ends once stdin does")
        .unwrap();
    assert!(status.success(), "{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("framed      6 of 6 correct")),
        "{rest:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_without_input_runs_everything() {
    // No terminal and nothing on stdin: it must not wait forever.
    let r = rcmd(&["demo", "sticky", "--case", "send", "--step"], b"").await;
    r.expect_code(0);
    assert_eq!(r.stderr_str().matches("press Enter").count(), 1, "{r}");
    assert!(r.stderr_str().contains("running the rest"), "{r}");
    // One at a time: naive 3 reads, length-ack 3 × 2, classic 3 × 2, framed 1. Pipelined:
    // naive 2, length-ack and classic 3 each (the last waits), framed 1. Each shown.
    assert_eq!(r.stdout_str().matches('▸').count(), 16 + 9, "{r}");
    // And every send: 3 commands per stage and case, and length-ack's 3 + 1 answers.
    assert_eq!(r.stdout_str().matches('◂').count(), 2 * 4 * 3 + 4, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_shows_the_ack_and_says_framed_reads_vary() {
    let r = rcmd(&["demo", "sticky", "--case", "send", "--step"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    let at = |line: &str| out.find(line).unwrap_or_else(|| panic!("no {line:?}\n{r}"));
    // length-ack: the length, then the answer the server waits for, then the output.
    let length = at("  ▸ length-ack #1: recv(1024) → 1 byte b'6'\n");
    let ack = at("  ◂ length-ack #1: send(b'recv_ready')");
    let body = at("  ▸ length-ack #1: recv(6) → 6 bytes b'hello\\n'\n");
    assert!(length < ack && ack < body, "{r}");
    assert_eq!(out.matches("send(b'recv_ready'): now").count(), 4, "{r}");
    // The commands' sends are shown too, each before the reads of its reply.
    let send = at("  ◂ naive #1: send(b'echo hello')\n");
    assert!(send < at("  ▸ naive #1"), "{r}");
    // framed: said where its reads start, since their sizes depend on timing.
    let varies = "reads vary between runs";
    assert_eq!(out.matches(varies).count(), 2, "{r}");
    assert!(
        at("framed     ") < at(varies) && at(varies) < at("  ▸ framed #1"),
        "{r}"
    );
    // Without --step there are no reads to warn about.
    let plain = rcmd(&["demo", "sticky", "--case", "send"], b"").await;
    assert!(!plain.stdout_str().contains(varies), "{plain}");
    assert!(!plain.stdout_str().contains('◂'), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_step_example_is_what_the_default_run_prints() {
    let doc = std::fs::read_to_string(common::peer("demos/README.md")).unwrap();
    let from = doc
        .find("`--step` prints each read")
        .expect("the --step paragraph");
    let quoted = doc[from..].split('`').nth(3).expect("a quoted read");
    let shown = quoted.strip_suffix(" …").unwrap_or(quoted);
    let r = rcmd(&["demo", "sticky", "--step"], b"").await;
    r.expect_code(0);
    let first = r
        .stdout_str()
        .lines()
        .find(|l| l.contains('▸'))
        .map(str::to_string);
    let first = first.expect("a read shown");
    assert!(
        first.trim_start().starts_with(shown),
        "{shown:?} vs {first:?}\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_through_a_pipe_ends_each_prompt_line() {
    // As `yes '' | rcmd demo sticky --step 2>&1`: a pipe echoes no Enter, so the prompt
    // (stderr) and the read it was for (stdout) must not share a line.
    let enters = vec![b'\n'; 10_000];
    let script = "exec \"$0\" demo sticky --step 2>&1";
    let r = run("sh", &["-c", script, common::rcmd_bin()], &enters).await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("press Enter"), "{r}");
    assert!(
        !out.contains("running the rest"),
        "an Enter for every read\n{r}"
    );
    for line in out.lines() {
        let n = line.chars().count();
        assert!(n <= 80, "{n} columns: {line}\n{r}");
        assert!(
            !(line.contains("press Enter") && line.contains('▸')),
            "{line}\n{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtt_figures_are_ordered_as_the_round_trips_predict() {
    // 30 ms each way: one round trip is 60 ms. A command's own cost, 5 to 8 ms measured
    // in this debug build with the rest of this file running alongside, stays well inside
    // the 60 ms between one round trip and two. (60 ms each way took 3.5 s, this 1.8 s.)
    let r = rcmd(&["demo", "rtt", "--delay", "30", "--json"], b"").await;
    r.expect_code(0);
    let v = parse(&r.stdout_str());
    let ms = |k: &str| v["per_command_ms"][k].as_f64().unwrap();
    for one in ["naive", "classic", "framed"] {
        assert!(ms("framed_pipelined") < ms(one), "{v}");
        assert!(ms(one) < ms("length_ack"), "{v}");
        // One round trip, not two.
        assert!(ms(one) >= 60.0 && ms(one) < 120.0, "{v}");
    }
    assert!(ms("length_ack") >= 120.0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_previews_are_pythons_repr() {
    let inputs: [&[u8]; 10] = [
        b"hello\n",
        &[0, 0, 3, 0xf6],
        b"it's",
        b"say \"hi\"",
        b"both ' and \"",
        b"back\\slash",
        b"\t\r\n\x0b\x0c\x1b",
        b"\x7f\x80\xff",
        "粘包 é".as_bytes(),
        b"",
    ];
    let hex: Vec<String> = inputs
        .iter()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    let py = run(
        "python3",
        &[
            "-c",
            "import sys\nfor h in sys.argv[1:]: print(repr(bytes.fromhex(h)))",
        ]
        .into_iter()
        .chain(hex.iter().map(String::as_str))
        .collect::<Vec<_>>(),
        b"",
    )
    .await;
    py.expect_code(0);
    let want: Vec<String> = py.stdout_str().lines().map(str::to_string).collect();
    let got: Vec<String> = inputs
        .iter()
        .map(|b| rcmd::test_support::py_bytes(b, usize::MAX))
        .collect();
    assert_eq!(got, want);
    // And the demo prints its previews that way (a ' in ls's message: double quotes).
    let r = rcmd(&["demo", "sticky", "--case", "send"], b"").await;
    assert!(r.stdout_str().contains("b\"hello\\n"), "{r}");
}

#[tokio::test]
async fn bad_numbers_are_explained_in_words_not_rust_ranges() {
    for (args, said) in [
        (
            &["demo", "sticky", "--recv-size", "0"][..],
            "--recv-size must be a whole number from 16 to 65535",
        ),
        (
            &["demo", "sticky", "--recv-size", "abc"],
            "--recv-size must be a whole number from 16 to 65535",
        ),
        (
            &["demo", "rtt", "--delay", "0"],
            "--delay must be a whole number from 1 to 2000",
        ),
        (
            &["demo", "udp", "--recv-size", "70000"],
            "--recv-size must be a whole number from 16 to 65535",
        ),
    ] {
        let r = common::rcmd(args, b"").await;
        r.expect_code(255);
        let err = r.stderr_str();
        assert!(err.contains(said), "{r}");
        assert!(!err.contains("..") && !err.contains("invalid digit"), "{r}");
        // --help states the same range before anyone runs into it.
        let help = common::rcmd(&[args[0], args[1], "--help"], b"").await;
        let range = said.split(" must be ").nth(1).unwrap();
        let flat = help
            .stdout_str()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(flat.contains(range), "{range:?} not in\n{help}");
    }
}
