//! The tutorial's wire modes, client side: `classic`, `json-header` and `naive`.
//!
//! One command at a time, as the tutorial's client does. Replies are streamed to the
//! output in fixed-size pieces: a length from the server sizes no buffer, so a lying
//! server cannot make the client allocate.

use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ClientConfig, ClientError, Input, Output};
use crate::header::HeaderFormat;
use crate::wire::Protocol;

const COPY_CHUNK: usize = 64 * 1024;

pub(super) async fn run<O: Write, E: Write>(
    mut stream: TcpStream,
    config: &ClientConfig,
    mut input: Input,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let mut last = 0;
    while let Some(line) = input.next().await {
        stream.write_all(&line).await?;
        last = match config.wire.protocol {
            Protocol::Naive => naive_reply(&mut stream, config, out).await?,
            Protocol::JsonHeader => json_reply(&mut stream, config, out).await?,
            _ => classic_reply(&mut stream, config.wire.header, out).await?,
        };
        input.replied();
    }
    Ok(last)
}

/// Reads one header of `fmt`'s size and returns the length it holds.
async fn read_len<R: AsyncRead + Unpin>(r: &mut R, fmt: HeaderFormat) -> Result<u64, ClientError> {
    let mut head = [0u8; 8];
    let head = &mut head[..fmt.size()];
    r.read_exact(head).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ClientError::Closed { unanswered: 1 },
        _ => e.into(),
    })?;
    fmt.unpack_len(head).map_err(|e| {
        ClientError::Protocol(crate::protocol::ProtocolError::Malformed(e.to_string()))
    })
}

/// Copies exactly `n` bytes from `r` to `w`, in pieces.
async fn copy_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    mut n: u64,
    mut w: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), ClientError> {
    let mut buf = vec![0u8; COPY_CHUNK.min(n as usize)];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = r.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(ClientError::Closed { unanswered: 1 });
        }
        w(&buf[..got])?;
        n -= got as u64;
    }
    Ok(())
}

async fn classic_reply<O: Write, E: Write>(
    stream: &mut TcpStream,
    fmt: HeaderFormat,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let n = read_len(stream, fmt).await?;
    // The mode cannot tell stderr from stdout, nor carry a status.
    copy_exact(stream, n, |b| out.out(b)).await?;
    Ok(0)
}

async fn json_reply<O: Write, E: Write>(
    stream: &mut TcpStream,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    let n = read_len(stream, config.wire.header).await?;
    if n > config.wire.max_frame as u64 {
        return Err(ClientError::Usage(format!(
            "the server announced a JSON header of {n} bytes, more than --max-frame {}",
            config.wire.max_frame
        )));
    }
    let mut json = vec![0u8; n as usize];
    stream.read_exact(&mut json).await?;
    let header = JsonHeader::parse(&json)?;
    match (header.stderr_size, header.stdout_size) {
        // An rcmd server says how the output splits: stderr first, then stdout.
        (Some(e), Some(o)) if e + o == header.total_size => {
            copy_exact(stream, e, |b| out.err(b)).await?;
            copy_exact(stream, o, |b| out.out(b)).await?;
        }
        _ => copy_exact(stream, header.total_size, |b| out.out(b)).await?,
    }
    Ok(header.exit_code.unwrap_or(0))
}

/// The tutorial's header dictionary; only `total_size` is required.
#[derive(Debug, PartialEq, Eq)]
struct JsonHeader {
    total_size: u64,
    stdout_size: Option<u64>,
    stderr_size: Option<u64>,
    exit_code: Option<i32>,
}

impl JsonHeader {
    fn parse(bytes: &[u8]) -> Result<JsonHeader, ClientError> {
        let bad = |why: &str| {
            ClientError::Protocol(crate::protocol::ProtocolError::Malformed(format!(
                "JSON header {why}: {}",
                String::from_utf8_lossy(bytes)
            )))
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| bad("is not JSON"))?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        Ok(JsonHeader {
            total_size: field("total_size").ok_or_else(|| bad("has no total_size"))?,
            stdout_size: field("stdout_size"),
            stderr_size: field("stderr_size"),
            exit_code: v
                .get("exit_code")
                .and_then(serde_json::Value::as_i64)
                .and_then(|c| i32::try_from(c).ok()),
        })
    }
}

async fn naive_reply<O: Write, E: Write>(
    stream: &mut TcpStream,
    config: &ClientConfig,
    out: &mut Output<O, E>,
) -> Result<i32, ClientError> {
    // One read, as the tutorial's client does before the fix: whatever it returns is
    // taken as the whole reply. Leftovers surface in the next command's reply.
    let mut buf = vec![0u8; config.wire.recv_size.max(1)];
    match tokio::time::timeout(config.naive_wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err(ClientError::Closed { unanswered: 1 }),
        Ok(Ok(n)) => {
            out.out(&buf[..n])?;
            Ok(0)
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            out.err(
                format!(
                    "rcmd: no reply within {:?}. In naive mode nothing marks where a reply \
                     starts or ends, so an empty reply and a slow one look the same.\n",
                    config.naive_wait
                )
                .as_bytes(),
            )?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JsonHeader;

    #[test]
    fn tutorial_json_header_needs_only_total_size() {
        let h =
            JsonHeader::parse(br#"{"filename": "a.txt", "md5": "x", "total_size": 12}"#).unwrap();
        assert_eq!(h.total_size, 12);
        assert_eq!(h.stdout_size, None);
        assert!(JsonHeader::parse(br#"{"size": 1}"#).is_err());
        assert!(JsonHeader::parse(b"not json").is_err());
    }
}
