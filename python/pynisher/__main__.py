"""``python -m pynisher ARGS`` runs the ``pynisher`` command line (see :mod:`pynisher._cli`)."""

from pynisher._cli import main

main()
