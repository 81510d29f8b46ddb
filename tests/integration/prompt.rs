//! The `-T` prompt, with a person at a real terminal (a tmux pane): Ctrl-C stops the
//! running command and gives the prompt back, as a shell does, even when the command
//! ignores SIGINT.

use crate::common;

use common::tmux::Tmux;
use common::{framed, rcmd_bin, start_server, RcmdHome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_command_ignoring_sigint_returns_to_the_prompt() {
    let addr = start_server(framed()).await.to_string();
    let home = RcmdHome::new();
    let Some(tmux) = Tmux::start(|dir| {
        format!(
            "cd {dir}\nexport HOME={dir} RCMD_HOME={home}\ntrap : INT\n\
             {bin} client --plaintext {addr} -T\necho \"exit=$?\" > code\nsleep 60\n",
            dir = dir.display(),
            home = home.path().display(),
            bin = rcmd_bin(),
        )
    }) else {
        return;
    };
    let prompt = format!("{addr}> ");
    tmux.wait_for(&prompt);
    // `st""arted` on the typed line, `started` only once the command runs, its trap set.
    tmux.type_line("trap '' INT; echo st\"\"arted; sleep 30");
    tmux.wait_for("started");
    tmux.keys(&["C-c"]);
    tmux.wait_for("killing it");
    tmux.wait_for_count(&prompt, 2);
    tmux.type_line("echo alive$((40+2))");
    tmux.wait_for("alive42");
    tmux.keys(&["C-d"]);
    let code = tmux.wait_for_file(&tmux.dir().join("code"));
    assert_eq!(code, "exit=0\n", "{}", tmux.screen());
}
