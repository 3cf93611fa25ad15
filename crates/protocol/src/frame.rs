//! Kafka's framing: every request and response travels as a 4-byte big-endian signed length
//! followed by exactly that many bytes.
//!
//! [`FrameCodec`] implements [`tokio_util::codec::Decoder`] and [`tokio_util::codec::Encoder`]
//! for those frames. It only splits and joins bytes; the codec itself never does I/O, so it can
//! be driven by `tokio_util::codec::Framed` or by hand on a [`BytesMut`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size in bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_SIZE: usize = 4;

/// The frame size limit of [`FrameCodec::default`]: 100 MiB.
///
/// This matches the default of the broker's `socket.request.max.bytes`, so any frame a stock
/// broker accepts also fits here, while a corrupt or hostile length still cannot make the codec
/// buffer gigabytes.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// The largest length the wire format can express (the prefix is a signed 32-bit integer).
const WIRE_MAX: usize = i32::MAX as usize;

/// Why a frame could not be decoded or encoded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame's length exceeds the codec's limit.
    ///
    /// When decoding, this is reported as soon as the length prefix has arrived, before any of
    /// the body is buffered.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The frame's length, not counting the 4-byte prefix.
        size: usize,
        /// The codec's limit.
        max: usize,
    },
    /// The length prefix is negative.
    #[error("frame length prefix is negative: {0}")]
    NegativeLength(i32),
    /// An I/O error from the underlying transport (part of the [`Decoder`]/[`Encoder`]
    /// contract; also used for a stream that ends in the middle of a frame).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A [`Decoder`]/[`Encoder`] for length-prefixed Kafka frames.
///
/// Decoding yields each frame's body without its prefix, as [`Bytes`] split off the read buffer
/// (no copy). Encoding writes the prefix and then the body. Frames longer than the limit are
/// rejected both ways with [`FrameError::TooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl FrameCodec {
    /// A codec that accepts frames of at most `max_frame_size` bytes (not counting the 4-byte
    /// prefix).
    ///
    /// Limits above `i32::MAX` are lowered to `i32::MAX`, the largest length the prefix can
    /// express.
    #[must_use]
    pub const fn new(max_frame_size: usize) -> Self {
        let max_frame_size = if max_frame_size > WIRE_MAX { WIRE_MAX } else { max_frame_size };
        Self { max_frame_size }
    }

    /// The largest frame body, in bytes, this codec accepts.
    #[must_use]
    pub const fn max_frame_size(self) -> usize {
        self.max_frame_size
    }

    fn check_size(self, size: usize) -> Result<(), FrameError> {
        if size > self.max_frame_size { Err(FrameError::TooLarge { size, max: self.max_frame_size }) } else { Ok(()) }
    }

    fn encode_slice(self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.check_size(body.len())?;
        // `check_size` bounds the length by `max_frame_size <= i32::MAX`.
        let prefix = i32::try_from(body.len())
            .map_err(|_| FrameError::TooLarge { size: body.len(), max: self.max_frame_size })?;
        dst.reserve(LENGTH_PREFIX_SIZE + body.len());
        dst.put_i32(prefix);
        dst.put_slice(body);
        Ok(())
    }
}

impl Default for FrameCodec {
    /// A codec limited to [`DEFAULT_MAX_FRAME_SIZE`] (100 MiB).
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = src.first_chunk::<LENGTH_PREFIX_SIZE>() else {
            src.reserve(LENGTH_PREFIX_SIZE - src.len());
            return Ok(None);
        };
        let length = i32::from_be_bytes(*prefix);
        let size = usize::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
        // Validate before reserving, so a bad prefix never causes a large allocation.
        self.check_size(size)?;

        let total = LENGTH_PREFIX_SIZE + size;
        if src.len() < total {
            // Bounded by `max_frame_size + 4`.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_SIZE);
        Ok(Some(src.split_to(size).freeze()))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_slice(&body, dst)
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_slice(body, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn partial_input_at_every_split_point() {
        let body: Vec<u8> = (0..=40).collect();
        let wire = framed(&body);
        for split in 0..wire.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&wire[..split]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "split at {split}");
            // Nothing consumed while incomplete.
            assert_eq!(buf.len(), split);
            buf.extend_from_slice(&wire[split..]);
            let frame = codec.decode(&mut buf).unwrap().expect("complete frame");
            assert_eq!(&frame[..], &body[..]);
            assert!(buf.is_empty());
            assert!(codec.decode(&mut buf).unwrap().is_none());
        }
    }

    #[test]
    fn byte_by_byte() {
        let body = b"hello kafka";
        let wire = framed(body);
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert!(out.is_none());
            } else {
                assert_eq!(&out.unwrap()[..], body);
            }
        }
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut wire = framed(b"first");
        wire.extend(framed(b"second frame"));
        wire.extend(&framed(b"third")[..6]);
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"first");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"second frame");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn exactly_max_is_accepted() {
        let body = vec![7u8; 16];
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&framed(&body)[..]);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], &body[..]);

        let mut out = BytesMut::new();
        codec.encode(&body[..], &mut out).unwrap();
        assert_eq!(&out[..], &framed(&body)[..]);
    }

    #[test]
    fn max_plus_one_rejected_from_prefix_alone() {
        let mut codec = FrameCodec::new(16);
        // Only the prefix has arrived: the error must not wait for the body.
        let mut buf = BytesMut::from(&17u32.to_be_bytes()[..]);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLarge { size: 17, max: 16 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // A huge announced length must not cause a matching allocation.
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { .. })));
        assert!(buf.capacity() < DEFAULT_MAX_FRAME_SIZE);
    }

    #[test]
    fn encoder_refuses_oversized_frames() {
        let mut codec = FrameCodec::new(16);
        let mut out = BytesMut::new();
        let err = codec.encode(Bytes::from(vec![0u8; 17]), &mut out).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: 17, max: 16 }));
        assert!(out.is_empty());
        assert_eq!(err.to_string(), "frame of 17 bytes exceeds the maximum of 16 bytes");
    }

    #[test]
    fn negative_length() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::NegativeLength(-1))));
        let mut buf = BytesMut::from(&i32::MIN.to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::NegativeLength(i32::MIN))));
    }

    #[test]
    fn zero_length_frame() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 1, 9][..]);
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_empty());
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], &[9]);
        assert!(buf.is_empty());

        let mut out = BytesMut::new();
        codec.encode(Bytes::new(), &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 0]);
    }

    #[test]
    fn encode_decode_round_trip() {
        let bodies: [&[u8]; 4] = [b"", b"a", b"request bytes", &[0xff; 300]];
        let mut codec = FrameCodec::new(1024);
        let mut wire = BytesMut::new();
        for body in bodies {
            codec.encode(Bytes::copy_from_slice(body), &mut wire).unwrap();
            codec.encode(body, &mut wire).unwrap();
        }
        for body in bodies {
            for _ in 0..2 {
                assert_eq!(&codec.decode(&mut wire).unwrap().unwrap()[..], body);
            }
        }
        assert!(wire.is_empty());
    }

    #[test]
    fn eof_mid_frame_is_an_io_error() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&framed(b"truncated")[..7]);
        assert!(matches!(codec.decode_eof(&mut buf), Err(FrameError::Io(_))));
        let mut empty = BytesMut::new();
        assert!(codec.decode_eof(&mut empty).unwrap().is_none());
    }

    #[test]
    fn limit_is_capped_at_wire_max() {
        assert_eq!(FrameCodec::new(usize::MAX).max_frame_size(), i32::MAX as usize);
        assert_eq!(FrameCodec::default().max_frame_size(), DEFAULT_MAX_FRAME_SIZE);
    }
}
