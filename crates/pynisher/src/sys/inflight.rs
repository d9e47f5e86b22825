//! The pipe ends of calls in flight, so that a closure child forked by one thread does not keep
//! another thread's call pipes open.
//!
//! A closure child is a copy of the whole caller, descriptors included. If another thread is in
//! the middle of a call, the copy holds that call's pipe ends for as long as it lives: the other
//! call's reader then sees no end of file (its capture drain waits) until this child exits.
//! Every pipe the engine creates is recorded here as (descriptor, inode); a closure child closes
//! each recorded descriptor that still names the recorded pipe, except its own.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots for (descriptor, low 31 bits of the pipe's inode, a set bit); 0 = free. A call uses up to 10 pipe
/// ends, so this covers dozens of concurrent calls; past that, pipes go unrecorded (only the
/// hygiene of other threads' forks suffers, never a call itself).
const SLOTS: usize = 512;
static RECORDED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// How many slots have ever been handed out (may run past `SLOTS`): every record is below it, so
/// a look at the records reads only those slots, not the whole 4 KiB (a closure child runs on a
/// cold cache: each cache line it reads is a miss).
static USED: AtomicUsize = AtomicUsize::new(0);

/// The slots that may hold a record.
fn used() -> &'static [AtomicU64] {
    &RECORDED[..USED.load(Ordering::Acquire).min(SLOTS)]
}

fn pack(fd: i32, ino: u64) -> u64 {
    // Bit 31 is always set, so that no record is 0 (descriptor 0 can be a pipe too).
    ((fd as u32 as u64) << 32) | (ino & 0x7fff_ffff) | 0x8000_0000
}

fn inode_of(fd: i32) -> Option<u64> {
    // SAFETY: fstat(2) writes only into our stack buffer; async-signal-safe.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_ino)
    }
}

/// Whether a slot's record is stale: its descriptor is closed or now names something else.
fn stale(value: u64) -> bool {
    let fd = (value >> 32) as i32;
    inode_of(fd).is_none_or(|ino| pack(fd, ino) != value)
}

/// Records both ends of a freshly created pipe: they share one inode, so one `fstat` serves both.
pub(crate) fn record_pipe(read: &OwnedFd, write: &OwnedFd) {
    let Some(ino) = inode_of(read.as_raw_fd()) else {
        return;
    };
    record(read.as_raw_fd(), ino);
    record(write.as_raw_fd(), ino);
}

/// Records a pipe end. A slot holding the same descriptor number is stale by definition (the
/// number now names this pipe), so it is reused without a look at the file: a call's pipes reuse
/// the numbers of the previous call's, and recording costs no `fstat` per recorded slot. A new
/// number takes the next slot never used; only when none is left are the others checked for
/// staleness.
fn record(raw: i32, ino: u64) {
    let value = pack(raw, ino);
    let claim = |slot: &AtomicU64, current: u64| {
        slot.compare_exchange(current, value, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    for slot in used() {
        let current = slot.load(Ordering::Relaxed);
        if current != 0 && (current >> 32) as i32 == raw && claim(slot, current) {
            return;
        }
    }
    // A slot of our own, never handed out before (no other thread can be given it).
    let next = USED.fetch_add(1, Ordering::AcqRel);
    if let Some(slot) = RECORDED.get(next) {
        slot.store(value, Ordering::Release);
        return;
    }
    for slot in &RECORDED {
        let current = slot.load(Ordering::Relaxed);
        if (current == 0 || stale(current)) && claim(slot, current) {
            return;
        }
    }
}

/// In a closure child right after the fork: closes every recorded pipe end of other calls, all
/// but `keep` (the descriptors of the child's own call, which need no look at the file).
/// Async-signal-safe (atomic loads, fstat, close).
pub(crate) fn close_others(keep: &[i32]) {
    for slot in used() {
        let value = slot.load(Ordering::Acquire);
        if value == 0 {
            continue;
        }
        let fd = (value >> 32) as i32;
        // 0-2 are the child's own standard streams by now, whatever they were in the parent.
        if fd <= 2 || keep.contains(&fd) || stale(value) {
            continue;
        }
        // SAFETY: closing a descriptor this (forked) process holds and no code of it uses: it
        // belongs to another thread's call in the parent.
        unsafe {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: i32) -> bool {
        // SAFETY: F_GETFD only queries the descriptor table.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn a_forked_closure_child_closes_recorded_pipes_but_keeps_its_own_and_unrelated_ones() {
        let (other_read, other_write) = crate::sys::pipe_cloexec(true).unwrap();
        let (own_read, own_write) = crate::sys::pipe_cloexec(true).unwrap();
        let (plain_read, plain_write) = rustix::pipe::pipe().unwrap(); // not the engine's
        let fds = [other_read.as_raw_fd(), other_write.as_raw_fd()];
        let own = own_write.as_raw_fd();
        let plain = plain_write.as_raw_fd();
        // SAFETY: the child calls only async-signal-safe functions (atomic loads, fstat, close,
        // fcntl) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            close_others(&[own]);
            let ok = !is_open(fds[0]) && !is_open(fds[1]) && is_open(own) && is_open(plain);
            // SAFETY: ends the forked test child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; status is our stack variable.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
        // The parent's copies are untouched.
        assert!(is_open(fds[0]) && is_open(fds[1]));
        drop((
            other_read,
            other_write,
            own_read,
            own_write,
            plain_read,
            plain_write,
        ));
    }

    #[test]
    fn a_descriptor_number_reused_for_something_else_is_left_alone() {
        let (read, write) = crate::sys::pipe_cloexec(true).unwrap();
        let number = write.as_raw_fd();
        // The recorded number now names another pipe, one that is not a call's.
        let (plain_read, plain_write) = rustix::pipe::pipe().unwrap();
        // SAFETY: dup2 onto a descriptor we own (`write`), which keeps owning the new one.
        let replaced = unsafe { libc::dup2(plain_write.as_raw_fd(), number) };
        assert_eq!(replaced, number);
        // SAFETY: as above: async-signal-safe calls only in the child, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            close_others(&[]);
            let ok = is_open(number) && !is_open(read.as_raw_fd());
            // SAFETY: ends the forked test child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; status is our stack variable.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
        drop((read, write, plain_read, plain_write));
    }
}
