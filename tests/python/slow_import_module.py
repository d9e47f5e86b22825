"""A module that takes a second to import (used to check soft signals during a child's imports)."""

import time

time.sleep(1.0)


def sleep_long():
    time.sleep(30)
    return "woke up"
