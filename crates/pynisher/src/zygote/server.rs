//! The zygote's side: its request loop, and the per-call supervisor process it forks.
//!
//! Both run in processes with a single thread (copies of the caller made before it had others),
//! so they may allocate and use the engine's ordinary fork path.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::IoSliceMut;
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::client::Trampoline;
use super::wire::{self, Reply, Request};
use crate::Observer;

/// The zygote: forks one supervisor per request, until the caller is gone. Never returns.
pub(crate) fn zygote_main(control: OwnedFd, parent: rustix::process::Pid) -> ! {
    // A guard installed in the caller must not be started again by every call's supervisor.
    crate::guard::uninstall();
    // SAFETY: prctl, getppid and signal dispositions of our own process; no memory is shared.
    unsafe {
        // Die with the caller (and check it did not die before the prctl).
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent.as_raw_nonzero().get() {
            libc::_exit(0);
        }
        // The kernel reaps our children (the supervisors) for us: no zombies, no waiting.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    // Detect the cgroup environment once here: every call's supervisor is forked from us in the
    // same cgroups and inherits the findings instead of detecting (and cleaning stale leaves)
    // per call.
    let _ = crate::available_backends();
    loop {
        let mut byte = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(
            &control,
            &mut [IoSliceMut::new(&mut byte)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC,
        );
        match received {
            Ok(r) if r.bytes == 0 => break, // the caller closed its end: it is gone
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let call = ancillary.drain().find_map(|message| match message {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        });
        let Some(call) = call else { continue };
        // SAFETY: this process has a single thread, so the child is a complete copy.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(control);
            call_supervisor_main(call)
        }
        // On failure the caller sees its socket close without an answer.
        drop(call);
    }
    // SAFETY: _exit ends the zygote without running the caller's copied destructors.
    unsafe { libc::_exit(0) }
}

/// One call's supervisor: reads the request, starts the call, supervises it, sends the outcome.
fn call_supervisor_main(call: OwnedFd) -> ! {
    // SAFETY: restoring the default SIGCHLD disposition of our own process (the zygote ignores it;
    // we must wait for our child).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // Orphans of the call come to us, and the engine reaps them (we are a dedicated process, so
    // the process-wide attribute touches no one else).
    let _ = crate::become_subreaper();
    crate::contain::one_call_per_process();
    let mut stream = UnixStream::from(call);
    let code = match serve(&mut stream) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // No exit handler runs after `_exit`: remove the leaves made ahead and left behind now (the
    // caller has the outcome already).
    crate::contain::leave_nothing_behind();
    // SAFETY: _exit ends this process without running the caller's copied destructors.
    unsafe { libc::_exit(code) }
}

fn serve(stream: &mut UnixStream) -> io::Result<()> {
    let request: Request = wire::read_frame(stream)?;
    let socket = stream.as_raw_fd();
    // SAFETY: the caller checked that this address lies in code that existed when the zygote was
    // forked, and took it from a `Trampoline` of the same program image; this process is a copy
    // of that image made without exec, so the address names the same function here.
    let trampoline: Trampoline =
        unsafe { std::mem::transmute::<usize, Trampoline>(request.trampoline) };
    let function = request.function;
    let argument = request.argument;
    let body = move || {
        // SAFETY: the call's process must not keep the caller's socket open (the caller would
        // not see its supervisor die); closing our copy touches no one else.
        unsafe {
            libc::close(socket);
        }
        trampoline(function, &argument)
    };
    // SAFETY: this process has a single thread (a copy of the single-threaded zygote), so the
    // call's process is a complete copy.
    let running = match unsafe { request.limits.spawn_closure_bytes(body) } {
        Ok(running) => running,
        Err(e) => return reply(stream, &Reply::Failed { message: chain(&e) }),
    };
    reply(stream, &Reply::Started { pid: running.pid() })?;
    stream.set_nonblocking(true)?;
    let mut watch = CallerWatch {
        stream: stream.try_clone()?,
    };
    let answer = match running.wait_observed(&mut watch) {
        Ok(outcome) => Reply::Finished(Box::new(outcome)),
        Err(e) => Reply::Failed { message: chain(&e) },
    };
    stream.set_nonblocking(false)?;
    reply(stream, &answer)
}

fn reply(stream: &UnixStream, message: &Reply) -> io::Result<()> {
    wire::send_all(stream.as_fd(), &wire::frame(message)?)
}

/// An error and its causes on one line (the caller gets text, not the error).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Cancels the call when the caller asks, or when the caller's end of the socket closes (the
/// caller dropped the call, or died).
struct CallerWatch {
    stream: UnixStream,
}

impl Observer for CallerWatch {
    /// The socket: readable on a cancel byte or when the caller's end closes, so the supervisor
    /// acts at once and polls on no timer.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.stream.as_fd())
    }

    fn should_cancel(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match rustix::net::recv(&self.stream, &mut byte, rustix::net::RecvFlags::DONTWAIT) {
            // A cancel byte, or end of file.
            Ok(_) => true,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => false,
            Err(_) => true,
        }
    }
}
