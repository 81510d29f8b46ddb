//! A byte buffer that keeps a bounded amount in memory and spills the rest to a temporary
//! file. The classic and json-header modes need the whole output's length before the first
//! byte goes out; this lets them learn it without holding a large output in memory. The
//! file part goes to a socket with `sendfile(2)`, without passing through our memory.

use std::io::SeekFrom;
use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::net::TcpStream;

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

    /// Everything collected, when it all stayed in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        self.file.is_none().then_some(&self.mem[..])
    }

    /// Total bytes collected.
    pub fn len(&self) -> u64 {
        self.len
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
            copy_file(&mut file, w).await?;
        }
        Ok(())
    }
}

impl Spool {
    /// Writes everything collected, in order, to `socket`: the memory part with ordinary
    /// writes, the file part with `sendfile(2)` (or copied, if the kernel refuses).
    ///
    /// # Errors
    /// An I/O error reading the temporary file or writing to `socket`.
    pub async fn send_to(mut self, socket: &TcpStream) -> std::io::Result<()> {
        write_all_to(socket, &self.mem).await?;
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.flush().await?;
        let mut offset: u64 = 0;
        let end = self.len - self.mem.len() as u64;
        while offset < end {
            let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
            socket.writable().await?;
            let sent = socket.try_io(Interest::WRITABLE, || {
                crate::splice::sendfile(file.as_fd(), &mut offset, socket.as_fd(), left)
            });
            match sent {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if crate::splice::is_refusal(&e) => {
                    // Copy the rest through memory instead.
                    file.seek(SeekFrom::Start(offset)).await?;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        write_all_to(socket, &buf[..n]).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes all of `data` to `socket`, waiting for room as it needs.
async fn write_all_to(socket: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        socket.writable().await?;
        match socket.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies the rest of `file` to `w` through a buffer.
async fn copy_file<W: AsyncWrite + Unpin>(file: &mut File, w: &mut W) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
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

    #[tokio::test]
    async fn sent_to_a_socket_with_sendfile_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (a, (mut b, _)) = (a.unwrap(), b.unwrap());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = Spool::new(1000);
        for piece in data.chunks(77_777) {
            s.push(piece).await.unwrap();
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        s.send_to(&a).await.unwrap();
        drop(a);
        assert!(reader.await.unwrap() == data);
    }
}
