//! `--trace`: every frame on stderr as it passes, on both ends and in every mode.

use crate::common;

use common::RcmdHome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_client_traces_each_frame_with_header_decode_and_tag() {
    let home = RcmdHome::new();
    let server = home.server(&["--trace"]).await;
    let addr = server.addr.to_string();
    let r = home
        .rcmd(&["client", &addr, "-n", "--trace", "--", "echo hello"], b"")
        .await;
    r.expect_code(0);
    assert_eq!(r.stdout_str(), "hello\n", "{r}");
    let err = r.stderr_str();
    for want in [
        "rcmd trace: client send  00 00 00 0b  !I=11  'R' run  1+10 bytes  b'echo hello'",
        "rcmd trace: client recv  00 00 00 07  !I=7  'O' stdout  1+6 bytes  b'hello\\n'",
        "rcmd trace: client recv  00 00 00 05  !I=5  'X' exit  1+4 bytes",
        "'H' hello",
    ] {
        assert!(err.contains(want), "missing {want:?}\n{r}");
    }
    let log = server.stop().await.join("\n");
    for want in [
        "rcmd trace: server recv  00 00 00 0b  !I=11  'R' run  1+10 bytes  b'echo hello'",
        "rcmd trace: server send  00 00 00 07  !I=7  'O' stdout  1+6 bytes  b'hello\\n'",
        "token: 64 bytes, not shown",
    ] {
        assert!(log.contains(want), "missing {want:?}\n{log}");
    }
    // The token travels in the hello; neither end's trace shows any of it.
    let token = std::fs::read_to_string(home.token_file()).unwrap();
    let start = &token.trim()[..8];
    assert!(
        !err.contains(start) && !log.contains(start),
        "the trace shows the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_modes_trace_their_own_framing() {
    let home = RcmdHome::new();
    for (mode, client_line, server_line) in [
        (
            "classic",
            "rcmd trace: client recv  03 00 00 00  i=3  3 bytes  b'hi\\n'",
            "rcmd trace: server send  03 00 00 00  i=3  3 bytes  b'hi\\n'",
        ),
        (
            "length-ack",
            "rcmd trace: client recv  length as text b'3' = 3  3 bytes  b'hi\\n'",
            "rcmd trace: server recv  10 bytes, no header  b'recv_ready'",
        ),
        (
            "json-header",
            "rcmd trace: client recv  3e 00 00 00  i=62  json {\"exit_code\":0",
            "rcmd trace: server recv  7 bytes, no header  b'echo hi'",
        ),
        (
            "naive",
            "rcmd trace: client recv  3 bytes, no header  b'hi\\n'",
            "rcmd trace: server send  3 bytes, no header  b'hi\\n'",
        ),
    ] {
        let server = home.server(&["--protocol", mode, "--trace"]).await;
        let addr = server.addr.to_string();
        let r = home
            .rcmd(
                &[
                    "client",
                    &addr,
                    "--protocol",
                    mode,
                    "--trace",
                    "--",
                    "echo hi",
                ],
                b"",
            )
            .await;
        r.expect_code(0);
        assert!(
            r.stderr_str().contains(client_line),
            "{mode}: {client_line:?}\n{r}"
        );
        let log = server.stop().await.join("\n");
        assert!(log.contains(server_line), "{mode}: {server_line:?}\n{log}");
    }
}

/// README.md's `--trace` sample: the text block after the paragraph that introduces it.
fn readme_trace_sample() -> Vec<String> {
    let readme = std::fs::read_to_string(common::peer("README.md")).unwrap();
    let from = readme
        .find("`--trace` on a client")
        .expect("the --trace paragraph");
    let block = &readme[from..];
    let start = block.find("```text\n").expect("its sample") + "```text\n".len();
    let end = block[start..].find("```").unwrap();
    block[start..start + end]
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_trace_sample_is_what_a_client_prints() {
    let home = RcmdHome::new();
    let server = home.server(&[]).await;
    let addr = server.addr.to_string();
    // As the README's paragraph says: `rcmd client --trace HOST -- echo hello`.
    let r = home
        .rcmd(&["client", "--trace", &addr, "--", "echo hello"], b"")
        .await;
    r.expect_code(0);
    server.stop().await;
    let traced: Vec<String> = r
        .stderr_str()
        .lines()
        .filter(|l| l.starts_with("rcmd trace:"))
        .map(str::to_string)
        .collect();
    // Each direction is in order; how sends and receives interleave depends on timing
    // (the end of stdin races the output), so the two are compared apart.
    let direction = |lines: &[String], which: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains(which))
            .cloned()
            .collect()
    };
    let sample = readme_trace_sample();
    // The end of stdin is sent only if the client sees it before the reply ends: when the
    // command's exit wins that race, no stdin-eof goes out, rightly (nothing would read
    // it). Every other line must be there, in order.
    let mut sample_sends = direction(&sample, "client send");
    let traced_sends = direction(&traced, "client send");
    let eof_lost = sample_sends.len() == traced_sends.len() + 1
        && sample_sends.last().is_some_and(|l| l.contains("stdin-eof"));
    if eof_lost {
        sample_sends.pop();
    }
    assert_eq!(sample_sends, traced_sends, "{r}");
    assert_eq!(
        direction(&sample, "client recv"),
        direction(&traced, "client recv"),
        "{r}"
    );
    assert_eq!(sample.len(), traced.len() + usize::from(eof_lost), "{r}");
}
