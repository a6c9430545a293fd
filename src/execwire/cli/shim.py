"""``execwire --execnet-shim-path``: print the folder that makes ``import execnet`` mean execwire."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class PrintShimPath(argparse.Action):
    """Print the folder to put on PYTHONPATH and exit, like --version does."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", 'print the folder that makes "import execnet" use execwire and exit; for '
                                  'pytest-xdist: PYTHONPATH="$(python -m execwire --execnet-shim-path)" pytest -n 4')
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from .._execnet import shim_path

        sys.stdout.write(shim_path() + "\n")
        parser.exit()


def add_shim_path_option(parser: argparse.ArgumentParser) -> None:
    """Add --execnet-shim-path to the top-level parser."""
    parser.add_argument("--execnet-shim-path", action=PrintShimPath)
