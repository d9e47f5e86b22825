"""Type stubs of `pynisher._core`, the engine's binding (private; use `pynisher`)."""

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union, final

__all__ = [
    "BACKENDS",
    "ChildSlot",
    "CPU_MEASURES",
    "EngineError",
    "FRAME_VERSION",
    "MEMORY_KINDS",
    "MEMORY_MEASURES",
    "NotEnforceableError",
    "RESULT_FD_ENV",
    "ParkedCall",
    "PreparedLimits",
    "StartedCall",
    "__version__",
    "_guard_main",
    "available_backends",
    "cancel_all",
    "check_limits",
    "decode_outcome",
    "guard_pid",
    "has_children",
    "install_guard",
    "park_fork",
    "run_command",
    "run_fork",
    "send_outcome_when_done",
    "start_fork",
]

__version__: str
RESULT_FD_ENV: str
FRAME_VERSION: int
#: The engine's names for its backends, memory-limit kinds and measures (defined once, in the engine).
BACKENDS: List[str]
MEMORY_KINDS: List[str]
CPU_MEASURES: List[str]
MEMORY_MEASURES: List[str]

class EngineError(Exception):
    """The engine itself failed (a system call, a cgroup file, an unavailable backend)."""

class NotEnforceableError(EngineError):
    """Strict mode: the backend cannot fully enforce the call's limits; nothing was started."""

class _Limits(TypedDict, total=False):
    wall_time: Optional[float]
    cpu_time: Optional[float]
    memory: Optional[int]
    memory_kind: str
    max_processes: Optional[int]
    grace_period: float
    wall_signal: Optional[int]
    cpu_signal: Optional[int]
    capture_output: bool
    output_limit: Optional[int]
    backend: str
    strict: bool

class _Guarantees(TypedDict):
    all_descendants_contained: bool
    exact_tree_cpu_time: bool
    tree_memory_limit: bool
    kernel_process_limit: bool
    notes: List[str]

class _RawOutcome(TypedDict):
    status: str
    message: Optional[str]
    spawn_errno: Optional[int]
    value: Optional[bytes]
    exit_code: Optional[int]
    signal: Optional[int]
    soft_signal_sent: Optional[int]
    killed: bool
    wall_time: float
    cpu_user: float
    cpu_system: float
    cpu_measure: str
    peak_memory: Optional[int]
    memory_measure: str
    memory_limit_kind: Optional[str]
    oom_kills: int
    processes_refused: int
    leftovers_killed: int
    output_drain_timed_out: bool
    stdout: Optional[bytes]
    stdout_truncated: bool
    stdout_total_bytes: int
    stderr: Optional[bytes]
    stderr_truncated: bool
    stderr_total_bytes: int
    backend: str
    guarantees: _Guarantees
    weaknesses: Dict[str, str]
    pid: int

_PathLike = Union[str, bytes]

@final
class PreparedLimits:
    """A dict of limits checked and turned into the engine's form once (`run_fork` takes it in
    place of the dict); raises ValueError as `check_limits` does."""

    def __new__(cls, limits: Mapping[str, object]) -> "PreparedLimits": ...
    def __reduce__(self) -> Tuple[type, Tuple[Dict[str, object]]]: ...

def run_fork(
    child: Callable[[], bytes],
    limits: Union[Mapping[str, object], PreparedLimits],
    *,
    cancel_fd: Optional[int] = None,
    on_start: Optional[Callable[[int], object]] = None,
) -> _RawOutcome: ...
def run_command(
    argv: Sequence[_PathLike],
    limits: Mapping[str, object],
    *,
    stdin: Optional[bytes] = None,
    env: Optional[Sequence[Tuple[_PathLike, Optional[_PathLike]]]] = None,
    cwd: Optional[_PathLike] = None,
    cancel_fd: Optional[int] = None,
    on_start: Optional[Callable[[int], object]] = None,
) -> _RawOutcome: ...
def check_limits(limits: Mapping[str, object]) -> None: ...
def has_children() -> bool: ...
def available_backends() -> List[str]: ...
def cancel_all() -> None: ...
def install_guard(program: str, args: List[str]) -> None: ...
def guard_pid() -> Optional[int]: ...
def _guard_main() -> None: ...

@final
class StartedCall:
    """A call started by `start_fork`; dropping it unwaited kills and reaps its processes."""

    @property
    def pid(self) -> int: ...
    def wait(self, *, cancel_fd: Optional[int] = None) -> _RawOutcome: ...

@final
class ChildSlot:
    """Where a call's child pid is recorded when it starts: pass it as ``on_start`` (the fork
    context writes it without calling into Python; it is callable for the other contexts)."""

    def __new__(cls, state: int = 0) -> "ChildSlot": ...
    def __call__(self, pid: int) -> None: ...
    def end(self) -> None: ...
    def get(self) -> Optional[Tuple[int, int, bool]]: ...
    def __reduce__(self) -> Tuple[type, Tuple[int]]: ...

def start_fork(child: Callable[[], bytes], limits: Mapping[str, object]) -> StartedCall: ...
def send_outcome_when_done(
    call: StartedCall, conn_fd: int, done_fd: int, tell_pid_after: Optional[float] = None
) -> None:
    """The forkserver's wait: a thread without the interpreter lock waits for `call` (telling
    the caller the pid once the call has run `tell_pid_after` seconds, unless it is over first),
    writes its outcome message to `conn_fd` and then the call's pid to `done_fd`."""

def decode_outcome(body: bytes) -> _RawOutcome:
    """The outcome dict of an outcome message sent by `send_outcome_when_done` (after its tag)."""

@final
class ParkedCall:
    """A child forked by `park_fork`, waiting in its own container; dropping it (or `discard()`)
    kills and reaps it and removes its container."""

    @property
    def pid(self) -> int: ...
    def fits(self, limits: Mapping[str, object]) -> bool: ...
    def release(self, limits: Mapping[str, object]) -> StartedCall: ...
    def discard(self) -> None: ...

def park_fork(
    child: Callable[[], bytes], limits: Mapping[str, object], prepare: Optional[Callable[[], object]] = None
) -> ParkedCall: ...
