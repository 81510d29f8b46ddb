//! `--help` and usage errors as a learner reads them: in 80 columns, even through a pipe.

use crate::common;

use common::{rcmd, subcommands};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_help_page_fits_in_80_columns_through_a_pipe() {
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let mut pages = 0;
    while let Some(path) = pending.pop() {
        for flag in ["-h", "--help"] {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push(flag);
            // A wide COLUMNS must not widen the page either.
            let r = common::run_env(common::rcmd_bin(), &args, b"", &[("COLUMNS", "200")]).await;
            r.expect_code(0);
            let page = r.stdout_str();
            for line in page.lines() {
                let n = line.chars().count();
                assert!(n <= 80, "{n} columns: {line}\n{r}");
            }
            if flag == "--help" {
                for name in subcommands(&page) {
                    let mut sub = path.clone();
                    sub.push(name);
                    pending.push(sub);
                }
            }
            pages += 1;
        }
    }
    // rcmd, server, client, keygen, fingerprint, demo and its three demos.
    assert!(pages >= 2 * 9, "only {pages} pages found");
    let r = rcmd(&["demo", "--help"], b"").await;
    assert_eq!(
        subcommands(&r.stdout_str()),
        ["sticky", "udp", "rtt"],
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_format_is_explained_in_80_columns() {
    let r = rcmd(&["client", "--header", "x", "127.0.0.1:1", "true"], b"").await;
    r.expect_code(255);
    let err = r.stderr_str();
    for line in err.lines() {
        let n = line.chars().count();
        assert!(n <= 80, "{n} columns: {line}\n{r}");
    }
    // Wrapped, not cut: every word of the explanation is still there.
    let words = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.starts_with("error: invalid value 'x' for '--header <FMT>'"),
        "{r}"
    );
    assert!(
        words.contains(
            "followed by one of b B h H i I l L q Q n N (n and N only with @ or no prefix)"
        ),
        "{r}"
    );
    assert!(words.contains("For more information, try '--help'."), "{r}");
}

/// The lines of a `--help` page from the one that starts with `start` to the next option.
fn option_help(page: &str, start: &str) -> String {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in\n{page}"));
    let rest = &page[from..];
    let end = rest[1..].find("\n      --").map_or(rest.len(), |e| e + 1);
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_help_says_which_order_is_the_default() {
    let r = rcmd(&["server", "--help"], b"").await;
    r.expect_code(0);
    let order = option_help(&r.stdout_str(), "--order <ORDER>");
    assert!(
        order.contains(
            "stderr-first: stderr, then stdout, as the tutorial sends them (the default)"
        ),
        "{order}"
    );
    assert!(
        order.contains("stdout-first: stdout, then stderr"),
        "{order}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_udp_reads_with_recvfrom_as_the_tutorial_does() {
    let r = rcmd(&["demo", "udp"], b"").await;
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("recvfrom(1024)"), "{r}");
    assert!(!out.contains("recv(") && !out.contains(" recv "), "{r}");
    let help = rcmd(&["demo", "udp", "--help"], b"").await;
    let size = option_help(&help.stdout_str(), "--recv-size");
    assert!(size.contains("recvfrom(1024)"), "{size}");
}

/// A failure of rcmd's own exits 255 whichever subcommand it is, as a usage error does, so
/// that no status is mistaken for a remote command's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_that_fails_exits_255() {
    let home = common::RcmdHome::new();
    let missing = home.path().join("no-such-identity.pem");
    let missing = missing.to_str().unwrap();
    for args in [
        &["fingerprint", missing][..],
        &["fingerprint"],
        // The key's directory is a file: nothing can be written there.
        &["keygen", "--output", "/dev/null/key.pem"],
        // Refused before binding: no token, on every interface.
        &["server", "--listen", "0.0.0.0:0", "--naive"],
        &["client", "--no-such-flag"],
    ] {
        let r = home.rcmd(args, b"").await;
        r.expect_code(255);
        assert!(
            r.stderr_str().starts_with("rcmd: ") || args[0] == "client",
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_help_says_host_may_be_an_alias_or_user_at_host() {
    let r = rcmd(&["client", "--help"], b"").await;
    r.expect_code(0);
    let page = r.stdout_str();
    assert!(
        page.contains("Usage: rcmd client [OPTIONS] [[USER@]HOST[:PORT]]"),
        "{r}"
    );
    let host = option_help(&page, "[[USER@]HOST[:PORT]]");
    for words in [
        "or an alias that `Host` lines in the settings file",
        "USER@HOST is accepted only when USER is the user running this client",
        "commands run as the user who started `rcmd server` there",
    ] {
        assert!(host.contains(words), "{words:?} not in {host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_offers_only_the_wire_options_a_copy_can_use() {
    // A copy speaks the framed protocol only: the tutorial modes' options were listed,
    // then refused after connecting.
    let r = rcmd(&["cp", "--help"], b"").await;
    r.expect_code(0);
    let page = r.stdout_str();
    for gone in ["--protocol", "--naive", "--recv-size"] {
        assert!(!page.contains(gone), "{gone} in\n{page}");
    }
    for kept in ["--header <FMT>", "--max-frame <BYTES>"] {
        assert!(page.contains(kept), "no {kept} in\n{page}");
    }
    // What it exits with, in the help and in the manual page (which had no word of it).
    let man = rcmd(&["man", "cp"], b"").await;
    man.expect_code(0);
    for text in [&page, &man.stdout_str()] {
        assert!(text.contains("Exit status:"), "{text}");
        assert!(text.contains("the rest were copied (as scp)"), "{text}");
    }
    // Refused by the parser, before any connection (nothing listens on this port).
    let r = rcmd(&["cp", "--naive", "/etc/hostname", "127.0.0.1:x"], b"").await;
    r.expect_code(255);
    assert!(
        r.stderr_str().contains("unexpected argument '--naive'"),
        "{r}"
    );
}
