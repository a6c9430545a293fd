"""Packages that only the controller has, for the import forwarding tests (a pytest plugin).

Load it with ``pytest_plugins = ["forwarding"]``: the ``packages`` fixture writes modules into a
folder that is on this process's sys.path while the test runs; far sides, started without it, can
only have them by forwarding. (PYTEST_DONT_REWRITE: test modules import it before pytest loads it.)
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


class Packages:
    """Writes modules into a folder that is on this process's sys.path while the test runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str = "") -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Packages]:
    root = tmp_path / "controller-only"
    root.mkdir()
    sys.path.insert(0, str(root))
    try:
        yield Packages(root)
    finally:
        sys.path.remove(str(root))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(root)):
                del sys.modules[name]


def write_shop(packages: Packages) -> None:
    packages.write("shop/__init__.py", """\
        from . import prices
        from .stock import count
        NAME = "shop"
        """)
    packages.write("shop/prices.py", """\
        from shop.util.money import cents
        def price(item):
            return cents(len(item))
        """)
    packages.write("shop/stock.py", "def count():\n    return 3\n")
    packages.write("shop/util/__init__.py")
    packages.write("shop/util/money.py", "def cents(n):\n    return n * 100\n")
    packages.write("shop/later.py", "from . import prices\nWHEN = 'later'\n")
    packages.write("shop/data/greeting.txt", "hello from the controller\n")
