//! What the user sees of a copy: on a terminal, a bar for the file moving (bytes, rate,
//! time left) and one for the whole transfer; failures as lines of their own, escaped.

use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Watch;
use crate::printable::printable;

/// Prints failures to stderr, `PREFIX: path: why`, and shows nothing else.
pub struct Quiet {
    prefix: String,
}

impl Quiet {
    pub fn new(prefix: &str) -> Quiet {
        Quiet {
            prefix: prefix.to_string(),
        }
    }
}

fn failure_line(prefix: &str, path: &[u8], message: &str) -> String {
    format!(
        "{prefix}{}: {}",
        printable(path),
        printable(message.as_bytes())
    )
}

impl Watch for Quiet {
    fn failed(&mut self, path: &[u8], message: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            failure_line(&self.prefix, path, message)
        );
    }
}

/// Bars on stderr: the current file and the total.
pub struct Bars {
    multi: MultiProgress,
    file: Option<ProgressBar>,
    total: ProgressBar,
}

impl Bars {
    /// Bars drawn on stderr (which the caller has found to be a terminal).
    pub fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} eta {eta:>3}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            file: None,
            total,
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Watch for Bars {
    fn total(&mut self, files: u64, bytes: u64) {
        self.total.set_length(bytes);
        let plural = if files == 1 { "" } else { "s" };
        self.total
            .set_message(format!("total: {files} file{plural}"));
    }

    fn file(&mut self, path: &[u8], size: u64, done: u64) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} eta {eta:>3} [{bar:20}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(printable(path).to_string());
        bar.set_position(done);
        self.total.inc(done);
        if let Some(old) = self.file.replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.file {
            bar.inc(n);
        }
        self.total.inc(n);
    }

    fn file_done(&mut self) {
        if let Some(bar) = self.file.take() {
            bar.finish_and_clear();
        }
    }

    fn failed(&mut self, path: &[u8], message: &str) {
        let _ = self.multi.println(failure_line("rcmd: ", path, message));
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(bar) = self.file.take() {
            bar.finish_and_clear();
        }
        // The total stays, as scp leaves each file's last line: what moved, how fast.
        self.total.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bytes:>10}/{total_bytes:10} in {elapsed}, {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.total.abandon();
    }
}
