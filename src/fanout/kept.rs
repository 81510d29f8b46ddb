//! Output kept until a host is done (`--collate`, `--json`): a bounded part in memory,
//! the rest in an unnamed temporary file, with a digest so identical outputs can be
//! grouped without holding any two of them at once.
//!
//! The server's reply spool (`server::spool`) does the same for the classic modes, but
//! asynchronously, writing to a socket; this one is written by the client's synchronous
//! output writers and read back into our stdout.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use ring::digest::{Context, SHA256};

/// How much of one host's stdout (or stderr) stays in memory before the rest goes to a
/// temporary file: with 64 hosts at once, both streams, 8 MiB in all.
pub const MEMORY_LIMIT: usize = 64 << 10;

/// One host's stdout or stderr, kept whole.
pub struct Kept {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
    limit: usize,
    digest: Context,
    last: Option<u8>,
}

impl Default for Kept {
    fn default() -> Self {
        Kept::with_limit(MEMORY_LIMIT)
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("len", &self.len)
            .field("in_memory", &self.mem.len())
            .finish()
    }
}

impl Kept {
    /// Empty, holding at most `limit` bytes in memory.
    pub fn with_limit(limit: usize) -> Kept {
        Kept {
            mem: Vec::new(),
            file: None,
            len: 0,
            limit,
            digest: Context::new(&SHA256),
            last: None,
        }
    }

    /// Bytes kept in all.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory (the rest is on disk).
    #[cfg(test)]
    pub fn in_memory(&self) -> usize {
        self.mem.len()
    }

    /// Whether the output ends in a newline (false for an empty one).
    pub fn ends_with_newline(&self) -> bool {
        self.last == Some(b'\n')
    }

    /// What identifies the contents: two outputs with the same key are the same bytes
    /// (SHA-256, and the length besides).
    pub fn key(&self) -> (u64, Vec<u8>) {
        (self.len, self.digest.clone().finish().as_ref().to_vec())
    }

    /// Everything kept, in order, from the start (it may be read again).
    ///
    /// # Errors
    /// Reading the temporary file back.
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        let mem = self.mem.as_slice();
        Ok(match &mut self.file {
            Some(file) => {
                file.seek(SeekFrom::Start(0))?;
                Box::new(mem.chain(file))
            }
            None => Box::new(mem),
        })
    }

    /// Copies everything kept to `out`.
    ///
    /// # Errors
    /// Reading the temporary file, or writing `out`.
    pub fn copy_to(&mut self, out: &mut dyn Write) -> io::Result<()> {
        io::copy(&mut self.reader()?, out).map(|_| ())
    }
}

impl Write for Kept {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.file.is_none() && self.mem.len() + data.len() <= self.limit {
            self.mem.extend_from_slice(data);
        } else {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(tempfile::tempfile()?),
            };
            file.write_all(data)?;
        }
        self.len += data.len() as u64;
        self.digest.update(data);
        self.last = data.last().copied();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(k: &mut Kept) -> Vec<u8> {
        let mut got = Vec::new();
        k.copy_to(&mut got).unwrap();
        got
    }

    #[test]
    fn memory_is_capped_and_the_rest_spills_in_order() {
        let mut k = Kept::with_limit(10);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(7) {
            k.write_all(piece).unwrap();
            assert!(k.in_memory() <= 10, "{} bytes in memory", k.in_memory());
        }
        assert_eq!(k.len(), data.len() as u64);
        assert!(read_all(&mut k) == data);
        // Read again: the same bytes.
        assert!(read_all(&mut k) == data);
    }

    #[test]
    fn the_default_limit_holds_for_a_large_output() {
        let mut k = Kept::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..32 {
            k.write_all(&chunk).unwrap();
        }
        assert_eq!(k.len(), 32 << 20);
        assert!(k.in_memory() <= MEMORY_LIMIT, "{}", k.in_memory());
    }

    #[test]
    fn equal_bytes_have_equal_keys_however_they_came() {
        let (mut a, mut b, mut c) = (Kept::with_limit(4), Kept::default(), Kept::default());
        a.write_all(b"hello ").unwrap();
        a.write_all(b"world\n").unwrap();
        b.write_all(b"hello world\n").unwrap();
        c.write_all(b"hello world!").unwrap();
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert!(a.ends_with_newline() && !c.ends_with_newline());
        assert!(!Kept::default().ends_with_newline());
    }
}
