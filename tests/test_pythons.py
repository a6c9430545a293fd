"""Every channel feature, through a real gateway, on every far-side Python present (3.6 to 3.13, PyPy 3).

The interpreters come from tests/pythons.py, which also prints at the end of the run which of
them ran and which were missing. A far Python that is too old (2.7, 3.5) must be refused at once
by name; ``python=`` may be a path, a name on PATH or a command with arguments.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pythons
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythons import Interpreter

import execwire
from execwire import bootstrap

pytest_plugins = ["pythons"]
pytestmark = pytest.mark.timeout(90)

T = 30.0  # generous deadline for any single answer; a healthy gateway answers in milliseconds
MATRIX = pythons.matrix()
TOO_OLD = pythons.too_old()
FAR_DIR = Path(execwire.__file__).parent / "_far"


def spec_for(interpreter: Interpreter, *extra: str) -> str:
    return "//".join([f"popen//python={shlex.quote(interpreter.command)}", *extra])


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module", params=MATRIX, ids=lambda interpreter: interpreter.name)
def far(request: pytest.FixtureRequest) -> Interpreter:
    """One far-side interpreter of the matrix."""
    interpreter: Interpreter = request.param
    return interpreter


@pytest.fixture(scope="module")
def far_gw(far: Interpreter) -> Iterator[execwire.Gateway]:
    """One gateway per interpreter, shared by the tests that do not break it."""
    group = execwire.Group()
    gateway = group.makegateway(spec_for(far))
    try:
        yield gateway
    finally:
        group.terminate(timeout=5.0)


# -- describing values the same way on both sides ---------------------------------------------------------
# Run on the near side and shipped to the far side (valid Python 3.6). A description holds only
# ASCII strings, ints and lists, so two sides agree on it exactly when they agree on the value:
# the exact type at every level, every code point (lone surrogates too), every float bit but NaN's.
DESCRIBE = '''
def describe(x):
    import hashlib
    kind = type(x).__name__
    if x is None or isinstance(x, bool):
        return [kind, repr(x)]
    if isinstance(x, int):
        return [kind, hex(x)]
    if isinstance(x, float):
        return [kind, x.hex()]
    if isinstance(x, complex):
        return [kind, x.real.hex(), x.imag.hex()]
    if isinstance(x, str):
        return [kind, [ord(c) for c in x]]
    if isinstance(x, (bytes, bytearray)):
        return [kind, len(x), hashlib.sha256(x).hexdigest()]
    if isinstance(x, (list, tuple)):
        return [kind, [describe(item) for item in x]]
    if isinstance(x, dict):
        return [kind, sorted(([describe(k), describe(v)] for k, v in x.items()), key=repr)]
    if isinstance(x, (set, frozenset)):
        return [kind, sorted((describe(item) for item in x), key=repr)]
    return [kind, "?"]
'''
_namespace: dict[str, Any] = {}
exec(DESCRIBE, _namespace)
describe = _namespace["describe"]

# The far side echoes each value with its own description and its own encoding of it (dumps), and
# decodes what the near side encoded (loads): both serializers, in both directions.
ROUND_TRIP = DESCRIBE + f'''
from {bootstrap.FAR_PACKAGE} import wire
for kind, value in channel:
    if kind == "value":
        channel.send((value, describe(value), wire.dumps(value)))
    else:
        loaded = wire.loads(value)
        channel.send((loaded, describe(loaded)))
'''


def round_trip(gateway: execwire.Gateway, values: list[Any]) -> None:
    """Ship every value both ways and check that both sides see exactly the same thing."""
    channel = gateway.remote_exec(ROUND_TRIP)
    for value in values:
        expected = describe(value)
        channel.send(("value", value))
        back, far_view, far_dumped = channel.receive(timeout=T)
        assert far_view == expected, f"the far side decoded {value!r} differently"
        assert describe(back) == expected, f"{value!r} came back changed"
        assert describe(execwire.loads(far_dumped)) == expected, f"far dumps() of {value!r} loads differently"
        channel.send(("dumped", execwire.dumps(value)))
        loaded, far_view = channel.receive(timeout=T)
        assert far_view == expected, f"far loads() of our dumps({value!r}) differs"
        assert describe(loaded) == expected
    channel.close()
    channel.waitclose(T)


# -- who is on the far side ----------------------------------------------------------------------------
def test_rinfo_names_the_interpreter_that_was_asked_for(far, far_gw):
    info = far_gw._rinfo()
    assert tuple(info.version_info[:3]) == far.version
    assert info.executable == far.executable
    assert info.implementation == far.implementation
    assert info.pid != os.getpid() and not pid_gone(info.pid)


def test_rinfo_update_asks_the_far_side_again(far, far_gw):
    info = far_gw._rinfo(update=True)
    assert tuple(info.version_info[:3]) == far.version
    assert info.executable == far.executable


# -- values ---------------------------------------------------------------------------------------------
def test_strings_survive_including_non_ascii_and_lone_surrogates(far_gw):
    round_trip(far_gw, [
        "", "plain ascii", "\x00 nul and \x7f", "é ñ ü", "日本語のテキスト", "emoji \U0001f600 astral",
        "\ud800", "lone low \udfff in the middle", "\udc80\udcff surrogateescape-style", "\ufeff bom",
        "long " * 100, "é" * 70000,
    ])


def test_bytes_and_bytearrays_keep_their_types(far_gw):
    round_trip(far_gw, [
        b"", b"\x00\xff", bytes(range(256)), b"\x80" * 300, os.urandom(200_000),
        bytearray(), bytearray(b"mutable"), bytearray(range(256)) * 2, bytearray(70_000),
    ])


def test_big_ints_survive(far_gw):
    round_trip(far_gw, [
        0, 1, -1, 127, 128, -128, -129, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63,
        -(2**63), -(2**63) - 1, 2**64, 10**400, -(10**400), 3**1000, -(7**777),
    ])


def test_big_ints_are_the_same_number_over_there(far_gw):
    channel = far_gw.remote_exec("""
        for value in channel:
            channel.send([value == 10**400, value + 1, str(value)[:5], len(str(abs(value)))])
    """)
    for value in (10**400, -(10**400)):
        channel.send(value)
        same, plus_one, head, digits = channel.receive(timeout=T)
        assert same is (value > 0)
        assert plus_one == value + 1
        assert head == str(value)[:5] and digits == 401
    channel.close()


def test_floats_survive_including_nan_inf_and_negative_zero(far_gw):
    round_trip(far_gw, [
        0.0, -0.0, 1.5, -2.25, 0.1, 1e308, 5e-324, 2.2250738585072014e-308, 1e-310,
        float("inf"), float("-inf"), float("nan"), [float("nan"), -0.0],
    ])


def test_float_specials_keep_their_meaning_over_there(far_gw):
    channel = far_gw.remote_exec("""
        import math
        values = channel.receive()
        channel.send([math.isnan(values[0]), values[1] == float("inf"), values[2] == float("-inf"),
                      math.copysign(1.0, values[3]), values[4] == 0.1])
    """)
    channel.send([float("nan"), float("inf"), float("-inf"), -0.0, 0.1])
    assert channel.receive(timeout=T) == [True, True, True, -1.0, True]


def test_complex_numbers_survive(far_gw):
    round_trip(far_gw, [0j, 1 + 2j, -1.5 - 0.25j, complex(-0.0, -0.0), complex(float("inf"), float("nan")),
                        complex(1e308, -5e-324)])


def test_nested_containers_keep_their_shape_and_types(far_gw):
    deep: Any = "bottom"
    for level in range(200):
        deep = [deep] if level % 2 else {"level": level, "inner": (deep,)}
    round_trip(far_gw, [
        None, True, False, [], (), {}, [None, True, False, 0, 0.0, "", b""],
        (1, [2, (3, {"four": [5]})]), {"a": [1, 2], (1, "b"): {"c": None}, 3: (), 4.5: b"x", None: True},
        {True: "bool key", 2: "int key", "": "empty key", b"k": "bytes key", (): "tuple key"},
        list(range(1000)), tuple(str(i) for i in range(300)), {str(i): i for i in range(300)}, deep,
    ])


def test_sets_and_frozensets_keep_their_types(far_gw):
    round_trip(far_gw, [
        set(), frozenset(), {1, "a", (1, 2), b"b", None, 2.5}, frozenset({frozenset({1}), frozenset()}),
        {frozenset({"x"}), (1, frozenset({2}))}, set(range(500)), [{1}, frozenset({1})], {"k": {"v"}},
    ])


def test_the_far_side_encodes_the_same_bytes_as_we_do(far_gw):
    """For values without sets (whose order may differ), the encoding is the same on both sides."""
    values = ["é\ud800", b"\x00", bytearray(b"ba"), 10**400, -0.0, float("inf"), 1 - 1j,
              [None, True, (1, {"k": [2.5]})], "x" * 300, b"y" * 70_000]
    channel = far_gw.remote_exec(f"from {bootstrap.FAR_PACKAGE} import wire\n"
                                 "channel.send([wire.dumps(value) for value in channel.receive()])")
    channel.send(values)
    assert channel.receive(timeout=T) == [execwire.dumps(value) for value in values]


def test_what_cannot_be_sent_is_named_by_the_far_side(far_gw):
    channel = far_gw.remote_exec("channel.send({'fine': [1, object()]})")
    with pytest.raises(execwire.RemoteError) as excinfo:
        channel.receive(timeout=T)
    assert "DumpError" in str(excinfo.value) and "'object'" in str(excinfo.value)
    assert "['fine'][1]" in str(excinfo.value)


# -- hypothesis: whatever one side encodes, the other decodes to the same value --------------------------
_texts = st.text(st.characters(exclude_categories=()), max_size=30)  # lone surrogates included
_hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts | st.binary(max_size=20),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
_scalars = (
    _hashables
    | st.floats()
    | st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 2**31, -(2**31) - 1])
    | st.complex_numbers()
    | st.binary(max_size=40).map(bytearray)
)
VALUES = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
                   | st.dictionaries(_hashables, inner, max_size=5)
                   | st.sets(_hashables, max_size=5) | st.frozensets(_hashables, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(VALUES, min_size=1, max_size=4))
def test_generated_values_survive_both_serializers_both_ways(far_gw, values):
    round_trip(far_gw, values)


# -- channels -------------------------------------------------------------------------------------------
def test_channels_travel_inside_messages_both_ways(far_gw):
    channel = far_gw.remote_exec("""
        request = channel.receive()
        request["reply_to"].send(("on the channel you sent", request["n"] * 2))
        mine = channel.gateway.newchannel()
        channel.send({"use": [mine]})
        channel.send(("far got", mine.receive()))
        mine.send("bye")
    """)
    ours = far_gw.newchannel()
    channel.send({"reply_to": ours, "n": 21})
    assert ours.receive(timeout=T) == ("on the channel you sent", 42)
    theirs = channel.receive(timeout=T)["use"][0]
    assert isinstance(theirs, execwire.Channel)
    theirs.send([1, "zwei", b"drei"])
    assert channel.receive(timeout=T) == ("far got", [1, "zwei", b"drei"])
    assert theirs.receive(timeout=T) == "bye"
    channel.waitclose(T)


def test_remote_errors_carry_a_traceback_naming_the_far_line(far_gw):
    channel = far_gw.remote_exec(
        "def check(value):\n"
        "    if value > 1:\n"
        "        raise ValueError('value too big: %r' % (value,))\n"
        "\n"
        "check(channel.receive())\n"
    )
    channel.send(7)
    with pytest.raises(execwire.RemoteError) as excinfo:
        channel.receive(timeout=T)
    error = excinfo.value
    assert error.type_name == "ValueError"
    assert "ValueError: value too big: 7" in error.formatted
    assert re.search(r'line 3, in check\n\s+raise ValueError', error.formatted), error.formatted
    assert "line 5, in <module>" in error.formatted
    with pytest.raises(execwire.RemoteError):
        channel.waitclose(T)


def divide_remotely(channel, divisor):
    numerator = channel.receive()
    channel.send(numerator // divisor)


def test_errors_in_a_shipped_function_name_this_file_and_line(far_gw):
    channel = far_gw.remote_exec(divide_remotely, divisor=0)
    channel.send(10)
    with pytest.raises(execwire.RemoteError) as excinfo:
        channel.receive(timeout=T)
    line = divide_remotely.__code__.co_firstlineno + 2
    assert f'File "{__file__}", line {line}, in divide_remotely' in excinfo.value.formatted
    assert "numerator // divisor" in excinfo.value.formatted
    assert excinfo.value.type_name == "ZeroDivisionError"


def scale_remotely(channel, factor, items, label="unnamed"):
    import sys

    channel.send({"label": label, "items": [factor * item for item in items],
                  "python": list(sys.version_info[:2])})


def test_remote_exec_of_a_function_with_keyword_arguments(far, far_gw):
    channel = far_gw.remote_exec(scale_remotely, factor=3, items=[1, 2**70, 0.5, "ab"], label="ñ\ud800")
    assert channel.receive(timeout=T) == {"label": "ñ\ud800", "items": [3, 3 * 2**70, 1.5, "ababab"],
                                          "python": list(far.version[:2])}
    channel.waitclose(T)


def test_setcallback_on_our_side_gets_every_item_then_the_endmarker(far_gw):
    got: list[Any] = []
    ended = threading.Event()
    end = ("the end",)

    def collect(item: Any) -> None:
        got.append(item)
        if item == end:
            ended.set()

    channel = far_gw.remote_exec("for i in range(50): channel.send(i)")
    channel.setcallback(collect, endmarker=end)
    assert ended.wait(T), f"no endmarker; got {got!r}"
    assert got == [*range(50), end]


def test_setcallback_on_the_far_side_answers_from_its_callback_thread(far_gw):
    channel = far_gw.remote_exec("""
        import threading
        done = threading.Event()
        def on_item(item):
            if item == "stop":
                done.set()
            else:
                channel.send((item * 2, threading.current_thread() is threading.main_thread()))
        channel.setcallback(on_item)
        channel.send("ready")
        done.wait(30)
    """)
    assert channel.receive(timeout=T) == "ready"
    for item in (1, "x", [2]):
        channel.send(item)
    channel.send("stop")
    assert [channel.receive(timeout=T) for _ in range(3)] == [(2, False), ("xx", False), ([2, 2], False)]
    channel.waitclose(T)


def test_receive_timeout_on_both_sides_leaves_the_channel_usable(far_gw):
    channel = far_gw.remote_exec("""
        try:
            channel.receive(timeout=0.2)
        except channel.TimeoutError as exc:
            channel.send(("far timed out", isinstance(exc, TimeoutError)))
        channel.send(channel.receive() + 1)
    """)
    assert channel.receive(timeout=T) == ("far timed out", True)
    started = time.monotonic()
    with pytest.raises(execwire.TimeoutError) as excinfo:
        channel.receive(timeout=0.3)
    assert time.monotonic() - started >= 0.25
    assert isinstance(excinfo.value, TimeoutError)
    channel.send(41)
    assert channel.receive(timeout=T) == 42
    channel.waitclose(T)


def test_main_thread_only_runs_shipped_code_in_the_main_thread(far, group):
    gateway = group.makegateway(spec_for(far, "execmodel=main_thread_only"))
    first = gateway.remote_exec("""
        import threading
        channel.send(threading.current_thread() is threading.main_thread())
        channel.send(channel.receive())
    """)
    assert first.receive(timeout=T) is True
    refused = gateway.remote_exec("channel.send('should not run')")
    with pytest.raises(execwire.RemoteError, match="main_thread_only"):
        refused.receive(timeout=T)
    first.send("released")
    assert first.receive(timeout=T) == "released"
    first.waitclose(T)
    assert wait_for(lambda: gateway.remote_status().numexecuting == 0, T)
    again = gateway.remote_exec("import threading\nchannel.send(threading.current_thread().name)")
    assert again.receive(timeout=T) == "MainThread"



def test_main_thread_only_runs_one_exec_after_another(far, group):
    """Waiting for a channel to close is enough before the next remote_exec; no retry needed."""
    gateway = group.makegateway(spec_for(far, "execmodel=main_thread_only"))
    refused = []
    for round_number in range(100):
        channel = gateway.remote_exec("channel.send(channel.receive() + 1)")
        channel.send(round_number)
        try:
            assert channel.receive(timeout=T) == round_number + 1
            channel.waitclose(T)
        except execwire.RemoteError as exc:
            refused.append((round_number, exc.formatted.strip().splitlines()[-1]))
    assert not refused, f"{len(refused)} of 100 sequential remote_execs refused, first: {refused[0]}"

# -- the far-side sources compile on every interpreter ---------------------------------------------------
def test_far_side_sources_byte_compile(far, tmp_path):
    stage2 = tmp_path / "stage2.py"
    stage2.write_bytes(zlib.decompress(bootstrap.stage2()))
    sources = [*sorted(FAR_DIR.rglob("*.py")), stage2]
    assert len(sources) > 5
    program = (
        "import py_compile, sys\n"
        "for i, path in enumerate(sys.argv[2:]):\n"
        "    py_compile.compile(path, cfile='%s/%d.pyc' % (sys.argv[1], i), doraise=True)\n"
    )
    result = subprocess.run([far.command, "-c", program, str(tmp_path), *map(str, sources)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{far.describe()} cannot compile the far side:\n{result.stderr}"
    assert len(list(tmp_path.glob("*.pyc"))) == len(sources)


# -- a far side that is too old is refused at once, by name -----------------------------------------------
_old_params = [pytest.param(i, id=i.name) for i in TOO_OLD] or [
    pytest.param(None, id="none", marks=pytest.mark.skip(reason="no Python older than 3.6 (2.7, 3.5) found"))]


@pytest.mark.parametrize("old", _old_params)
def test_a_too_old_python_is_refused_at_once_by_name(old, group):
    started = time.monotonic()
    with pytest.raises(execwire.GatewayStartError) as excinfo:
        group.makegateway(spec_for(old))
    elapsed = time.monotonic() - started
    message = str(excinfo.value)
    assert old.command in message
    assert old.version_text in message
    assert re.search(r"\b3\.6\b", message), message
    assert elapsed < 5, f"refusing {old.describe()} took {elapsed:.1f} s"
    # the same error reaches code that works with a gateway still starting (as the command starts them)
    other = group._start_gateway(spec_for(old))
    with pytest.raises(execwire.GatewayStartError, match=re.escape(old.version_text)):
        other.remote_exec("channel.send(1)").receive(timeout=10)
    assert time.monotonic() - started < 8


def test_an_old_python_between_3_6_and_3_9_is_present():
    """CI must prove the far side on old interpreters; elsewhere a missing one is only a warning."""
    if pythons.old_supported_present():
        return
    message = pythons.no_old_python_message()
    if pythons.in_ci():
        pytest.fail(f"CI is set but {message}")
    warnings.warn(message, UserWarning, stacklevel=1)
    pytest.skip(message)


# -- what python= accepts -----------------------------------------------------------------------------------
def _first(*names: str) -> Interpreter:
    present = pythons.discover()
    for name in names:
        if name in present:
            return present[name]
    if MATRIX:
        return MATRIX[0]
    pytest.skip("no far-side Python 3.6+ found")


def test_python_may_be_a_name_on_path(tmp_path, monkeypatch, group):
    target = _first("3.12", "3.8", "3.13")
    name = f"python{target.version[0]}.{target.version[1]}" if target.implementation == "cpython" else "pypy3"
    (tmp_path / name).symlink_to(target.command)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    gateway = group.makegateway(f"popen//python={name}")
    assert tuple(gateway._rinfo().version_info[:3]) == target.version
    channel = gateway.remote_exec("channel.send(channel.receive() * 2)")
    channel.send("ok ")
    assert channel.receive(timeout=T) == "ok ok "


def test_python_may_be_env_with_a_name(group):
    if not os.access("/usr/bin/env", os.X_OK):
        pytest.skip("/usr/bin/env is missing")
    expected = pythons.probe(["/usr/bin/env", "python3"])
    if expected is None:
        pytest.skip("'/usr/bin/env python3' does not run a Python here")
    gateway = group.makegateway("popen//python=/usr/bin/env python3")
    info = gateway._rinfo()
    assert info.executable == expected.executable
    assert tuple(info.version_info[:3]) == expected.version


def test_python_may_carry_interpreter_options(group):
    target = _first("3.6", "3.7", "3.8")
    gateway = group.makegateway(f"popen//python={shlex.quote(target.command)} -s -X faulthandler")
    channel = gateway.remote_exec("""
        import sys, faulthandler
        channel.send([sys.flags.no_user_site, faulthandler.is_enabled(), list(sys.version_info[:3])])
    """)
    assert channel.receive(timeout=T) == [1, True, list(target.version)]


def test_python_may_be_a_quoted_path_with_spaces(tmp_path, group):
    target = _first("3.7", "3.9", "3.10")
    folder = tmp_path / "dir with spaces"
    folder.mkdir()
    (folder / "py thon").symlink_to(target.command)
    gateway = group.makegateway(f"popen//python={shlex.quote(str(folder / 'py thon'))}")
    assert tuple(gateway._rinfo().version_info[:3]) == target.version


def _sudo_works() -> str | None:
    """Why sudo cannot be used non-interactively here, or None if it can."""
    if shutil.which("sudo") is None:
        return "sudo is not installed"
    try:
        result = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'sudo -n true' failed: {exc}"
    return None if result.returncode == 0 else f"'sudo -n true' needs a password here: {result.stderr!r}"


def test_python_may_be_run_through_sudo(group):
    reason = _sudo_works()
    if reason:
        pytest.skip(reason)
    if pythons.probe(["sudo", "-n", "python3"]) is not None:
        spec = "popen//python=sudo -n python3"
    else:
        spec = f"popen//python=sudo -n {shlex.quote(_first('3.11', '3.12').command)}"
    gateway = group.makegateway(spec)
    channel = gateway.remote_exec("import os\nchannel.send([os.geteuid(), 'SUDO_USER' in os.environ])")
    assert channel.receive(timeout=T) == [0, True]
    far_pid = gateway._rinfo().pid
    gateway.exit()
    assert wait_for(lambda: pid_gone(far_pid), 10), "the Python started by sudo outlived exit()"


def test_python_naming_a_missing_command_says_which(group):
    with pytest.raises(execwire.GatewayStartError, match="python-that-does-not-exist9.9"):
        group.makegateway("popen//python=python-that-does-not-exist9.9").wait_ready(timeout=10)

