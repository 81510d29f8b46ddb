//! One SHA-256 per file when the same files go to many hosts (`rcmd cp -H`).
//!
//! Every receiver checks a file's SHA-256 before putting it in place, so the sender sends
//! one per file and host. Hashing is most of the sender's work (about 0.8 s per GiB here,
//! where sending in the clear is a `sendfile` that never reads the bytes), and a fan-out
//! runs every host on one thread: twenty hosts hashed the same bytes twenty times there.
//!
//! Here the connection furthest along a file hashes each piece of it that no connection has
//! hashed yet; the others send the same bytes and take the sum at the end. No connection
//! waits for another (a slow host never holds up a fast one): whichever reaches a piece first
//! hashes it, and one behind finds it hashed.
//!
//! If the file changes while it is sent, a connection may send other bytes than the ones
//! hashed: its receiver finds that the sum differs and refuses the file, as with one host.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};

use super::sender::{hash_zeros, CHUNK, SHRANK};

/// Files smaller than this are hashed by each connection: too little to share.
const SHARED_MIN: u64 = 1 << 20;

/// The files of one fan-out's copy, by what each is on disk.
#[derive(Default)]
pub struct SharedSums {
    files: Mutex<HashMap<Key, Arc<Mutex<Progress>>>>,
}

impl std::fmt::Debug for SharedSums {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.files.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("SharedSums").field("files", &files).finish()
    }
}

/// A file as each connection opened it: the same inode, size and times, so a file replaced
/// or rewritten between two connections' opens is not taken for the one already hashed.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How far the hashing of one file has come.
struct Progress {
    ctx: Context,
    /// Bytes `[0, upto)` are in `ctx`.
    upto: u64,
    size: u64,
    /// Why the file could not be read to its end (every connection then abandons it).
    broken: Option<String>,
    /// For reading what no connection holds; dropped once the file is hashed.
    buf: Vec<u8>,
}

impl SharedSums {
    /// The shared hashing of `file`, offered as `size` bytes; None for a small file or one
    /// whose metadata cannot be read (then the connection hashes on its own).
    pub fn file(&self, file: &File, size: u64) -> Option<SharedSum> {
        if size < SHARED_MIN {
            return None;
        }
        let m = file.metadata().ok()?;
        let key = Key {
            dev: m.dev(),
            ino: m.ino(),
            size,
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        };
        let mut files = self.files.lock().expect("no panics while held");
        let progress = files.entry(key).or_insert_with(|| {
            Arc::new(Mutex::new(Progress {
                ctx: Context::new(&SHA256),
                upto: 0,
                size,
                broken: None,
                buf: Vec::new(),
            }))
        });
        Some(SharedSum(Arc::clone(progress)))
    }
}

/// One file's hashing, as one connection sends it from its start.
pub struct SharedSum(Arc<Mutex<Progress>>);

impl SharedSum {
    /// Makes sure `[pos, pos + n)`, which this connection is about to send, is hashed:
    /// from `held` where this connection read those bytes, else from `file`. The error
    /// says why the file could not be read.
    pub fn data(&self, file: &File, pos: u64, n: u64, held: Option<&[u8]>) -> Result<(), String> {
        let mut p = self.0.lock().expect("no panics while held");
        p.catch_up(file, pos)?;
        let end = pos + n;
        if p.upto >= end {
            return Ok(());
        }
        match held {
            Some(held) => {
                let from = (p.upto - pos) as usize;
                p.ctx.update(&held[from..]);
                p.upto = end;
                p.done_reading();
                Ok(())
            }
            None => p.catch_up(file, end),
        }
    }

    /// The same for a hole of `n` bytes at `pos`: zeros.
    pub fn zeros(&self, file: &File, pos: u64, n: u64) -> Result<(), String> {
        let mut p = self.0.lock().expect("no panics while held");
        p.catch_up(file, pos)?;
        let end = pos + n;
        if p.upto < end {
            let more = end - p.upto;
            hash_zeros(&mut p.ctx, more);
            p.upto = end;
            p.done_reading();
        }
        Ok(())
    }

    /// The SHA-256 of the whole file, once this connection has sent all of it.
    pub fn sum(&self) -> Result<[u8; 32], String> {
        let p = self.0.lock().expect("no panics while held");
        if let Some(why) = &p.broken {
            return Err(why.clone());
        }
        debug_assert_eq!(p.upto, p.size, "every byte was covered before the sum");
        let mut sum = [0u8; 32];
        sum.copy_from_slice(p.ctx.clone().finish().as_ref());
        Ok(sum)
    }
}

impl Progress {
    /// Reads and hashes from `upto` to `end`. A connection only ever asks for bytes at or
    /// past where the furthest one got, so this reads only what nobody has.
    fn catch_up(&mut self, file: &File, end: u64) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        while self.upto < end {
            let want = (end - self.upto).min(CHUNK as u64) as usize;
            if self.buf.len() < want {
                self.buf.resize(CHUNK, 0);
            }
            let read = file.read_at(&mut self.buf[..want], self.upto);
            let n = match read {
                Ok(0) => Err(SHRANK.to_string()),
                Ok(n) => Ok(n),
                Err(e) => Err(crate::text::io_reason(&e)),
            };
            let n = n.inspect_err(|why| self.broken = Some(why.clone()))?;
            self.ctx.update(&self.buf[..n]);
            self.upto += n as u64;
        }
        self.done_reading();
        Ok(())
    }

    fn done_reading(&mut self) {
        if self.upto >= self.size {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
        out
    }

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    #[test]
    fn connections_in_any_order_and_piece_sizes_get_the_files_sum() {
        let bytes: Vec<u8> = (0..3 * SHARED_MIN + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (_t, f) = file_of(&bytes);
        let size = bytes.len() as u64;
        let sums = SharedSums::default();
        let (a, b, c) = (
            sums.file(&f, size).unwrap(),
            sums.file(&f, size).unwrap(),
            sums.file(&f, size).unwrap(),
        );
        // a sends without reading (sendfile) in 1 MiB pieces; b holds what it read, in
        // pieces of another size; c comes last, when everything is hashed.
        let (mut pa, mut pb) = (0u64, 0u64);
        while pa < size || pb < size {
            if pa < size {
                let n = (size - pa).min(1 << 20);
                a.data(&f, pa, n, None).unwrap();
                pa += n;
            }
            if pb < size {
                let n = (size - pb).min(300_001);
                let held = &bytes[pb as usize..(pb + n) as usize];
                b.data(&f, pb, n, Some(held)).unwrap();
                pb += n;
            }
        }
        c.data(&f, 0, size, None).unwrap();
        // The file's SHA-256 only if every byte went into the one hash once, in order.
        for s in [&a, &b, &c] {
            assert_eq!(s.sum().unwrap(), sha256(&bytes));
        }
    }

    #[test]
    fn a_hole_is_hashed_as_zeros_and_only_once() {
        let mut bytes = vec![0u8; 2 * SHARED_MIN as usize];
        bytes[..10].copy_from_slice(b"0123456789");
        let (_t, f) = file_of(&bytes);
        let size = bytes.len() as u64;
        let sums = SharedSums::default();
        let (a, b) = (sums.file(&f, size).unwrap(), sums.file(&f, size).unwrap());
        a.data(&f, 0, 10, None).unwrap();
        a.zeros(&f, 10, size - 10).unwrap();
        b.data(&f, 0, 10, None).unwrap();
        b.zeros(&f, 10, size - 10).unwrap();
        assert_eq!(a.sum().unwrap(), sha256(&bytes));
        assert_eq!(b.sum().unwrap(), sha256(&bytes));
    }

    #[test]
    fn a_file_that_shrank_is_abandoned_by_every_connection() {
        let bytes = vec![1u8; 2 * SHARED_MIN as usize];
        let (t, f) = file_of(&bytes);
        let size = bytes.len() as u64;
        let sums = SharedSums::default();
        let (a, b) = (sums.file(&f, size).unwrap(), sums.file(&f, size).unwrap());
        a.data(&f, 0, SHARED_MIN, None).unwrap();
        t.as_file().set_len(SHARED_MIN).unwrap();
        assert_eq!(a.data(&f, SHARED_MIN, SHARED_MIN, None), Err(SHRANK.into()));
        // b, behind, is told at its next piece, even one already hashed.
        assert_eq!(b.data(&f, 0, SHARED_MIN, None), Err(SHRANK.into()));
        assert_eq!(b.sum(), Err(SHRANK.into()));
    }

    #[test]
    fn small_files_and_other_files_are_not_shared() {
        let (_t, small) = file_of(b"tiny");
        let sums = SharedSums::default();
        assert!(sums.file(&small, 4).is_none());
        let (_u, one) = file_of(&vec![2u8; SHARED_MIN as usize]);
        let (_v, two) = file_of(&vec![3u8; SHARED_MIN as usize]);
        let (x, y) = (
            sums.file(&one, SHARED_MIN).unwrap(),
            sums.file(&two, SHARED_MIN).unwrap(),
        );
        x.data(&one, 0, SHARED_MIN, None).unwrap();
        y.data(&two, 0, SHARED_MIN, None).unwrap();
        assert_ne!(x.sum().unwrap(), y.sum().unwrap());
    }
}
