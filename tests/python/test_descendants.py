"""With terminate_child_processes=True (the default), the function's own processes are gone when
the call returns: killed *and reaped* by the call's child, as upstream's child did, so that no
zombie of them waits for whoever adopts orphans (PID 1 here reaps them ~2 s late, and psutil counts
a zombie as running)."""

import multiprocessing
import os
import time

import pytest

from pynisher import limit

CONTEXTS = ["fork", "spawn", "forkserver"]


class Spawned(Exception):
    pass


def sleep_for(seconds):
    time.sleep(seconds)


def start_children_and_raise(context, daemon):
    ctx = multiprocessing.get_context(context)
    children = [ctx.Process(target=sleep_for, args=(20,), daemon=daemon) for _ in range(2)]
    for child in children:
        child.start()
    raise Spawned([child.pid for child in children])


def exists_or_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("daemon", [True, False])
@pytest.mark.parametrize("child_context", ["fork", "spawn"])
@pytest.mark.parametrize("context", CONTEXTS)
def test_the_functions_children_are_gone_not_zombies_when_the_call_returns(
    context, child_context, daemon
):
    limited = limit(start_children_and_raise, wall_time=10, context=context)
    with pytest.raises(Spawned) as raised:
        limited(child_context, daemon)
    pids = raised.value.args[0]
    assert len(pids) == 2
    assert {pid: exists_or_zombie(pid) for pid in pids} == {pid: None for pid in pids}
    assert os.getpid() not in pids


def test_keep_descendants_still_leaves_them_running():
    limited = limit(
        start_children_and_raise, wall_time=10, context="fork", terminate_child_processes=False
    )
    with pytest.raises(Spawned) as raised:
        limited("fork", False)
    pids = raised.value.args[0]
    try:
        assert all(exists_or_zombie(pid) not in (None, "Z") for pid in pids)
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
