//! What the user sees of a copy: on a terminal, a bar for the file moving (bytes, rate,
//! time left) and one for the whole transfer; failures as lines of their own, escaped.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{BinaryBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Watch;
use crate::printable::printable;

/// Prints failures to stderr, `PREFIX: path: why`, and shows nothing else.
pub struct Quiet {
    prefix: String,
    there: Vec<u8>,
}

impl Quiet {
    pub fn new(prefix: &str) -> Quiet {
        Quiet {
            prefix: prefix.to_string(),
            there: Vec::new(),
        }
    }

    /// Names the peer's paths `HOST:path`, as the user wrote them (`rcmd:
    /// 127.0.0.1:nope: no such file or directory`), apart from this side's.
    pub fn with_host(mut self, host: &str) -> Quiet {
        self.there = there(host);
        self
    }
}

/// `HOST:`, before a path on the peer's side.
fn there(host: &str) -> Vec<u8> {
    let mut there = host.as_bytes().to_vec();
    there.push(b':');
    there
}

fn on(there: &[u8], path: &[u8]) -> Vec<u8> {
    [there, path].concat()
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

    fn failed_there(&mut self, path: &[u8], message: &str) {
        let path = on(&self.there, path);
        self.failed(&path, message);
    }
}

/// Bars on stderr: the current file and the total.
pub struct Bars {
    multi: MultiProgress,
    file: Option<ProgressBar>,
    total: ProgressBar,
    /// Bytes counted in the total that this run did not move: kept by an earlier try, or
    /// in files skipped with `-u`. The rate left on screen at the end leaves them out.
    already_there: Arc<AtomicU64>,
    /// Files the transfer holds: with none (every source failed) no total is left behind.
    files: u64,
    /// `HOST:`, before the peer's paths.
    there: Vec<u8>,
}

impl Bars {
    /// Bars drawn on stderr (which the caller has found to be a terminal).
    pub fn new() -> Bars {
        Bars::drawn_on(ProgressDrawTarget::stderr())
    }

    /// As [`Quiet::with_host`].
    pub fn with_host(mut self, host: &str) -> Bars {
        self.there = there(host);
        self
    }

    fn drawn_on(target: ProgressDrawTarget) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} eta {eta:>3}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        // No steady tick: a bar with one draws only on its tick, so the total lagged the
        // file above it by up to 200 ms of bytes ("big 175 MiB" over "total 167 MiB").
        // Both now draw as bytes move, at the same moments.
        Bars {
            multi,
            file: None,
            total,
            already_there: Arc::new(AtomicU64::new(0)),
            files: 0,
            there: Vec::new(),
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
        self.files = files;
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
        if done > 0 {
            // Bytes already there moved nothing now: the rates count from here.
            bar.reset_eta();
            self.total.reset_eta();
            self.already_there.fetch_add(done, Ordering::Relaxed);
        }
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

    fn failed_there(&mut self, path: &[u8], message: &str) {
        let path = on(&self.there, path);
        self.failed(&path, message);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(bar) = self.file.take() {
            bar.finish_and_clear();
        }
        if self.files == 0 {
            // Nothing was to move (the errors said why): a line of zeros adds nothing.
            self.total.finish_and_clear();
            return;
        }
        // The total stays, as scp leaves each file's last line: what moved, how fast.
        let already_there = Arc::clone(&self.already_there);
        self.total.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bytes:>10}/{total_bytes:10} in {elapsed}, {moved_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "moved_per_sec",
                move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let moved = state
                        .pos()
                        .saturating_sub(already_there.load(Ordering::Relaxed));
                    let secs = state.elapsed().as_secs_f64();
                    let rate = if secs > 0.0 { moved as f64 / secs } else { 0.0 };
                    let _ = write!(w, "{}/s", BinaryBytes(rate as u64));
                },
            ),
        );
        self.total.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    /// The bytes done that a bar's line shows (`51.00 MiB/600.00 MiB`), in MiB.
    fn mib_done(line: &str) -> f64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .windows(2)
            .find(|w| w[1].contains('/'))
            .unwrap_or_else(|| panic!("no bytes in {line:?}"));
        let n: f64 = at[0].parse().unwrap();
        match at[1].split('/').next().unwrap() {
            "B" => n / 1048576.0,
            "KiB" => n / 1024.0,
            "MiB" => n,
            unit => panic!("{unit} in {line:?}"),
        }
    }

    #[test]
    fn the_total_keeps_up_with_the_file_above_it() {
        // A steady tick made the total draw only on its tick: it showed 167 MiB under a
        // file at 175 MiB that came after a whole 100 MiB one.
        const MIB: u64 = 1 << 20;
        let term = InMemoryTerm::new(4, 120);
        let mut bars = Bars::drawn_on(ProgressDrawTarget::term_like(Box::new(term.clone())));
        bars.total(2, 700 * MIB);
        bars.file(b"first", 100 * MIB, 0);
        bars.advance(100 * MIB);
        bars.file_done();
        bars.file(b"second", 600 * MIB, 0);
        // Five steps: indicatif draws a bar on at most ten changes in a burst (then one a
        // millisecond), so each of these is drawn however fast the loop runs.
        for step in 1..=5 {
            bars.advance(MIB);
            let screen = term.contents();
            let line = |start: &str| {
                screen
                    .lines()
                    .find(|l| l.starts_with(start))
                    .unwrap_or_else(|| panic!("no {start} line in\n{screen}"))
                    .to_string()
            };
            let (file, total) = (mib_done(&line("second")), mib_done(&line("total: ")));
            assert_eq!(file, step as f64, "{screen}");
            assert_eq!(total, 100.0 + step as f64, "{screen}");
        }
    }
}
