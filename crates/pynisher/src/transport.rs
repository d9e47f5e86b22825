//! The result channel: one length-prefixed, versioned frame on a dedicated pipe (never stdout).
//!
//! A frame is a 14-byte header followed by the payload:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..4 | magic `PYNR` |
//! | 4 | format version, [`FRAME_VERSION`] |
//! | 5 | kind: 0 = value, 1 = panic message (UTF-8), 2 = the value could not be encoded (UTF-8 reason) |
//! | 6..14 | payload length, unsigned 64-bit little-endian |
//!
//! For a Rust closure the value payload is the postcard encoding of its return value. A program
//! started with [`crate::Limits::spawn_command_for_result`] writes the same frame to the file
//! descriptor named in the environment variable [`RESULT_FD_ENV`]; in Python:
//! `os.write(fd, struct.pack("<4sBBQ", b"PYNR", 1, 0, len(data)) + data)`.
//!
//! ```
//! use pynisher::transport::{encode_frame, FrameKind, FrameReader, Received};
//! let mut reader = FrameReader::default();
//! reader.push(&encode_frame(FrameKind::Value, b"hello"));
//! assert_eq!(reader.finish(), Received::Value(b"hello".to_vec()));
//! ```

/// The environment variable naming the result file descriptor of a command run for its result.
pub const RESULT_FD_ENV: &str = "PYNISHER_RESULT_FD";
/// The frame format version written and understood by this crate.
pub const FRAME_VERSION: u8 = 1;
/// The frame magic.
pub const FRAME_MAGIC: [u8; 4] = *b"PYNR";
/// Length of the frame header.
pub const HEADER_LEN: usize = 14;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The encoded value.
    Value = 0,
    /// A panic message.
    Panic = 1,
    /// The child could not encode its value; the payload says why.
    EncodeFailed = 2,
}

/// Builds one frame.
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.push(FRAME_VERSION);
    frame.push(kind as u8);
    frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// What arrived on the result channel by the end of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Nothing at all.
    Nothing,
    /// A complete value frame.
    Value(Vec<u8>),
    /// A complete panic frame.
    Panic(String),
    /// The child reported it could not encode its value.
    EncodeFailed(String),
    /// Bytes arrived but not a complete, valid frame.
    Malformed(String),
}

/// Accumulates bytes from the result pipe and decodes the frame at the end.
#[derive(Debug, Default)]
pub struct FrameReader {
    bytes: Vec<u8>,
}

impl FrameReader {
    /// Appends bytes read from the pipe.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.bytes.is_empty() && chunk.len() >= HEADER_LEN && chunk[..4] == FRAME_MAGIC {
            // Reserve once for the announced payload (bounded, so a bogus length cannot exhaust us).
            let announced = u64::from_le_bytes(chunk[6..14].try_into().expect("8 bytes"));
            self.bytes
                .reserve((announced as usize).min(1 << 30) + HEADER_LEN);
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// How many bytes have arrived.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing has arrived.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Decodes what arrived.
    pub fn finish(self) -> Received {
        let bytes = self.bytes;
        if bytes.is_empty() {
            return Received::Nothing;
        }
        if bytes.len() < HEADER_LEN {
            return Received::Malformed(format!("truncated header ({} bytes)", bytes.len()));
        }
        if bytes[..4] != FRAME_MAGIC {
            return Received::Malformed("bad magic".into());
        }
        if bytes[4] != FRAME_VERSION {
            return Received::Malformed(format!(
                "frame version {} (this pynisher reads {FRAME_VERSION})",
                bytes[4]
            ));
        }
        let len = u64::from_le_bytes(bytes[6..14].try_into().expect("8 bytes"));
        let body = &bytes[HEADER_LEN..];
        if body.len() as u64 != len {
            return Received::Malformed(format!(
                "frame announced {len} payload bytes, {} arrived",
                body.len()
            ));
        }
        let text = || String::from_utf8_lossy(body).into_owned();
        match bytes[5] {
            0 => {
                let mut bytes = bytes;
                bytes.drain(..HEADER_LEN);
                Received::Value(bytes)
            }
            1 => Received::Panic(text()),
            2 => Received::EncodeFailed(text()),
            k => Received::Malformed(format!("unknown frame kind {k}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let frame = encode_frame(FrameKind::Value, &[7u8; 1000]);
        let mut reader = FrameReader::default();
        for piece in frame.chunks(3) {
            reader.push(piece);
        }
        assert_eq!(reader.finish(), Received::Value(vec![7u8; 1000]));
    }

    #[test]
    fn short_or_foreign_bytes_are_malformed_not_values() {
        let mut frame = encode_frame(FrameKind::Value, b"abcdef");
        frame.pop();
        let mut reader = FrameReader::default();
        reader.push(&frame);
        assert!(matches!(reader.finish(), Received::Malformed(_)));
        let mut reader = FrameReader::default();
        reader.push(b"hello world, not a frame");
        assert!(matches!(reader.finish(), Received::Malformed(_)));
        let mut newer = encode_frame(FrameKind::Value, b"x");
        newer[4] = 9;
        let mut reader = FrameReader::default();
        reader.push(&newer);
        assert!(matches!(reader.finish(), Received::Malformed(m) if m.contains("version 9")));
    }

    #[test]
    fn panic_frames_carry_the_message() {
        let mut reader = FrameReader::default();
        reader.push(&encode_frame(FrameKind::Panic, b"boom"));
        assert_eq!(reader.finish(), Received::Panic("boom".into()));
    }
}
