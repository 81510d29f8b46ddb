//! Bytes waiting to go to one peer, written without ever blocking the connection's loop.
//!
//! Every frame is queued here and written from inside the loop's `select!`, one vectored
//! write at a time. A peer that stops reading therefore stalls only this queue: the loop
//! still notices a timeout, a shutdown, a disconnect, or the queue making no progress.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How many pieces one vectored write takes at most (Linux accepts 1024).
const MAX_SLICES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Bytes>,
    len: usize,
}

impl Outbox {
    /// Queues `bytes` behind everything already queued.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Bytes queued and not yet written.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes as much of the queue as one system call takes. Cancel safe: the queue only
    /// advances past bytes that were written.
    ///
    /// # Errors
    /// The socket's error.
    pub(super) async fn write_some<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        if self.is_empty() {
            return std::future::pending().await;
        }
        let slices: Vec<IoSlice<'_>> = self
            .queue
            .iter()
            .take(MAX_SLICES)
            .map(|b| IoSlice::new(b))
            .collect();
        let n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.advance(n);
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.queue.front_mut().expect("advanced past the queue");
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn partial_writes_keep_order_and_lose_nothing() {
        // A writer that takes at most 3 bytes at a time.
        let (mut a, mut b) = tokio::io::duplex(3);
        let mut out = Outbox::default();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::new());
        out.push(Bytes::from_static(b"world"));
        assert_eq!(out.len(), 11);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        while !out.is_empty() {
            out.write_some(&mut a).await.unwrap();
        }
        drop(a);
        assert_eq!(reader.await.unwrap(), b"hello world");
    }
}
