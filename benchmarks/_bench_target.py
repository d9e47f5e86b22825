"""Functions the Python benchmark limits (importable by spawn and forkserver children)."""

import time


def trivial():
    return 42


def sleeper(seconds):
    time.sleep(seconds)
    return seconds
