//! Closure children: run the closure after the fork, send its result frame, exit.
//!
//! From here on the child runs user code, so the async-signal-safety rule of `child.rs` no longer
//! holds by construction: it is the promise the caller made by calling an `unsafe` spawn function
//! (or the single-thread check of `run_closure`).

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::BorrowedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::transport::{encode_frame, frame_header, FrameKind, HEADER_LEN};

/// A closure's body as the child runs it: given a buffer on the child's stack for a small
/// encoded value, it returns where its encoded value is, or why it could not be encoded.
///
/// The child runs it without writing to the box or freeing it ([`Body::run_once`]): the box lies
/// in pages the child shares copy-on-write with the caller, so a free there (the malloc
/// bookkeeping, the chunk, the code of `free`) cost the child about four page faults per call.
/// The caller's copy is dropped by the caller as usual, the closure never having run there.
pub(crate) type ClosureBody<'f> = Box<dyn Body + 'f>;

/// Boxes `f` as a [`ClosureBody`].
pub(crate) fn body<'f, F>(f: F) -> ClosureBody<'f>
where
    F: FnOnce(&mut [u8]) -> Result<Encoded, String> + 'f,
{
    Box::new(Once(ManuallyDrop::new(f)))
}

/// A closure the child runs once, in place.
pub(crate) trait Body {
    /// Runs the closure, moved out of `self` by a read.
    ///
    /// # Safety
    /// At most once per process, and `self` is neither used nor dropped in that process
    /// afterwards (the child ends with `_exit`).
    unsafe fn run_once(&self, buf: &mut [u8]) -> Result<Encoded, String>;
}

struct Once<F>(ManuallyDrop<F>);

impl<F: FnOnce(&mut [u8]) -> Result<Encoded, String>> Body for Once<F> {
    unsafe fn run_once(&self, buf: &mut [u8]) -> Result<Encoded, String> {
        // SAFETY: the caller runs us at most once in this process and never touches or drops
        // `self` again, so the closure read out here is its only owner.
        let f = unsafe { std::ptr::read(&*self.0) };
        f(buf)
    }
}

impl<F> Drop for Once<F> {
    fn drop(&mut self) {
        // SAFETY: dropped once, by a process that never ran the closure (`run_once`'s contract:
        // the one that did never drops it).
        unsafe { ManuallyDrop::drop(&mut self.0) }
    }
}

/// The most bytes of an encoded value kept on the child's stack.
pub(crate) const INLINE: usize = 240;

/// An encoded value: a small one in the buffer the child gave the body (on its stack, right
/// behind the frame's header, so that a child returning it touches no allocator and copies
/// nothing: each heap page it writes is a copy-on-write fault, each code page of the allocator or
/// of `memcpy` another), a larger one on the heap.
pub(crate) enum Encoded {
    /// The first `len` bytes of the buffer.
    Inline(usize),
    Heap(Vec<u8>),
}

impl Encoded {
    /// Encodes `value` with postcard, into `buf` when it fits.
    pub(crate) fn postcard<T: serde::Serialize>(value: &T, buf: &mut [u8]) -> Result<Self, String> {
        match postcard::serialize_with_flavor(value, Bytewise { buf, len: 0 }) {
            Ok(used) => Ok(Encoded::Inline(used)),
            Err(postcard::Error::SerializeBufferFull) => postcard::to_stdvec(value)
                .map(Encoded::Heap)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// postcard's slice flavor, one byte at a time: its own copies call `memcpy`, whose code (in
/// libc) a fresh child faults in for a value of a few bytes. The buffer holds at most [`INLINE`]
/// bytes, so copying them one by one costs nothing that matters.
struct Bytewise<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl postcard::ser_flavors::Flavor for Bytewise<'_> {
    type Output = usize;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let slot = self
            .buf
            .get_mut(self.len)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = byte;
        self.len += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Runs `closure`, writes its result frame on `result_fd`, and exits without running the
/// caller's destructors or `atexit` handlers (they belong to the parent's state).
///
/// # Safety
/// Only in a forked child, once: `closure` is the child's copy of the caller's, run here in
/// place ([`Body::run_once`]) and never dropped.
pub(crate) unsafe fn run_and_exit(closure: &dyn Body, error_write: i32, result_fd: i32) -> ! {
    // SAFETY: the set-up error pipe is ours and no longer needed once user code starts.
    unsafe { rustix::io::close(error_write) };
    // A small value is encoded in place, behind the room for its header: one write, no copy.
    let mut inline = [0u8; HEADER_LEN + INLINE];
    let heap: Vec<u8>;
    // SAFETY: run once in this child (our contract), which ends below without dropping it.
    let ran = catch_unwind(AssertUnwindSafe(|| unsafe {
        closure.run_once(&mut inline[HEADER_LEN..])
    }));
    let frame: &[u8] = match ran {
        Ok(Ok(Encoded::Inline(len))) => {
            inline[..HEADER_LEN].copy_from_slice(&frame_header(FrameKind::Value, len));
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
        // SAFETY: the result descriptor is ours (opened by the parent for this call) and stays
        // open until we exit.
        let fd = unsafe { BorrowedFd::borrow_raw(result_fd) };
        match rustix::io::write(fd, &frame[written..]) {
            Ok(n) if n > 0 => written += n,
            Err(rustix::io::Errno::INTR) => continue,
            _ => break,
        }
    }
    // SAFETY: _exit ends the child without touching the parent's copied state.
    unsafe { libc::_exit(0) }
}
