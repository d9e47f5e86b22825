//! Helpers for the backends' own tests: real processes held at a pipe until adopted.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::detect::{environment, V1Env, V2Env};
use super::{CallContainer, MainProcess, Sample};

/// Spins in a setsid'd grandchild (ignoring every catchable signal, bounded to 30 s) while
/// the main process exits at once.
pub const ESCAPE_SPINNER: &str = "import os, signal, time\n\
    if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
    for s in range(1, 65):\n            try: signal.signal(s, signal.SIG_IGN)\n            \
    except Exception: pass\n        end = time.time() + 30\n        \
    while time.time() < end: pass\n    os._exit(0)\nos.wait()\n";

/// 1000 forks, each child sleeping 3 s; failed forks are counted, not retried.
pub const FORK_BOMB: &str = "import os, time\nfail = 0\nfor i in range(1000):\n    \
    try:\n        pid = os.fork()\n    except OSError:\n        fail += 1\n        continue\n    \
    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\ntime.sleep(5)\n";

pub fn v1_env() -> Result<V1Env, String> {
    environment().v1.clone()
}

pub fn v2_env() -> Result<V2Env, String> {
    environment().v2().clone()
}

/// A forked child blocked on a pipe before `exec`.
pub struct Blocked {
    pid: i32,
    release: OwnedFd,
}

/// A released child.
pub struct Released {
    pub pid: i32,
}

impl Blocked {
    pub fn pid(&self) -> i32 {
        self.pid
    }
    pub fn release(self) -> Released {
        rustix::io::write(&self.release, b"x").unwrap();
        Released { pid: self.pid }
    }
}

impl Released {
    /// The process for a container's `sample` and `kill_all`: not reaped yet.
    pub fn main(&self) -> MainProcess {
        MainProcess::Unreaped(rustix::process::Pid::from_raw(self.pid).expect("a child's pid"))
    }

    /// Waits for the process and returns its raw wait status.
    pub fn wait(&self) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid pointer to a local.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid, "waitpid failed");
        status
    }
}

fn which(program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/{program}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{program} not found");
}

/// Forks a child that waits for [`Blocked::release`] and then execs `program`. Everything the
/// child needs is prepared before the fork: after it, the child only calls read and execv.
pub fn spawn_blocked(program: &str, args: &[&str]) -> Blocked {
    let path = CString::new(which(program)).unwrap();
    let mut argv: Vec<CString> = vec![CString::new(program).unwrap()];
    argv.extend(args.iter().map(|a| CString::new(*a).unwrap()));
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let rfd = r.as_raw_fd();
    // SAFETY: the test harness is multi-threaded, so the child only makes async-signal-safe
    // calls (read, execv, _exit) on data prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: see above; the buffer is a local, argv_ptrs is null-terminated.
        unsafe {
            let mut b = 0u8;
            while libc::read(rfd, (&mut b as *mut u8).cast(), 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    drop(r);
    Blocked { pid, release: w }
}

/// Samples until the call has used at least `min` CPU (bounded by 10 s).
pub fn wait_for_cpu(c: &mut dyn CallContainer, min: Duration) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.sample(MainProcess::Reaped);
        if s.cpu.is_some_and(|t| t.total() >= min) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn exit_code(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

pub fn term_signal(status: i32) -> Option<i32> {
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

/// A CPU spinner adopted by `c`, sampled twice 100 ms apart (its CPU must have grown: the
/// container re-reads its counters through the files it keeps open), then killed through `c`.
/// Returns the second sample.
pub fn spinner_sampled_twice(c: &mut dyn CallContainer) -> Sample {
    let child = spawn_blocked("python3", &["-c", "while True: pass"]);
    c.adopt(child.pid()).unwrap();
    let child = child.release();
    let a = c.sample(child.main());
    std::thread::sleep(Duration::from_millis(100));
    let b = c.sample(child.main());
    assert_eq!(b.live_processes, Some(1));
    assert!(
        b.cpu.unwrap().total() > a.cpu.unwrap().total(),
        "{a:?} {b:?}"
    );
    assert_eq!(c.kill_all(child.main()).unwrap(), 1);
    assert_eq!(term_signal(child.wait()), Some(libc::SIGKILL));
    b
}
