//! Closure children: run the closure after the fork, send its result frame, exit.
//!
//! From here on the child runs user code, so the async-signal-safety rule of `child.rs` no longer
//! holds by construction: it is the promise the caller made by calling an `unsafe` spawn function
//! (or the single-thread check of `run_closure`).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::transport::{encode_frame, FrameKind};

/// A closure's body as the child runs it: the encoded value, or why it could not be encoded.
pub(crate) type ClosureBody<'f> = Box<dyn FnOnce() -> Result<Vec<u8>, String> + 'f>;

/// Runs `closure`, writes its result frame on `result_fd`, and exits without running the
/// caller's destructors or `atexit` handlers (they belong to the parent's state).
pub(crate) fn run_and_exit(closure: ClosureBody<'_>, error_write: i32, result_fd: i32) -> ! {
    // SAFETY: the set-up error pipe is ours and no longer needed once user code starts.
    unsafe {
        libc::close(error_write);
    }
    let frame = match catch_unwind(AssertUnwindSafe(closure)) {
        Ok(Ok(bytes)) => encode_frame(FrameKind::Value, &bytes),
        Ok(Err(reason)) => encode_frame(FrameKind::EncodeFailed, reason.as_bytes()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            encode_frame(FrameKind::Panic, message.as_bytes())
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
