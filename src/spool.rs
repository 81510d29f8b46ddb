//! A byte buffer that keeps a bounded amount in memory and spills the rest to a temporary
//! file. The classic and json-header modes need the whole output's length before the first
//! byte goes out; this lets them learn it without holding a large output in memory.

use std::io::SeekFrom;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

/// How much of one output stays in memory before the rest goes to disk.
pub const MEMORY_LIMIT: usize = 1 << 20;

/// Output collected for a reply whose length must be known up front.
#[derive(Debug)]
pub struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
    limit: usize,
}

impl Spool {
    /// An empty spool holding at most `limit` bytes in memory.
    pub fn new(limit: usize) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            limit,
        }
    }

    /// Total bytes collected.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`, moving to a temporary file once the memory limit would be passed.
    ///
    /// # Errors
    /// An I/O error creating or writing the temporary file.
    pub async fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.len += data.len() as u64;
        if self.file.is_none() && self.mem.len() + data.len() <= self.limit {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(File::from_std(tempfile::tempfile()?)),
        };
        file.write_all(data).await
    }

    /// Writes everything collected, in order, to `w`.
    ///
    /// # Errors
    /// An I/O error reading the temporary file or writing to `w`.
    pub async fn write_to<W: AsyncWrite + Unpin>(mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.mem).await?;
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
            file.seek(SeekFrom::Start(0)).await?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spills_past_the_limit_and_keeps_order() {
        let mut s = Spool::new(10);
        s.push(b"0123456").await.unwrap();
        s.push(b"789abc").await.unwrap();
        s.push(b"def").await.unwrap();
        assert!(s.file.is_some(), "should have spilled to disk");
        assert_eq!(s.mem.len(), 7, "memory stops growing at the limit");
        assert_eq!(s.len(), 16);
        let mut out = Vec::new();
        s.write_to(&mut out).await.unwrap();
        assert_eq!(out, b"0123456789abcdef");
    }
}
