"""The kernel floor from Python: where `pidfd_open` is missing (Linux < 5.3) a limited call fails
with an error that names the kernel version pynisher needs. A seccomp filter, set in the child
before it execs Python, makes this kernel answer `pidfd_open` with ENOSYS as an old one would."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYS_PIDFD_OPEN = 434  # the same number on every architecture
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
ENOSYS = 38


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _deny_pidfd_open():
    """A preexec_fn that installs the filter; everything it needs is built before the fork."""
    arch = AUDIT_ARCH.get(platform.machine())
    if arch is None:
        pytest.skip(f"no seccomp architecture constant for {platform.machine()}")
    program = (_SockFilter * 6)(
        _SockFilter(0x20, 0, 0, 4),  # load seccomp_data.arch
        _SockFilter(0x15, 0, 3, arch),  # other architecture: allow
        _SockFilter(0x20, 0, 0, 0),  # load seccomp_data.nr
        _SockFilter(0x15, 0, 1, SYS_PIDFD_OPEN),
        _SockFilter(0x06, 0, 0, 0x00050000 | ENOSYS),  # SECCOMP_RET_ERRNO | ENOSYS
        _SockFilter(0x06, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    )
    fprog = _SockFprog(len(program), program)
    libc = ctypes.CDLL(None, use_errno=True)

    def install() -> None:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog)) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")

    install.keep = (program, fprog)  # type: ignore[attr-defined]
    return install


CALL = "import pynisher; print(pynisher.limit(int, wall_time=5)('7'))"


def test_call_on_a_kernel_without_pidfd_open_names_linux_5_3() -> None:
    done = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, timeout=60,
                          preexec_fn=_deny_pidfd_open())
    assert done.returncode != 0
    assert "lacks pidfd_open: pynisher needs Linux 5.3 or newer" in done.stderr, done.stderr
    # The control: the same call without the filter returns the value.
    ok = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "7", ok.stderr
