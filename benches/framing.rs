//! The framed codec beside tokio-util's `LengthDelimitedCodec`, on the very same bytes:
//! with header `!I` both read and write a 4-byte big-endian length, then the payload.
//!
//! Run with `cargo bench --bench framing`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rcmd::wire::frame::FrameCodec;
use rcmd::wire::header::HeaderFormat;
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Payload sizes: a tiny message and a full pipe read.
const SIZES: [usize; 2] = [16, 64 * 1024];
/// Enough bytes per iteration that the measurement is not dominated by setup.
const BYTES_PER_ITER: usize = 4 << 20;

fn ours() -> FrameCodec {
    FrameCodec::new(HeaderFormat::NETWORK_U32, 1 << 20)
}

fn theirs() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(1 << 20)
        .new_codec()
}

fn stream_of(size: usize) -> (BytesMut, usize) {
    let count = (BYTES_PER_ITER / size).max(1);
    let payload = vec![0xabu8; size];
    let mut stream = BytesMut::new();
    let mut codec = ours();
    for _ in 0..count {
        codec.encode(&payload[..], &mut stream).unwrap();
    }
    (stream, count)
}

/// Decodes every frame in `buf`; returns how many there were, and the drained buffer so
/// that freeing its allocation happens outside the timing.
fn decode_all<D: Decoder>(mut codec: D, mut buf: BytesMut) -> (usize, BytesMut)
where
    D::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        black_box(&frame);
        n += 1;
    }
    (n, buf)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        let (stream, count) = stream_of(size);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        // The input is cloned in setup, outside the timing: only decoding is measured.
        group.bench_with_input(BenchmarkId::new("rcmd", size), &stream, |b, stream| {
            b.iter_batched(
                || stream.clone(),
                |buf| {
                    let (n, drained) = decode_all(ours(), buf);
                    assert_eq!(n, count);
                    drained
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("tokio-util", size),
            &stream,
            |b, stream| {
                b.iter_batched(
                    || stream.clone(),
                    |buf| {
                        let (n, drained) = decode_all(theirs(), buf);
                        assert_eq!(n, count);
                        drained
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let count = (BYTES_PER_ITER / size).max(1);
        let payload = Bytes::from(vec![0xabu8; size]);
        group.throughput(Throughput::Bytes(((size + 4) * count) as u64));
        group.bench_with_input(BenchmarkId::new("rcmd", size), &payload, |b, payload| {
            let mut dst = BytesMut::with_capacity((size + 4) * count);
            b.iter(|| {
                dst.clear();
                let mut codec = ours();
                for _ in 0..count {
                    codec.encode(&payload[..], &mut dst).unwrap();
                }
                black_box(&dst);
            })
        });
        group.bench_with_input(
            BenchmarkId::new("tokio-util", size),
            &payload,
            |b, payload| {
                let mut dst = BytesMut::with_capacity((size + 4) * count);
                b.iter(|| {
                    dst.clear();
                    let mut codec = theirs();
                    for _ in 0..count {
                        codec.encode(payload.clone(), &mut dst).unwrap();
                    }
                    black_box(&dst);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
