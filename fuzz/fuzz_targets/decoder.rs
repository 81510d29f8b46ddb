//! Fuzzes the framed decoder: any bytes, in any header format, cut into reads anywhere.
//! It must never panic, never yield a frame over the limit, and never buffer more than
//! the input plus one checked frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rcmd::wire::frame::FrameCodec;
use rcmd::wire::header::HeaderFormat;
use rcmd::wire::message::{ClientCodec, ServerCodec};
use tokio_util::codec::Decoder;

const FORMATS: &[&str] = &[
    "b", "B", "h", "H", "i", "I", "q", "Q", "n", "N", "<h", ">I", "!i", "=Q",
];
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, stream)) = rest.split_first() else {
        return;
    };
    let fmt: HeaderFormat = FORMATS[selector as usize % FORMATS.len()].parse().unwrap();
    let step = usize::from(cut).max(1);

    let mut frames = FrameCodec::new(fmt, MAX);
    let mut client: ServerCodec = ServerCodec::new(fmt, MAX);
    let mut server: ClientCodec = ClientCodec::new(fmt, MAX);
    let (mut a, mut b, mut c) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
    let (mut a_ok, mut b_ok, mut c_ok) = (true, true, true);
    for piece in stream.chunks(step) {
        a.extend_from_slice(piece);
        b.extend_from_slice(piece);
        c.extend_from_slice(piece);
        while a_ok {
            match frames.decode(&mut a) {
                Ok(Some(f)) => assert!(f.len() <= MAX),
                Ok(None) => break,
                Err(_) => a_ok = false,
            }
        }
        while b_ok {
            match client.decode(&mut b) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => b_ok = false,
            }
        }
        while c_ok {
            match server.decode(&mut c) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => c_ok = false,
            }
        }
        assert!(a.capacity() <= 4 * (stream.len() + MAX + 8) + 64);
    }
});
