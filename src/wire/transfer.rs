//! The messages of `rcmd cp` (protocol version 3): a request, then entries and their bytes
//! from the sender, answers and a summary from the receiver. Either end may send or
//! receive: the client sends for an upload, the server for a download. The byte layout is
//! drawn in `PROTOCOL.md` (`framed` version 3: files).
//!
//! ```text
//! client → server  'c' flags:u8 DEST                       receive what follows into DEST
//!                  'g' flags:u8 SRC 00 SRC …               send these (globs expanded there)
//! sender           't' top:u64 files:u64 bytes:u64         what follows, for progress
//!                  'f' kind:u8 mode:u32 mtime:i64 atime:i64 size:u64 len:u16 NAME [TARGET]
//!                  's' offset:u64                           the file's bytes start here
//!                  'b' bytes | 'o' zeros:u64               data | a hole
//!                  'h' sha256[32]                           the file is whole
//!                  'x' message                              the file cannot be sent; drop it
//!                  'u'                                      leave the directory last entered
//!                  'z'                                      no more entries
//! receiver         'a' 0 | 1 | 2 have:u64 sha256[32]        send all | skip | resume
//!                  'y' written:u64 skipped:u64 failed:u64    the end of the transfer
//! either           'w' len:u16 PATH message                 one path failed; go on
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::message::ProtocolError;

/// Protocol version that carries these messages.
pub const VERSION: u8 = 3;

/// Longest name one entry may carry (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// What the user asked for, as flags both ends see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-r`: directories and what is in them; symbolic links inside copied as links.
    pub recursive: bool,
    /// `-p`: keep modes exactly, and modification and access times.
    pub preserve: bool,
    /// `-u`: skip files whose size and modification time already match.
    pub update: bool,
    /// `--partial`: keep a cut file's bytes, and continue from them next time.
    pub partial: bool,
}

impl Flags {
    fn to_byte(self) -> u8 {
        u8::from(self.recursive)
            | u8::from(self.preserve) << 1
            | u8::from(self.update) << 2
            | u8::from(self.partial) << 3
    }

    fn from_byte(b: u8) -> Result<Flags, ProtocolError> {
        if b & !0x0f != 0 {
            return Err(malformed(format!("unknown copy flags 0x{b:02x}")));
        }
        Ok(Flags {
            recursive: b & 1 != 0,
            preserve: b & 2 != 0,
            update: b & 4 != 0,
            partial: b & 8 != 0,
        })
    }

    /// Whether the sender waits for an answer to each file (to skip it or resume it).
    pub fn asks(self) -> bool {
        self.update || self.partial
    }
}

/// What kind of thing an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    /// A directory; its entries follow, up to the matching `Up`.
    Dir,
    /// A symbolic link; its target follows the name.
    Link,
}

/// One thing offered: its name (one path component), metadata and, for a link, target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub mtime: i64,
    pub atime: i64,
    pub size: u64,
    pub name: Bytes,
    pub target: Bytes,
}

/// The receiver's answer to a file, when the sender waits for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send the whole file.
    All,
    /// Nothing to send: size and modification time match (`-u`).
    Skip,
    /// `have` bytes of it are kept from an earlier try; their SHA-256 is `sha256`.
    Resume { have: u64, sha256: [u8; 32] },
}

/// The end of a transfer, from the receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub written: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// A message of `rcmd cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// Client: receive into `dest` (an upload).
    Put {
        flags: Flags,
        dest: Bytes,
    },
    /// Client: send `sources` (a download).
    Get {
        flags: Flags,
        sources: Vec<Bytes>,
    },
    /// Sender: how many top-level entries, files and bytes follow.
    Total {
        top: u64,
        files: u64,
        bytes: u64,
    },
    Entry(Entry),
    Start(u64),
    Data(Bytes),
    Hole(u64),
    Sum([u8; 32]),
    Abandon(String),
    Up,
    Finish,
    Answer(Answer),
    Done(Summary),
    /// One path failed (on the side that sends this); the transfer goes on.
    Failed {
        path: Bytes,
        message: String,
    },
}

fn malformed(m: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(m.into())
}

/// Whether `tag` is one of this module's.
pub fn is_tag(tag: u8) -> bool {
    b"cgtfsbohxuzayw".contains(&tag)
}

/// The tag of a data message, written by senders that put the body straight after it.
pub const DATA_TAG: u8 = b'b';

fn need(body: &Bytes, n: usize, what: &str) -> Result<(), ProtocolError> {
    if body.len() < n {
        return Err(malformed(format!("{what} is shorter than {n} bytes")));
    }
    Ok(())
}

fn sha(body: &mut Bytes, what: &str) -> Result<[u8; 32], ProtocolError> {
    need(body, 32, what)?;
    let mut h = [0u8; 32];
    body.copy_to_slice(&mut h);
    Ok(h)
}

impl Transfer {
    /// Parses the body of a message whose tag [`is_tag`].
    ///
    /// # Errors
    /// A body of the wrong shape.
    pub fn parse(tag: u8, mut body: Bytes) -> Result<Transfer, ProtocolError> {
        Ok(match tag {
            b'c' => {
                need(&body, 1, "copy request")?;
                let flags = Flags::from_byte(body.get_u8())?;
                Transfer::Put { flags, dest: body }
            }
            b'g' => {
                need(&body, 1, "copy request")?;
                let flags = Flags::from_byte(body.get_u8())?;
                let sources = body.split(|&b| b == 0).map(|s| body.slice_ref(s)).collect();
                Transfer::Get { flags, sources }
            }
            b't' => {
                need(&body, 24, "copy total")?;
                Transfer::Total {
                    top: body.get_u64(),
                    files: body.get_u64(),
                    bytes: body.get_u64(),
                }
            }
            b'f' => {
                need(&body, 31, "copy entry")?;
                let kind = match body.get_u8() {
                    b'f' => Kind::File,
                    b'd' => Kind::Dir,
                    b'l' => Kind::Link,
                    k => return Err(malformed(format!("unknown entry kind 0x{k:02x}"))),
                };
                let mode = body.get_u32();
                let mtime = body.get_i64();
                let atime = body.get_i64();
                let size = body.get_u64();
                let len = usize::from(body.get_u16());
                if len > MAX_NAME || len > body.len() {
                    return Err(malformed(format!("entry name of {len} bytes")));
                }
                let name = body.split_to(len);
                Transfer::Entry(Entry {
                    kind,
                    mode,
                    mtime,
                    atime,
                    size,
                    name,
                    target: body,
                })
            }
            b's' => {
                need(&body, 8, "start offset")?;
                Transfer::Start(body.get_u64())
            }
            b'b' => Transfer::Data(body),
            b'o' => {
                need(&body, 8, "hole")?;
                Transfer::Hole(body.get_u64())
            }
            b'h' => Transfer::Sum(sha(&mut body, "file checksum")?),
            b'x' => Transfer::Abandon(String::from_utf8_lossy(&body).into_owned()),
            b'u' => Transfer::Up,
            b'z' => Transfer::Finish,
            b'a' => {
                need(&body, 1, "answer")?;
                Transfer::Answer(match body.get_u8() {
                    0 => Answer::All,
                    1 => Answer::Skip,
                    2 => {
                        need(&body, 8, "resume answer")?;
                        let have = body.get_u64();
                        Answer::Resume {
                            have,
                            sha256: sha(&mut body, "resume answer")?,
                        }
                    }
                    a => return Err(malformed(format!("unknown answer {a}"))),
                })
            }
            b'y' => {
                need(&body, 24, "copy summary")?;
                Transfer::Done(Summary {
                    written: body.get_u64(),
                    skipped: body.get_u64(),
                    failed: body.get_u64(),
                })
            }
            b'w' => {
                need(&body, 2, "failure")?;
                let len = usize::from(body.get_u16());
                need(&body, len, "failure")?;
                let path = body.split_to(len);
                Transfer::Failed {
                    path,
                    message: String::from_utf8_lossy(&body).into_owned(),
                }
            }
            tag => return Err(malformed(format!("unknown copy message tag 0x{tag:02x}"))),
        })
    }

    /// Payload length once encoded, tag included.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Transfer::Put { dest, .. } => 1 + dest.len(),
            Transfer::Get { sources, .. } => {
                1 + sources.iter().map(|s| s.len() + 1).sum::<usize>()
                    - usize::from(!sources.is_empty())
            }
            Transfer::Total { .. } | Transfer::Done(_) => 24,
            Transfer::Entry(e) => 31 + e.name.len() + e.target.len(),
            Transfer::Start(_) | Transfer::Hole(_) => 8,
            Transfer::Data(b) => b.len(),
            Transfer::Sum(_) => 32,
            Transfer::Abandon(m) => m.len(),
            Transfer::Up | Transfer::Finish => 0,
            Transfer::Answer(Answer::Resume { .. }) => 41,
            Transfer::Answer(_) => 1,
            Transfer::Failed { path, message } => 2 + path.len() + message.len(),
        }
    }

    /// Appends tag and body.
    pub fn write(&self, dst: &mut BytesMut) {
        match self {
            Transfer::Put { flags, dest } => {
                dst.put_u8(b'c');
                dst.put_u8(flags.to_byte());
                dst.put_slice(dest);
            }
            Transfer::Get { flags, sources } => {
                dst.put_u8(b'g');
                dst.put_u8(flags.to_byte());
                for (i, s) in sources.iter().enumerate() {
                    if i > 0 {
                        dst.put_u8(0);
                    }
                    dst.put_slice(s);
                }
            }
            Transfer::Total { top, files, bytes } => {
                dst.put_u8(b't');
                dst.put_u64(*top);
                dst.put_u64(*files);
                dst.put_u64(*bytes);
            }
            Transfer::Entry(e) => {
                dst.put_u8(b'f');
                dst.put_u8(match e.kind {
                    Kind::File => b'f',
                    Kind::Dir => b'd',
                    Kind::Link => b'l',
                });
                dst.put_u32(e.mode);
                dst.put_i64(e.mtime);
                dst.put_i64(e.atime);
                dst.put_u64(e.size);
                // Names longer than MAX_NAME are refused before they are offered.
                dst.put_u16(e.name.len() as u16);
                dst.put_slice(&e.name);
                dst.put_slice(&e.target);
            }
            Transfer::Start(n) => {
                dst.put_u8(b's');
                dst.put_u64(*n);
            }
            Transfer::Data(b) => {
                dst.put_u8(DATA_TAG);
                dst.put_slice(b);
            }
            Transfer::Hole(n) => {
                dst.put_u8(b'o');
                dst.put_u64(*n);
            }
            Transfer::Sum(h) => {
                dst.put_u8(b'h');
                dst.put_slice(h);
            }
            Transfer::Abandon(m) => {
                dst.put_u8(b'x');
                dst.put_slice(m.as_bytes());
            }
            Transfer::Up => dst.put_u8(b'u'),
            Transfer::Finish => dst.put_u8(b'z'),
            Transfer::Answer(a) => {
                dst.put_u8(b'a');
                match a {
                    Answer::All => dst.put_u8(0),
                    Answer::Skip => dst.put_u8(1),
                    Answer::Resume { have, sha256 } => {
                        dst.put_u8(2);
                        dst.put_u64(*have);
                        dst.put_slice(sha256);
                    }
                }
            }
            Transfer::Done(s) => {
                dst.put_u8(b'y');
                dst.put_u64(s.written);
                dst.put_u64(s.skipped);
                dst.put_u64(s.failed);
            }
            Transfer::Failed { path, message } => {
                dst.put_u8(b'w');
                dst.put_u16(path.len() as u16);
                dst.put_slice(path);
                dst.put_slice(message.as_bytes());
            }
        }
    }

    /// Cuts text so the message fits `max` payload bytes; paths in failures are cut too
    /// (they are only shown).
    pub fn fit(&mut self, max: usize) {
        match self {
            Transfer::Failed { path, message } => {
                path.truncate(path.len().min(1024).min(max / 2));
                let room = max.saturating_sub(3 + path.len());
                super::message::cut(message, room);
            }
            Transfer::Abandon(m) => super::message::cut(m, max.saturating_sub(1)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: Transfer) {
        let mut buf = BytesMut::new();
        t.write(&mut buf);
        assert_eq!(buf.len(), t.encoded_len(), "{t:?}");
        let mut payload = buf.freeze();
        let tag = payload.get_u8();
        assert!(is_tag(tag));
        assert_eq!(Transfer::parse(tag, payload).unwrap(), t);
    }

    #[test]
    fn every_copy_message_round_trips() {
        let flags = Flags {
            recursive: true,
            partial: true,
            ..Flags::default()
        };
        round_trip(Transfer::Put {
            flags,
            dest: Bytes::from(&b"dir/\xffx"[..]),
        });
        round_trip(Transfer::Get {
            flags,
            sources: vec![Bytes::from("a b"), Bytes::from("*.txt")],
        });
        round_trip(Transfer::Get {
            flags,
            sources: vec![Bytes::from("one")],
        });
        round_trip(Transfer::Total {
            top: 1,
            files: 2,
            bytes: 3,
        });
        round_trip(Transfer::Entry(Entry {
            kind: Kind::Link,
            mode: 0o120777,
            mtime: -5,
            atime: 7,
            size: 0,
            name: Bytes::from("l\nnk"),
            target: Bytes::from("../x"),
        }));
        round_trip(Transfer::Start(9));
        round_trip(Transfer::Data(Bytes::from("data")));
        round_trip(Transfer::Hole(1 << 40));
        round_trip(Transfer::Sum([7; 32]));
        round_trip(Transfer::Abandon("gone".into()));
        round_trip(Transfer::Up);
        round_trip(Transfer::Finish);
        round_trip(Transfer::Answer(Answer::All));
        round_trip(Transfer::Answer(Answer::Skip));
        round_trip(Transfer::Answer(Answer::Resume {
            have: 5,
            sha256: [1; 32],
        }));
        round_trip(Transfer::Done(Summary {
            written: 1,
            skipped: 2,
            failed: 3,
        }));
        round_trip(Transfer::Failed {
            path: Bytes::from("a/b"),
            message: "no".into(),
        });
    }

    #[test]
    fn a_name_longer_than_the_body_is_malformed() {
        let mut buf = BytesMut::new();
        Transfer::Entry(Entry {
            kind: Kind::File,
            mode: 0o644,
            mtime: 0,
            atime: 0,
            size: 0,
            name: Bytes::from("abc"),
            target: Bytes::new(),
        })
        .write(&mut buf);
        buf[31] = 200; // the name's length, low byte
        let mut payload = buf.freeze();
        let tag = payload.get_u8();
        assert!(Transfer::parse(tag, payload).is_err());
        assert!(Flags::from_byte(0x10).is_err());
    }
}
