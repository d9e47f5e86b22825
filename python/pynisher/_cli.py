"""The ``pynisher`` command from a Python install: the Rust binary shipped inside the package.

The wheel carries the same binary that ``cargo install --path crates/pynisher-cli`` builds, as
package data at ``pynisher/_bin/pynisher``. The ``pynisher`` console script and
``python -m pynisher`` both replace the Python process with it (``os.execv``), so flags, output,
signals and exit codes are exactly the binary's.

:func:`binary_path` is for Python code that wants to run the binary itself, e.g. as a small
supervising process::

    >>> import subprocess, pynisher._cli
    >>> subprocess.run([pynisher._cli.binary_path(), "--wall-time", "5s", "--", "true"]).returncode
    0
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["binary_path", "main"]

_BINARY = Path(__file__).resolve().parent / "_bin" / "pynisher"


def binary_path() -> str:
    """The absolute path of the ``pynisher`` command-line binary inside this package.

    Raises
    ------
    FileNotFoundError
        When this build has no binary: a package built from the source distribution by pip
        (only the extension module is compiled then). ``cargo install --path crates/pynisher-cli``
        installs the command in that case.
    """
    if not os.access(_BINARY, os.X_OK):
        raise FileNotFoundError(
            f"the pynisher command-line binary is not part of this install (looked for {_BINARY}); "
            "the release wheels bundle it, a build from the source distribution does not: "
            "install it with `cargo install --path crates/pynisher-cli` from the source tree"
        )
    return str(_BINARY)


def main() -> None:
    """Runs the ``pynisher`` binary with this process's arguments (never returns on success)."""
    try:
        path = binary_path()
    except FileNotFoundError as err:
        print(f"pynisher: {err}", file=sys.stderr)
        # 127: what a shell returns for a command it cannot find.
        sys.exit(127)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, ["pynisher", *sys.argv[1:]])
