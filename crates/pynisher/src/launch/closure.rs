//! Closure children: run the closure after the fork, send its result frame, exit.
//!
//! From here on the child runs user code, so the async-signal-safety rule of `child.rs` no longer
//! holds by construction: it is the promise the caller made by calling an `unsafe` spawn function
//! (or the single-thread check of `run_closure`).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::transport::{encode_frame, frame_header, FrameKind, HEADER_LEN};

/// A closure's body as the child runs it: the encoded value, or why it could not be encoded.
pub(crate) type ClosureBody<'f> = Box<dyn FnOnce() -> Result<Encoded, String> + 'f>;

/// The most bytes of an encoded value kept on the child's stack.
pub(crate) const INLINE: usize = 240;

/// An encoded value: a small one on the stack, so that a child returning it touches no allocator
/// (each heap page it writes is a copy-on-write fault, the allocator's code pages are more), a
/// larger one on the heap.
#[allow(
    clippy::large_enum_variant,
    reason = "the inline variant is the point: no allocation in the child"
)]
pub(crate) enum Encoded {
    /// The first `len` bytes of the array.
    Inline([u8; INLINE], usize),
    Heap(Vec<u8>),
}

impl Encoded {
    /// Encodes `value` with postcard, on the stack when it fits.
    pub(crate) fn postcard<T: serde::Serialize>(value: &T) -> Result<Self, String> {
        let mut buf = [0u8; INLINE];
        match postcard::to_slice(value, &mut buf) {
            Ok(used) => {
                let len = used.len();
                Ok(Encoded::Inline(buf, len))
            }
            Err(postcard::Error::SerializeBufferFull) => postcard::to_stdvec(value)
                .map(Encoded::Heap)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Runs `closure`, writes its result frame on `result_fd`, and exits without running the
/// caller's destructors or `atexit` handlers (they belong to the parent's state).
pub(crate) fn run_and_exit(closure: ClosureBody<'_>, error_write: i32, result_fd: i32) -> ! {
    // SAFETY: the set-up error pipe is ours and no longer needed once user code starts.
    unsafe {
        libc::close(error_write);
    }
    let mut inline = [0u8; HEADER_LEN + INLINE];
    let heap: Vec<u8>;
    let frame: &[u8] = match catch_unwind(AssertUnwindSafe(closure)) {
        Ok(Ok(Encoded::Inline(bytes, len))) => {
            inline[..HEADER_LEN].copy_from_slice(&frame_header(FrameKind::Value, len));
            inline[HEADER_LEN..HEADER_LEN + len].copy_from_slice(&bytes[..len]);
            &inline[..HEADER_LEN + len]
        }
        Ok(Ok(Encoded::Heap(bytes))) => {
            heap = encode_frame(FrameKind::Value, &bytes);
            &heap
        }
        Ok(Err(reason)) => {
            heap = encode_frame(FrameKind::EncodeFailed, reason.as_bytes());
            &heap
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            heap = encode_frame(FrameKind::Panic, message.as_bytes());
            &heap
        }
    };
    // What the closure printed and std still buffers (stderr is unbuffered in std).
    let _ = std::io::stdout().flush();
    let mut written = 0;
    while written < frame.len() {
        // SAFETY: writing our own buffer to our own result descriptor.
        let n = unsafe {
            libc::write(
                result_fd,
                frame[written..].as_ptr().cast(),
                frame.len() - written,
            )
        };
        if n > 0 {
            written += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            break;
        }
    }
    // SAFETY: _exit ends the child without touching the parent's copied state.
    unsafe { libc::_exit(0) }
}
