//! Containers ahead, cleanup behind: the cgroup leaves of the *next* call are made (directories
//! created, control files opened) in the supervisor's idle time while the current call's child
//! runs, and a call's emptied leaves are removed in a later call's idle time, after the caller has
//! its result. Every call still gets fresh leaves of its own: a prepared leaf has never held a
//! process, and each is taken by exactly one call.
//!
//! No thread is added to the caller (a forked interpreter must stay single-threaded): the work
//! happens in [`Pool::work`], which the supervisor calls after it released the child.
//!
//! # With a guard: the `rmdir`s in another process
//!
//! When the caller has a guard (`crate::guard`), a call's emptied leaves are handed to it
//! (`Remove`, one-way) instead of waiting for a later idle time: the guard removes them on its
//! own CPU, retrying while the last process's teardown keeps a leaf busy. The `mkdir`s stay the
//! caller's, in its idle time: having the guard make the leaves too was measured slower here
//! (its `mkdir`s take the kernel's cgroup lock while the call's child joins its leaves), see
//! docs/architecture.md. At a normal exit the process waits once for the guard's removals.
//!
//! # Ownership
//!
//! A pool belongs to the process that filled it. A forked copy of the caller finds the pool of its
//! parent and forgets it without removing anything (the leaves are the parent's); its own calls
//! start a pool of their own. Threads take leaves under a lock; a lock that cannot be had at once
//! (held by another thread, or by a thread of the parent at a fork) means no pool for this call:
//! the call makes its leaves on the spot and removes them at its end, as without a pool.
//!
//! # At exit
//!
//! - Normal exit (`exit`, the end of `main`, the interpreter's exit): a libc `atexit` handler
//!   removes the owner's prepared and pending leaves; a forked copy's handler touches nothing.
//! - Death (a signal, `_exit`) with a guard: every prepared or pending leaf stays registered with
//!   the guard until it is removed, so the guard empties and removes it.
//! - Death without a guard: the leaves stay until the next detection of the cgroup environment (a
//!   new process using the engine) sweeps the leaves of dead owners (`cgroupfs.rs`). They hold
//!   no process: a leaf is pending only after its call's kill and empty check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::cgroupfs::{remove_tree, try_remove_tree};
use super::Remains;

/// A call's registration with the guard (a `guard::Ticket`; `contain` does not depend on
/// `guard`).
pub(crate) trait Guarded: Send {
    /// Hands the call's emptied leaves to the guard, which removes them and forgets the call;
    /// false when the guard cannot be told (the caller removes them itself then).
    fn hand_over(self: Box<Self>) -> bool;
}

/// A call's registration with the guard, kept as long as its leaves exist: dropping it tells the
/// guard they are gone; [`Guarded::hand_over`] has the guard remove them.
pub(crate) type Registration = Box<dyn Guarded>;

/// Registers leaves with the guard; `None` when the process has no guard.
pub(crate) type Register<'a> = &'a dyn Fn(Remains) -> Option<Registration>;

/// How many prepared leaves a pool keeps: one per call in flight is taken at the start, so one
/// suffices for a sequential caller; concurrent threads make their own when the pool is empty.
const READY: usize = 1;

/// How many idle-time removals may fail (a leaf busy a moment longer) before the next call
/// removes the pending leaves with waiting.
const BEHIND_MAX: usize = 16;

/// Leaves made ahead (`T`: a backend's directories and open files) and leaves left behind.
pub(super) struct Pool<T> {
    state: Mutex<State<T>>,
    /// The process whose thread took the lock last: a lock held under another pid was held by
    /// a thread of the parent at a fork, and is never released in this process.
    holder: AtomicI32,
    /// Whether this pool's exit handler is registered.
    hooked: AtomicBool,
}

struct State<T> {
    /// The process that filled the pool (0: nobody yet).
    owner: i32,
    /// The process is exiting: nothing is prepared or deferred any more.
    closed: bool,
    ready: Vec<Ready<T>>,
    behind: Vec<Behind>,
}

/// Leaves made ahead of a call, with their registration.
pub(super) struct Ready<T> {
    pub leaf: T,
    pub registration: Option<Registration>,
}

/// Emptied leaves waiting for their `rmdir`, with the registration that covers them.
pub(super) struct Behind {
    pub dirs: Vec<PathBuf>,
    pub registration: Option<Registration>,
}

/// The process that makes no leaves ahead (it makes one call, then ends: see
/// [`one_call_per_process`]).
static ONE_CALL: AtomicI32 = AtomicI32::new(0);

/// Tells the engine that this process makes one call and ends (the `pynisher` command, the
/// engine's zygote's per-call supervisor): a cgroup leaf made ahead for a next call would only be
/// removed again, so none is made. What the call leaves behind is still removed before the
/// process exits (its `atexit` handler; a process that ends with `_exit` calls
/// `leave_nothing_behind` first). Calls keep working as before if it makes more.
///
/// ```
/// pynisher::one_call_per_process();
/// let outcome = pynisher::Limits::new().run_command(&pynisher::Command::new("true"))?;
/// assert_eq!(outcome.status, pynisher::Status::Completed);
/// # Ok::<(), pynisher::Error>(())
/// ```
pub fn one_call_per_process() {
    ONE_CALL.store(my_pid(), Ordering::Relaxed);
}

fn my_pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

impl<T> Pool<T> {
    pub(super) const fn new() -> Self {
        Pool {
            state: Mutex::new(State {
                owner: 0,
                closed: false,
                ready: Vec::new(),
                behind: Vec::new(),
            }),
            holder: AtomicI32::new(0),
            hooked: AtomicBool::new(false),
        }
    }
}

impl<T: Prepared> Pool<T> {
    /// The pool's state for this process, or `None` when its lock was held by a thread of the
    /// parent at a fork (see the module doc). The state of another process (our parent, before
    /// a fork) is forgotten.
    fn lock(&self) -> Option<MutexGuard<'_, State<T>>> {
        let me = my_pid();
        let mut state = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Held by another thread of ours: it holds it for a few vector operations only.
            Err(TryLockError::WouldBlock) if self.holder.load(Ordering::Acquire) == me => {
                self.state.lock().unwrap_or_else(|e| e.into_inner())
            }
            Err(TryLockError::WouldBlock) => return None,
        };
        self.holder.store(me, Ordering::Release);
        if state.owner != me {
            // The parent's leaves and registrations: not ours to remove or end. Their open files
            // are our copies, closed here.
            for ready in state.ready.drain(..) {
                std::mem::forget(ready.registration);
            }
            for behind in state.behind.drain(..) {
                std::mem::forget(behind.registration);
            }
            state.owner = me;
            state.closed = false;
        }
        Some(state)
    }

    /// A prepared leaf for a call, if one is ready and `fits` it.
    pub(super) fn take(&self, fits: impl Fn(&T) -> bool) -> Option<Ready<T>> {
        let mut state = self.lock()?;
        let i = state.ready.iter().position(|r| fits(&r.leaf))?;
        Some(state.ready.swap_remove(i))
    }

    /// Hands `dirs` (emptied) to the guard that `registration` registered them with, or, with
    /// no guard, leaves them to be removed in a later idle time, or now when the pool cannot
    /// take them (contended, or the process is exiting).
    pub(super) fn defer(&'static self, dirs: Vec<PathBuf>, registration: Option<Registration>) {
        if registration.is_some_and(|r| r.hand_over()) {
            // The exit handler waits for the guard's removals.
            self.hook_exit();
            return;
        }
        let behind = Behind {
            dirs,
            registration: None,
        };
        match self.lock() {
            Some(mut state) if !state.closed => {
                state.behind.push(behind);
                drop(state);
                self.hook_exit();
            }
            _ => remove(behind),
        }
    }

    /// The idle-time work of a call: removes the leaves left behind, and prepares one for the
    /// next call with `make` when none is ready.
    pub(super) fn work(&'static self, make: impl FnOnce() -> Option<Ready<T>>) {
        let Some(mut state) = self.lock() else {
            return;
        };
        if state.closed {
            return;
        }
        let behind = std::mem::take(&mut state.behind);
        let wanted = state.ready.len() < READY && ONE_CALL.load(Ordering::Relaxed) != state.owner;
        drop(state);
        let mut busy = Vec::new();
        for b in behind {
            if let Some(b) = try_remove(b) {
                busy.push(b);
            }
        }
        if busy.len() > BEHIND_MAX {
            // Something keeps leaves busy longer than a call: wait for them now, bounded.
            for b in busy.drain(..) {
                remove(b);
            }
        }
        let made = if wanted { make() } else { None };
        let Some(mut state) = self.lock() else {
            // The lock is unusable (a thread that took it first, then forked?): no pool.
            for b in busy {
                remove(b);
            }
            if let Some(ready) = made {
                ready.discard();
            }
            return;
        };
        state.behind.extend(busy);
        if let Some(ready) = made {
            if state.closed {
                drop(state);
                ready.discard();
                return;
            }
            state.ready.push(ready);
        }
        drop(state);
        self.hook_exit();
    }

    fn hook_exit(&'static self) {
        if !self.hooked.swap(true, Ordering::AcqRel) {
            exit_hook::add(self);
        }
    }
}

/// A backend's prepared leaf: the directories it made (removed when it is never used).
pub(super) trait Prepared: Send + 'static {
    fn dirs(&self) -> Vec<PathBuf>;
}

impl<T: Prepared> Ready<T> {
    /// Removes leaves that no call will use: the guard does when it has them, else the caller
    /// now.
    fn discard(self) {
        if self.registration.is_some_and(|r| r.hand_over()) {
            return;
        }
        remove(Behind {
            dirs: self.leaf.dirs(),
            registration: None,
        });
    }
}

/// What the exit handler does with a pool.
trait Drain: Sync {
    /// Removes this process's prepared and pending leaves and closes the pool.
    fn drain(&self);
    /// The same at a normal exit (a one-call process leaves its guarded leaves to its guard).
    fn drain_at_exit(&self);
}

impl<T: Prepared> Pool<T> {
    /// Removes every prepared and pending leaf of this process now, and takes no more (exit).
    pub(super) fn drain_now(&self) {
        let Some(mut state) = self.lock() else {
            return;
        };
        state.closed = true;
        let ready = std::mem::take(&mut state.ready);
        let behind = std::mem::take(&mut state.behind);
        drop(state);
        for b in behind {
            remove(b);
        }
        for r in ready {
            r.discard();
        }
    }
}

impl<T: Prepared> Pool<T> {
    /// At a normal exit: like [`Pool::drain_now`], except in the process that makes one call
    /// ([`one_call_per_process`]: the `pynisher` command), where the emptied leaves that its guard
    /// covers are left to the guard, which removes them when it sees the process gone: their
    /// `rmdir`s (about 0.15 ms for three v1 leaves) are then off the command's exit path. A
    /// process that starts meanwhile may find them (their owner is dead) and sweep them too:
    /// whoever comes second finds them gone, which both ignore.
    fn drain_at_exit(&self) {
        let Some(mut state) = self.lock() else {
            return;
        };
        if ONE_CALL.load(Ordering::Relaxed) != state.owner {
            drop(state);
            return self.drain_now();
        }
        state.closed = true;
        let ready = std::mem::take(&mut state.ready);
        let behind = std::mem::take(&mut state.behind);
        drop(state);
        for b in behind {
            match b.registration {
                // Still registered: the guard ends the call (empties, removes) on our exit.
                Some(registration) => std::mem::forget(registration),
                None => remove(b),
            }
        }
        for r in ready {
            r.discard();
        }
    }
}

impl<T: Prepared> Drain for Pool<T> {
    fn drain(&self) {
        self.drain_now();
    }

    fn drain_at_exit(&self) {
        Pool::drain_at_exit(self);
    }
}

/// How this process's exit waits for its guard to remove the leaves handed to it (set by the
/// guard's client when it starts; `contain` does not depend on `guard`).
static WAIT_FOR_GUARD: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how a normal exit waits for the guard's removals: after the pools are drained, the exit
/// handler calls `wait` (a round trip to the guard, once per process), so that no leaf outlives
/// a process that exits normally. A one-call process (the `pynisher` command) does not wait:
/// its exit path stays short, and its guard removes the leaves just after.
pub(crate) fn at_exit_wait_for_guard(wait: fn()) {
    let _ = WAIT_FOR_GUARD.set(wait);
}

/// Removes the leaves (waiting briefly for busy ones), then ends their registration.
fn remove(behind: Behind) {
    let mut all_gone = true;
    for dir in &behind.dirs {
        all_gone &= remove_tree(dir).is_ok();
    }
    if all_gone {
        drop(behind.registration);
    } else {
        // A leaf that cannot be removed stays registered: should the caller die, the guard
        // empties and removes it (and the sweep does without a guard).
        std::mem::forget(behind.registration);
    }
}

/// Tries each leaf once; what is still busy comes back.
fn try_remove(mut behind: Behind) -> Option<Behind> {
    behind.dirs.retain(|dir| try_remove_tree(dir).is_err());
    if behind.dirs.is_empty() {
        drop(behind.registration);
        None
    } else {
        Some(behind)
    }
}

/// The process's one libc `atexit` handler, draining every pool that was used.
mod exit_hook {
    use super::Drain;
    use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

    /// The pools to drain (a backend has one; two backends exist).
    static POOLS: [AtomicPtr<&'static dyn Drain>; 4] = [
        AtomicPtr::new(std::ptr::null_mut()),
        AtomicPtr::new(std::ptr::null_mut()),
        AtomicPtr::new(std::ptr::null_mut()),
        AtomicPtr::new(std::ptr::null_mut()),
    ];
    /// Whether `atexit` was called (in this process or the parent it was forked from: a forked
    /// copy inherits the registration).
    static REGISTERED: AtomicBool = AtomicBool::new(false);

    pub(super) fn add(pool: &'static dyn Drain) {
        let boxed: &'static mut &'static dyn Drain = Box::leak(Box::new(pool));
        let ptr: *mut &'static dyn Drain = boxed;
        for slot in &POOLS {
            if slot
                .compare_exchange(
                    std::ptr::null_mut(),
                    ptr,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                break;
            }
        }
        if !REGISTERED.swap(true, Ordering::AcqRel) {
            // SAFETY: `at_exit` is a plain `extern "C" fn()` that stays valid for the life of the
            // process (this library is never unloaded while its pools hold leaves: a Python
            // extension module is not unloaded).
            unsafe { libc::atexit(at_exit) };
        }
    }

    extern "C" fn at_exit() {
        for slot in &POOLS {
            let ptr = slot.load(Ordering::Acquire);
            // SAFETY: a non-null slot holds a leaked `&'static dyn Drain`, never freed.
            if let Some(pool) = unsafe { ptr.as_ref() } {
                // A panic must not unwind out of an `extern "C"` handler.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.drain_at_exit()));
            }
        }
        if super::ONE_CALL.load(Ordering::Relaxed) != super::my_pid() {
            if let Some(wait) = super::WAIT_FOR_GUARD.get() {
                let _ = std::panic::catch_unwind(wait);
            }
        }
    }

    /// Drains every pool of this process now.
    pub(in crate::contain) fn drain_all() {
        for slot in &POOLS {
            let ptr = slot.load(Ordering::Acquire);
            // SAFETY: a non-null slot holds a leaked `&'static dyn Drain`, never freed.
            if let Some(pool) = unsafe { ptr.as_ref() } {
                // Each pool checks that this process owns its leaves before it removes any.
                // A panic must not unwind out of an `extern "C"` handler.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.drain()));
            }
        }
    }
}

/// Removes this process's prepared and pending leaves now, for a process that ends with `_exit`
/// (no `atexit` handler runs then): the engine's zygote's per-call supervisor.
pub(crate) fn leave_nothing_behind() {
    exit_hook::drain_all();
}
