//! The caller's side: which program is the guard, starting it once per process, and the one-way
//! messages of each call ([`Ticket`]).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

use super::protocol::{group_template, Message, FLUSHED, HELLO_LEN};
use super::serve::GUARD_ENV;
use crate::contain::Remains;

/// How long a message may wait for room in the guard's socket before the call goes unguarded.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The program the engine runs as this process's guard: it must call
/// [`super::serve_if_requested`] before anything else.
///
/// ```
/// let program = pynisher::guard::GuardProgram::new("/usr/bin/python3")
///     .arg("-I")
///     .arg("-c")
///     .arg("import guard_entry");
/// assert_eq!(program.program(), std::path::Path::new("/usr/bin/python3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardProgram {
    program: PathBuf,
    args: Vec<OsString>,
    /// Fork this process instead of running `program` when it has a single thread.
    fork_when_single_threaded: bool,
}

impl GuardProgram {
    /// A program to run as the guard.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        GuardProgram {
            program: program.into(),
            args: Vec::new(),
            fork_when_single_threaded: false,
        }
    }

    /// This program itself (`/proc/self/exe`), for a `main` that calls
    /// [`super::serve_if_requested`] first.
    pub fn current_exe() -> Self {
        Self::new("/proc/self/exe")
    }

    /// This program itself, forked instead of run again when the process has a single thread
    /// as the guard starts: no `exec`, no second start-up of the program (about a millisecond of
    /// CPU on a small machine, which a one-call program such as the `pynisher` command pays on
    /// every run). With more threads it runs `/proc/self/exe` like [`GuardProgram::current_exe`],
    /// so `main` calls [`super::serve_if_requested`] first all the same. The guard shares the
    /// process's memory copy-on-write for as long as it lives, so each page the process writes
    /// afterwards is copied once: meant for a small program, not for a large caller.
    ///
    /// ```no_run
    /// pynisher::guard::serve_if_requested();
    /// pynisher::guard::install_deferred(pynisher::guard::GuardProgram::current_exe_forked());
    /// ```
    pub fn current_exe_forked() -> Self {
        GuardProgram {
            fork_when_single_threaded: true,
            ..Self::current_exe()
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The program's path.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }
}

/// The guard program of this process, once installed.
static PROGRAM: Mutex<Option<GuardProgram>> = Mutex::new(None);
/// The running guard of this process (leaked: one per process, and a forked child's stays
/// behind as garbage it never uses).
static CLIENT: AtomicPtr<Client> = AtomicPtr::new(std::ptr::null_mut());
/// Whether calls are registered (checked without a lock on every call).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Serializes starting a guard.
static STARTING: Mutex<()> = Mutex::new(());

/// Makes every call of this process from now on guarded by `program`, and starts the guard now.
/// Without a guard, a call's first process dies with the caller's *thread* that forked it
/// (`PR_SET_PDEATHSIG`) and what it started may outlive a killed caller.
///
/// ```no_run
/// pynisher::guard::serve_if_requested();
/// pynisher::guard::install(pynisher::guard::GuardProgram::current_exe())?;
/// assert!(pynisher::guard::installed());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn install(program: GuardProgram) -> std::io::Result<()> {
    install_deferred(program);
    let client = client().ok_or_else(|| std::io::Error::other("the guard cannot be started"))?;
    client.launch();
    if client.broken.load(Ordering::Relaxed) {
        return Err(std::io::Error::other("the guard program could not be run"));
    }
    Ok(())
}

/// Like [`install`], but the guard program is started only after the first call's child is
/// released, so that it never delays a call. Until then (the first call of the process), the
/// call's first process also dies with the thread that forked it.
pub fn install_deferred(program: GuardProgram) {
    if program.fork_when_single_threaded {
        // The guard will be a copy of this process: it can take over the stale-leaf sweep.
        crate::contain::sweep_in_forked_guard();
    }
    *PROGRAM.lock().unwrap_or_else(|e| e.into_inner()) = Some(program);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Calls of this process from now on are not registered with the guard (a running guard stays,
/// idle); [`install`] or [`install_deferred`] turns it on again. The engine's zygote does this: a
/// copy of the caller whose calls' supervisors must not each start a guard of their own.
///
/// ```
/// pynisher::guard::uninstall();
/// assert!(!pynisher::guard::installed());
/// ```
pub fn uninstall() {
    ENABLED.store(false, Ordering::Relaxed);
    *PROGRAM.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Whether a guard program is installed in this process.
pub fn installed() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The pid of this process's guard, starting it if needed; `None` when no guard program is
/// installed or it could not be started. For tests and diagnostics.
pub fn guard_pid() -> Option<i32> {
    let client = client()?;
    client.launch();
    client.reap_intermediate();
    let known = client.guard_pid.load(Ordering::Relaxed);
    if known > 0 {
        return Some(known);
    }
    // The guard's first message is its pid; wait for it briefly (only here, never in a call).
    let mut buf = [0u8; HELLO_LEN];
    let mut fds = [rustix::event::PollFd::new(
        &client.socket,
        rustix::event::PollFlags::IN,
    )];
    let two_seconds = rustix::time::Timespec {
        tv_sec: 2,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&two_seconds)).ok()?;
    let (n, _) =
        rustix::net::recv(&client.socket, &mut buf, rustix::net::RecvFlags::DONTWAIT).ok()?;
    if n != HELLO_LEN {
        return None;
    }
    let pid = i32::from_ne_bytes(buf);
    client.guard_pid.store(pid, Ordering::Relaxed);
    Some(pid)
}

/// How long a process's exit waits for its guard to finish removing its leaves.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// At this process's normal exit: waits (bounded) until its guard has removed every leaf handed
/// to it, so that none outlives the process. Nothing when the process has no running guard of
/// its own (a forked copy's parent's guard is not asked, nor is one started for this).
fn flush() {
    // SAFETY: a non-null CLIENT points to a leaked, never freed Client.
    let Some(client) = (unsafe { CLIENT.load(Ordering::Acquire).as_ref() }) else {
        return;
    };
    if client.owner != my_pid() || client.broken.load(Ordering::Relaxed) || !client.running() {
        return;
    }
    if !client.send(&Message::Flush) {
        return;
    }
    let deadline = std::time::Instant::now() + FLUSH_TIMEOUT;
    let mut buf = [0u8; 16];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let mut fds = [rustix::event::PollFd::new(
            &client.socket,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        match rustix::net::recv(&client.socket, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) if n == HELLO_LEN => {
                let pid = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
                client.guard_pid.store(pid, Ordering::Relaxed);
            }
            Ok((n, _)) if &buf[..n] == FLUSHED => return,
            Ok((0, _)) => return,
            Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// One process's connection to its guard.
struct Client {
    owner: i32,
    socket: OwnedFd,
    next_id: AtomicU64,
    guard_pid: AtomicI32,
    broken: AtomicBool,
    /// The program and its socket end, until the guard is started.
    pending: Mutex<Option<(GuardProgram, OwnedFd)>>,
    /// The process that forks the guard and exits, until reaped.
    intermediate: Mutex<Option<Intermediate>>,
}

/// The process that forks the guard and exits at once.
enum Intermediate {
    /// The guard program, run.
    Spawned(std::process::Child),
    /// A fork of this process ([`GuardProgram::current_exe_forked`]).
    Forked(i32),
}

fn my_pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// This process's guard connection, started if needed.
fn client() -> Option<&'static Client> {
    let me = my_pid();
    let usable = |c: *mut Client| {
        // SAFETY: a non-null CLIENT points to a leaked, never freed Client.
        let c = unsafe { c.as_ref() }?;
        (c.owner == me && !c.broken.load(Ordering::Relaxed)).then_some(c)
    };
    if let Some(c) = usable(CLIENT.load(Ordering::Acquire)) {
        return Some(c);
    }
    let program = PROGRAM.lock().ok()?.clone()?;
    // A lock held by another thread at a fork stays held in the child: give up (the call then
    // runs unguarded) rather than hang.
    let _starting = (0..1000).find_map(|_| match STARTING.try_lock() {
        Ok(g) => Some(g),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(1));
            None
        }
    })?;
    if let Some(c) = usable(CLIENT.load(Ordering::Acquire)) {
        return Some(c);
    }
    let client = start(&program, me).ok()?;
    crate::contain::at_exit_wait_for_guard(flush);
    let leaked: &'static Client = Box::leak(Box::new(client));
    CLIENT.store(leaked as *const Client as *mut Client, Ordering::Release);
    Some(leaked)
}

/// Makes the socket for a new guard; the guard program itself is started by
/// [`Ticket::start_guard`], after the first call's child is released, so that starting it never
/// delays a call (messages wait in the socket until the guard reads them).
fn start(program: &GuardProgram, owner: i32) -> std::io::Result<Client> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &ours,
        rustix::net::sockopt::Timeout::Send,
        Some(SEND_TIMEOUT),
    )?;
    Ok(Client {
        owner,
        socket: ours,
        next_id: AtomicU64::new(1),
        guard_pid: AtomicI32::new(0),
        broken: false.into(),
        pending: Mutex::new(Some((program.clone(), theirs))),
        intermediate: Mutex::new(None),
    })
}

impl Client {
    /// Whether the guard program has been started (then the guard reads what is sent).
    fn running(&self) -> bool {
        self.pending
            .try_lock()
            .map(|p| p.is_none())
            .unwrap_or(false)
    }

    /// Starts the guard program if it is not yet: it gets its socket end as stdin, forks the
    /// guard and exits at once, so the guard is not our child.
    fn launch(&self) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some((program, theirs)) = pending.take() else {
            return;
        };
        if program.fork_when_single_threaded && crate::sys::thread_count() == 1 {
            // Out of processes or memory now: the program may still run below.
            if let Ok(pid) = fork_guard(&theirs) {
                *self.intermediate.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Intermediate::Forked(pid));
                return;
            }
        }
        let spawned = Command::new(&program.program)
            .args(&program.args)
            .env(GUARD_ENV, "1")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                *self.intermediate.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Intermediate::Spawned(child))
            }
            Err(_) => {
                // A program that cannot run will not run next time either: calls go unguarded.
                self.broken.store(true, Ordering::Relaxed);
                uninstall();
            }
        }
    }

    /// Reaps the intermediate process (it exits right after forking the guard). A caller that
    /// reaps all its children (`waitpid(-1)`) may have taken it first: that is fine.
    fn reap_intermediate(&self) {
        if let Ok(mut slot) = self.intermediate.try_lock() {
            match slot.take() {
                Some(Intermediate::Spawned(mut child)) => {
                    let _ = child.wait();
                }
                Some(Intermediate::Forked(pid)) => {
                    let _ = crate::sys::wait4_blocking(pid);
                }
                None => {}
            }
        }
    }

    fn send(&self, message: &Message) -> bool {
        if self.owner != my_pid() {
            // A forked copy of the caller: its calls are not this guard's business.
            return false;
        }
        // Encoded on the stack: a growing Vec reallocated itself across several heap pages per
        // message, and a forked caller copies every page it writes (~6 page faults per call).
        let mut stack = [0u8; 1024];
        let heap;
        let bytes: &[u8] = match postcard::to_slice(message, &mut stack) {
            Ok(bytes) => bytes,
            Err(_) => {
                heap = message.encode();
                &heap
            }
        };
        loop {
            match rustix::net::send(self.socket.as_fd(), bytes, SendFlags::NOSIGNAL) {
                Ok(_) => return true,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    // The guard is gone (or stuck): the next call starts a new one.
                    self.broken.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }
}

/// Forks this (single-threaded) process as the guard's intermediate: its fd 0 becomes the
/// guard's socket end, 1 and 2 `/dev/null`, every other descriptor is closed (a guard holding a
/// copy of a call's pipe would keep its reader waiting), its signal mask is emptied as `exec`'s
/// `Command` would; then it becomes the guard like a program run for it. Returns its pid.
fn fork_guard(theirs: &OwnedFd) -> std::io::Result<i32> {
    use rustix::fs::{Mode, OFlags};
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let socket = theirs.as_raw_fd();
    // SAFETY: fork(2) in a process that has a single thread (checked by the caller), so no lock
    // can be held by a thread that does not exist in the child; the child rearranges its own
    // descriptors and mask with async-signal-safe calls, then continues as the guard.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the forked child: fcntl/dup2/close_range/sigprocmask act on this process's
        // descriptors and mask only; sources are first moved above 10 so no dup2 clobbers one.
        unsafe {
            let socket = libc::fcntl(socket, libc::F_DUPFD, 10);
            let null = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 10);
            if socket < 0
                || null < 0
                || libc::dup2(socket, 0) < 0
                || libc::dup2(null, 1) < 0
                || libc::dup2(null, 2) < 0
            {
                libc::_exit(1);
            }
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                0,
            );
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        super::serve::become_guard()
    }
    Ok(pid)
}

/// One call's registration with the guard; dropping it tells the guard the call is over.
pub(crate) struct Ticket {
    client: &'static Client,
    id: u64,
}

/// Registers a call that is about to start (before the fork): `None` when this process has no
/// guard (none installed, or it cannot be reached); the call then relies on
/// `PR_SET_PDEATHSIG` alone.
pub(crate) fn register(remains: Remains) -> Option<Ticket> {
    send_registration(|id| Message::Call { id, remains })
}

fn send_registration(message: impl FnOnce(u64) -> Message) -> Option<Ticket> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let client = client()?;
    let id = client.next_id.fetch_add(1, Ordering::Relaxed);
    client.send(&message(id)).then_some(Ticket { client, id })
}

impl Ticket {
    /// Whether the guard program runs already. Until it does (the first call of a process),
    /// the child also arms `PR_SET_PDEATHSIG`, which covers the moments before the guard starts.
    pub(crate) fn guard_running(&self) -> bool {
        self.client.running()
    }

    /// Starts the guard program if it is not running yet (after the child's release).
    pub(crate) fn start_guard(&self) {
        self.client.launch();
    }

    /// The guard's socket and the group message the call's child sends it (process-group
    /// backend): the child knows its group first, and sends it before it runs anything.
    pub(crate) fn group_message(&self) -> (RawFd, [u8; super::GROUP_MESSAGE_LEN]) {
        (self.client.socket.as_raw_fd(), group_template(self.id))
    }
}

impl crate::contain::Guarded for Ticket {
    fn hand_over(self: Box<Self>) -> bool {
        let sent = self.client.send(&Message::Remove { id: self.id });
        self.client.reap_intermediate();
        // The guard now owns the call's end (or cannot be told anything): no `Over` after it.
        std::mem::forget(*self);
        sent
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.client.send(&Message::Over { id: self.id });
        self.client.reap_intermediate();
    }
}
