//! Bounded capture of stdout and stderr: the head and the tail of a stream are kept, the middle
//! is counted and dropped, so a child writing gigabytes can neither block on a full pipe nor
//! exhaust the caller's memory.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::Captured;

/// The marker placed between head and tail of a truncated stream.
pub(crate) const TRUNCATION_MARKER: &[u8] = b"\n[... pynisher: output truncated ...]\n";

/// Keeps at most `limit` bytes of a stream: the first half and the last half.
#[derive(Debug)]
pub(crate) struct BoundedCapture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_limit: usize,
    tail_limit: usize,
    total: u64,
}

impl BoundedCapture {
    pub(crate) fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        BoundedCapture {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_limit,
            tail_limit: limit - head_limit,
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.head.len() < self.head_limit {
            let take = chunk.len().min(self.head_limit - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        if chunk.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.tail_limit..]);
        } else {
            let overflow = (self.tail.len() + chunk.len()).saturating_sub(self.tail_limit);
            self.tail.drain(..overflow);
            self.tail.extend(chunk);
        }
    }

    /// The last bytes seen (up to the tail size), for scanning diagnostics.
    pub(crate) fn ends_with_text(&self, needle: &str) -> bool {
        let tail: Vec<u8> = if self.tail.is_empty() {
            self.head.clone()
        } else {
            self.tail.iter().copied().collect()
        };
        String::from_utf8_lossy(&tail).contains(needle)
    }

    pub(crate) fn finish(self) -> Captured {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let truncated = kept < self.total;
        let mut bytes = self.head;
        if truncated {
            bytes.extend_from_slice(TRUNCATION_MARKER);
        }
        bytes.extend(self.tail);
        Captured {
            bytes,
            truncated,
            total_bytes: self.total,
        }
    }
}

/// One output pipe the supervisor reads.
pub(crate) struct OutputPipe {
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) capture: BoundedCapture,
    /// Where to copy what is read as well (the caller's stderr when the supervisor only watches
    /// the stream for diagnostics).
    pub(crate) forward: Option<BorrowedFd<'static>>,
}

/// What one read attempt found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// The pipe may have more later.
    Open,
    /// End of file: every writer closed it.
    Closed,
}

impl OutputPipe {
    /// Reads what is available now (non-blocking) up to a budget, so one busy stream cannot
    /// starve the loop.
    pub(crate) fn read_available(&mut self, buf: &mut [u8]) -> ReadState {
        let Some(fd) = self.fd.as_ref() else {
            return ReadState::Closed;
        };
        for _ in 0..16 {
            match rustix::io::read(fd.as_fd(), &mut *buf) {
                Ok(0) => {
                    self.fd = None;
                    return ReadState::Closed;
                }
                Ok(n) => {
                    self.capture.push(&buf[..n]);
                    if let Some(out) = self.forward {
                        write_all(out, &buf[..n]);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return ReadState::Open,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.fd = None;
                    return ReadState::Closed;
                }
            }
        }
        ReadState::Open
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}

/// The supervisor's end of the child's stdin when it feeds it bytes.
pub(crate) struct StdinFeed {
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) written: usize,
}

impl StdinFeed {
    /// Writes what the pipe accepts now; closes it when everything is written or the reader left.
    pub(crate) fn write_available(&mut self) -> io::Result<()> {
        let Some(fd) = self.fd.as_ref() else {
            return Ok(());
        };
        while self.written < self.bytes.len() {
            match rustix::io::write(fd.as_fd(), &self.bytes[self.written..]) {
                Ok(n) => self.written += n,
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        self.fd = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_streams_are_kept_whole() {
        let mut c = BoundedCapture::new(100);
        c.push(b"hello ");
        c.push(b"world");
        let out = c.finish();
        assert_eq!(out.bytes, b"hello world");
        assert!(!out.truncated);
        assert_eq!(out.total_bytes, 11);
    }

    #[test]
    fn large_streams_keep_head_and_tail() {
        let mut c = BoundedCapture::new(10);
        for i in 0..1000u32 {
            c.push(format!("{i:04}").as_bytes());
        }
        let out = c.finish();
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 4000);
        assert!(out.bytes.starts_with(b"00000"));
        assert!(out.bytes.ends_with(b"80999"));
        assert_eq!(out.bytes.len(), 10 + TRUNCATION_MARKER.len());
    }
}
