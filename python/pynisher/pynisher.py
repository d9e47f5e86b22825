"""pynisher 1.x's module path ``pynisher.pynisher`` (``from pynisher.pynisher import Pynisher``).

The 1.x API lives in `pynisher._v1`; this module only keeps the historic import path working.
"""

from pynisher._v1 import _EMPTY, EMPTY, Pynisher, limit, restricted

__all__ = ["EMPTY", "Pynisher", "_EMPTY", "limit", "restricted"]
