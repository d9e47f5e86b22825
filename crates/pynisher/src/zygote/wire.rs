//! Messages between the caller, the zygote and a call's supervisor process: length-prefixed
//! postcard frames on a stream socket, plus single cancel bytes from the caller.

use std::io::{self, Read};
use std::os::fd::AsFd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Limits, Outcome};

/// The byte the caller sends to end a call ([`crate::Running::kill`]).
pub(crate) const CANCEL: u8 = b'K';

/// What the caller asks the call's supervisor to run.
#[derive(Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) limits: Limits,
    /// Address of the monomorphized `trampoline::<A, T>` (see `client.rs`).
    pub(crate) trampoline: usize,
    /// Address of the user's `fn(A) -> T`.
    pub(crate) function: usize,
    /// The postcard encoding of the argument.
    pub(crate) argument: Vec<u8>,
}

/// What the call's supervisor answers.
#[derive(Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The call's process runs.
    Started { pid: i32 },
    /// The supervisor could not start or supervise the call (the library error's text).
    Failed { message: String },
    /// The call ended; the value is still encoded.
    Finished(Box<Outcome<Vec<u8>>>),
}

/// Encodes one frame: u32 little-endian length, then the postcard bytes.
pub(crate) fn frame<M: Serialize>(message: &M) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("message over 4 GiB"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Sends all of `bytes`, blocking, without SIGPIPE when the peer is gone.
pub(crate) fn send_all(fd: impl AsFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(fd.as_fd(), bytes, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one frame from a blocking stream.
pub(crate) fn read_frame<M: DeserializeOwned>(stream: &mut impl Read) -> io::Result<M> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(io::Error::other)
}

/// Takes one complete frame off the front of `buffer`, if there is one.
pub(crate) fn take_frame<M: DeserializeOwned>(buffer: &mut Vec<u8>) -> io::Result<Option<M>> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
    if buffer.len() < 4 + len {
        return Ok(None);
    }
    let message = postcard::from_bytes(&buffer[4..4 + len]).map_err(io::Error::other);
    buffer.drain(..4 + len);
    message.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_off_the_buffer_only_when_complete() {
        let bytes = frame(&Reply::Started { pid: 7 }).unwrap();
        let mut buffer = bytes[..bytes.len() - 1].to_vec();
        assert!(take_frame::<Reply>(&mut buffer).unwrap().is_none());
        buffer.push(*bytes.last().unwrap());
        buffer.extend_from_slice(&bytes);
        assert!(matches!(
            take_frame::<Reply>(&mut buffer).unwrap(),
            Some(Reply::Started { pid: 7 })
        ));
        assert_eq!(buffer, bytes);
    }
}
