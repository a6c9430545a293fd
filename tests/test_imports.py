"""Import forwarding: a far side gets the pure-Python modules it lacks from the controller.

The packages are written to a temporary folder on the controller's sys.path only; the far side,
started without it, can only have them by forwarding. Through popen here; ssh and via in
test_imports_remote.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import call_targets
import pytest
from forwarding import Packages, write_shop
from pythons import matrix

import execwire

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["forwarding"]


def test_package_submodules_relative_imports_and_data(gw: execwire.Gateway, packages: Packages) -> None:
    write_shop(packages)
    gw.forward_imports()
    channel = gw.remote_exec("""
        import importlib.resources, pkgutil, sys
        import shop, shop.later
        channel.send([shop.NAME, shop.prices.price("tea"), shop.count(), shop.later.WHEN])
        channel.send([shop.__file__, type(shop.__loader__).__name__])
        channel.send(pkgutil.get_data("shop", "data/greeting.txt"))
        if sys.version_info >= (3, 10):
            channel.send(importlib.resources.files("shop").joinpath("data", "greeting.txt").read_text())
            channel.send(sorted(p.name for p in importlib.resources.files("shop").iterdir()))
    """)
    assert channel.receive(30) == ["shop", 300, 3, "later"]
    file, loader = channel.receive(30)
    assert file == str(packages.root / "shop" / "__init__.py")  # tracebacks name the controller's file
    assert loader == "ForwardingLoader"
    assert channel.receive(30) == b"hello from the controller\n"
    assert channel.receive(30) == "hello from the controller\n"
    assert "data" in channel.receive(30)
    channel.waitclose(30)
    assert "shop" not in sys.modules  # the controller served the sources without importing them
    assert not list(packages.root.rglob("__pycache__"))  # and nothing was compiled to a file anywhere


def hiding_python(tmp_path: Path, hidden: Path) -> str:
    """A spec whose far Python runs in a mount namespace where ``hidden`` is an empty folder."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not available or not permitted here")
    wrapper = tmp_path / "hiding-python"
    wrapper.write_text(f"""#!/bin/sh\nexec {unshare} --mount -- sh -c 'mount -t tmpfs tmpfs "$0" && exec "$@"' """
                       f"""{hidden} {sys.executable} "$@"\n""")
    wrapper.chmod(0o755)
    return f"exec={wrapper}"


def test_reads_of_files_next_to_a_forwarded_module_are_served(group: execwire.Group, packages: Packages,
                                                              tmp_path: Path) -> None:
    write_shop(packages)
    gw = group.makegateway(hiding_python(tmp_path, packages.root))  # it cannot see the files at all
    packages.write("shop/reader.py", """\
        import os
        from pathlib import Path
        HERE = os.path.dirname(__file__)
        def with_open():
            with open(os.path.join(HERE, "data", "greeting.txt")) as file:
                return file.read()
        def with_pathlib():
            return (Path(__file__).parent / "data" / "greeting.txt").read_bytes()
        def missing():
            return open(os.path.join(HERE, "nothing.txt"))
        """)
    gw.forward_imports()
    channel = gw.remote_exec("""
        import os, shop.reader
        channel.send(os.path.exists(shop.reader.__file__))
        channel.send([shop.reader.with_open(), shop.reader.with_pathlib()])
        try:
            shop.reader.missing()
        except FileNotFoundError as exc:
            channel.send(str(exc))
        try:
            open("/nonexistent/elsewhere.txt")
        except FileNotFoundError as exc:
            channel.send(str(exc))
    """)
    assert channel.receive(30) is False
    assert channel.receive(30) == ["hello from the controller\n", b"hello from the controller\n"]
    assert "nor among the data files the controller serves" in channel.receive(30)
    assert channel.receive(30) == "[Errno 2] No such file or directory: '/nonexistent/elsewhere.txt'"


def test_modules_certain_to_be_needed_travel_with_the_first_answer(gw: execwire.Gateway, packages: Packages) -> None:
    write_shop(packages)
    gw.forward_imports()
    gw.remote_exec("import shop").waitclose(30)
    service = gw._import_service  # type: ignore[attr-defined]
    assert service.requests == 1  # shop, prices, stock, util, util.money: one round trip
    assert {"shop", "shop.prices", "shop.stock", "shop.util", "shop.util.money"} <= service.sent
    assert "shop.later" not in service.sent  # nothing imports it for certain: it waits to be asked
    gw.remote_exec("import shop.later").waitclose(30)
    assert service.requests == 2
    gw.remote_exec("import shop.later, shop.prices").waitclose(30)
    assert service.requests == 2  # each module crosses once


def test_what_shipped_code_imports_travels_with_the_first_answer(gw: execwire.Gateway, packages: Packages) -> None:
    for number in range(20):
        packages.write(f"lazy/m{number}.py", f"N = {number}\n")
    packages.write("lazy/__init__.py")
    gw.forward_imports()
    names = ", ".join(f"lazy.m{number}" for number in range(20))
    channel = gw.remote_exec(f"import {names}\nchannel.send(sum(getattr(lazy, 'm%d' % n).N for n in range(20)))")
    assert channel.receive(30) == sum(range(20))
    assert gw._import_service.requests == 1  # type: ignore[attr-defined]


def test_namespace_packages(gw: execwire.Gateway, packages: Packages) -> None:
    packages.write("spaces/inner/core.py", "VALUE = 'deep'\n")  # no __init__.py anywhere
    gw.forward_imports()
    channel = gw.remote_exec("import spaces.inner.core as core; channel.send(core.VALUE)")
    assert channel.receive(30) == "deep"


def test_a_denied_module_fails_naming_the_policy(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    packages.write("secret.py", "KEY = 1\n")
    gw = group.makegateway("popen//imports_deny=secret,shop.util")
    gw.forward_imports(deny=["secret", "shop.util"])
    with pytest.raises(execwire.RemoteError) as caught:
        gw.remote_exec("import secret").receive(30)
    assert caught.value.type_name == "ModuleNotFoundError"
    assert "'secret'" in str(caught.value) and "denies it (deny=secret,shop.util)" in str(caught.value)
    with pytest.raises(execwire.RemoteError, match="denies it"):
        gw.remote_exec("import shop").receive(30)  # shop.prices imports shop.util.money
    probe = gw.remote_exec("import importlib.util; channel.send(importlib.util.find_spec('secret') is not None)")
    assert probe.receive(30) is True  # a probe is not an import: only importing it fails


def test_an_allow_list_from_the_spec_serves_only_those(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    packages.write("other.py", "X = 1\n")
    gw = group.makegateway("popen//imports=on//imports_allow=shop")
    channel = gw.remote_exec("import shop; channel.send(shop.count())")  # imports=on: in place already
    assert channel.receive(30) == 3
    with pytest.raises(execwire.RemoteError, match=r"does not allow it \(allow=shop\)"):
        gw.remote_exec("import other").receive(30)


def test_a_missing_module_is_an_ordinary_module_not_found_error(gw: execwire.Gateway) -> None:
    gw.forward_imports()
    channel = gw.remote_exec("""
        try:
            import no_such_module_anywhere
        except ModuleNotFoundError as exc:
            channel.send(str(exc))
    """)
    assert channel.receive(30) == "No module named 'no_such_module_anywhere'"


def test_a_compiled_module_fails_saying_it_cannot_travel(gw: execwire.Gateway, packages: Packages) -> None:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    packages.write(f"fastthing{suffix}", "not really a shared object: it is never loaded")
    gw.forward_imports()
    with pytest.raises(execwire.RemoteError) as caught:
        gw.remote_exec("import fastthing").receive(30)
    message = str(caught.value)
    assert caught.value.type_name == "ModuleNotFoundError"
    assert "'fastthing'" in message and "compiled extension module" in message
    assert "install it on the far side (for example: pip install fastthing)" in message


def test_a_module_that_raises_at_import_raises_on_the_far_side(gw: execwire.Gateway, packages: Packages) -> None:
    packages.write("broken.py", "X = 1\nraise RuntimeError('broken at import')\n")
    gw.forward_imports()
    for _ in range(2):  # and again: the failed module is not left half-imported
        with pytest.raises(execwire.RemoteError) as caught:
            gw.remote_exec("import broken").receive(30)
        assert caught.value.type_name == "RuntimeError"
        assert "broken at import" in str(caught.value)
        assert str(packages.root / "broken.py") in caught.value.formatted  # the controller's file, line 2
        assert "raise RuntimeError('broken at import')" in caught.value.formatted


def test_the_standard_library_never_travels(gw: execwire.Gateway) -> None:
    gw.forward_imports()
    gw.remote_exec("import json, email.mime.text, xml.dom.minidom").waitclose(30)
    assert gw._import_service.sent == set()  # type: ignore[attr-defined]


def test_imports_off_leaves_the_far_side_alone(group: execwire.Group, packages: Packages) -> None:
    write_shop(packages)
    gw = group.makegateway("popen//imports=off")
    with pytest.raises(execwire.RemoteError, match="No module named 'shop'"):
        gw.remote_exec("import shop").receive(30)


def test_bad_import_settings_are_refused_by_name(gw: execwire.Gateway) -> None:
    with pytest.raises(ValueError, match="key 'imports' must be on, off or auto"):
        execwire.XSpec("popen//imports=yes")
    with pytest.raises(ValueError, match="key 'imports_deny' needs comma-separated module names"):
        execwire.XSpec("popen//imports_deny=a b")
    with pytest.raises(ValueError, match="'not a name' is not a module name"):
        gw.forward_imports(allow=["not a name"])


OLD_AND_NEW = matrix()  # 3.6 to 3.13 and PyPy 3, those present


@pytest.mark.parametrize("python", OLD_AND_NEW, ids=[each.name for each in OLD_AND_NEW])
def test_forwarding_works_on_every_far_python(group: execwire.Group, packages: Packages, python) -> None:  # type: ignore[no-untyped-def]
    write_shop(packages)
    packages.write("modern.py", "def f(x):\n    match x:\n        case _:\n            return x\n")
    gw = group.makegateway(f"popen//python={python.command}")
    gw.forward_imports()
    channel = gw.remote_exec("import shop, pkgutil; channel.send([shop.prices.price('ab'), "
                             "pkgutil.get_data('shop', 'data/greeting.txt')])")
    assert channel.receive(30) == [200, b"hello from the controller\n"]
    assert gw.call(call_targets.add, 1, b=2) == 3  # calls too, their module forwarded
    with pytest.raises(execwire.DumpError, match="cannot be sent back"):
        gw.call(call_targets.unsendable)
    channel = gw.remote_exec("import modern; channel.send(modern.f(5))")
    if python.version >= (3, 10):
        assert channel.receive(30) == 5
    else:
        with pytest.raises(execwire.RemoteError) as caught:
            channel.receive(30)
        assert "cannot compile it: SyntaxError" in str(caught.value)
        assert f"this Python {python.version_text}" in str(caught.value)
