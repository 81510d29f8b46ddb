//! Where each host's output goes: whole prefixed lines into a shared stream, memory (for
//! `--collate` and `--json`), or its own files (`--output-dir`).
//!
//! Many hosts write to one stdout at once. Each host's writer keeps its unfinished line
//! to itself and hands the shared stream only complete lines, all of one write in one
//! locked write, so no line is ever cut by another host's.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::kept::Kept;

/// A line longer than this is passed on in pieces of this size, each as a line, so a host
/// that never writes a newline cannot make the client buffer without bound.
pub const MAX_LINE: usize = 1 << 20;

/// A stream shared by all hosts (our stdout or stderr), written whole lines at a time.
pub struct Shared {
    inner: Mutex<SharedInner>,
    /// Cancelled when the reader goes away (`| head`): the rest is dropped quietly, and
    /// whoever holds the token stops the hosts, as a local command would die of SIGPIPE.
    closed: CancellationToken,
}

struct SharedInner {
    writer: Box<dyn Write + Send>,
    /// Lets the progress line step aside while lines are written to the same terminal.
    progress: Option<indicatif::ProgressBar>,
}

impl Shared {
    /// A stream into `writer` that cancels `closed` when its reader goes away.
    pub fn new(
        writer: Box<dyn Write + Send>,
        progress: Option<indicatif::ProgressBar>,
        closed: CancellationToken,
    ) -> Self {
        Shared {
            inner: Mutex::new(SharedInner { writer, progress }),
            closed,
        }
    }

    /// Writes `bytes` in one piece and flushes them.
    ///
    /// # Errors
    /// Any write error except a closed pipe, which ends output quietly (and cancels the
    /// token given to [`Shared::new`]).
    pub fn write_whole(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.write_with(|w| w.write_all(bytes))
    }

    /// Lets `write` write as much as it likes, in as many writes, with no other host's
    /// output between them (a `--json` object, a `--collate` group); then flushes.
    ///
    /// # Errors
    /// As [`write_whole`](Self::write_whole).
    pub fn write_with(
        &self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.is_cancelled() {
            return Ok(());
        }
        let SharedInner { writer, progress } = &mut *inner;
        let all = || write(&mut **writer).and_then(|()| writer.flush());
        let result = match progress {
            Some(bar) => bar.suspend(all),
            None => all(),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed.cancel();
                Ok(())
            }
            other => other,
        }
    }
}

/// One host's stream into a [`Shared`] one: complete lines are written at once, each
/// behind `prefix`; the unfinished last line waits for its end, or for [`finish`].
///
/// [`finish`]: LinePrefixer::finish
pub struct LinePrefixer {
    prefix: Vec<u8>,
    partial: Vec<u8>,
    shared: Arc<Shared>,
}

impl LinePrefixer {
    pub fn new(prefix: Vec<u8>, shared: Arc<Shared>) -> Self {
        LinePrefixer {
            prefix,
            partial: Vec::new(),
            shared,
        }
    }

    /// Writes the unfinished last line, if any, whole and with a newline.
    ///
    /// # Errors
    /// As [`Shared::write_whole`].
    pub fn finish(&mut self) -> io::Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let mut line = Vec::with_capacity(self.prefix.len() + self.partial.len() + 1);
        line.extend_from_slice(&self.prefix);
        line.append(&mut self.partial);
        line.push(b'\n');
        self.shared.write_whole(&line)
    }
}

impl Write for LinePrefixer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut batch = Vec::new();
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            batch.extend_from_slice(&self.prefix);
            batch.extend_from_slice(&self.partial);
            batch.extend_from_slice(&rest[..=nl]);
            self.partial.clear();
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            batch.extend_from_slice(&self.prefix);
            batch.extend(self.partial.drain(..MAX_LINE));
            batch.push(b'\n');
        }
        self.shared.write_whole(&batch)?;
        Ok(data.len())
    }

    /// Nothing to do: lines are written as soon as they are complete, and an unfinished
    /// one must wait (the client flushes after every piece of output).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LinePrefixer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// One host's stdout or stderr, as the chosen output mode wants it.
pub enum HostWriter {
    Lines(LinePrefixer),
    /// Boxed: a digest in progress is large beside the other kinds.
    Kept(Box<Kept>),
    File(File),
}

impl HostWriter {
    /// What was kept (empty for the other kinds).
    pub fn take_kept(&mut self) -> Kept {
        match self {
            HostWriter::Kept(k) => std::mem::take(&mut **k),
            _ => Kept::default(),
        }
    }

    /// Ends the output: the last unfinished line comes out whole.
    ///
    /// # Errors
    /// A write error from the shared stream or the file.
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            HostWriter::Lines(l) => l.finish(),
            HostWriter::Kept(_) => Ok(()),
            HostWriter::File(f) => f.flush(),
        }
    }
}

impl Write for HostWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            HostWriter::Lines(l) => l.write(data),
            HostWriter::Kept(k) => k.write(data),
            HostWriter::File(f) => f.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            HostWriter::Lines(l) => l.flush(),
            HostWriter::Kept(_) => Ok(()),
            HostWriter::File(f) => f.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared stream that records each whole write separately.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn shared() -> (Writes, Arc<Shared>) {
        let w = Writes::default();
        let closed = CancellationToken::new();
        (w.clone(), Arc::new(Shared::new(Box::new(w), None, closed)))
    }

    #[test]
    fn only_whole_prefixed_lines_reach_the_stream() {
        let (w, s) = shared();
        let mut a = LinePrefixer::new(b"a: ".to_vec(), s.clone());
        let mut b = LinePrefixer::new(b"b: ".to_vec(), s);
        a.write_all(b"one\ntw").unwrap();
        b.write_all(b"x").unwrap();
        a.write_all(b"o\nthr").unwrap();
        b.write_all(b"y\n").unwrap();
        a.flush().unwrap();
        drop(a);
        let writes = w.0.lock().unwrap().clone();
        assert_eq!(
            writes,
            [
                b"a: one\n".to_vec(),
                b"a: two\n".to_vec(),
                b"b: xy\n".to_vec(),
                b"a: thr\n".to_vec()
            ]
        );
    }

    #[test]
    fn many_lines_in_one_write_go_out_in_one_piece() {
        let (w, s) = shared();
        let mut a = LinePrefixer::new(b"h: ".to_vec(), s);
        a.write_all(b"1\n2\n3").unwrap();
        a.finish().unwrap();
        a.finish().unwrap();
        assert_eq!(
            w.0.lock().unwrap().clone(),
            [b"h: 1\nh: 2\n".to_vec(), b"h: 3\n".to_vec()]
        );
    }

    #[test]
    fn endless_line_is_cut_at_the_limit() {
        let (w, s) = shared();
        let mut a = LinePrefixer::new(Vec::new(), s);
        a.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        assert_eq!(w.0.lock().unwrap()[0].len(), MAX_LINE + 1);
        assert_eq!(a.partial.len(), 10);
    }

    #[test]
    fn closed_pipe_is_quiet() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let closed = CancellationToken::new();
        let s = Shared::new(Box::new(Closed), None, closed.clone());
        assert!(!closed.is_cancelled());
        s.write_whole(b"x\n").unwrap();
        assert!(closed.is_cancelled(), "the closed pipe is reported");
        s.write_whole(b"y\n").unwrap();
    }
}
