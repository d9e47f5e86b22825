"""A user's script (run as the main module by test_api_main_module.py, never imported by pytest):
an Enum and a class of the script go on a multiprocessing Queue from the limited function, and
come back as the result."""

import enum
import multiprocessing
import sys

import pynisher

PREPARED_AT_IMPORT = []  # filled at module level: the child runs this file as __mp_main__


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def work(queue) -> "Point":
    queue.put(Color.GREEN)
    queue.put(Point(1, 2))
    return Point(3, 4)


if __name__ == "__main__":
    method = sys.argv[1]
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    result = pynisher.limit(work, wall_time=30, context=method)(queue)
    first, second = queue.get(timeout=10), queue.get(timeout=10)
    assert first is Color.GREEN, (first, type(first))
    assert second == Point(1, 2) and type(second) is Point, second
    assert result == Point(3, 4) and type(result) is Point, result
    obj = pynisher.enforce_limits(wall_time_in_s=30, context=ctx)(work)
    queue2 = ctx.Queue()
    assert obj(queue2) == Point(3, 4), (obj.exit_status, obj.stderr)
    assert queue2.get(timeout=10) is Color.GREEN
    print("ok", method)
