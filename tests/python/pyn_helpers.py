"""Target functions for the API tests.

They live in an importable module (conftest.py puts this directory on PYTHONPATH), so that
"spawn" and "forkserver" children, Pool workers and Dask workers can unpickle them by reference,
the way users' own functions travel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pynisher

MIB = 2**20


def proc_state(pid: int) -> "str | None":
    """State letter from /proc/PID/stat, or None when the process no longer exists."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def on_its_way_out(pid: int) -> bool:
    """Whether `pid` was killed or is exiting (SIGKILL pending, or PF_EXITING in its flags): a
    forkserver call's child, whose outcome comes at its result while it is killed, may still be
    tearing down when the call has returned. False when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            flags = int(fh.read().rsplit(")", 1)[1].split()[6])
        with open(f"/proc/{pid}/status") as fh:
            pending = [int(line.split()[1], 16) for line in fh if line.startswith(("SigPnd:", "ShdPnd:"))]
    except (OSError, IndexError, ValueError):
        return False
    pf_exiting, sigkill = 0x4, 1 << (9 - 1)
    return bool(flags & pf_exiting) or any(mask & sigkill for mask in pending)


def running(pid: int) -> bool:
    """A live process: not gone, not a zombie waiting for PID 1 to reap it, not on its way out."""
    return proc_state(pid) not in (None, "Z", "X") and not on_its_way_out(pid)


def running_children(pid: int) -> set:
    """The running children of `pid`, from every one of its threads."""
    kids: set = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids |= {int(p) for p in fh.read().split()}
        except OSError:
            pass
    return {k for k in kids if running(k)}


def parked_child(server: int, ran: "set[int]", timeout: float = 10.0) -> int:
    """The forkserver's parked child once no call is in flight: its one running child that has
    not run a call. `ran` holds the pids of the calls made so far: a call's child, its result
    sent, may still be running its way to exit (not yet flagged exiting) before the next child
    is parked, and it would pass for the parked one. The guard is not the server's child (it is
    started detached), but the process that starts it is, for a moment: so the one candidate
    must still be the one 50 ms later (a parked child waits for its call; the next child is
    parked after a lone call's outcome, so such a moment can be the only one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = running_children(server) - ran
        if len(kids) == 1:
            time.sleep(0.05)
            if running_children(server) - ran == kids:
                return kids.pop()
        time.sleep(0.01)
    raise AssertionError(
        f"the server {server} has no single parked child: {running_children(server)} (ran {ran})"
    )


def pid_and_result(f: Any, *args: Any) -> "tuple[int, Any]":
    """Runs `f(*args)` and returns the pid it ran in with its result."""
    return os.getpid(), f(*args)


def assert_gone(pid: int) -> None:
    """Fail unless `pid` is dead. A zombie ("Z") is dead: it only waits for its new parent to
    reap it (this machine's PID 1 reaps orphans ~2 s late)."""
    state = proc_state(pid)
    assert state in (None, "Z"), f"process {pid} still alive, state {state}"


def add(a: int, b: int = 0) -> int:
    return a + b


def return_none() -> None:
    return None


def sleep_and_return(t: float) -> float:
    time.sleep(t)
    return t


def busy_forever() -> None:
    while True:
        pass


def busy_for(seconds: float) -> float:
    """Burn CPU for `seconds` of CPU time, then return it."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return seconds


def hog(mib: int) -> int:
    """Allocate *and touch* `mib` MiB (multiplying a bytearray writes every byte)."""
    data = bytearray(b"\x01") * (mib * MIB)
    return len(data)


def raise_value_error(msg: str = "bad config") -> None:
    raise ValueError(msg)


def raise_called_process_error() -> None:
    raise subprocess.CalledProcessError(1, ["cmd", "arg"], output="out", stderr="err")


class TwoArgError(Exception):
    """Constructor needs two arguments: `type(err)(traceback_text)` cannot rebuild it."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def raise_two_arg_error() -> None:
    raise TwoArgError(7, "detail")


def raise_memory_error() -> None:
    raise MemoryError("raised by the function itself")


def raise_file_not_found() -> None:
    open("/nonexistent-pynisher-test/definitely/not/here")


def raise_given(exc: BaseException) -> None:
    raise exc


def raise_timeout_error() -> None:
    raise TimeoutError("a user TimeoutError")


def return_lock() -> Any:
    return threading.Lock()


def exit_with(code: int) -> None:
    os._exit(code)


def sys_exit(code: int) -> None:
    sys.exit(code)


def kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(10)


def has_parent_marker() -> bool:
    """True in a forked child of a parent that set the marker, False in a fresh interpreter."""
    import json

    return hasattr(json, "_pynisher_test_marker")


def spawn_sleep_and_return() -> int:
    """Start `sleep 60` and return right away: the sleep must not outlive the call."""
    proc = subprocess.Popen(["sleep", "60"])
    return proc.pid


def child_pid_and_sleeper(then: str = "return") -> "tuple[int, int]":
    """Start `sleep 60`; return (this process's pid, the sleeper's pid), or hang / raise."""
    proc = subprocess.Popen(["sleep", "60"])
    if then == "hang":
        time.sleep(60)
    if then == "raise":
        raise ValueError((os.getpid(), proc.pid))
    return os.getpid(), proc.pid


def spawn_sleep_then(pidfile: str, then: str) -> None:
    """Start `sleep 60`, record its pid, then hang / raise / burn CPU."""
    proc = subprocess.Popen(["sleep", "60"])
    with open(pidfile, "w") as fh:
        fh.write(f"{os.getpid()} {proc.pid}\n")
    if then == "hang":
        time.sleep(60)
    elif then == "raise":
        raise ValueError("after spawning")
    elif then == "busy":
        busy_forever()


def clean_up_on_timeout(path: str, kind: str) -> str:
    """Run into a limit, catch pynisher's soft-signal exception and clean up in the grace period."""
    import pynisher

    try:
        if kind == "wall":
            time.sleep(30)
        else:
            busy_forever()
    except pynisher.TimeoutException as e:
        with open(path, "w") as fh:
            fh.write(type(e).__name__)
        return "cleaned up"
    return "not reached"


def ignore_soft_signals_and_sleep(seconds: float) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(seconds)


def print_everywhere(x: int) -> int:
    """Output through Python, through the raw fds and from a child process."""
    print("py-stdout", flush=True)
    os.write(1, b"fd-stdout\n")
    subprocess.run(["sh", "-c", "echo from-child-process"], check=True)
    sys.stderr.write("py-stderr\n")
    sys.stderr.flush()
    os.write(2, b"fd-stderr\n")
    return x


def fork_sleepers(n: int) -> int:
    """Start `n` sleep processes; an OSError (EAGAIN) propagates when a process cap refuses one."""
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(n)]
    for p in procs:
        p.kill()
        p.wait()
    return n


def is_daemon() -> bool:
    import multiprocessing

    return multiprocessing.current_process().daemon


@pynisher.restricted(context="spawn", wall_time=20)
def decorated_spawn(x: int) -> int:
    """Module-level `@restricted(context="spawn")`: the module attribute is the wrapper, so the
    function cannot be pickled by reference (upstream refused spawn for this reason)."""
    return 2 * x


# ---- tasks run inside Pool / Dask workers: each returns the outcome as a string ---------------


def limited_task(kind: str, context: "str | None" = None) -> str:
    """Run one limited call of the given kind with the 1.x API and name its outcome."""
    import pynisher

    calls = {
        "ok": lambda: pynisher.limit(add, wall_time=5, context=context)(1, 2),
        "wall": lambda: pynisher.limit(sleep_and_return, wall_time=0.5, context=context)(30),
        "memory": lambda: pynisher.limit(hog, memory=(100, "MB"), context=context)(500),
        "cpu": lambda: pynisher.limit(busy_forever, cpu_time=0.5, context=context)(),
        "raise": lambda: pynisher.limit(raise_value_error, context=context)("x"),
    }
    try:
        value = calls[kind]()
    except Exception as e:  # report the type: the test compares it with the expected one
        return type(e).__name__
    return f"value:{value}"


def limited_task_v0(kind: str) -> str:
    """Same with the 0.x API: name the exit_status."""
    import pynisher

    targets = {
        "ok": (add, dict(wall_time_in_s=5), (1, 2)),
        "wall": (sleep_and_return, dict(wall_time_in_s=0.5), (30,)),
        "memory": (hog, dict(mem_in_mb=100), (500,)),
    }
    func, limits, args = targets[kind]
    obj = pynisher.enforce_limits(**limits)(func)
    result = obj(*args)
    status = obj.exit_status
    return "0" if status == 0 else f"{getattr(status, '__name__', status)}:{result}"


def timed_limited_task(api: str, kind: str) -> "tuple[str, float, str | None]":
    """`limited_task` (api "v1") or `limited_task_v0` ("v0") with context=None: the outcome, how
    long the call took, and the worker's default start method it ran under."""
    import multiprocessing

    start = time.monotonic()
    outcome = limited_task(kind) if api == "v1" else limited_task_v0(kind)
    return outcome, time.monotonic() - start, multiprocessing.get_start_method(allow_none=True)


class BadInitError(Exception):
    """Pickles as (cls, (a,)) but its constructor needs two arguments: cannot be unpickled."""

    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(a)


def raise_undecodable() -> None:
    raise BadInitError("a", "b")


def raise_unpicklable_exception() -> None:
    raise ValueError(threading.Lock())


def nested_call(inner_context: str, kind: str) -> Any:
    """A limited call made from inside a limited call."""
    import pynisher

    if kind == "ok":
        return pynisher.limit(add, wall_time=10, context=inner_context)(2, 3)
    if kind == "wall":
        return pynisher.limit(sleep_and_return, wall_time=0.3, context=inner_context)(30)
    return pynisher.limit(hog, memory=(100, "MB"), context=inner_context)(500)


def put_on_queue(queue: Any, value: int) -> None:
    """auto-sklearn's pattern: the target reports through a multiprocessing queue."""
    queue.put(2 * value)


def start_mp_process(method: str, daemon: bool) -> int:
    """Start a multiprocessing child that sleeps and return its pid without joining it."""
    import multiprocessing

    proc = multiprocessing.get_context(method).Process(target=time.sleep, args=(30,), daemon=daemon)
    proc.start()
    return proc.pid


class Adder:
    """A callable object with a method, as target functions are often passed (SMAC, amltk)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __call__(self, x: int) -> int:
        return x + self.offset

    def method(self, x: int) -> int:
        return x * self.offset


def big_bytes(mib: int) -> bytes:
    return b"\x07" * (mib * MIB)


def length(data: bytes) -> int:
    return len(data)


def ignore_sigxcpu_and_burn() -> None:
    """Like C code that never returns to Python: the soft signal cannot stop it."""
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    busy_forever()


def hog_and_hold(mib: int, seconds: float = 10.0) -> int:
    """Touch `mib` MiB and keep it for `seconds` (a sampled memory limit sees it for sure)."""
    data = bytearray(b"\x01") * (mib * MIB)
    time.sleep(seconds)
    return len(data)


def burn_in_children(n: int, seconds: float) -> int:
    """Run `n` child interpreters one after the other, each burning `seconds` of CPU."""
    burn = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {seconds}: pass"
    for _ in range(n):
        subprocess.run([sys.executable, "-c", burn], check=True)
    return n
