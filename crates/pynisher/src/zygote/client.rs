//! The caller's side: [`init`] forks the zygote; [`start_call`] asks it for one call and returns
//! the [`RemoteCall`] that [`crate::Running`] wraps.

use std::io::{self, IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::net::{
    sendmsg, socketpair, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    SocketFlags, SocketType,
};

use super::code::CodeMap;
use super::wire::{self, Reply, Request, CANCEL};
use crate::{sys, Error, Limits, Outcome};

/// The function the call's process runs: decodes the argument, calls the user's function whose
/// address it is given, encodes the value. One is monomorphized per `(A, T)` by `spawn_fn`.
pub(crate) type Trampoline = fn(usize, &[u8]) -> Result<Vec<u8>, String>;

/// This process's zygote.
struct Zygote {
    /// Our end of the request socket (SOCK_SEQPACKET: one message per call, sent atomically from
    /// any thread).
    control: OwnedFd,
    /// The code the zygote has.
    code: CodeMap,
}

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

/// Starts the zygote that runs [`crate::Limits::spawn_fn`] calls. Call it first in `main`, before
/// any thread starts (a tokio runtime, a logger, a thread pool).
///
/// The zygote is a copy of this process made by `fork` at this moment, while the process has a
/// single thread; for each call it forks a supervisor process, which forks the call's process.
/// Nothing is ever forked from a multi-threaded process, so a function may use any lock,
/// allocator or runtime state it finds in its copy. Calling `init` again does nothing.
///
/// Errors: [`Error::InitTooLate`] when the process already has several threads (nothing is
/// started; `spawn_fn` then refuses with [`Error::NotInitialized`]).
///
/// The zygote dies with the thread that called `init` (and when the process exits): a program
/// that daemonizes (forks and lets the parent exit) calls `init` after that, in the process that
/// stays.
///
/// ```
/// fn main() -> Result<(), pynisher::Error> {
///     pynisher::init()?;
///     let worker = std::thread::spawn(|| pynisher::Limits::new().run_fn(|x: u8| x + 1, 1));
///     assert_eq!(worker.join().unwrap()?.value, Some(2));
///     Ok(())
/// }
/// ```
pub fn init() -> Result<(), Error> {
    if ZYGOTE.get().is_some() {
        return Ok(());
    }
    let threads = sys::thread_count();
    if threads > 1 {
        return Err(Error::InitTooLate { threads });
    }
    let code = CodeMap::of_this_process().map_err(|e| Error::sys("reading /proc/self/maps", e))?;
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("creating the zygote socket", e))?;
    // Detect the cgroup environment in the caller, before the zygote exists: a caller alone in a
    // delegated cgroup v2 may then move into a leaf of its own to get controllers for its calls
    // (docs/cgroups.md), which it cannot once the zygote shares its cgroup. The zygote inherits
    // the findings.
    let _ = crate::available_backends();
    let parent = rustix::process::getpid();
    // The zygote copies std's stdout buffer: a line left unfinished now would be printed again by
    // every call's process.
    let _ = io::Write::flush(&mut io::stdout());
    // SAFETY: the process has a single thread (checked above; no other can appear meanwhile), so
    // the child is a complete copy and may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::sys("forking the zygote", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(ours);
        super::server::zygote_main(theirs, parent)
    }
    drop(theirs);
    // A second init cannot race us: it would see more than one thread or run after us.
    let _ = ZYGOTE.set(Zygote {
        control: ours,
        code,
    });
    Ok(())
}

/// The zygote, started now if the caller forgot [`init`] but still has a single thread.
fn zygote() -> Result<&'static Zygote, Error> {
    if let Some(z) = ZYGOTE.get() {
        return Ok(z);
    }
    let threads = sys::thread_count();
    if threads > 1 {
        return Err(Error::NotInitialized { threads });
    }
    init()?;
    Ok(ZYGOTE.get().expect("init succeeded"))
}

/// Asks the zygote for a call's supervisor, sends it the request, and waits until the call's
/// process runs (or could not be started).
pub(crate) fn start_call(
    limits: &Limits,
    trampoline: Trampoline,
    function: usize,
    argument: Vec<u8>,
) -> Result<RemoteCall, Error> {
    let zygote = zygote()?;
    let trampoline = trampoline as usize;
    for address in [trampoline, function] {
        if !zygote.code.contains(address) {
            return Err(Error::FunctionNotInZygote { address });
        }
    }
    let (mut ours, theirs) =
        UnixStream::pair().map_err(|e| Error::sys("creating the call socket", e))?;
    let fds = [theirs.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    ancillary.push(SendAncillaryMessage::ScmRights(&fds));
    loop {
        match sendmsg(
            &zygote.control,
            &[IoSlice::new(&[1])],
            &mut ancillary,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::ZygoteUnreachable { source: e.into() }),
        }
    }
    drop(theirs);
    let request = Request {
        limits: limits.clone(),
        trampoline,
        function,
        argument,
    };
    let gone = |e: io::Error| Error::Supervisor {
        message: format!("the call's supervisor process went away before the call started ({e})"),
    };
    let bytes = wire::frame(&request).map_err(|e| Error::Encode(e.to_string()))?;
    wire::send_all(&ours, &bytes).map_err(gone)?;
    let pid = match wire::read_frame::<Reply>(&mut ours).map_err(gone)? {
        Reply::Started { pid } => pid,
        Reply::Failed { message } => return Err(Error::Supervisor { message }),
        Reply::Finished(_) => {
            return Err(Error::Supervisor {
                message: "the call's supervisor process answered out of order".into(),
            })
        }
    };
    ours.set_nonblocking(true)
        .map_err(|e| Error::sys("configuring the call socket", e))?;
    Ok(RemoteCall {
        stream: ours,
        pid,
        started_at: Instant::now(),
        buffer: Vec::new(),
    })
}

/// A call run by its own supervisor process; the caller holds a socket to it.
pub(crate) struct RemoteCall {
    stream: UnixStream,
    pid: i32,
    started_at: Instant,
    buffer: Vec<u8>,
}

impl RemoteCall {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// The outcome if it has arrived; never blocks.
    pub(crate) fn try_outcome(&mut self) -> Result<Option<Outcome<Vec<u8>>>, Error> {
        let mut eof = false;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Error::sys("reading the call socket", e)),
            }
        }
        let undecodable = |e: io::Error| Error::Supervisor {
            message: format!("its answer could not be decoded ({e})"),
        };
        match wire::take_frame::<Reply>(&mut self.buffer).map_err(undecodable)? {
            Some(Reply::Finished(outcome)) => Ok(Some(*outcome)),
            Some(Reply::Failed { message }) => Err(Error::Supervisor { message }),
            Some(Reply::Started { .. }) => Err(Error::Supervisor {
                message: "the call's supervisor process answered out of order".into(),
            }),
            None if eof => Err(Error::Supervisor {
                message: "the call's supervisor process ended without sending the outcome".into(),
            }),
            None => Ok(None),
        }
    }

    /// Asks the supervisor to end the call; a supervisor that is already gone is fine.
    pub(crate) fn cancel(&mut self) -> Result<(), Error> {
        match wire::send_all(&self.stream, &[CANCEL]) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Error::sys("cancelling the call", e)),
        }
    }

    /// Ends an unwaited call and waits until its supervisor has killed and reaped everything.
    pub(crate) fn abandon(mut self) {
        let _ = self.cancel();
        if self.stream.set_nonblocking(false).is_ok() {
            let mut sink = [0u8; 16 * 1024];
            while !matches!(self.stream.read(&mut sink), Ok(0) | Err(_)) {}
        }
    }
}

impl AsFd for RemoteCall {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
