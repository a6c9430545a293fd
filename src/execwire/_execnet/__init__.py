"""Where the execnet-named package lives: execnet's API mapped onto execwire.

The package ``execnet`` sits one folder down (``_execnet/execnet/``), so it is
importable as ``execnet`` only when that folder is put on the path on purpose:

    PYTHONPATH="$(python -m execwire --execnet-shim-path)" pytest -n 4

PYTHONPATH is inherited, so popen workers (pytest-xdist's included) import the
same package. Nothing here is imported by ``import execwire``.
"""

from __future__ import annotations

from pathlib import Path


def shim_path() -> str:
    """The folder to put on PYTHONPATH so that ``import execnet`` gives execwire's execnet package."""
    return str(Path(__file__).resolve().parent)
