//! The first-contact question, asked of a person at a real terminal (a tmux pane): in
//! every terminal mode, and with stdin a pipe, it is read from the terminal, in cooked
//! mode, never from the standard input the command gets; `y` is asked again; `no` and
//! Ctrl-C abort with 255.

use crate::common;

use std::path::Path;

use common::tmux::Tmux;
use common::{rcmd_bin, RcmdHome, ServerProcess};

/// The question's last words.
const QUESTION: &str = "(yes/no/[fingerprint])?";

/// A server of one "machine" and a client home of another, so the client does not know
/// the server: it must ask.
struct Machines {
    server: ServerProcess,
    server_home: RcmdHome,
    client_home: RcmdHome,
    /// The server user's HOME, where its commands run and its login shell keeps history.
    home: tempfile::TempDir,
}

impl Machines {
    async fn start(server_args: &[&str]) -> Machines {
        let server_home = RcmdHome::new();
        let home = tempfile::tempdir().unwrap();
        let server = server_home
            .server_env(server_args, &[("HOME", home.path().to_str().unwrap())])
            .await;
        Machines {
            server,
            server_home,
            client_home: RcmdHome::new(),
            home,
        }
    }

    /// A shell script running `rcmd client ARGS` as the client machine's user, with the
    /// server's token given, then recording its exit status in `code`.
    fn client(&self, dir: &Path, args: &str) -> String {
        self.script(dir, &format!("{} client {args}", rcmd_bin()))
    }

    /// A shell script running `line` (a pipeline ending in `rcmd client`) as the client
    /// machine's user, then recording its exit status in `code`.
    fn script(&self, dir: &Path, line: &str) -> String {
        let token = std::fs::read_to_string(self.server_home.token_file()).unwrap();
        format!(
            "cd {dir}\nexport HOME={dir} RCMD_HOME={home} RCMD_TOKEN={token}\n\
             trap : INT\nstty -g > before\n{line}\necho \"exit=$?\" > code\n\
             stty -g > after\nsleep 60\n",
            dir = dir.display(),
            home = self.client_home.path().display(),
            token = token.trim(),
        )
    }

    fn addr(&self) -> String {
        self.server.addr.to_string()
    }
}

/// Starts `rcmd client ARGS` in a pane of its own (`None` without tmux).
fn pane(machines: &Machines, args: &str) -> Option<Tmux> {
    Tmux::start(|dir| machines.client(dir, args))
}

/// Answers the question `y` (asked again), then `yes`, and waits until the host is recorded.
fn answer_y_then_yes(tmux: &Tmux, wait_before_yes: Option<std::time::Duration>) {
    tmux.wait_for(QUESTION);
    tmux.type_line("y");
    tmux.wait_for("Please type 'yes', 'no' or the fingerprint:");
    if let Some(wait) = wait_before_yes {
        // Longer than the server's deadline for the hello (its --auth-timeout).
        std::thread::sleep(wait);
    }
    tmux.type_line("yes");
    tmux.wait_for("known_hosts");
}

fn read(tmux: &Tmux, name: &str) -> String {
    tmux.wait_for_file(&tmux.dir().join(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_with_stdin_asks_on_the_terminal_and_forwards_only_what_follows() {
    // The server gives up on a hello after 1 s; the answer comes after 1.5 s, as a person
    // answering in 15 s would after ssh's 10 s.
    let machines = Machines::start(&["--auth-timeout", "1"]).await;
    let addr = machines.addr();
    let Some(tmux) = pane(&machines, &format!("{addr} -- 'cat > out'")) else {
        return;
    };
    answer_y_then_yes(&tmux, Some(std::time::Duration::from_millis(1500)));
    tmux.type_line("payload");
    tmux.keys(&["C-d"]);
    assert_eq!(read(&tmux, "code"), "exit=0\n", "{}", tmux.screen());
    let out = std::fs::read_to_string(machines.home.path().join("out")).unwrap();
    assert_eq!(out, "payload\n", "the answer reached the command");
    let known = std::fs::read_to_string(machines.client_home.path().join("known_hosts")).unwrap();
    assert!(known.starts_with(&format!("{addr} SHA256:")), "{known}");
}

/// Starts `printf PIPED | rcmd client ADDR -- COMMAND > out` in a pane of its own: stdin
/// a pipe, the person at the pane's terminal (`None` without tmux).
fn piped_pane(machines: &Machines, piped: &str, command: &str) -> Option<Tmux> {
    let line = format!(
        "printf '{piped}' | {bin} client {addr} -- '{command}' > out",
        bin = rcmd_bin(),
        addr = machines.addr(),
    );
    Tmux::start(|dir| machines.script(dir, &line))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_still_asks_on_the_terminal_and_forwards_the_pipe_whole() {
    let machines = Machines::start(&[]).await;
    let Some(tmux) = piped_pane(&machines, "first\\nsecond\\n", "cat") else {
        return;
    };
    answer_y_then_yes(&tmux, None);
    assert_eq!(read(&tmux, "code"), "exit=0\n", "{}", tmux.screen());
    assert_eq!(
        std::fs::read_to_string(tmux.dir().join("out")).unwrap(),
        "first\nsecond\n",
        "the pipe did not reach the command whole, or the answer did"
    );
    let known = std::fs::read_to_string(machines.client_home.path().join("known_hosts")).unwrap();
    assert!(
        known.starts_with(&format!("{} SHA256:", machines.addr())),
        "{known}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_answered_no_at_the_terminal_exits_255_and_runs_nothing() {
    let machines = Machines::start(&[]).await;
    // Had the answer been read from the pipe, it would have been this `yes`.
    let Some(tmux) = piped_pane(&machines, "yes\\n", "cat > ran") else {
        return;
    };
    tmux.wait_for(QUESTION);
    tmux.type_line("no");
    assert_eq!(read(&tmux, "code"), "exit=255\n", "{}", tmux.screen());
    assert!(
        !machines.home.path().join("ran").exists(),
        "the command ran"
    );
    assert!(!machines.client_home.path().join("known_hosts").exists());
    assert_eq!(
        read(&tmux, "before"),
        read(&tmux, "after"),
        "terminal not restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_session_asks_in_cooked_mode_before_going_raw() {
    let machines = Machines::start(&[]).await;
    let addr = machines.addr();
    let Some(tmux) = pane(
        &machines,
        &format!("-t {addr} -- 'echo re''ady; cat > out'"),
    ) else {
        return;
    };
    answer_y_then_yes(&tmux, None);
    // Typed once the remote terminal is up, as a person would.
    tmux.wait_for("ready");
    tmux.type_line("payload");
    tmux.keys(&["C-d"]);
    assert_eq!(read(&tmux, "code"), "exit=0\n", "{}", tmux.screen());
    // Through the remote terminal, which ends lines with \n as cat reads them.
    let out = std::fs::read_to_string(machines.home.path().join("out")).unwrap();
    assert_eq!(out, "payload\n", "the answer reached the command");
    assert_eq!(
        read(&tmux, "before"),
        read(&tmux, "after"),
        "terminal not restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_shell_asks_first_and_gets_only_what_is_typed_after() {
    let machines = Machines::start(&[]).await;
    let addr = machines.addr();
    let Some(tmux) = pane(&machines, &addr) else {
        return;
    };
    answer_y_then_yes(&tmux, None);
    let out = tmux.dir().join("out");
    // Had `y` or `yes` reached the shell, it would have run them: `yes` never ends.
    tmux.type_line(&format!("echo $((6*7)) > {}; exit 3", out.display()));
    assert_eq!(read(&tmux, "code"), "exit=3\n", "{}", tmux.screen());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "42\n");
    assert!(!tmux.screen().contains("not found"), "{}", tmux.screen());
    assert_eq!(
        read(&tmux, "before"),
        read(&tmux, "after"),
        "terminal not restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_question_exits_255_and_restores_the_terminal() {
    let machines = Machines::start(&[]).await;
    let addr = machines.addr();
    let Some(tmux) = pane(&machines, &format!("-t {addr} -- true")) else {
        return;
    };
    tmux.wait_for(QUESTION);
    tmux.keys(&["C-c"]);
    assert_eq!(read(&tmux, "code"), "exit=255\n", "{}", tmux.screen());
    assert_eq!(
        read(&tmux, "before"),
        read(&tmux, "after"),
        "terminal not restored"
    );
    assert!(!machines.client_home.path().join("known_hosts").exists());
}
