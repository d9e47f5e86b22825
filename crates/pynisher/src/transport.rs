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

/// The most a reader reserves in advance for an announced payload (it grows beyond as bytes come).
const RESERVE_AT_MOST: u64 = 16 << 20;

/// Payload bytes the first allocation makes room for: a Rust closure's value encoded on its
/// child's stack (`launch::closure::INLINE`) fits.
const SMALL_PAYLOAD: usize = 240;

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
    frame.extend_from_slice(&frame_header(kind, payload.len()));
    frame.extend_from_slice(payload);
    frame
}

/// The header of a frame whose payload is `len` bytes long.
pub(crate) fn frame_header(kind: FrameKind, len: usize) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&FRAME_MAGIC);
    header[4] = FRAME_VERSION;
    header[5] = kind as u8;
    header[6..].copy_from_slice(&(len as u64).to_le_bytes());
    header
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
///
/// It checks the frame as it arrives and stops buffering at the first sign that the bytes cannot
/// be a valid frame within its limit: a wrong magic, version or kind (checked byte by byte as the
/// header arrives), an announced payload over the limit, or bytes past the announced length. So a
/// child writing junk costs the caller at most one header, and a valid frame at most the limit.
///
/// ```
/// use pynisher::transport::{encode_frame, FrameKind, FrameReader, Received};
/// let mut reader = FrameReader::with_limit(4);
/// reader.push(&encode_frame(FrameKind::Value, b"too long"));
/// assert!(reader.rejected().is_some());
/// assert!(matches!(reader.finish(), Received::Malformed(_)));
/// ```
#[derive(Debug)]
pub struct FrameReader {
    bytes: Vec<u8>,
    limit: u64,
    rejected: Option<String>,
}

impl Default for FrameReader {
    /// A reader with the default limit, [`crate::DEFAULT_RESULT_LIMIT`].
    fn default() -> Self {
        FrameReader::with_limit(crate::DEFAULT_RESULT_LIMIT)
    }
}

impl FrameReader {
    /// A reader that accepts a payload of at most `limit` bytes.
    pub fn with_limit(limit: u64) -> Self {
        FrameReader {
            bytes: Vec::new(),
            limit,
            rejected: None,
        }
    }

    /// Appends bytes read from the pipe; once the stream is rejected, drops them.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.rejected.is_some() {
            return;
        }
        let before = self.bytes.len();
        if before < HEADER_LEN {
            if self.bytes.capacity() == 0 {
                // Room for the header and a small payload in one allocation: growing it later
                // is a realloc, which goes through malloc's arena instead of its per-thread
                // cache, and in a caller that has just forked each page it writes there is a
                // copy-on-write fault.
                self.bytes.reserve(HEADER_LEN + SMALL_PAYLOAD);
            }
            let take = chunk.len().min(HEADER_LEN - before);
            self.bytes.extend_from_slice(&chunk[..take]);
            if let Some(reason) = header_problem(&self.bytes, self.limit) {
                self.reject(reason);
                return;
            }
            if self.bytes.len() == HEADER_LEN {
                // Reserve for the announced payload up to a modest size: a child that announces
                // much and sends little must not cost the caller address space.
                let announced = announced_len(&self.bytes).min(RESERVE_AT_MOST);
                self.bytes.reserve(announced as usize);
            }
            self.push_body(&chunk[take..]);
        } else {
            self.push_body(chunk);
        }
    }

    fn push_body(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let announced = announced_len(&self.bytes);
        let body = (self.bytes.len() - HEADER_LEN) as u64;
        if body + chunk.len() as u64 > announced {
            self.reject(format!(
                "more bytes than the {announced} payload bytes the frame announced"
            ));
            return;
        }
        self.bytes.extend_from_slice(chunk);
    }

    fn reject(&mut self, reason: String) {
        self.bytes = Vec::new();
        self.rejected = Some(reason);
    }

    /// Why the stream was rejected, as soon as it was: the caller should stop reading and end the
    /// call.
    pub fn rejected(&self) -> Option<&str> {
        self.rejected.as_deref()
    }

    /// How many bytes are buffered.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether a whole frame (header and every announced payload byte) has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.bytes.len() >= HEADER_LEN
            && (self.bytes.len() - HEADER_LEN) as u64 == announced_len(&self.bytes)
    }

    /// Decodes what arrived.
    pub fn finish(self) -> Received {
        if let Some(reason) = self.rejected {
            return Received::Malformed(reason);
        }
        let bytes = self.bytes;
        if bytes.is_empty() {
            return Received::Nothing;
        }
        if bytes.len() < HEADER_LEN {
            return Received::Malformed(format!("truncated header ({} bytes)", bytes.len()));
        }
        let len = announced_len(&bytes);
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
            _ => Received::EncodeFailed(text()),
        }
    }
}

fn announced_len(header: &[u8]) -> u64 {
    u64::from_le_bytes(header[6..14].try_into().expect("8 bytes"))
}

/// What is wrong with the (possibly partial) header so far, if anything.
fn header_problem(header: &[u8], limit: u64) -> Option<String> {
    let magic = &header[..header.len().min(4)];
    if magic != &FRAME_MAGIC[..magic.len()] {
        return Some("bad magic (not a pynisher result frame)".into());
    }
    if let Some(&version) = header.get(4) {
        if version != FRAME_VERSION {
            return Some(format!(
                "frame version {version} (this pynisher reads {FRAME_VERSION})"
            ));
        }
    }
    if let Some(&kind) = header.get(5) {
        if kind > FrameKind::EncodeFailed as u8 {
            return Some(format!("unknown frame kind {kind}"));
        }
    }
    if header.len() == HEADER_LEN {
        let announced = announced_len(header);
        if announced > limit {
            return Some(format!(
                "the frame announces {announced} payload bytes, over the result limit of \
                 {limit} bytes (Limits::result_limit)"
            ));
        }
    }
    None
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
    fn junk_is_rejected_at_its_first_byte_and_not_buffered() {
        let mut reader = FrameReader::default();
        reader.push(&[b'x'; 65536]);
        assert!(reader.rejected().unwrap().contains("magic"));
        reader.push(&[b'x'; 65536]);
        assert_eq!(reader.len(), 0);
        assert!(matches!(reader.finish(), Received::Malformed(m) if m.contains("magic")));
    }

    #[test]
    fn a_frame_over_the_limit_is_rejected_at_its_header() {
        let mut reader = FrameReader::with_limit(100);
        let frame = encode_frame(FrameKind::Value, &[0u8; 101]);
        reader.push(&frame[..HEADER_LEN]);
        assert!(reader.rejected().unwrap().contains("result limit of 100"));
        let mut reader = FrameReader::with_limit(100);
        reader.push(&encode_frame(FrameKind::Value, &[1u8; 100]));
        assert_eq!(reader.finish(), Received::Value(vec![1u8; 100]));
    }

    #[test]
    fn bytes_past_the_announced_length_are_rejected() {
        let mut reader = FrameReader::default();
        let mut frame = encode_frame(FrameKind::Value, b"abc");
        frame.extend_from_slice(&[0u8; 1000]);
        for piece in frame.chunks(5) {
            reader.push(piece);
        }
        assert!(reader.rejected().unwrap().contains("announced"));
        assert!(reader.len() <= HEADER_LEN + 3);
    }

    #[test]
    fn a_bad_kind_is_rejected_at_its_byte() {
        let mut frame = encode_frame(FrameKind::Value, b"x");
        frame[5] = 7;
        let mut reader = FrameReader::default();
        reader.push(&frame[..6]);
        assert!(reader.rejected().unwrap().contains("kind 7"));
    }

    #[test]
    fn panic_frames_carry_the_message() {
        let mut reader = FrameReader::default();
        reader.push(&encode_frame(FrameKind::Panic, b"boom"));
        assert_eq!(reader.finish(), Received::Panic("boom".into()));
    }
}
