//! A terminal for tests that need a person at one: a tmux server of the test's own (its
//! own socket, `tmux -S` in a temporary directory), a pane running a script, keys sent to
//! it and its screen read. The server is killed when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a pane may take to show what a test waits for.
const SCREEN_DEADLINE: Duration = Duration::from_secs(30);

pub struct Tmux {
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// A tmux server of our own, running the sh script `script` makes (given the
    /// directory that lives as long as the terminal) in a 100x30 pane. `None`, with a
    /// message, where tmux is not installed.
    pub fn start(script: impl FnOnce(&Path) -> String) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let path = dir.path().join("script.sh");
        std::fs::write(&path, script(dir.path())).unwrap();
        let tmux = Tmux { socket, dir };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", "100", "-y", "30", "sh"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Some(tmux)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .env_remove("TMUX");
        cmd
    }

    /// A directory that lives as long as this terminal.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane shows `text` `times` times; panics with the screen after
    /// [`SCREEN_DEADLINE`].
    pub fn wait_for_count(&self, text: &str, times: usize) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return;
            }
            assert!(
                start.elapsed() < SCREEN_DEADLINE,
                "the pane never showed {text:?} {times} times; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, text: &str) {
        self.wait_for_count(text, 1);
    }

    /// Types `text` into the pane, then Enter.
    pub fn type_line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    /// Sends tmux key names (`C-c`, `C-d`, `Enter`) or, after `-l`, literal text.
    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .command()
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys failed");
    }

    /// Waits for a file the script writes when it is done, and returns its contents.
    pub fn wait_for_file(&self, path: &PathBuf) -> String {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                if text.ends_with('\n') {
                    return text;
                }
            }
            assert!(
                start.elapsed() < SCREEN_DEADLINE,
                "{} never appeared; the pane shows:\n{}",
                path.display(),
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}
