//! What runs in the child between `fork` and `exec` (or the closure).
//!
//! Everything the child needs is prepared by the parent before the fork ([`ChildPlan`], [`ChildFds`]):
//! after the fork, until `exec` or the closure, the child makes only async-signal-safe system calls
//! and touches no allocator, no lock and no Rust standard I/O.
//!
//! The child's set-up, in order: its own process group; SIGKILL when the supervisor dies; for a
//! program, default signal dispositions and an empty signal mask; block until the supervisor has placed it in the
//! call's container (so no user code runs outside it); its standard streams and result descriptor;
//! the rlimits; the working directory; then `execve` or the closure.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::closure::ClosureBody;
use super::release::{ReleaseRecord, RECORD_LEN};
use crate::{transport, Command, Error, Limits, Stdin};

/// The file descriptor number on which a child started for its result finds the result pipe.
pub(crate) const RESULT_FD: RawFd = 3;

/// What the child runs.
pub(crate) enum Payload<'f> {
    /// Exec a program; its outcome carries no value.
    Exec(Command),
    /// Exec a program that sends a result frame on [`RESULT_FD`] (a closure writes its frame to
    /// the result pipe wherever the parent opened it, leaving the caller's descriptors alone).
    ExecWithResult(Command),
    /// Run a closure in the forked child; it returns the encoded value or an encoding error.
    Closure(ClosureBody<'f>),
}

/// An exec image prepared before the fork: every string already a C string, every pointer array
/// already built.
pub(crate) struct ExecImage {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    pub(crate) display: String,
}

/// Everything the child needs, prepared before the fork.
pub(crate) struct ChildPlan<'f> {
    pub(crate) exec: Option<ExecImage>,
    pub(crate) closure: Option<ClosureBody<'f>>,
    pub(crate) stdin: Stdin,
    pub(crate) wants_result: bool,
    /// `RLIMIT_CPU` backstop (soft, hard) in seconds.
    pub(crate) rlimit_cpu: Option<(u64, u64)>,
    /// `RLIMIT_AS` in bytes; decided after the container is known.
    pub(crate) rlimit_as: Option<u64>,
    /// cgroup files (open descriptors) the child writes `0` to, joining the call's cgroups
    /// itself.
    pub(crate) join_fds: Vec<libc::c_int>,
    /// A parked child's preparation: run once it is in its container, before it waits for its
    /// call's release record (a parked child gets two messages on its release pipe).
    pub(crate) prepare: Option<Box<dyn FnOnce() + 'f>>,
    /// The caller was found to have a single thread (`run_closure`): no call can start while
    /// this one runs, so its pipes need no record. Its child closes none of the recorded ones: a
    /// call the same thread started earlier and has not waited for yet (`spawn_*`, a parked
    /// child) only shares its pipe ends with this child for as long as this call runs, and that
    /// child dies with the call.
    pub(crate) single_threaded_caller: bool,
}

impl<'f> ChildPlan<'f> {
    /// Sets the cgroup files (descriptors the supervisor keeps open until the child is
    /// released) the child joins by itself.
    pub(crate) fn join_cgroups(&mut self, fds: Vec<libc::c_int>) {
        self.join_fds = fds;
    }

    pub(crate) fn new(limits: &Limits, payload: Payload<'f>) -> Result<Self, Error> {
        let rlimit_cpu = ReleaseRecord::cpu_backstop(limits);
        let (exec, closure, wants_result, stdin) = match payload {
            Payload::Exec(cmd) => {
                let stdin = cmd.stdin.clone();
                (Some(ExecImage::new(&cmd, false)?), None, false, stdin)
            }
            Payload::ExecWithResult(cmd) => {
                let stdin = cmd.stdin.clone();
                (Some(ExecImage::new(&cmd, true)?), None, true, stdin)
            }
            Payload::Closure(f) => (None, Some(f), true, Stdin::Inherit),
        };
        Ok(ChildPlan {
            exec,
            closure,
            stdin,
            wants_result,
            rlimit_cpu,
            rlimit_as: None,
            join_fds: Vec::new(),
            prepare: None,
            single_threaded_caller: false,
        })
    }

    pub(crate) fn is_closure(&self) -> bool {
        self.closure.is_some()
    }

    /// The release record of this plan's rlimits.
    pub(crate) fn release_record(&self) -> ReleaseRecord {
        ReleaseRecord {
            rlimit_cpu: self.rlimit_cpu,
            rlimit_as: self.rlimit_as,
        }
    }
}

fn cstring(param: &'static str, bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes)
        .map_err(|_| Error::invalid(param, String::from_utf8_lossy(bytes), "contains a NUL byte"))
}

impl ExecImage {
    fn new(cmd: &Command, wants_result: bool) -> Result<Self, Error> {
        let program = cmd.program.as_bytes();
        if program.is_empty() {
            return Err(Error::invalid("program", "", "empty program name"));
        }
        let path = resolve_program(&cmd.program, cmd.env_path().as_deref());
        let path = cstring("program", path.as_os_str().as_bytes())?;
        let mut argv = vec![cstring("program", program)?];
        for a in &cmd.args {
            argv.push(cstring("args", a.as_bytes())?);
        }
        let mut env: Vec<(OsString, OsString)> = if cmd.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (k, v) in &cmd.env {
            env.retain(|(ek, _)| ek != k);
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }
        env.retain(|(k, _)| k != transport::RESULT_FD_ENV);
        if wants_result {
            env.push((
                transport::RESULT_FD_ENV.into(),
                RESULT_FD.to_string().into(),
            ));
        }
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring("env", &kv)?);
        }
        let cwd = match &cmd.cwd {
            Some(dir) => Some(cstring("current_dir", dir.as_os_str().as_bytes())?),
            None => None,
        };
        let ptrs = |v: &Vec<CString>| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(ExecImage {
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            display: cmd.program.to_string_lossy().into_owned(),
            path,
            _argv: argv,
            _envp: envp,
            cwd,
        })
    }
}

impl Command {
    /// The `PATH` the child will see.
    fn env_path(&self) -> Option<OsString> {
        for (k, v) in self.env.iter().rev() {
            if k == "PATH" {
                return v.clone();
            }
        }
        if self.env_clear {
            None
        } else {
            std::env::var_os("PATH")
        }
    }
}

/// Looks `program` up in `path` as `execvp` would, but before the fork (`execvp` may allocate).
/// A name with a `/` is used as is; a name found nowhere is returned unchanged so that `execve`
/// reports `ENOENT`; a file that exists but is not executable is kept so that `execve` reports
/// `EACCES`.
fn resolve_program(program: &OsStr, path: Option<&OsStr>) -> std::path::PathBuf {
    if program.as_bytes().contains(&b'/') {
        return program.into();
    }
    let mut not_executable = None;
    for dir in std::env::split_paths(path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"))) {
        let candidate = if dir.as_os_str().is_empty() {
            Path::new(".").join(program)
        } else {
            dir.join(program)
        };
        if candidate.is_file() {
            if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
                return candidate;
            }
            not_executable.get_or_insert(candidate);
        }
    }
    not_executable.unwrap_or_else(|| program.into())
}

/// The descriptors the child wires up, all open in the parent at fork time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    /// Read end of the release pipe: the child blocks on it until adopted, then reads the
    /// release record (its rlimits) from it. -1 when the record is in `released`.
    pub release_read: RawFd,
    /// The release record of a child released before the fork (it waits for nothing, so it
    /// needs no release pipe: one pipe, a write and a read fewer per call).
    pub released: Option<ReleaseRecord>,
    /// Write end of the set-up error pipe (close-on-exec): a failed step writes (step, errno).
    pub error_write: RawFd,
    pub stdin: Option<RawFd>,
    pub stdout: Option<RawFd>,
    pub stderr: Option<RawFd>,
    pub result: Option<RawFd>,
    /// The supervisor's ends of this call's pipes (-1: none). A closure child keeps them open
    /// (they are its own call's, not another thread's) without looking at them.
    pub supervisor_ends: [RawFd; 6],
    /// Whether other calls may be in flight (a caller with several threads): a closure child
    /// then closes their pipe ends (`sys::inflight`). A single-threaded caller's pipes are not
    /// recorded at all.
    pub others_in_flight: bool,
    /// The supervisor's pid, to detect that it died before PDEATHSIG was armed.
    pub parent_pid: i32,
    /// Whether the child arms `PR_SET_PDEATHSIG` (no guard watches the caller).
    pub die_with_parent: bool,
    /// The guard's socket and the message that tells it the call's process group (the child's
    /// pid goes into its last four bytes), on the process-group backend with a guard.
    pub guard_group: Option<(RawFd, [u8; crate::guard::GROUP_MESSAGE_LEN])>,
}

/// Set-up steps reported on the error pipe.
pub(crate) mod step {
    pub const RELEASE: u32 = 1;
    pub const JOIN: u32 = 6;
    pub const FDS: u32 = 2;
    pub const RLIMIT: u32 = 3;
    pub const CHDIR: u32 = 4;
    pub const EXEC: u32 = 5;

    /// A short description of a step for error messages.
    pub fn describe(step: u32) -> &'static str {
        match step {
            RELEASE => "waiting to be released",
            FDS => "setting up file descriptors",
            RLIMIT => "setting resource limits",
            CHDIR => "changing directory",
            JOIN => "joining the call's cgroup",
            _ => "exec",
        }
    }
}

/// Exit code of a child whose set-up failed (the parent reads the real cause from the error pipe).
pub(crate) const SETUP_FAILED_EXIT: i32 = 127;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failed step and exits. Async-signal-safe.
fn fail(fds: &ChildFds, which: u32) -> ! {
    let code = errno();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&which.to_le_bytes());
    msg[4..].copy_from_slice(&code.to_le_bytes());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg lives on our stack.
    unsafe {
        libc::write(fds.error_write, msg.as_ptr().cast(), msg.len());
        libc::_exit(SETUP_FAILED_EXIT)
    }
}

/// The child's side of the fork. Never returns.
///
/// Each step below is its own function with its own `unsafe` block, so that each SAFETY comment
/// covers exactly the calls it names.
///
/// # Safety
/// Must be called only in the child right after `fork`. Until `exec` (or the closure) it calls only
/// async-signal-safe functions on memory prepared by the parent.
pub(crate) unsafe fn child_main(plan: &mut ChildPlan<'_>, fds: &ChildFds) -> ! {
    // SAFETY: we are the forked child, as our contract requires (so for each step below).
    unsafe { own_group_and_death_signal(fds) };
    // A program gets default dispositions and an empty mask: the caller's ignored or blocked
    // signals must not leak into it (a program ignoring SIGTERM would defeat the grace period). A
    // closure keeps the caller's, as any fork does: a forked interpreter's own view of its signals
    // (Python's `signal.getsignal`, Rust's ignored SIGPIPE) must stay true, so a write to a closed
    // pipe is an error there, not death by SIGPIPE.
    if plan.exec.is_some() {
        // SAFETY: we are the forked child (our contract); it changes only our own dispositions
        // and mask, with async-signal-safe calls.
        unsafe { super::dispositions::reset_for_exec() };
    }
    let mut record = match fds.released {
        Some(record) => record,
        // SAFETY: as above.
        None => unsafe { wait_for_release(fds) },
    };
    // SAFETY: as above.
    unsafe { join_cgroups(&plan.join_fds, fds) };
    let parked = plan.prepare.is_some();
    if let Some(prepare) = plan.prepare.take() {
        // A parked child, in its container now: it lets go of other calls' pipe ends at once
        // (parked, it could hold them indefinitely: a reaper waiting for its go pipe's end of
        // file would wait with it), prepares (the caller's code, e.g. an interpreter's
        // after-fork reset), then waits for its call.
        close_other_calls_pipes(fds);
        prepare();
        // SAFETY: as above.
        record = unsafe { wait_for_release(fds) };
    }
    if fds.release_read >= 0 {
        // SAFETY: closing our copy of the release pipe, which nothing else in this child uses.
        unsafe { rustix::io::close(fds.release_read) };
    }
    // SAFETY: as above.
    unsafe { wire_descriptors(plan.exec.is_some(), fds) };
    // SAFETY: as above.
    unsafe { set_rlimits(record.rlimit_cpu, record.rlimit_as, fds) };
    // The closure is run where it lies, not taken out of the plan: the plan is in memory shared
    // copy-on-write with the caller, and a write to it would be one more page fault.
    match (&plan.exec, plan.closure.as_deref()) {
        // SAFETY: as above.
        (Some(image), _) => unsafe { exec(image, fds) },
        (None, Some(closure)) => {
            // A parked child let go of them before it parked, and has received none since: a
            // second look would cost an fstat per recorded pipe on the call's path.
            if !parked && fds.others_in_flight {
                close_other_calls_pipes(fds);
            }
            // SAFETY: we are the forked child (our contract), which runs its closure once here
            // and ends in it.
            unsafe {
                super::closure::run_and_exit(closure, fds.error_write, fds.result.unwrap_or(-1))
            }
        }
        // SAFETY: _exit(2) ends this child; it touches no memory.
        (None, None) => unsafe { libc::_exit(SETUP_FAILED_EXIT) },
    }
}

/// A closure child is a copy of the caller: other threads' calls must not wait on its copies of
/// their pipe ends. Its own call's descriptors stay (no `fstat` needed for them). Async-signal-safe.
fn close_other_calls_pipes(fds: &ChildFds) {
    let own = [
        fds.release_read,
        fds.error_write,
        fds.result.unwrap_or(-1),
        fds.stdout.unwrap_or(-1),
        fds.stderr.unwrap_or(-1),
        fds.stdin.unwrap_or(-1),
    ];
    let mut keep = [-1; 12];
    keep[..6].copy_from_slice(&own);
    keep[6..].copy_from_slice(&fds.supervisor_ends);
    crate::sys::inflight::close_others(&keep);
}

/// Own process group (signals for the call reach the whole group), told to the guard (process-group
/// backend, a guard running: one `send` of a message prepared before the fork, our pid filled
/// in; a SOCK_SEQPACKET send is atomic and async-signal-safe); without a guard, SIGKILL when
/// the supervisor's thread dies (the kernel ties PDEATHSIG to the forking thread, not the
/// process), re-checking the parent in case it died before the prctl. With a guard, the guard
/// kills the call when the caller *process* dies.
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn own_group_and_death_signal(fds: &ChildFds) {
    // rustix's system calls are inlined here (no libc code page to fault in after the fork).
    let _ = rustix::process::setpgid(None, None);
    // Tell the guard our group before anything else runs (one send on a SOCK_SEQPACKET
    // socket: atomic, async-signal-safe, no wait).
    if let Some((socket, template)) = fds.guard_group {
        let mut message = template;
        let n = message.len();
        message[n - 4..].copy_from_slice(&rustix::process::getpid().as_raw_pid().to_le_bytes());
        // SAFETY: send reads a stack buffer and writes to the guard's socket (ours, inherited);
        // async-signal-safe.
        unsafe { libc::send(socket, message.as_ptr().cast(), n, libc::MSG_NOSIGNAL) };
    }
    // SAFETY: we are the forked child, as `die_with_parent`'s contract asks.
    unsafe { die_with_parent(fds) };
}

/// When no guard watches the caller yet (`fds.die_with_parent`): SIGKILL with the supervisor's
/// thread (`PR_SET_PDEATHSIG`), and exit at once if the supervisor already died before that was
/// armed (our parent is no longer the one that forked us). Shared by the child and the reaper.
///
/// # Safety
/// Only in a child forked by the supervisor, between fork and exec or the closure.
pub(crate) unsafe fn die_with_parent(fds: &ChildFds) {
    if !fds.die_with_parent {
        return;
    }
    // Raw system calls (rustix), async-signal-safe; a failure of the prctl is caught by the
    // parent check as far as it matters (a dead parent).
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if rustix::process::getppid().map(|p| p.as_raw_pid()) != Some(fds.parent_pid) {
        // SAFETY: _exit(2) ends this child; it touches no memory.
        unsafe { libc::_exit(SETUP_FAILED_EXIT) };
    }
}

/// Blocks until the supervisor has placed us in the container and sent a release record (the
/// call's rlimits; a parked child's first record only says it is placed); exits if it gave up
/// (end of file: adoption failed, a parked child was discarded, or the supervisor died).
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn wait_for_release(fds: &ChildFds) -> ReleaseRecord {
    let mut record = [0u8; RECORD_LEN];
    let mut got = 0;
    while got < RECORD_LEN {
        // SAFETY: read(2) into the unread tail of a local buffer, from the release pipe the
        // parent opened for us.
        let n = unsafe {
            libc::read(
                fds.release_read,
                record[got..].as_mut_ptr().cast(),
                RECORD_LEN - got,
            )
        };
        if n > 0 {
            got += n as usize;
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            // SAFETY: _exit(2) ends this child; it touches no memory.
            unsafe { libc::_exit(SETUP_FAILED_EXIT) };
        }
    }
    ReleaseRecord::decode(&record)
}

/// Joins the call's cgroups (writes `0` to each file) before anything else can run.
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn join_cgroups(files: &[libc::c_int], fds: &ChildFds) {
    for &file in files {
        // SAFETY: write(2) of a static byte to a descriptor the supervisor opened before the
        // fork (our copy; close-on-exec, so a program does not keep it).
        if unsafe { libc::write(file, b"0".as_ptr().cast(), 1) } != 1 {
            fail(fds, step::JOIN);
        }
    }
}

/// Puts stdin/stdout/stderr (and, for a program, the result pipe at [`RESULT_FD`]) in place.
///
/// The sources are moved above 10 first, so that no `dup2` clobbers a later source. Only a
/// program gets the result pipe at a fixed number: a closure child is a copy of the caller, whose
/// own descriptor 3 (a file, a socket, a multiprocessing pipe) must stay untouched, so the
/// closure writes to the pipe where it already is.
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn wire_descriptors(is_program: bool, fds: &ChildFds) {
    let exec_result = if is_program { fds.result } else { None };
    let targets = [
        (fds.stdin, 0),
        (fds.stdout, 1),
        (fds.stderr, 2),
        (exec_result, RESULT_FD),
    ];
    let mut moved = [-1; 4];
    for (i, (src, _)) in targets.iter().enumerate() {
        if let Some(src) = *src {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) duplicates a descriptor the parent opened for us.
            moved[i] = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 10) };
            if moved[i] < 0 {
                fail(fds, step::FDS);
            }
        }
    }
    for (i, (_, target)) in targets.iter().enumerate() {
        if moved[i] >= 0 {
            // SAFETY: dup2/close on descriptors of this child: the duplicate made just above and
            // a standard target number. dup2 clears close-on-exec, so the program inherits it.
            unsafe {
                if libc::dup2(moved[i], *target) < 0 {
                    fail(fds, step::FDS);
                }
                libc::close(moved[i]);
            }
        }
    }
}

/// The `RLIMIT_CPU` backstop and the `RLIMIT_AS` memory limit.
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn set_rlimits(cpu: Option<(u64, u64)>, address_space: Option<u64>, fds: &ChildFds) {
    if let Some((soft, hard)) = cpu {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit/getrlimit on our own process with pointers to locals.
        unsafe {
            // Lowering is always allowed; if an existing hard limit is lower, keep it.
            if libc::setrlimit(libc::RLIMIT_CPU, &lim) != 0 {
                let mut old: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(libc::RLIMIT_CPU, &mut old);
                if old.rlim_max > hard && libc::setrlimit(libc::RLIMIT_CPU, &lim) != 0 {
                    fail(fds, step::RLIMIT);
                }
            }
        }
    }
    if let Some(bytes) = address_space {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: setrlimit on our own process with a pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } != 0 {
            fail(fds, step::RLIMIT);
        }
    }
}

/// Changes directory, marks every private descriptor close-on-exec, and execs the program;
/// reports the failed step otherwise.
///
/// # Safety
/// Only in the forked child, under `child_main`'s contract (the descriptors in `fds` are the
/// child's own copies).
unsafe fn exec(image: &ExecImage, fds: &ChildFds) -> ! {
    if let Some(cwd) = &image.cwd {
        // SAFETY: chdir with a C string prepared before the fork.
        if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
            fail(fds, step::CHDIR);
        }
    }
    // Descriptors the caller forgot to mark close-on-exec must not leak into the program (a leaked
    // pipe end could keep a caller's reader waiting forever).
    let first_private = if fds.result.is_some() {
        RESULT_FD + 1
    } else {
        RESULT_FD
    };
    // SAFETY: close_range only sets flags on this child's descriptors; touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first_private as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    // SAFETY: execve with a path and NULL-terminated pointer arrays prepared before the fork;
    // they stay valid (we own `image`) until the exec replaces this image.
    unsafe {
        libc::execve(
            image.path.as_ptr(),
            image.argv_ptrs.as_ptr(),
            image.envp_ptrs.as_ptr(),
        );
    }
    fail(fds, step::EXEC)
}
