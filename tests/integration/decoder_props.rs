//! Property tests of the framed decoder: however the byte stream is cut into reads, the
//! same frames come out, for every header format; and no input makes it panic or buffer
//! past its limit.

use bytes::BytesMut;
use proptest::prelude::*;
use rcmd::wire::frame::FrameCodec;
use rcmd::wire::header::HeaderFormat;
use tokio_util::codec::{Decoder, Encoder};

/// Every format Python accepts for one integer: each byte-order prefix (or none) with
/// each code, `n`/`N` only in native mode. 64 in all.
fn all_formats() -> Vec<String> {
    let mut v = Vec::new();
    for prefix in ["", "@", "=", "<", ">", "!"] {
        for code in "bBhHiIlLqQnN".chars() {
            if matches!(code, 'n' | 'N') && !matches!(prefix, "" | "@") {
                continue;
            }
            v.push(format!("{prefix}{code}"));
        }
    }
    v
}

fn codec(fmt: &str, max: usize) -> FrameCodec {
    FrameCodec::new(fmt.parse::<HeaderFormat>().unwrap(), max)
}

/// Feeds `stream` to a fresh decoder in pieces ending at `cuts`, collecting frames.
fn decode_in_pieces(fmt: &str, stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut c = codec(fmt, 1 << 16);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        while let Some(f) = c.decode(&mut buf).unwrap() {
            frames.push(f.to_vec());
        }
    }
    assert!(c.decode_eof(&mut buf).unwrap().is_none(), "bytes left over");
    frames
}

proptest! {
    #[test]
    fn frames_survive_any_cutting(
        fmt in proptest::sample::select(all_formats()),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..127), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut enc = codec(&fmt, 1 << 16);
        let mut stream = BytesMut::new();
        for p in &payloads {
            enc.encode(&p[..], &mut stream).unwrap();
        }
        prop_assert_eq!(&decode_in_pieces(&fmt, &stream, &cuts), &payloads);
        // One byte per read, and everything in one read.
        let every: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&decode_in_pieces(&fmt, &stream, &every), &payloads);
        prop_assert_eq!(&decode_in_pieces(&fmt, &stream, &[]), &payloads);
    }

    #[test]
    fn random_bytes_never_panic_nor_buffer_past_the_limit(
        fmt in proptest::sample::select(all_formats()),
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(0usize..2000, 0..20),
    ) {
        const MAX: usize = 256;
        let mut c = codec(&fmt, MAX);
        let size = fmt.parse::<HeaderFormat>().unwrap().size();
        let mut buf = BytesMut::new();
        let mut ends: Vec<usize> = cuts.into_iter().filter(|&e| e <= bytes.len()).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        let mut start = 0;
        'feed: for end in ends {
            buf.extend_from_slice(&bytes[start..end]);
            start = end;
            loop {
                let result = c.decode(&mut buf);
                // Room is only ever made for a checked length (at most MAX), so the buffer
                // stays proportional to what arrived, never to a length a peer announced
                // (which can be up to 2^64 here). The factor allows for amortized growth.
                prop_assert!(
                    buf.capacity() <= 4 * (bytes.len() + MAX + size),
                    "capacity {} for {} bytes of input", buf.capacity(), bytes.len()
                );
                match result {
                    Ok(Some(f)) => prop_assert!(f.len() <= MAX),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}
