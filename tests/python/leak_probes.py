"""What the leak tests count in a caller (or its forkserver): descriptors, threads, zombie
children and cgroup leaves. Imported by the helper interpreters of ``test_fork_calls_leak_nothing``
and ``test_forkserver_calls_leak_nothing`` (conftest.py puts this directory on PYTHONPATH) and by
the tests themselves."""

from __future__ import annotations

import os
import time
from typing import List


def count(path: str) -> int:
    """Entries of a /proc directory (``/proc/PID/fd``, ``/proc/PID/task``); -1 once it is gone."""
    try:
        return len(os.listdir(path))
    except OSError:
        return -1


def steady(path: str) -> int:
    """``count(path)`` once two looks 0.2 s apart agree: descriptors and threads come and go with
    calls (a parked child's socket, finisher threads)."""
    seen = count(path)
    for _ in range(50):
        time.sleep(0.2)
        seen, previous = count(path), seen
        if seen == previous:
            break
    return seen


def zombie_children(parent: int) -> int:
    """Children of ``parent`` that exited and were not waited for."""
    found = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found += fields[0] == "Z" and int(fields[1]) == parent
    return found


def leaf_parents(backend: str) -> List[str]:
    """Where this process's leaves go: the ``pynisher`` directory below its own cgroup, in each
    hierarchy ``backend`` uses (none for the process-group backend)."""
    if backend == "none":
        return []
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mine, _, theirs = line.partition(" - ")
            fstype, _, options = theirs.split()[:3]
            point = mine.split()[4]
            if fstype == "cgroup2":
                mounts[""] = point
            elif fstype == "cgroup":
                for option in options.split(","):
                    mounts.setdefault(option, point)
    parents = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            wanted = (
                controllers == ""
                if backend == "cgroup2"
                else controllers in ("memory", "cpuacct", "pids", "freezer")
            )
            if wanted and controllers in mounts:
                parents.append(os.path.join(mounts[controllers] + path, "pynisher"))
    return [p for p in parents if os.path.isdir(p)]


def leaves_of(pid: int) -> List[str]:
    """Leaves made by process ``pid``, in every cgroup hierarchy mounted."""
    prefix, found = f"call-{pid}-", []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "pynisher":
            found += [os.path.join(root, d) for d in dirs if d.startswith(prefix)]
            dirs[:] = []
    return found


def most_leaves_per_parent(pid: int) -> int:
    """The most leaves of process ``pid`` below any one leaf parent."""
    per_parent: dict = {}
    for leaf in leaves_of(pid):
        parent = os.path.dirname(leaf)
        per_parent[parent] = per_parent.get(parent, 0) + 1
    return max(per_parent.values(), default=0)
