//! Linux system calls and `/proc` readers not covered by std or rustix, each wrapped once here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::CpuTime;

/// Makes the calling process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphaned descendants are
/// re-parented to it instead of init, so it can reap and account for them. The attribute is
/// process-wide; it is meant for a dedicated supervisor process such as the `pynisher` command.
///
/// ```no_run
/// pynisher::become_subreaper()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// Whether this process is a child subreaper.
pub(crate) fn is_subreaper() -> bool {
    rustix::process::child_subreaper().ok().flatten().is_some()
}

/// Number of threads of this process. It runs before every closure call, so it is one `stat`:
/// the kernel reports a task directory's link count as 2 + its threads (`proc_task_getattr`,
/// every kernel pynisher supports). Should that ever read less than 3, the entries of
/// `/proc/self/task` are counted instead. `/proc` unreadable counts as one thread.
pub(crate) fn thread_count() -> usize {
    match rustix::fs::stat("/proc/self/task") {
        Ok(st) if st.st_nlink >= 3 => (st.st_nlink - 2) as usize,
        Ok(_) => task_entries(),
        Err(_) => 1,
    }
}

/// The entries of `/proc/self/task`, read into a buffer on the stack (`std::fs::read_dir` would
/// allocate a 32 KiB buffer: fresh heap pages that a fork has just made copy-on-write).
fn task_entries() -> usize {
    use rustix::fs::{Mode, OFlags};
    let Ok(dir) = rustix::fs::open(
        "/proc/self/task",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return 1;
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    let mut threads = 0;
    while let Some(entry) = entries.next() {
        match entry {
            Ok(entry) if !entry.file_name().to_bytes().starts_with(b".") => threads += 1,
            Ok(_) => {}
            Err(_) => return threads.max(1),
        }
    }
    threads.max(1)
}

/// A pipe whose both ends are close-on-exec, recorded as a call's (see `inflight`) when `record`
/// (other threads may fork while it is open).
pub(crate) fn pipe_cloexec(record: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_with(rustix::pipe::PipeFlags::CLOEXEC, record)
}

/// [`pipe_cloexec`] with both ends non-blocking from the start (no `fcntl`): for a pipe whose
/// writer sends at most one message shorter than `PIPE_BUF` into it while it is empty, which
/// never blocks anyway.
pub(crate) fn pipe_cloexec_nonblocking(record: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK, record)
}

fn pipe_with(flags: rustix::pipe::PipeFlags, record: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(flags)?;
    if record {
        super::inflight::record_pipe(&r, &w);
    }
    Ok((r, w))
}

/// Sets `O_NONBLOCK` on an end of a pipe made by [`pipe_cloexec`]: its other status flags are
/// known to be clear, so they need not be read first.
pub(crate) fn set_pipe_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Opens a pidfd for `pid` (a child we have not reaped, so the pid cannot be reused).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(io::ErrorKind::InvalidInput)?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Fails with `ENOSYS` when the kernel has no `pidfd_open` (Linux < 5.3), before anything is
/// forked; probed once per process (on our own pid), then remembered.
pub(crate) fn check_pidfd_open() -> io::Result<()> {
    static AVAILABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if AVAILABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    match rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    ) {
        Err(rustix::io::Errno::NOSYS) => Err(rustix::io::Errno::NOSYS.into()),
        // Any other failure (out of descriptors, ...) is not about the kernel: the real call
        // reports it.
        _ => {
            AVAILABLE.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }
}

/// `pid` as a [`rustix::process::Pid`] when it names one process (or group): positive.
fn positive_pid(pid: i32) -> Option<rustix::process::Pid> {
    if pid > 0 {
        rustix::process::Pid::from_raw(pid)
    } else {
        None
    }
}

/// Sends `signal` to every process of process group `pgid`; a group that is already empty is fine.
/// A `pgid` that is not positive is ignored: `kill(0)` or `kill(-1)` would hit the caller's own
/// group or every process it may signal.
pub(crate) fn kill_group(pgid: i32, signal: i32) {
    let Some(pgid) = positive_pid(pgid) else {
        return;
    };
    match rustix::process::Signal::from_named_raw(signal) {
        Some(signal) => {
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
        // A real-time signal (rustix names only the standard ones).
        // SAFETY: kill(2) with a negative pid addresses one process group; no memory is touched.
        None => unsafe {
            libc::kill(-pgid.as_raw_nonzero().get(), signal);
        },
    }
}

/// The `struct clone_args` of `clone3(2)` (kernel ABI, version 2 with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Creates a child like `fork` (same return convention: 0 in the child, the pid in the parent),
/// inside the cgroup whose directory is `cgroup_dir` when one is given (`CLONE_INTO_CGROUP`).
///
/// The child's exit raises no signal in the parent (`exit_signal` 0) until it calls `execve`,
/// which gives every process the SIGCHLD exit signal again: so a child that never execs (the
/// reaper of `launch/reaper.rs`) is never reaped by the kernel, even when the caller ignores
/// SIGCHLD, and a caller's `waitpid(-1)` does not see it (only a wait with `__WALL` does, as in
/// [`wait4_blocking`]). Without `clone3` (Linux < 5.3, or a seccomp filter that refuses it with
/// `ENOSYS`) and without a cgroup, the legacy `clone` with flags 0 does the same.
///
/// Unlike glibc's `fork`, it runs no `atfork` handlers and resets no library locks, so the child
/// may only make async-signal-safe calls and then `exec` — which is all `child_main` does for a
/// program.
///
/// # Safety
/// The child starts as a copy of the caller; the caller must only run async-signal-safe code in
/// the child until `execve` or `_exit`.
pub(crate) unsafe fn clone_quiet(cgroup_dir: Option<BorrowedFd<'_>>) -> io::Result<i32> {
    let args = CloneArgs {
        flags: if cgroup_dir.is_some() {
            CLONE_INTO_CGROUP
        } else {
            0
        },
        exit_signal: 0,
        cgroup: cgroup_dir.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (size given) during the call; with no stack given the child
    // continues on a copy-on-write copy of our stack, exactly like fork.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc >= 0 {
        return Ok(rc as i32);
    }
    let err = io::Error::last_os_error();
    if cgroup_dir.is_some() || err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // SAFETY: clone with every argument 0 (whatever the architecture's argument order) is fork
    // with no exit signal: no new stack, no shared state, no tid pointers.
    let rc = unsafe { libc::syscall(libc::SYS_clone, 0, 0, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Bytes of the stack a [`spawn_shared`] child runs on: its set-up before `execve` needs a few
/// KiB (a 4 KiB read buffer is the largest frame).
const SHARED_SPAWN_STACK: usize = 64 * 1024;

/// Starts a child that shares this process's memory until it calls `execve` or exits, as
/// `posix_spawn` does (`clone` with `CLONE_VM | CLONE_VFORK`, on a stack of its own): nothing of
/// the caller's address space is copied (a fork copies every page-table entry, and every page the
/// caller writes afterwards faults), and the calling thread waits until the child has exec'd.
/// As with [`clone_quiet`], the child's exit raises no signal until its `execve`.
///
/// Every signal is blocked in the calling thread meanwhile, so that no handler of the caller
/// runs in the child: the child must reset the caught (and ignored) ones before it unblocks them
/// (`launch::dispositions::reset_for_exec`). Returns the child's pid.
///
/// # Safety
/// `child` runs in the child, in the caller's address space: it may write only its own stack,
/// may make only async-signal-safe calls, and must end in `execve` or `_exit` (if it returns, the
/// child exits with 127).
pub(crate) unsafe fn spawn_shared(child: &mut dyn FnMut()) -> io::Result<i32> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the `&mut dyn FnMut()` below, which lives until the child has
        // exec'd or exited: the caller's thread is suspended until then (`CLONE_VFORK`).
        let child = unsafe { &mut *arg.cast::<&mut dyn FnMut()>() };
        child();
        // SAFETY: _exit(2) ends the child without touching the shared memory.
        unsafe { libc::_exit(127) }
    }
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(SHARED_SPAWN_STACK);
    // The stack grows down from its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + SHARED_SPAWN_STACK) & !15;
    let mut child = child;
    // SAFETY: sigset and sigmask calls on locals and on this thread only; clone runs
    // `trampoline` on the stack above (owned here, not freed until clone has returned, which
    // with CLONE_VFORK is after the child's execve or exit), with `child` alive as long.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            trampoline,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK,
            (&mut child as *mut &mut dyn FnMut()).cast(),
        );
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        drop(stack);
        if pid < 0 {
            Err(err)
        } else {
            Ok(pid)
        }
    }
}

/// Whether the kernel reaps this process's children by itself when they exit (SIGCHLD ignored, or
/// its action has `SA_NOCLDWAIT`); a child forked with the SIGCHLD exit signal then leaves no
/// status to read.
pub(crate) fn children_are_auto_reaped() -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into our local.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current) != 0 {
            return false;
        }
        current.sa_sigaction == libc::SIG_IGN || current.sa_flags & libc::SA_NOCLDWAIT != 0
    }
}

/// Whether any process has process group id `pgid` (signal 0 probes without sending).
pub(crate) fn group_exists(pgid: i32) -> bool {
    positive_pid(pgid).is_some_and(|pgid| rustix::process::test_kill_process_group(pgid).is_ok())
}

/// Sends `signal` to one process by pid; a process that is gone is fine. A `pid` that is not
/// positive is ignored (see [`kill_group`]).
pub(crate) fn kill_pid(pid: i32, signal: i32) {
    let Some(pid) = positive_pid(pid) else {
        return;
    };
    match rustix::process::Signal::from_named_raw(signal) {
        Some(signal) => {
            let _ = rustix::process::kill_process(pid, signal);
        }
        // A real-time signal (rustix names only the standard ones).
        // SAFETY: kill(2) with a positive pid addresses one process; no memory is touched.
        None => unsafe {
            libc::kill(pid.as_raw_nonzero().get(), signal);
        },
    }
}

/// How a reaped child ended, with its resource usage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reaped {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu: CpuTime,
    /// `ru_maxrss` in bytes (Linux reports KiB).
    pub max_rss: u64,
}

/// Reaps `pid` (blocking; call it once the pidfd reported the exit) and returns its status and
/// rusage (the child and the descendants it waited for). `__WALL` also finds a child whose exit
/// raises no signal ([`clone_quiet`]).
pub(crate) fn wait4_blocking(pid: i32) -> io::Result<Reaped> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value and wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to our locals for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut usage) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(Reaped::from_wait(status, &usage))
}

impl Reaped {
    /// Decodes a wait status and the rusage that came with it.
    pub(crate) fn from_wait(status: i32, usage: &libc::rusage) -> Self {
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Reaped {
            exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            cpu: CpuTime {
                user: tv(usage.ru_utime),
                system: tv(usage.ru_stime),
            },
            max_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
        }
    }
}

/// Reaps `pid` if it is an exited child of ours; ignores everything else.
pub(crate) fn reap_if_child(pid: i32) {
    let mut status = 0;
    // SAFETY: valid pointer to a local; WNOHANG never blocks.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL);
    }
}

/// Reaps exited children of ours in process group `pgid` (orphans handed to us as subreaper).
pub(crate) fn reap_group_zombies(pgid: i32) {
    let mut status = 0;
    // SAFETY: valid pointer to a local; WNOHANG never blocks.
    while unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) } > 0 {}
}

/// Fields of `/proc/PID/stat` the engine uses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStat {
    pub pid: i32,
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    /// The process's own user time (clock ticks).
    pub utime: u64,
    /// The process's own system time (clock ticks).
    pub stime: u64,
    /// User time of the children it reaped (clock ticks).
    pub cutime: u64,
    /// System time of the children it reaped (clock ticks).
    pub cstime: u64,
    /// Resident set size in pages (anonymous, file-backed and shared memory together).
    pub rss_pages: u64,
}

/// Reads a small kernel-generated file (`/proc`, cgroupfs) whole: open, reads of 4 KiB until end
/// of file, close. `std::fs::read` asks for the file's size first (always 0 there) and then
/// starts with a 32-byte probe and doubles: 6 to 9 reads for a `/proc/PID/stat` or a mountinfo.
pub(crate) fn read_proc(path: impl AsRef<std::path::Path>) -> io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path.as_ref(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut bytes = Vec::new();
    let mut used = 0;
    loop {
        bytes.resize(used + 4096, 0);
        match rustix::io::read(&fd, &mut bytes[used..]) {
            Ok(0) => break,
            Ok(n) => used += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bytes.truncate(used);
    Ok(bytes)
}

/// [`read_proc`] as text (lossy: these files are ASCII, a cgroup path may hold anything).
pub(crate) fn read_proc_text(path: impl AsRef<std::path::Path>) -> io::Result<String> {
    read_proc(path).map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Reads `/proc/PID/stat`; `None` when the process is gone.
pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = read_proc(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(pid, &text)
}

fn parse_proc_stat(pid: i32, text: &[u8]) -> Option<ProcStat> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 2..]).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 → rest[11].
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
        // Field 24; a kernel thread or an exiting process may show 0.
        rss_pages: num(21).unwrap_or(0),
    })
}

/// Every process visible in `/proc`.
pub(crate) fn all_proc_stats() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Exact CPU time of all threads of a live process (its POSIX CPU clock), in nanoseconds.
pub(crate) fn process_cpu_clock(pid: i32) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: valid pointer to a local.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The size of a memory page in bytes.
pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// This process's address-space size and its resident anonymous memory, in bytes (`VmSize` and
/// `RssAnon` of `/proc/self/status`). A fork copies the page tables of anonymous memory only, so
/// the anonymous part is what a forked child starts with resident.
pub(crate) fn own_memory() -> Option<(u64, u64)> {
    let text = read_proc_text("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let value = line[key.len()..].trim().trim_end_matches("kB").trim();
        value.parse::<u64>().ok().map(|k| k * 1024)
    };
    Some((kib("VmSize:")?, kib("RssAnon:")?))
}

/// Clock ticks per second for `/proc` times.
pub(crate) fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses_names_with_spaces_and_parens() {
        let line = b"42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 2 1 20 0 1 0 1 1 1";
        let s = parse_proc_stat(42, line).unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp), (b'S', 1, 42));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (7, 3, 2, 1));
        assert_eq!(s.rss_pages, 1);
    }

    #[test]
    fn own_resident_memory_is_read_from_proc() {
        let stat = proc_stat(std::process::id() as i32).unwrap();
        assert!(stat.rss_pages > 0);
        let (size, resident) = own_memory().unwrap();
        assert!(size >= resident && resident > 0);
    }

    #[test]
    fn a_group_id_that_is_not_positive_addresses_no_one() {
        // kill(0) would probe (or signal) our own group, kill(-1) every process we may signal.
        assert!(!group_exists(0));
        assert!(!group_exists(-1));
        assert!(group_exists(
            rustix::process::getpgrp().as_raw_nonzero().get()
        ));
    }

    #[test]
    fn thread_count_sees_every_thread_of_this_process() {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (started, stop) = (started_tx.clone(), stop_rx.clone());
                std::thread::spawn(move || {
                    started.send(()).unwrap();
                    let _ = stop.lock().unwrap().recv();
                })
            })
            .collect();
        for _ in 0..3 {
            started_rx.recv().unwrap();
        }
        // Other tests of this binary may run threads too: at least ours and this one are seen,
        // by the link count and by the directory's entries.
        let seen = thread_count();
        let listed = task_entries();
        drop(stop_tx);
        for t in threads {
            t.join().unwrap();
        }
        assert!(seen >= 4, "{seen} threads seen");
        assert!(listed >= 4, "{listed} threads listed");
    }

    #[test]
    fn own_process_cpu_clock_is_readable() {
        assert!(process_cpu_clock(std::process::id() as i32).is_some());
    }
}
